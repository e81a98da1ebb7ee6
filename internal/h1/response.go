package h1

import (
	"bufio"
	"io"
	"net/http"
)

// Field is a header field as parsed: its canonical key and its value,
// trimmed as textproto trims it.
type Field struct{ Key, Value string }

// ResponseHead is a parsed response head.
type ResponseHead struct {
	StatusCode    int
	Fields        []Field // in the order they came; a key may repeat
	ContentLength int64
	Len           int // bytes of the head, through its empty line
}

// ParseResponse parses the response head at the start of b, the answer
// to a request of method, strictly, and only the common answer: HTTP/1.1,
// a final status other than 204 and 304, a body of one valid
// Content-Length, no Transfer-Encoding, no Connection other than
// keep-alive, no Trailer or Pragma, and not to a HEAD request. For such a
// head it yields what http.ReadResponse yields, the fields as a list
// instead of a map (FuzzParseResponseMatchesNetHTTP); it declines
// everything else, and the caller reads the answer with
// http.ReadResponse. Incomplete: b holds no complete head yet. The fields
// are appended to dst[:0]; every string is a piece of one copy of the
// head.
func ParseResponse(b []byte, method string, dst []Field) (ResponseHead, Result) {
	h := ResponseHead{Fields: dst[:0]}
	const proto = "HTTP/1.1 "
	n := min(len(b), len(proto))
	if string(b[:n]) != proto[:n] || method == http.MethodHead {
		return h, Decline
	}
	end := headEnd(b)
	if end < 0 {
		return h, Decline
	}
	if end == 0 {
		return h, Incomplete
	}
	s := string(b[:end])
	// Status line: HTTP/1.1 SP 3DIGIT [SP reason] CRLF.
	eol := indexByte(s, '\n') - 1
	line := s[len(proto):eol]
	if len(line) < 3 || len(line) > 3 && line[3] != ' ' {
		return h, Decline
	}
	code := 0
	for k := 0; k < 3; k++ {
		c := line[k]
		if c < '0' || c > '9' {
			return h, Decline
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 || code == 204 || code == 304 {
		return h, Decline
	}
	for k := 3; k < len(line); k++ {
		if c := line[k]; c < 0x20 && c != '\t' || c == 0x7f {
			return h, Decline
		}
	}
	h.StatusCode, h.Len = code, end
	cl := -1
	ok := eachField(s, eol+2, end, func(key, v string) bool {
		switch key {
		case "Content-Length":
			if cl >= 0 || len(v) == 0 || len(v) > 18 {
				return false
			}
			n := 0
			for k := 0; k < len(v); k++ {
				c := v[k]
				if c < '0' || c > '9' {
					return false
				}
				n = n*10 + int(c-'0')
			}
			cl = n
		case "Transfer-Encoding", "Trailer", "Pragma":
			// Another framing, or fields net/http rewrites.
			return false
		case "Connection":
			// net/http drops "close" and ends the connection.
			if !equalFold(v, "keep-alive") {
				return false
			}
		}
		h.Fields = append(h.Fields, Field{key, v})
		return true
	})
	if !ok || cl < 0 {
		clear(h.Fields)
		h.Fields = h.Fields[:0]
		return h, Decline
	}
	h.ContentLength = int64(cl)
	return h, OK
}

// FixedBody is the body of n bytes that follows a head ParseResponse
// took, read from r as net/http reads it: the last bytes come with
// io.EOF, and an end before n bytes is io.ErrUnexpectedEOF. Its zero
// value is not usable: Reset it first.
type FixedBody struct {
	r   *bufio.Reader
	n   int64
	eof bool
}

// Reset makes b the body of n > 0 bytes read from r.
func (b *FixedBody) Reset(r *bufio.Reader, n int64) { *b = FixedBody{r: r, n: n} }

// Read never reads past the body's n bytes, so the bytes that follow on
// the connection (the next response) stay in r for whoever reads next;
// it returns io.EOF with the last bytes, as net/http's body does, so a
// caller that stops at io.EOF sees the same calls either way.
func (b *FixedBody) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	if err == io.EOF {
		b.eof = true
		if b.n > 0 {
			err = io.ErrUnexpectedEOF
		}
	}
	if err == nil && b.n == 0 {
		b.eof = true
		err = io.EOF
	}
	return n, err
}

// Close does nothing: what happens to the connection is the caller's.
func (b *FixedBody) Close() error { return nil }
