package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

var responses = []string{
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nX-A: 1\r\nx-a:  2 \r\nX-Empty:\r\nConnection: keep-alive\r\n\r\nhello",
	"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 599 Whatever  \r\nContent-Length: 007\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n1234567",
	"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 10\r\n\r\nshort",
}

var declinedResponses = map[string]string{
	"chunked":         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"cl and te":       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"two cl":          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
	"bad cl":          "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
	"cl list":         "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
	"no length":       "HTTP/1.1 200 OK\r\n\r\nuntil close",
	"close":           "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
	"http/1.0":        "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"1xx":             "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
	"204":             "HTTP/1.1 204 No Content\r\n\r\n",
	"304":             "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
	"101":             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
	"obs-fold":        "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
	"space before :":  "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
	"bare lf":         "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
	"pragma":          "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 2\r\n\r\nok",
	"trailer":         "HTTP/1.1 200 OK\r\nTrailer: X\r\nContent-Length: 2\r\n\r\nok",
	"two spaces":      "HTTP/1.1  200 OK\r\nContent-Length: 2\r\n\r\nok",
	"signed code":     "HTTP/1.1 +20 OK\r\nContent-Length: 2\r\n\r\nok",
	"4-digit code":    "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
	"nul in reason":   "HTTP/1.1 200 O\x00K\r\nContent-Length: 2\r\n\r\nok",
	"nul in value":    "HTTP/1.1 200 OK\r\nX: \x00\r\nContent-Length: 2\r\n\r\nok",
	"huge cl":         "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nok",
	"not http":        "SSH-2.0-OpenSSH\r\n\r\n",
	"lower proto":     "http/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"bare cr in line": "HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 2\r\n\r\nok",
}

func TestParseResponseDeclines(t *testing.T) {
	for name, in := range declinedResponses {
		for n := 0; n <= len(in); n++ {
			if _, res := ParseResponse([]byte(in[:n]), "GET", nil); res == OK {
				t.Fatalf("%s: ParseResponse took %q", name, in[:n])
			}
		}
	}
	if _, res := ParseResponse([]byte(responses[0]), "HEAD", nil); res != Decline {
		t.Fatalf("an answer to HEAD: %v, want Decline", res)
	}
}

func TestParseResponseTakesPlainAnswers(t *testing.T) {
	for _, in := range responses {
		h, res := ParseResponse([]byte(in), "GET", nil)
		if res != OK {
			t.Fatalf("ParseResponse(%q) = %v, want OK", in, res)
		}
		compareResponse(t, []byte(in), "GET", h)
	}
}

// FuzzParseResponseMatchesNetHTTP: for any bytes, ParseResponse declines
// (or waits for more), or yields what http.ReadResponse yields: status
// code, header fields (the list made a map: keys, values in order),
// Content-Length, keep-alive,
// the same head length, and the same body bytes and end (io.EOF, or
// io.ErrUnexpectedEOF for a body cut short).
func FuzzParseResponseMatchesNetHTTP(f *testing.F) {
	for _, in := range responses {
		f.Add([]byte(in), false)
	}
	for _, in := range declinedResponses {
		f.Add([]byte(in), false)
	}
	f.Add([]byte(responses[0]), true)
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		h, res := ParseResponse(data, method, nil)
		if res != OK {
			return
		}
		compareResponse(t, data, method, h)
	})
}

func compareResponse(t *testing.T, data []byte, method string, h ResponseHead) {
	t.Helper()
	src := bytes.NewReader(data)
	br := bufio.NewReaderSize(src, 64<<10)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("ParseResponse took %q, http.ReadResponse refused it: %v", data, err)
	}
	if used := len(data) - src.Len() - br.Buffered(); used != h.Len {
		t.Fatalf("%q: the head is %d bytes for ParseResponse, %d for net/http", data, h.Len, used)
	}
	type seen struct {
		Code          int
		Proto         string
		Header        http.Header
		ContentLength int64
		TE            []string
		Close         bool
		Trailer       http.Header
	}
	hdr := http.Header{}
	for _, f := range h.Fields {
		hdr[f.Key] = append(hdr[f.Key], f.Value)
	}
	want := seen{resp.StatusCode, resp.Proto, resp.Header, resp.ContentLength, resp.TransferEncoding, resp.Close, resp.Trailer}
	got := seen{h.StatusCode, "HTTP/1.1", hdr, h.ContentLength, nil, false, nil}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\nParseResponse: %+v\nnet/http:      %+v", data, got, want)
	}
	wantBody, wantErr := readBody(resp.Body)
	lean := bufio.NewReaderSize(bytes.NewReader(data[h.Len:]), 16)
	var body io.Reader = http.NoBody
	if h.ContentLength > 0 {
		fb := new(FixedBody)
		fb.Reset(lean, h.ContentLength)
		body = fb
	}
	gotBody, gotErr := readBody(body)
	if wantBody != gotBody || wantErr != gotErr {
		t.Fatalf("%q: body %q, %v; net/http %q, %v", data, gotBody, gotErr, wantBody, wantErr)
	}
	if (resp.Body == http.NoBody) != (h.ContentLength == 0) {
		t.Fatalf("%q: NoBody for net/http %v, Content-Length %d", data, resp.Body == http.NoBody, h.ContentLength)
	}
}

// readBody reads r in small pieces to its end and returns what came and
// how it ended.
func readBody(r io.Reader) (string, error) {
	var b strings.Builder
	p := make([]byte, 3)
	for {
		n, err := r.Read(p)
		b.Write(p[:n])
		if err != nil {
			return b.String(), err
		}
	}
}
