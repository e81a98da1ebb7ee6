package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestStr(t *testing.T) {
	for _, tc := range []struct {
		in          string
		want        string
		err         string
		errOff, end int
	}{
		{in: `"abc"`, want: "abc", end: 5},
		{in: ` "a" `, want: "a", end: 4},
		{in: `""`, want: "", end: 2},
		{in: `"a\"\\\/\b\f\n\r\tz"`, want: "a\"\\/\b\f\n\r\tz"},
		{in: `"\u00e9\u20AC\ud83d\ude00"`, want: "é€😀"},
		{in: "\"caf\xc3\xa9\"", want: "café"},
		// Invalid UTF-8: each bad byte is U+FFFD, escaped or not.
		{in: "\"a\xffb\"", want: "a\ufffdb"},
		{in: "\"\xe2\x82\\n\"", want: "\ufffd\ufffd\n"},
		{in: "\"\xed\xa0\x80\"", want: "\ufffd\ufffd\ufffd"},
		// Lone surrogates are U+FFFD; the escape after one is read on
		// its own, as encoding/json reads it.
		{in: `"\ud800"`, want: "\ufffd"},
		{in: `"\udc00x"`, want: "\ufffdx"},
		{in: `"\ud800\u0041"`, want: "\ufffdA"},
		{in: `"\ud800\ud800"`, want: "\ufffd\ufffd"},
		{in: `"\ud800\ud83d\ude00"`, want: "\ufffd😀"},
		{in: `"\udc00\ud83d\ude00"`, want: "\ufffd😀"},
		{in: `"\ud800\ufffd"`, want: "\ufffd\ufffd"},
		{in: `"\ud800\\u0041"`, want: "\ufffd\\u0041"},
		// Refused, with where.
		{in: "\"a\x01\"", err: "control character", errOff: 2},
		{in: "\"a\x7f\"", want: "a\x7f"},
		{in: `"a\x"`, err: `bad escape \x`, errOff: 2},
		{in: `"\u12"`, err: `bad escape`, errOff: 1},
		{in: `"\u12g4"`, err: `bad escape`, errOff: 1},
		{in: `"abc`, err: "unterminated string", errOff: 4},
		{in: `"a\`, err: "unterminated string", errOff: 3},
		{in: `"a\"`, err: "unterminated string", errOff: 4},
		{in: `abc`, err: `unexpected 'a', want '"'`},
		{in: ``, err: "unexpected end"},
	} {
		s := Scanner{Data: []byte(tc.in)}
		got, err := s.Str()
		var se *SyntaxError
		switch {
		case tc.err != "":
			if !errors.As(err, &se) || !strings.Contains(se.Msg, tc.err) || se.Off != tc.errOff {
				t.Errorf("%q: error %v, want %q at offset %d", tc.in, err, tc.err, tc.errOff)
			}
		case err != nil || got != tc.want:
			t.Errorf("%q: %q, %v; want %q", tc.in, got, err, tc.want)
		case tc.end != 0 && s.Pos != tc.end:
			t.Errorf("%q: at %d after, want %d", tc.in, s.Pos, tc.end)
		}
		if tc.err == "" {
			var std string
			if err := json.Unmarshal([]byte(tc.in), &std); err != nil || std != tc.want {
				t.Errorf("%q: encoding/json reads %q (%v), the test wants %q", tc.in, std, err, tc.want)
			}
		}
	}
}

func TestNumber(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" refused
		end  int    // where it stopped, read or not
	}{
		{"0", "0", 1}, {"-0", "-0", 2}, {"12", "12", 2}, {"1.5e-3,", "1.5e-3", 6}, {"1E+9]", "1E+9", 4},
		{"01", "0", 1}, // the number is 0; what follows is its caller's
		{"-", "", 1}, {"+1", "", 0}, {".5", "", 0}, {"1.", "", 2}, {"1.e3", "", 2}, {"1e", "", 2}, {"1e+", "", 3},
		{"-a", "", 1}, {"", "", 0},
	} {
		s := Scanner{Data: []byte(tc.in)}
		got, err := s.Number()
		if string(got) != tc.want || (err == nil) != (tc.want != "") || s.Pos != tc.end {
			t.Errorf("%q: %q, %v, at %d; want %q at %d", tc.in, got, err, s.Pos, tc.want, tc.end)
		}
		if whole := tc.want != "" && tc.want == tc.in; IsNumber([]byte(tc.in)) != whole {
			t.Errorf("IsNumber(%q) = %v", tc.in, !whole)
		}
	}
}

func TestSkip(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tc := range []struct {
		in       string
		maxDepth int
		err      string // "" read
		errOff   int
	}{
		{`{"a":[1,true,false,null,"x",{"b":{}}],"c":-1.5e3}`, 4, "", 0},
		{` [ 1 , { "a" : [ ] } ] `, 4, "", 0},
		{`{}`, 0, "", 0},
		{`[]`, 0, "", 0},
		{`[1]`, 0, "nested deeper than 0", 1},
		{deep(5), 4, "", 0},
		{deep(6), 4, "nested deeper than 4", 5},
		{`[[[[[1]]]]]`, 4, "nested deeper than 4", 5},
		{strings.Repeat("[", 1<<20), 100, "nested deeper than 100", 101},
		{`{"a":1,}`, 4, `unexpected '}', want '"'`, 7},
		{`{"a" 1}`, 4, `want ':'`, 5},
		{`[1 2]`, 4, `want ']'`, 3},
		{`[1,]`, 4, `unexpected ']'`, 3},
		{`tru`, 4, "invalid literal", 0},
		{`nul`, 4, "invalid literal", 0},
		{`x`, 4, `unexpected 'x'`, 0},
		{"\x00", 4, `unexpected '\x00'`, 0},
		{``, 4, "unexpected end of input", 0},
		{`[`, 4, "unexpected end of input", 1},
		{`{"a\u00":1}`, 4, "bad escape", 3},
	} {
		s := Scanner{Data: []byte(tc.in), MaxDepth: tc.maxDepth}
		raw, err := s.Skip(0)
		var se *SyntaxError
		if tc.err == "" {
			if err != nil || string(raw) != strings.TrimSpace(tc.in) {
				t.Errorf("%q: %q, %v", tc.in, raw, err)
			}
		} else if !errors.As(err, &se) || !strings.Contains(se.Msg, tc.err) || se.Off != tc.errOff {
			t.Errorf("%.40q: error %v, want %q at offset %d", tc.in, err, tc.err, tc.errOff)
		}
	}
}

// TestSkipAllocatesNothing: a skipped value costs no allocation, however
// many strings (escaped or not), numbers and levels it holds.
func TestSkipAllocatesNothing(t *testing.T) {
	doc := []byte(`{"a\n":["x\u00e9\ud83d\ude00",1.5e3,{"b":[true,false,null]},"` + strings.Repeat(`y\"`, 1000) + `"]}`)
	allocs := testing.AllocsPerRun(100, func() {
		s := Scanner{Data: doc, MaxDepth: 10}
		if _, err := s.Skip(0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.0f allocations", allocs)
	}
}

// tokens reads a document with the scanner into encoding/json's tokens:
// what Decoder.Token gives, strings decoded, numbers as json.Number.
func tokens(s *Scanner, depth int, out []json.Token) ([]json.Token, error) {
	if depth > s.MaxDepth {
		return out, s.Fail("too deep")
	}
	var err error
	switch c := s.Peek(); c {
	case '{', '[':
		close := byte('}')
		if c == '[' {
			close = ']'
		}
		s.Pos++
		out = append(out, json.Delim(c))
		if s.Peek() == close {
			s.Pos++
			return append(out, json.Delim(close)), nil
		}
		for {
			if c == '{' {
				k, err := s.Str()
				if err != nil {
					return out, err
				}
				out = append(out, k)
				if err := s.Expect(':'); err != nil {
					return out, err
				}
			}
			if out, err = tokens(s, depth+1, out); err != nil {
				return out, err
			}
			if s.Peek() != ',' {
				break
			}
			s.Pos++
		}
		if err := s.Expect(close); err != nil {
			return out, err
		}
		return append(out, json.Delim(close)), nil
	case '"':
		v, err := s.Str()
		return append(out, v), err
	case 't', 'f', 'n':
		_, err := s.Skip(0)
		if err != nil {
			return out, err
		}
		return append(out, map[byte]json.Token{'t': true, 'f': false, 'n': nil}[c]), nil
	}
	num, err := s.Number()
	return append(out, json.Number(num)), err
}

// FuzzScan: the scanner refuses what encoding/json refuses and reads what
// it reads, token for token and string for string; Skip agrees, returns the
// value's text and stops at its end.
func FuzzScan(f *testing.F) {
	for _, s := range []string{
		`{"a":[1,true,false,null,"x",{"b":{}}],"c":-1.5e3}`, `"\ud800\ud83d\ude00\u00e9\n"`, "\"\xff\xed\xa0\x80\"",
		` [ 0 , -0.0e+1 , "\\\"" ] `, `{"a":1,}`, `[1 2]`, `01`, `1.`, "\"\x01\"", `"\u12"`, `[[[[[[[[]]]]]]]]`, `{"a\u0000b":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxDepth = 64
		valid := json.Valid(data)
		nested := bytes.Count(data, []byte("[")) + bytes.Count(data, []byte("{"))
		s := Scanner{Data: data, MaxDepth: maxDepth}
		raw, err := s.Skip(0)
		if err == nil {
			s.SkipSpace()
			if s.Pos != len(data) {
				err = s.Fail("data after the value")
			}
		}
		var se *SyntaxError
		if err != nil && !errors.As(err, &se) {
			t.Fatalf("%q: error %v is not a SyntaxError", data, err)
		}
		if err != nil && (se.Off < 0 || se.Off > len(data)) {
			t.Fatalf("%q: error offset %d outside the data", data, se.Off)
		}
		// (Skip refuses nesting past maxDepth that encoding/json reads.)
		deep := valid && nested > maxDepth
		if (err == nil) != valid && !deep {
			t.Fatalf("%q: Skip error %v, json.Valid %v", data, err, valid)
		}
		if err == nil && !bytes.Equal(raw, bytes.TrimLeft(bytes.TrimRight(data, " \t\r\n"), " \t\r\n")) {
			t.Fatalf("%q: Skip gave %q", data, raw)
		}

		s = Scanner{Data: data, MaxDepth: maxDepth}
		got, err := tokens(&s, 0, nil)
		if err == nil {
			if s.SkipSpace(); s.Pos != len(data) {
				err = s.Fail("data after the value")
			}
		}
		if (err == nil) != valid && !deep {
			t.Fatalf("%q: token walk error %v, json.Valid %v", data, err, valid)
		}
		if err != nil || !valid {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var want []json.Token
		for {
			tok, err := dec.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%q: encoding/json: %v", data, err)
			}
			want = append(want, tok)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: tokens\n%s\nencoding/json's\n%s", data, fmt.Sprintf("%#v", got), fmt.Sprintf("%#v", want))
		}

	})
}
