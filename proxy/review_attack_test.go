package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLeanFrontHalfCloseEndsConnection: a client that sends its request
// and its end together (a shutdown of its side right after the write, as
// `nc -N` and HTTP/1.0 tools do) gets its answer and then the gateway's
// end at once, as net/http gives it, not after the idle timeout. The
// front end waits for readability after a read that did not fill its
// buffer; the end that came with the request made the connection
// readable before that read, and no new event comes for it.
func TestLeanFrontHalfCloseEndsConnection(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t)
	for _, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			_, url, _ := gateway(t, Config{HTTP1: mode, Routes: []Route{{Upstream: "http://" + up.ln.Addr().String()}},
				Timeouts: Timeouts{ReadHeader: 20 * time.Second, Idle: 20 * time.Second}})
			addr := strings.TrimPrefix(url, "http://")
			for i := range 5 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				io.WriteString(c, "GET /plain HTTP/1.1\r\nHost: a\r\n\r\n")
				c.(*net.TCPConn).CloseWrite()
				br := bufio.NewReader(c)
				start := time.Now()
				c.SetReadDeadline(start.Add(10 * time.Second))
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					c.Close()
					t.Fatalf("round %d: %v", i, err)
				}
				io.Copy(io.Discard, resp.Body)
				rest, err := io.ReadAll(br)
				took := time.Since(start)
				c.Close()
				if err != nil || len(rest) != 0 || took > 3*time.Second {
					t.Fatalf("round %d: after the answer %q, %v after %v, want the connection closed at once", i, rest, err, took)
				}
			}
		})
	}
}
