package event

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner is a strict, single-pass JSON reader over one document. Decode
// uses it instead of encoding/json because ingest decodes every event a
// collector receives: building maps of raw messages per object level cost
// tens of microseconds and hundreds of allocations per event.
type scanner struct {
	data []byte
	pos  int
}

// syntaxError describes malformed JSON at a byte offset.
type syntaxError struct {
	msg string
	off int
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.off, e.msg)
}

func (s *scanner) fail(msg string) error { return &syntaxError{msg, s.pos} }

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (s *scanner) peek() byte {
	// Encoders mostly write no space between tokens: one comparison
	// then (every byte above ' ' is not JSON whitespace).
	if s.pos < len(s.data) && s.data[s.pos] > ' ' {
		return s.data[s.pos]
	}
	s.skipSpace()
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		if s.pos >= len(s.data) {
			return s.fail(fmt.Sprintf("unexpected end, want %q", c))
		}
		return s.fail(fmt.Sprintf("unexpected %q, want %q", s.data[s.pos], c))
	}
	s.pos++
	return nil
}

// str reads a string literal and returns its decoded value. Strings
// without escapes, nearly all of them, cost one allocation.
func (s *scanner) str() (string, error) {
	if err := s.expect('"'); err != nil {
		return "", err
	}
	start := s.pos
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			v := string(s.data[start:s.pos])
			s.pos++
			if !utf8.ValidString(v) {
				return string([]rune(v)), nil // as encoding/json: invalid bytes become U+FFFD
			}
			return v, nil
		case c == '\\':
			return s.strSlow(start)
		case c < 0x20:
			return "", s.fail("control character in string")
		}
		s.pos++
	}
	return "", s.fail("unterminated string")
}

func (s *scanner) strSlow(start int) (string, error) {
	buf := append([]byte(nil), s.data[start:s.pos]...)
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			if !utf8.Valid(buf) {
				return string([]rune(string(buf))), nil
			}
			return string(buf), nil
		case c < 0x20:
			return "", s.fail("control character in string")
		case c != '\\':
			buf = append(buf, c)
			s.pos++
			continue
		}
		if s.pos+1 >= len(s.data) {
			return "", s.fail("unterminated escape")
		}
		e := s.data[s.pos+1]
		s.pos += 2
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return "", s.fail("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
					s.pos += 2
					if r2, ok = s.hex4(); !ok {
						return "", s.fail("bad \\u escape")
					}
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
				} else {
					buf = utf8.AppendRune(buf, utf8.RuneError)
					if r2 < 0 {
						continue
					}
					r = r2
					if utf16.IsSurrogate(r) {
						r = utf8.RuneError
					}
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", s.fail(fmt.Sprintf("bad escape \\%c", e))
		}
	}
	return "", s.fail("unterminated string")
}

func (s *scanner) hex4() (rune, bool) {
	if s.pos+4 > len(s.data) {
		return 0, false
	}
	var r rune
	for _, c := range s.data[s.pos : s.pos+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	s.pos += 4
	return r, true
}

// number reads a number literal and returns its text.
func (s *scanner) number() ([]byte, error) {
	s.skipSpace()
	start := s.pos
	if s.pos < len(s.data) && s.data[s.pos] == '-' {
		s.pos++
	}
	digits := func() int {
		n := 0
		for s.pos < len(s.data) && '0' <= s.data[s.pos] && s.data[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}
	if s.pos < len(s.data) && s.data[s.pos] == '0' {
		s.pos++
	} else if digits() == 0 {
		return nil, s.fail("bad number")
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if digits() == 0 {
			return nil, s.fail("bad number fraction")
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if digits() == 0 {
			return nil, s.fail("bad number exponent")
		}
	}
	return s.data[start:s.pos], nil
}

func (s *scanner) literal(word string) error {
	if len(s.data)-s.pos < len(word) || string(s.data[s.pos:s.pos+len(word)]) != word {
		return s.fail("invalid literal")
	}
	s.pos += len(word)
	return nil
}

// skip reads over one value of any kind, checking its syntax, and returns
// its raw text.
func (s *scanner) skip(depth int) ([]byte, error) {
	if depth > MaxDecodeDepth {
		return nil, s.fail(fmt.Sprintf("nesting deeper than %d", MaxDecodeDepth))
	}
	c := s.peek()
	start := s.pos
	var err error
	switch {
	case c == '{':
		s.pos++
		if s.peek() == '}' {
			s.pos++
			break
		}
		for {
			if _, err = s.str(); err != nil {
				return nil, err
			}
			if err = s.expect(':'); err != nil {
				return nil, err
			}
			if _, err = s.skip(depth + 1); err != nil {
				return nil, err
			}
			if s.peek() == ',' {
				s.pos++
				continue
			}
			if err = s.expect('}'); err != nil {
				return nil, err
			}
			break
		}
	case c == '[':
		s.pos++
		if s.peek() == ']' {
			s.pos++
			break
		}
		for {
			if _, err = s.skip(depth + 1); err != nil {
				return nil, err
			}
			if s.peek() == ',' {
				s.pos++
				continue
			}
			if err = s.expect(']'); err != nil {
				return nil, err
			}
			break
		}
	case c == '"':
		_, err = s.str()
	case c == '-' || '0' <= c && c <= '9':
		_, err = s.number()
	case c == 't':
		err = s.literal("true")
	case c == 'f':
		err = s.literal("false")
	case c == 'n':
		err = s.literal("null")
	case c == 0:
		err = s.fail("unexpected end of input")
	default:
		err = s.fail(fmt.Sprintf("unexpected %q", c))
	}
	if err != nil {
		return nil, err
	}
	return s.data[start:s.pos], nil
}

// int reads an integer value. JSON numbers with a fraction or exponent
// that are whole (1e3, 5.0) are accepted, as Elasticsearch does.
func (s *scanner) int() (int64, error) {
	num, err := s.number()
	if err != nil {
		return 0, err
	}
	var n int64
	neg := false
	b := num
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	simple := len(b) > 0 && len(b) <= 18
	for _, c := range b {
		if c < '0' || c > '9' {
			simple = false
			break
		}
		n = n*10 + int64(c-'0')
	}
	if simple {
		if neg {
			n = -n
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(string(num), 64)
	if err != nil || f != float64(int64(f)) {
		if i, err2 := strconv.ParseInt(string(num), 10, 64); err2 == nil {
			return i, nil
		}
		return 0, fmt.Errorf("want an integer, got %s", num)
	}
	return int64(f), nil
}
