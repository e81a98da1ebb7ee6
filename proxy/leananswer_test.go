package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzLeanAnswerMatchesNetHTTP: whatever bytes an upstream answers a GET
// with, a client of the lean front end, where the fast path reads the
// common answer into a list of fields and writes it from that list
// (serveLean: hop-by-hop fields, the upstream's request id and
// traceparent taken out, Date, sniffed Content-Type), gets exactly the
// bytes a client of net/http's server gets, where the answer is an
// http.Response with a header map: Date and generated traceparents
// aside, the same status line, fields in the same order, body, or the
// same failure. The upstream closes the connection after each answer
// (an answer without a length ends there).
func FuzzLeanAnswerMatchesNetHTTP(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c\r\nTe: trailers\r\n" +
			"Proxy-Authenticate: Basic\r\nx-request-id: upstream\r\ntraceparent: " + upstreamTP + "\r\n" +
			"set-cookie: a\r\nSet-Cookie: b\r\nZz: z\r\nAa:  a \r\nX-Empty:\r\nContent-Length: 14\r\n\r\n<html>hi</html",
		"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 599 Whatever\r\nDate: Mon, 30 Nov 2026 10:00:00 GMT\r\nContent-Length: 007\r\n\r\n1234567",
		"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 9\r\n\r\ndata: x\n\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
		"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\n",
		"garbage",
	} {
		f.Add([]byte(s))
	}
	var (
		mu      sync.Mutex
		answers = map[string][]byte{}
	)
	up := serveTCP(f, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		mu.Lock()
		a := answers[req.URL.Path]
		mu.Unlock()
		c.Write(a)
	})
	cfg := Config{Routes: []Route{{Upstream: "http://" + up.Addr().String()}},
		Timeouts: Timeouts{ResponseHeader: 2 * time.Second}}
	var addrs [2]string
	for i, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		c := cfg
		c.HTTP1 = mode
		_, url, _, _ := gatewayServer(f, c)
		addrs[i] = strings.TrimPrefix(url, "http://")
	}
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, answer []byte) {
		if len(answer) > 8<<10 {
			return
		}
		var got [2]string
		for i, addr := range addrs {
			path := "/a" + strconv.FormatInt(n.Add(1), 10)
			mu.Lock()
			answers[path] = answer
			mu.Unlock()
			got[i] = getRaw(t, addr, path)
			mu.Lock()
			delete(answers, path)
			mu.Unlock()
		}
		if got[0] != got[1] {
			t.Fatalf("upstream answered %q; client got, lean front end:\n%q\n\nnet/http:\n%q", answer, got[0], got[1])
		}
	})
}

// getRaw sends a GET of path to addr on a new connection and returns the
// bytes the client got (normalised), up to the end of the answer (1xx
// answers too) or of the connection, and whether the answer was whole.
func getRaw(t *testing.T, addr, path string) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: fuzz-answer\r\n\r\n")
	var got bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &got))
	end := "whole"
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			end = "cut before an answer"
			break
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			end = "cut in the body"
		}
		resp.Body.Close()
		if resp.StatusCode >= 200 || end != "whole" {
			break
		}
	}
	return normalize(got.String()) + "\n" + end
}

// TestWriteHeaderLineAsHeaderWrite: writeHeaderLine's shortcut for plain
// values writes what http.Header.Write writes for any value: line
// breaks made spaces, white space at the ends trimmed.
func TestWriteHeaderLineAsHeaderWrite(t *testing.T) {
	for _, v := range []string{"", "a", " a", "a ", "\ta\t", "a b", "a\r\nb", "\r\n", "a\nb", "a\rb", "\va\f",
		" \x00 ", "x\v", "\fx", "a\r\n", "\r\na", "tab\tinside", strings.Repeat("z", 100) + "\n"} {
		var got bytes.Buffer
		bw := bufio.NewWriter(&got)
		writeHeaderLine(bw, "X-K", v)
		bw.Flush()
		var want bytes.Buffer
		http.Header{"X-K": {v}}.Write(&want)
		if got.String() != want.String() {
			t.Errorf("%q: wrote %q, http.Header.Write %q", v, got.String(), want.String())
		}
	}
}
