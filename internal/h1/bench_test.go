package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

var (
	benchRequest = []byte("GET /get?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: Go-http-client/1.1\r\nAccept: */*\r\nAccept-Encoding: gzip\r\nX-Request-Id: 01a22c53-f7f8-7312-a851-4b7186a5b996\r\n\r\n")
)

// BenchmarkParse parses a typical request head, against http.ReadRequest
// of the same bytes; each checks it got the Host.
func BenchmarkParse(b *testing.B) {
	b.Run("h1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h, res := Parse(benchRequest, testMax)
			if res != OK || h.Host != "127.0.0.1:8080" {
				b.Fatal(res)
			}
		}
	})
	b.Run("net-http", func(b *testing.B) {
		b.ReportAllocs()
		r := bytes.NewReader(benchRequest)
		br := bufio.NewReader(r)
		for b.Loop() {
			r.Reset(benchRequest)
			br.Reset(r)
			req, err := http.ReadRequest(br)
			if err != nil || req.Host != "127.0.0.1:8080" {
				b.Fatal(err)
			}
		}
	})
}
