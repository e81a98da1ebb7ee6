package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// fuzzRedactors covers every mode; the property checks use the first.
func fuzzRedactors(tb testing.TB) []*Redactor {
	return []*Redactor{
		mustNew(tb, Config{Emails: true}),
		mustNew(tb, Config{Mode: Mask, Emails: true}),
		mustNew(tb, Config{Mode: HMAC, Secret: testSecret}),
	}
}

func FuzzJSON(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `null`, `"x"`, `0`, `-1.5e+3`, `true`,
		`{"a":1,"b":[true,false,null],"c":{"d":"e"}}`,
		`{"password":"hunter2","user":"bob"}`,
		`{"pass\u0077ord":{"a":[1,2]},"x":"\u0034111111111111111"}`,
		`{"note":"card 4111 1111 1111 1111","n":4111111111111111}`,
		`{"k":"-----BEGIN PRIVATE KEY-----\nMIIE\/ab\n-----END PRIVATE KEY-----"}`,
		`{"body":"{\"secret\":\"s\",\"a\":[1,{\"token\":2}]}"}`,
		`{"t":"Bearer abcdef123456","e":"bob@example.com","s":"123-45-6789","k":"AKIAIOSFODNN7EXAMPLE"}`,
		`{"u":"https://x/cb?access_token=abc&y=1","m":"password=x user: y"}`,
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
		"{\"a\":\"\xff\xfe\",\"\u2028\":\"\\ud800\\udc00\\ud800\"}",
		`{"a":1,}`, `{"a"`, `"\u12`, `[1 2]`, `01`,
		string(apiBody),
	} {
		f.Add([]byte(s), "hunter2")
	}
	f.Add([]byte(`{"a":{"b":"c"}}`), "4111 1111 1111 1111")
	f.Add([]byte(`[1]`), `quote " and \ backslash`)
	rs := fuzzRedactors(f)
	f.Fuzz(func(t *testing.T, data []byte, secret string) {
		for _, r := range rs {
			out, err := r.JSON(nil, data)
			valid := json.Valid(data)
			if err != nil {
				if !errors.Is(err, ErrInvalidJSON) {
					t.Fatalf("%v: error does not wrap ErrInvalidJSON: %v", r.Mode(), err)
				}
				if valid && !strings.Contains(err.Error(), "nesting") {
					t.Fatalf("%v: valid JSON %q rejected: %v", r.Mode(), data, err)
				}
				continue
			}
			if !valid {
				t.Fatalf("%v: invalid JSON %q accepted, gave %q", r.Mode(), data, out)
			}
			if !json.Valid(out) {
				t.Fatalf("%v: JSON(%q) = %q, not valid JSON", r.Mode(), data, out)
			}
			if err := sameShape(r, data, out); err != nil {
				t.Fatalf("%v: JSON(%q) = %q: %v", r.Mode(), data, out, err)
			}
		}

		// A planted secret under a sensitive key never survives, whatever
		// surrounds it and however it is escaped.
		if secret == "" {
			return
		}
		sj, _ := json.Marshal(secret)
		var want string
		_ = json.Unmarshal(sj, &want) // invalid UTF-8 became U+FFFD
		inner := data
		if !json.Valid(data) {
			inner, _ = json.Marshal(string(data))
		}
		doc := fmt.Appendf(nil, `{"outer":%s,"Client-Secret":%s,"list":[{"new_password":%s}]}`, inner, escapeAll(sj), sj)
		for _, r := range rs {
			out, err := r.JSON(nil, doc)
			if err != nil {
				if strings.Contains(err.Error(), "nesting") {
					return
				}
				t.Fatalf("%v: planted document %q: %v", r.Mode(), doc, err)
			}
			var got struct {
				Secret string `json:"Client-Secret"`
				List   []struct {
					Password string `json:"new_password"`
				} `json:"list"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%v: output %q: %v", r.Mode(), out, err)
			}
			repl := r.replaceValue(want)
			if got.Secret != repl || len(got.List) != 1 || got.List[0].Password != repl {
				t.Fatalf("%v: planted secret %q came out as %q and %+v, want %q", r.Mode(), secret, got.Secret, got.List, repl)
			}
		}
	})
}

// escapeAll rewrites a JSON string token so every ASCII letter and digit is
// a \u escape, the way an attacker would try to slip a value past a
// scrubber that only looks at raw bytes.
func escapeAll(tok []byte) []byte {
	var b bytes.Buffer
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c == '\\' && tok[i+1] == 'u':
			b.Write(tok[i : i+6])
			i += 5
		case c == '\\':
			b.Write(tok[i : i+2])
			i++
		case isAlnum(c):
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.Bytes()
}

// sameShape checks that out has in's structure: the same containers, keys
// in the same order, a string (or the original null) for each sensitive
// key's value, and unchanged every key and scalar the detectors leave alone.
func sameShape(r *Redactor, in, out []byte) error {
	din := json.NewDecoder(bytes.NewReader(in))
	dout := json.NewDecoder(bytes.NewReader(out))
	din.UseNumber()
	dout.UseNumber()
	return shapeValue(r, din, dout)
}

func shapeValue(r *Redactor, din, dout *json.Decoder) error {
	tin, err := din.Token()
	if err != nil {
		return fmt.Errorf("input: %v", err)
	}
	tout, err := dout.Token()
	if err != nil {
		return fmt.Errorf("output: %v", err)
	}
	switch x := tin.(type) {
	case json.Delim:
		if tout != x {
			return fmt.Errorf("got %v where the input has %v", tout, x)
		}
		for din.More() {
			if !dout.More() {
				return fmt.Errorf("output %v ends early", x)
			}
			if x == '[' {
				if err := shapeValue(r, din, dout); err != nil {
					return err
				}
				continue
			}
			kin, _ := din.Token()
			kout, err := dout.Token()
			if err != nil {
				return fmt.Errorf("output key: %v", err)
			}
			if err := sameText(r, kin.(string), kout.(string)); err != nil {
				return fmt.Errorf("key: %v", err)
			}
			if !r.SensitiveKey(kin.(string)) {
				if err := shapeValue(r, din, dout); err != nil {
					return err
				}
				continue
			}
			null, err := skipValue(din)
			if err != nil {
				return err
			}
			v, err := dout.Token()
			if err != nil {
				return fmt.Errorf("output: %v", err)
			}
			if s, ok := v.(string); null && v != nil || !null && (!ok || r.mode == Remove && s != Marker) {
				return fmt.Errorf("sensitive key %q has value %v", kin, v)
			}
		}
		if dout.More() {
			return fmt.Errorf("output %v has extra members", x)
		}
		din.Token()
		dout.Token()
	case string:
		s, ok := tout.(string)
		if !ok {
			return fmt.Errorf("string %q became %v", x, tout)
		}
		return sameText(r, x, s)
	case json.Number:
		if tout == x {
			return nil
		}
		if _, ok := tout.(string); !ok || !isCardValue(string(x)) {
			return fmt.Errorf("number %v became %v", x, tout)
		}
	default:
		if tout != tin {
			return fmt.Errorf("%v became %v", tin, tout)
		}
	}
	return nil
}

// sameText checks a string the detectors saw: text without secrets must
// come out unchanged.
func sameText(r *Redactor, in, out string) error {
	if looksLikeJSON([]byte(in)) || r.String(in) != in {
		return nil // scrubbed, possibly as an inner document
	}
	if in != out {
		return fmt.Errorf("clean text %q became %q", in, out)
	}
	return nil
}

func skipValue(d *json.Decoder) (null bool, err error) {
	depth := 0
	for {
		t, err := d.Token()
		if err != nil {
			return false, err
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return t == nil, nil
		}
	}
}

// plantCard derives a Luhn-valid card number of 13–19 digits with a payment
// network's first digit from seed, grouped by sep.
func plantCard(seed uint64, sep string) string {
	next := func() uint64 { // splitmix64
		seed += 0x9e3779b97f4a7c15
		z := seed
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		return z ^ z>>31
	}
	n := 13 + int(next()%7)
	d := make([]byte, n)
	d[0] = "234568"[next()%6]
	for i := 1; i < n-1; i++ {
		d[i] = byte('0' + next()%10)
	}
	for c := byte('0'); c <= '9'; c++ {
		d[n-1] = c
		if luhn(d) {
			break
		}
	}
	var b strings.Builder
	for i, c := range d {
		if i > 0 && i%4 == 0 {
			b.WriteString(sep)
		}
		b.WriteByte(c)
	}
	return b.String()
}

var cardMasks = regexp.MustCompile(`\*{12}[0-9]{4}`)

func FuzzString(f *testing.F) {
	for _, s := range []string{
		"", "plain text", "card 4111 1111 1111 1111", "1732550400003 4111111111111112",
		"Bearer abcdef123456", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "AKIAIOSFODNN7EXAMPLE",
		"-----BEGIN RSA PRIVATE KEY-----\nabc", "bob@example.com", "123-45-6789", "password=x token: y",
		"5 5 5 5-5-5", "@@@..", "-----BEGIN -----END", "::==", "\"password\":\"", "bearer\t\t=",
		"password=[REDACTED] token: [REDACTED:jwt]", "secret=[REDACTED]]",
	} {
		f.Add(s, "", uint64(len(s)), byte(' '))
	}
	f.Add("order 100", "thanks", uint64(7), byte('-'))
	f.Add("4 ", " 1", uint64(99), byte(0))
	rs := fuzzRedactors(f)
	f.Fuzz(func(t *testing.T, prefix, suffix string, seed uint64, sepKind byte) {
		sep := [...]string{"", " ", "-"}[sepKind%3]
		card := plantCard(seed, sep)
		text := prefix + " " + card + " " + suffix
		for _, r := range rs {
			_ = r.String(prefix + suffix)
			got := r.String(text)
			if strings.Contains(got, card) {
				t.Fatalf("%v: card %q survived in %q -> %q", r.Mode(), card, text, got)
			}
			// Scrubbed text goes through scrubbers again (the middleware,
			// then the collector): what was replaced stays as replaced.
			// HMAC is left out: a hash of a hash is a new token by design.
			// A card mask that became a sensitive key's value may be
			// replaced whole on the second pass (a value that merely
			// looks like a mask must not pass as one).
			if r.Mode() != HMAC {
				if again := r.String(got); cardMasks.ReplaceAllString(again, Marker) != cardMasks.ReplaceAllString(got, Marker) {
					t.Fatalf("%v: scrubbing twice changes the text: %q -> %q -> %q", r.Mode(), text, got, again)
				}
			}
			// The same text inside a JSON string, escaped as an attacker
			// would, must lose the card too.
			tok, _ := json.Marshal(text)
			if seed&1 == 1 {
				tok = escapeAll(tok)
			}
			js, err := r.JSON(nil, append(append([]byte(`{"note":`), tok...), '}'))
			if err != nil {
				t.Fatalf("%v: JSON with %q: %v", r.Mode(), tok, err)
			}
			var doc struct{ Note string }
			if err := json.Unmarshal(js, &doc); err != nil {
				t.Fatalf("%v: output %q: %v", r.Mode(), js, err)
			}
			if strings.Contains(doc.Note, card) {
				t.Fatalf("%v: card %q survived JSON escaping: %q -> %q", r.Mode(), card, tok, js)
			}
		}
	})
}

func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		"", "a=1&b=2", "password=x&q=4111+1111+1111+1111", "access%5Ftoken=abc&x=%zz", "&&=&a",
		"redirect=https%3A%2F%2Fx%2F%3Ftoken%3Dabc", "4111111111111111=1", "a=%34111111111111111",
		"page=2&q=x=1", "page=12345&id=6789&sort=desc",
	} {
		f.Add(s, "s3cr3t-value")
	}
	rs := fuzzRedactors(f)
	memos := make([][2]*Memo, len(rs))
	for i, r := range rs {
		memos[i] = [2]*Memo{r.NewMemo(), r.NewMemo()}
	}
	f.Fuzz(func(t *testing.T, q, secret string) {
		for i, r := range rs {
			if got, want := r.queryClean(q, nil), queryCleanBefore(r, q, nil); got != want {
				t.Fatalf("%v: queryClean(%q) = %v, before the one-pass scan %v", r.Mode(), q, got, want)
			}
			// With memos, which remember names as each pass looks them up.
			if got, want := r.queryClean(q, memos[i][0]), queryCleanBefore(r, q, memos[i][1]); got != want {
				t.Fatalf("%v: queryClean(%q) with a memo = %v, before the one-pass scan %v", r.Mode(), q, got, want)
			}
			if got, want := r.Query(q), urlencodedBefore(r, q); got != want {
				t.Fatalf("%v: Query(%q) = %q, before the one-pass scan %q", r.Mode(), q, got, want)
			}
			planted := q + "&client_secret=" + url.QueryEscape(secret)
			out := r.Query(planted)
			in, err := url.ParseQuery(planted)
			if err != nil {
				continue // net/url rejects what we scrub leniently
			}
			got, err := url.ParseQuery(out)
			if err != nil {
				t.Fatalf("%v: Query(%q) = %q, which net/url rejects: %v", r.Mode(), planted, out, err)
			}
			if secret == "" {
				continue
			}
			for _, v := range got["client_secret"] {
				if v == secret {
					t.Fatalf("%v: planted secret survived: %q -> %q", r.Mode(), planted, out)
				}
			}
			if n, m := countParams(in), countParams(got); n != m {
				t.Fatalf("%v: %d parameters became %d: %q -> %q", r.Mode(), n, m, planted, out)
			}
		}
	})
}

func countParams(v url.Values) int {
	n := 0
	for _, vs := range v {
		n += len(vs)
	}
	return n
}
