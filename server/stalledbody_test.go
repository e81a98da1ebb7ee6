package server

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/stalltest"
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
	watch := stalltest.Start(t)
	type reply struct {
		code int
		err  error
	}
	for _, path := range []string{"/v1/decisions", "/v1/tokens", "/_bulk", "/v1/events"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")); err != nil {
			t.Fatal(err)
		}
		// The read deadline only ends a read that never gets an answer;
		// Await's waits (5 s, longer when the process stalled) decide.
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		answered := make(chan reply, 1)
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				answered <- reply{err: err}
				return
			}
			resp.Body.Close()
			answered <- reply{code: resp.StatusCode}
		}()
		a, took, stalled, ok := stalltest.Await(answered, watch, 5*time.Second)
		if !ok || a.err != nil {
			t.Errorf("POST %s without a token, body stalled: no answer after %v (%v, stalled %v)", path, took.Round(time.Millisecond), a.err, stalled.Round(time.Millisecond))
			continue
		}
		// An answer later than the bound by no more than the process was
		// stalled says nothing of the timeout.
		if took > 2*time.Second+stalled {
			t.Errorf("POST %s without a token, body stalled: %d after %v (stalled %v)", path, a.code, took.Round(time.Millisecond), stalled.Round(time.Millisecond))
		}
	}
}
