package jsonscan

import (
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

func TestAppendUnescaped(t *testing.T) {
	for _, tc := range []struct {
		raw, want, text string // text: AppendText's, when it differs
		bad             bool
	}{
		{raw: ``, want: ``},
		{raw: `plain`, want: `plain`},
		{raw: `a\"\\\/\b\f\n\r\tz`, want: "a\"\\/\b\f\n\r\tz"},
		{raw: `\u00e9\u20AC\ud83d\ude00`, want: "é€😀"},
		{raw: `\u0041\u0000`, want: "A\x00"},
		// A secret behind escapes is what a JSON parser sees.
		{raw: `\u0034111 1111 1111 1111`, want: "4111 1111 1111 1111"},
		// Lone surrogates are U+FFFD; the escape after one is its own.
		{raw: `\ud800`, want: "\ufffd"},
		{raw: `\udc00x`, want: "\ufffdx"},
		{raw: `\ude00\ud83d`, want: "\ufffd\ufffd"},
		{raw: `\ud800\u0041`, want: "\ufffdA"},
		{raw: `\ud800\ud800\udc00`, want: "\ufffd\U00010000"},
		{raw: `\ud800\n`, want: "\ufffd\n"},
		// Invalid UTF-8 is kept here, U+FFFD per byte in AppendText.
		{raw: "a\xffb", want: "a\xffb", text: "a\ufffdb"},
		{raw: "\xe2\x82\\n", want: "\xe2\x82\n", text: "\ufffd\ufffd\n"},
		{raw: "\xed\xa0\x80", want: "\xed\xa0\x80", text: "\ufffd\ufffd\ufffd"},
		{raw: "\xef\xbf\xbd", want: "\ufffd"}, // a valid U+FFFD stays one
		// Invalid escapes are kept as written and reported.
		{raw: `a\x`, want: `a\x`, bad: true},
		{raw: `a\`, want: `a\`, bad: true},
		{raw: `\u12`, want: `\u12`, bad: true},
		{raw: `\u12g4`, want: `\u12g4`, bad: true},
		{raw: `\ud83d\u12`, want: "\ufffd\\u12", bad: true},
		{raw: `\ud83d\ude0`, want: "\ufffd\\ude0", bad: true},
		{raw: `\'\u0041`, want: `\'A`, bad: true},
	} {
		got, ok := AppendUnescaped([]byte("pre:"), []byte(tc.raw))
		if string(got) != "pre:"+tc.want || ok == tc.bad {
			t.Errorf("AppendUnescaped(%q) = %q, %v; want %q, %v", tc.raw, got, ok, "pre:"+tc.want, !tc.bad)
		}
		text := tc.want
		if tc.text != "" {
			text = tc.text
		}
		got, ok = AppendText([]byte("pre:"), []byte(tc.raw))
		if string(got) != "pre:"+text || ok == tc.bad {
			t.Errorf("AppendText(%q) = %q, %v; want %q, %v", tc.raw, got, ok, "pre:"+text, !tc.bad)
		}
	}
}

// FuzzUnescape checks AppendText against encoding/json on every string
// RawString accepts, and AppendUnescaped against the three decoders it
// replaced (kept below as they were): redact's on what redact's walker
// accepts (RawString's strings), detect's on anything, and the overview's
// (AppendText) on anything.
func FuzzUnescape(f *testing.F) {
	for _, s := range []string{
		`a\"\\\/\b\f\n\r\tz`, `\u00e9\u20AC\ud83d\ude00`, `\ud800\u0041`, `\udc00`, "\xe2\x82\\n\xff",
		`\u12`, `a\`, `\x`, `\ud83d\ude0`, `\ud800\ud800\udc00`, "\x01", `"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		un, ok := AppendUnescaped(nil, raw)
		text, tok := AppendText(nil, raw)
		if ok != tok {
			t.Fatalf("%q: AppendUnescaped ok %v, AppendText ok %v", raw, ok, tok)
		}
		if !utf8.Valid(text) {
			t.Fatalf("%q: AppendText gave invalid UTF-8 %q", raw, text)
		}
		lit := append(append([]byte{'"'}, raw...), '"')
		s := Scanner{Data: lit}
		_, _, err := s.RawString()
		checked := err == nil && s.Pos == len(lit)
		if checked {
			var want string
			if err := json.Unmarshal(lit, &want); err != nil {
				t.Fatalf("%q: RawString accepts, encoding/json: %v", lit, err)
			}
			if !ok || string(text) != want {
				t.Fatalf("%q: AppendText = %q, %v; encoding/json %q", raw, text, ok, want)
			}
			if old := oldRedactUnescape(nil, raw); string(un) != string(old) {
				t.Fatalf("%q: AppendUnescaped = %q, redact's was %q", raw, un, old)
			}
		}
		if old := oldDetectUnescaped(nil, raw); string(un) != string(old) {
			t.Fatalf("%q: AppendUnescaped = %q, detect's was %q", raw, un, old)
		}
		old, oerr := oldOverviewUnquote(lit)
		if (oerr == nil) != ok || oerr == nil && string(text) != string(old) {
			t.Fatalf("%q: AppendText = %q, %v; the overview's was %q, %v", raw, text, ok, old, oerr)
		}
	})
}

// oldRedactUnescape is redact's appendUnescape as it was: for strings its
// walker had checked.
func oldRedactUnescape(dst, s []byte) []byte {
	unhex := func(c byte) int {
		switch {
		case c >= '0' && c <= '9':
			return int(c - '0')
		case c >= 'a' && c <= 'f':
			return int(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			return int(c - 'A' + 10)
		}
		return -1
	}
	hex4 := func(s []byte) rune {
		return rune(unhex(s[0])<<12 | unhex(s[1])<<8 | unhex(s[2])<<4 | unhex(s[3]))
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch s[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if dec := utf16.DecodeRune(r, hex4(s[i+2:])); dec != utf8.RuneError {
						i += 6
						dst = utf8.AppendRune(dst, dec)
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, s[i+1])
		}
		i += 2
	}
	return dst
}

// oldDetectUnescaped is detect's appendUnescaped as it was.
func oldDetectUnescaped(dst, s []byte) []byte {
	hex4 := func(b []byte) (rune, int) {
		if len(b) < 4 {
			return 0, 0
		}
		var r rune
		for _, c := range b[:4] {
			switch {
			case c >= '0' && c <= '9':
				r = r<<4 | rune(c-'0')
			case c >= 'a' && c <= 'f':
				r = r<<4 | rune(c-'a'+10)
			case c >= 'A' && c <= 'F':
				r = r<<4 | rune(c-'A'+10)
			default:
				return 0, 0
			}
		}
		return r, 4
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			dst = append(dst, c)
			continue
		}
		i++
		switch s[i] {
		case '"', '\\', '/':
			dst = append(dst, s[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, n := hex4(s[i+1:])
			if n == 0 {
				dst = append(dst, '\\', 'u')
				continue
			}
			i += n
			if utf16.IsSurrogate(r) {
				if len(s) > i+2 && s[i+1] == '\\' && s[i+2] == 'u' {
					if r2, n2 := hex4(s[i+3:]); n2 > 0 {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							i += 2 + n2
							dst = utf8.AppendRune(dst, dec)
							continue
						}
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		default:
			dst = append(dst, '\\', s[i])
		}
	}
	return dst
}

// oldOverviewUnquote is the overview's unquoteJSON (server) as it was: a
// literal with its quotes.
func oldOverviewUnquote(lit []byte) ([]byte, error) {
	var out []byte
	for i := 1; i < len(lit)-1; i++ {
		c := lit[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(lit[i : len(lit)-1])
			if r == utf8.RuneError && size <= 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
			} else {
				out = append(out, lit[i:i+size]...)
			}
			i += max(size, 1) - 1
			continue
		}
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(lit)-1 {
			return nil, errors.New("bad escape")
		}
		switch lit[i] {
		case '"', '\\', '/':
			out = append(out, lit[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if i+4 >= len(lit) {
				return nil, errors.New("bad escape")
			}
			r, err := strconv.ParseUint(string(lit[i+1:i+5]), 16, 32)
			if err != nil {
				return nil, err
			}
			i += 4
			if r >= 0xD800 && r < 0xDC00 && i+6 < len(lit) && lit[i+1] == '\\' && lit[i+2] == 'u' {
				if r2, err := strconv.ParseUint(string(lit[i+3:i+7]), 16, 32); err == nil && r2 >= 0xDC00 && r2 < 0xE000 {
					r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
					i += 6
				}
			}
			if r >= 0xD800 && r < 0xE000 {
				r = 0xFFFD
			}
			out = append(out, string(rune(r))...)
		default:
			return nil, errors.New("bad escape")
		}
	}
	return out, nil
}

// BenchmarkUnescape decodes strings with escapes as events hold them: a
// user agent with quotes, a path with a \u escape, and a JSON body kept as
// a string; old-detect and old-redact are the decoders AppendUnescaped
// replaced.
func BenchmarkUnescape(b *testing.B) {
	raws := [][]byte{
		[]byte(`Mozilla/5.0 (compatible; \"probe\" 1.0) curl/8.5.0`),
		[]byte(`/api/users/caf\u00e9/orders/1042`),
		[]byte(`{\"user\":{\"name\":\"alice\",\"roles\":[\"admin\",\"ops\"]},\"card\":\"4111 1111 1111 1111\",\"note\":\"line\nnext\"}`),
	}
	var n int64
	for _, r := range raws {
		n += int64(len(r))
	}
	dst := make([]byte, 0, 256)
	for _, fn := range []struct {
		name string
		f    func(dst, raw []byte) []byte
	}{
		{"AppendUnescaped", func(dst, raw []byte) []byte { d, _ := AppendUnescaped(dst, raw); return d }},
		{"old-detect", oldDetectUnescaped},
		{"old-redact", oldRedactUnescape},
	} {
		b.Run(fn.name, func(b *testing.B) {
			b.SetBytes(n)
			for b.Loop() {
				for _, r := range raws {
					dst = fn.f(dst[:0], r)
				}
			}
		})
	}
}
