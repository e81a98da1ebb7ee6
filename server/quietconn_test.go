package server

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/sockio"
	"github.com/trailguard/trailguard/internal/stalltest"
)

// TestServeQuietConns: the collector serves HTTP and HTTPS on sockio's
// connections (their socket reads and writes do not hand the runtime's Ps
// around, docs/performance.md "Twenty-sixth session, the runtime's
// monitor"), and on them keep-alive ingest, the body's idle timeout and
// the cap on a body's size work as on plain ones.
func TestServeQuietConns(t *testing.T) {
	const idle = 300 * time.Millisecond
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			dir := t.TempDir()
			client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
			dial := func(addr string) (net.Conn, error) { return net.Dial("tcp", addr) }
			var certPath, keyPath string
			if useTLS {
				certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
				cfg := &tls.Config{RootCAs: writeSelfSigned(t, certPath, keyPath)}
				client.Transport = &http.Transport{MaxConnsPerHost: 1, TLSClientConfig: cfg}
				dial = func(addr string) (net.Conn, error) { return tls.Dial("tcp", addr, cfg) }
			}
			var mu sync.Mutex
			var served []net.Conn
			ts := startServerWith(t, filepath.Join(dir, "data"), func(c *Config) {
				c.TLSCert, c.TLSKey = certPath, keyPath
				c.BodyIdleTimeout = idle
				c.MaxRequestBytes = 64 << 10
			}, func(s *Server) {
				s.connState = func(c net.Conn, st http.ConnState) {
					if st == http.StateNew {
						mu.Lock()
						served = append(served, c)
						mu.Unlock()
					}
				}
			})
			url := ts.url
			if useTLS {
				url = "https" + ts.url[len("http"):]
			}
			post := func(body io.Reader) (int, []byte) {
				req, _ := http.NewRequest("POST", url+"/v1/events", body)
				req.Header.Set("Authorization", "Bearer "+ts.ingest)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, b
			}
			// Keep-alive ingest: three batches on one connection.
			for i := range 3 {
				var lines []string
				for j := range 50 {
					lines = append(lines, fmt.Sprintf(`{"message":"quiet %d.%d","event":{"id":"q-%d-%d"}}`, i, j, i, j))
				}
				code, body := post(strings.NewReader(strings.Join(lines, "\n")))
				var resp ingestResponse
				if err := json.Unmarshal(body, &resp); code != 200 || err != nil || resp.Accepted != 50 {
					t.Fatalf("batch %d: %d %s", i, code, body)
				}
			}
			// A body over the cap is refused.
			if code, body := post(bytes.NewReader(bytes.Repeat([]byte(`{"message":"x"}`+"\n"), 8<<10))); code != http.StatusRequestEntityTooLarge {
				t.Errorf("a body over max_request_bytes: %d %s, want 413", code, body)
			}
			// A body that stops coming is cut after body_idle_timeout.
			c, err := dial(strings.TrimPrefix(ts.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 10000\r\n\r\n{\"message\":", ts.ingest)
			watch := stalltest.Start(t)
			got, took, stalled, _ := stalltest.ReadCut(c, c, watch, 5*time.Second)
			if !strings.HasPrefix(got, "HTTP/1.1 408") || took > idle+2*time.Second+stalled {
				t.Errorf("stalled body: %q after %v (stalled %v), want a 408 after about %v", strings.SplitN(got, "\r\n", 2)[0], took.Round(time.Millisecond), stalled.Round(time.Millisecond), idle)
			}

			mu.Lock()
			defer mu.Unlock()
			if len(served) < 2 {
				t.Fatalf("%d connections served, want the client's and the stalled one", len(served))
			}
			for i, sc := range served {
				for {
					u, ok := sc.(interface{ NetConn() net.Conn })
					if _, quiet := sc.(*sockio.Conn); quiet || !ok {
						break
					}
					sc = u.NetConn()
				}
				if _, ok := sc.(*sockio.Conn); !ok {
					t.Errorf("connection %d served: %T under the collector's wrappers, not a *sockio.Conn", i, sc)
				}
			}
		})
	}
}
