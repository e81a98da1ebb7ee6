package server

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestStalledBodyWithoutTokenBounded: a client with no token that sends a
// request head announcing a body and then nothing is answered and let go
// within the body timeout (review, MEDIUM, network, no token needed: the
// handler refused it at once, but net/http then waits to discard the
// announced body (up to 256 KiB) before it answers, with no deadline, so
// each such connection held a goroutine and a file descriptor of the
// collector for ever; the ledger's and the index's files come from the
// same limit).
func TestStalledBodyWithoutTokenBounded(t *testing.T) {
	ts := startServer(t, t.TempDir(), func(c *Config) { c.BodyReadTimeout = 300 * time.Millisecond })
	for _, path := range []string{"/v1/decisions", "/v1/tokens", "/_bulk", "/v1/events"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c.SetReadDeadline(start.Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Errorf("POST %s without a token, body stalled: no answer after %v (%v)", path, time.Since(start).Round(time.Millisecond), err)
			continue
		}
		resp.Body.Close()
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("POST %s without a token, body stalled: %d after %v", path, resp.StatusCode, took.Round(time.Millisecond))
		}
	}
}
