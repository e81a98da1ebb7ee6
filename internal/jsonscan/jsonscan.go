// Package jsonscan is a strict, one-pass JSON lexer over a document's
// bytes: the tokens of RFC 8259, read in place. event.Decode reads every
// ingested event with it and the collector's OTLP/JSON reader every
// OTLP/JSON request, instead of encoding/json, whose decoding into maps or
// tokens costs an allocation per value; here a string is read as a slice
// of the document and decoded only when its caller keeps it.
//
// Its contract, for both:
//   - what encoding/json's Valid refuses, it refuses (the syntax only; it
//     reads one value at a time and the caller says what comes next);
//   - a string is read as encoding/json reads it: invalid UTF-8, and an
//     escaped surrogate that is not half of a pair, read as U+FFFD; a
//     control character in it is refused;
//   - Skip reads a value of any depth up to MaxDepth, allocating nothing;
//   - an error is a *SyntaxError with the byte offset where reading stopped.
//
// AppendUnescaped and AppendText decode a string's escapes for the readers
// with lexers of their own (redact's walker, detect's extractor, the
// overview's): one decoder, so that all read an escaped string the same.
package jsonscan

import (
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Scanner reads the tokens of one JSON document. Data and Pos are the
// document and the next byte to read; callers move Pos past a byte they
// have peeked at (a bracket, a comma) themselves.
type Scanner struct {
	Data []byte
	Pos  int
	// MaxDepth bounds Skip: a value at a depth past it is refused before
	// it is read, so that an attacker's nesting is not followed.
	MaxDepth int
}

// SyntaxError describes malformed JSON at a byte offset.
type SyntaxError struct {
	Msg string
	Off int
}

// Error says where and what.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.Off, e.Msg)
}

// Fail returns a SyntaxError at Pos.
func (s *Scanner) Fail(msg string) error { return &SyntaxError{msg, s.Pos} }

// SkipSpace moves Pos past JSON white space.
func (s *Scanner) SkipSpace() {
	for s.Pos < len(s.Data) {
		switch s.Data[s.Pos] {
		case ' ', '\t', '\n', '\r':
			s.Pos++
		default:
			return
		}
	}
}

// Peek returns the next byte that is not white space, or 0 at the end.
func (s *Scanner) Peek() byte {
	// Encoders mostly write no space between tokens: one comparison
	// then (every byte above ' ' is not JSON white space).
	if s.Pos < len(s.Data) && s.Data[s.Pos] > ' ' {
		return s.Data[s.Pos]
	}
	s.SkipSpace()
	if s.Pos < len(s.Data) {
		return s.Data[s.Pos]
	}
	return 0
}

// Expect reads the byte c after any white space.
func (s *Scanner) Expect(c byte) error {
	if s.Peek() != c {
		if s.Pos >= len(s.Data) {
			return s.Fail(fmt.Sprintf("unexpected end, want %q", c))
		}
		return s.Fail(fmt.Sprintf("unexpected %q, want %q", s.Data[s.Pos], c))
	}
	s.Pos++
	return nil
}

// RawString reads a string literal, checking it, and returns its bytes
// between the quotes, a slice of Data, and whether they hold escapes
// (Text decodes them).
func (s *Scanner) RawString() (raw []byte, escaped bool, err error) {
	if s.Peek() != '"' {
		return nil, false, s.Expect('"')
	}
	d := s.Data
	for i := s.Pos + 1; i < len(d); {
		switch c := d[i]; {
		case c == '"':
			raw = d[s.Pos+1 : i]
			s.Pos = i + 1
			return raw, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 < len(d) {
				switch d[i+1] {
				case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
					i += 2
					continue
				case 'u':
					if i+6 <= len(d) && isHex(d[i+2]) && isHex(d[i+3]) && isHex(d[i+4]) && isHex(d[i+5]) {
						i += 6
						continue
					}
					s.Pos = i
					return nil, false, s.Fail(`bad escape: \u without 4 hex digits`)
				}
				s.Pos = i
				return nil, false, s.Fail(fmt.Sprintf("bad escape \\%c", d[i+1]))
			}
			i++
		case c < 0x20:
			s.Pos = i
			return nil, false, s.Fail("control character in string")
		default:
			i++
		}
	}
	s.Pos = len(d)
	return nil, false, s.Fail("unterminated string")
}

// Str reads a string literal and returns its value. A string without
// escapes, nearly every one, costs one allocation.
func (s *Scanner) Str() (string, error) {
	raw, escaped, err := s.RawString()
	if err != nil {
		return "", err
	}
	if !escaped && utf8.Valid(raw) {
		return string(raw), nil
	}
	return s.Text(raw, escaped), nil
}

// Text returns the value of a string RawString read.
func (s *Scanner) Text(raw []byte, escaped bool) string {
	if !escaped {
		if utf8.Valid(raw) {
			return string(raw)
		}
		return string([]rune(string(raw))) // as encoding/json: each invalid byte is U+FFFD
	}
	buf, _ := AppendText(make([]byte, 0, len(raw)), raw)
	return unsafe.String(unsafe.SliceData(buf), len(buf)) // buf is not used again
}

// AppendUnescaped appends the content of a JSON string, raw (the bytes
// between its quotes), to dst with its escapes decoded as encoding/json
// decodes them: an escaped surrogate that is not half of a pair is U+FFFD,
// and the escape after it is read on its own. Every other byte is copied
// as it is, invalid UTF-8 included: redact and detect read the strings
// without escapes as their raw bytes, so that a string reads the same
// escaped or not (AppendText reads invalid UTF-8 as encoding/json does).
// An invalid escape (one RawString refuses) is copied as written and makes
// ok false; detect reads records it did not check, and keeps going.
func AppendUnescaped(dst, raw []byte) (out []byte, ok bool) {
	ok = true
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			// Byte by byte: escapes come close together in the strings
			// that hold them (a JSON body as a string), where finding
			// each with bytes.IndexByte cost more than it saved.
			dst = append(dst, c)
			i++
			continue
		}
		if i+1 == len(raw) { // a backslash that ends the string
			return append(dst, c), false
		}
		c = raw[i+1]
		i += 2
		switch c {
		case '"', '\\', '/':
			dst = append(dst, c)
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
			r, good := hex4(raw[i:])
			if !good {
				dst = append(dst, '\\', 'u')
				ok = false
				continue
			}
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1) // none
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					r2, _ = hex4(raw[i+2:]) // -1 unless 4 hex digits
				}
				if r = utf16.DecodeRune(r, r2); r != utf8.RuneError {
					i += 6
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			dst = append(dst, '\\', c)
			ok = false
		}
	}
	return dst, ok
}

// AppendText appends the value of a JSON string to dst as encoding/json
// reads it: AppendUnescaped, with each byte of invalid UTF-8 read as
// U+FFFD. Decoded escapes are whole runes, which never join a raw invalid
// byte into a valid sequence, so replacing after decoding gives what
// encoding/json's replacing as it goes does.
func AppendText(dst, raw []byte) (out []byte, ok bool) {
	start := len(dst)
	dst, ok = AppendUnescaped(dst, raw)
	if utf8.Valid(dst[start:]) {
		return dst, ok
	}
	text := string(dst[start:])
	dst = dst[:start]
	for _, r := range text { // an invalid byte ranges as U+FFFD
		dst = utf8.AppendRune(dst, r)
	}
	return dst, ok
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// hex4 reads the 4 hex digits b starts with; good is false (and r -1)
// when it does not.
func hex4(b []byte) (r rune, good bool) {
	if len(b) < 4 {
		return -1, false
	}
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// Number reads a number literal, after any white space, and returns its
// text.
func (s *Scanner) Number() ([]byte, error) {
	s.SkipSpace()
	start := s.Pos
	end, ok := numberEnd(s.Data, start)
	s.Pos = end
	if !ok {
		return nil, s.Fail("bad number")
	}
	return s.Data[start:end], nil
}

// IsNumber reports whether b is a JSON number and nothing else.
func IsNumber(b []byte) bool {
	end, ok := numberEnd(b, 0)
	return ok && end == len(b)
}

// numberEnd returns where the number at b[i] ends, or where it stops
// being one and false:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func numberEnd(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digitsEnd(b, i+1)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		n := digitsEnd(b, i+1)
		if n == i+1 {
			return n, false
		}
		i = n
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		n := digitsEnd(b, i)
		if n == i {
			return n, false
		}
		i = n
	}
	return i, true
}

func digitsEnd(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// Literal reads word (true, false or null) at Pos.
func (s *Scanner) Literal(word string) error {
	if len(s.Data)-s.Pos < len(word) || string(s.Data[s.Pos:s.Pos+len(word)]) != word {
		return s.Fail("invalid literal")
	}
	s.Pos += len(word)
	return nil
}

// Skip reads over one value of any kind, checking its syntax, and returns
// its raw text, a slice of Data. depth is the value's depth as the caller
// counts it; each array or object Skip enters counts one more, and a
// value past MaxDepth, a scalar too, is refused. It allocates nothing but
// an error.
func (s *Scanner) Skip(depth int) ([]byte, error) {
	if depth > s.MaxDepth {
		return nil, s.Fail(fmt.Sprintf("nested deeper than %d", s.MaxDepth))
	}
	c := s.Peek()
	start := s.Pos
	var err error
	switch {
	case c == '{' || c == '[':
		s.Pos++
		end := c + 2 // '}' or ']'
		for more := s.Peek() != end; more; {
			if c == '{' {
				if _, _, err = s.RawString(); err != nil {
					return nil, err
				}
				if err = s.Expect(':'); err != nil {
					return nil, err
				}
			}
			if _, err = s.Skip(depth + 1); err != nil {
				return nil, err
			}
			if more = s.Peek() == ','; more {
				s.Pos++
			}
		}
		err = s.Expect(end)
	case c == '"':
		_, _, err = s.RawString()
	case c == '-' || '0' <= c && c <= '9':
		_, err = s.Number()
	case c == 't':
		err = s.Literal("true")
	case c == 'f':
		err = s.Literal("false")
	case c == 'n':
		err = s.Literal("null")
	case s.Pos >= len(s.Data):
		err = s.Fail("unexpected end of input")
	default:
		err = s.Fail(fmt.Sprintf("unexpected %q", c))
	}
	if err != nil {
		return nil, err
	}
	return s.Data[start:s.Pos], nil
}
