package proxy

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkReadResponse: an answer as go-httpbin's /get gives, read to
// its end by readResponse (internal/h1's parser) and by http.ReadResponse.
func BenchmarkReadResponse(b *testing.B) {
	const ans = "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Credentials: true\r\nAccess-Control-Allow-Origin: *\r\n" +
		"Content-Type: application/json; charset=utf-8\r\nDate: Mon, 30 Nov 2026 16:00:00 GMT\r\nContent-Length: 20\r\n\r\n" +
		`{"args":{},"ok":1}` + "\r\n"
	req := &http.Request{Method: "GET"}
	for _, tc := range []struct {
		name string
		read func(*bufio.Reader, *http.Request) (*http.Response, error)
	}{{"h1", readResponse}, {"nethttp", http.ReadResponse}} {
		b.Run(tc.name, func(b *testing.B) {
			sr := strings.NewReader(ans)
			br := bufio.NewReaderSize(sr, 4096)
			buf := make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				sr.Reset(ans)
				br.Reset(sr)
				resp, err := tc.read(br, req)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.ReadFull(resp.Body, buf[:20])
				if n != 20 || resp.Header.Get("Content-Type") == "" {
					b.Fatal("short")
				}
				resp.Body.Close()
			}
		})
	}
}
