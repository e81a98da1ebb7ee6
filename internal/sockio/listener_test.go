//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sockio

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/stalltest"
)

// TestListenerServesHTTP: net/http serves on Listener's connections (and
// on TLS over them) as on the TCP connections they wrap, and every one it
// serves is a *Conn: keep-alive requests with large bodies and answers (the
// background read net/http starts after a body and aborts with a past
// deadline before the next request), a handler's read deadline on a
// stalled body, ReadHeaderTimeout on a stalled head, IdleTimeout on an idle
// connection, a client's close.
func TestListenerServesHTTP(t *testing.T) {
	// The idle timeout also runs between a keep-alive answer and the next
	// request the test writes: at 400 ms a machine at load 12 (race
	// detector, two suites) let it expire there, and request 1 met a
	// closed connection (broken pipe).
	const headerTimeout, idleTimeout, bodyDeadline = 300 * time.Millisecond, 2 * time.Second, 300 * time.Millisecond
	big := bytes.Repeat([]byte("sockio-"), 1<<18) // 1.75 MiB
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stalled" {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyDeadline))
			_, err := io.ReadAll(r.Body)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded) {
				http.Error(w, "body timed out", http.StatusRequestTimeout)
				return
			}
			http.Error(w, fmt.Sprint("no timeout: ", err), http.StatusInternalServerError)
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// Still running after the body: net/http's background read waits
		// on the connection until the answer ends it.
		time.Sleep(20 * time.Millisecond)
		fmt.Fprintf(w, "%x\n", sha256.Sum256(b))
		w.Write(big)
	})
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			ts := httptest.NewUnstartedServer(handler)
			ts.Listener = Listener(ts.Listener)
			ts.Config.ReadHeaderTimeout = headerTimeout
			ts.Config.IdleTimeout = idleTimeout
			var mu sync.Mutex
			var served []net.Conn
			closed := make(chan net.Conn, 16)
			ts.Config.ConnState = func(c net.Conn, s http.ConnState) {
				switch s {
				case http.StateNew:
					mu.Lock()
					served = append(served, c)
					mu.Unlock()
				case http.StateClosed, http.StateHijacked:
					closed <- c
				}
			}
			dial := func() net.Conn {
				c, err := net.Dial("tcp", ts.Listener.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				if useTLS {
					cfg := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
					cfg.ServerName = "example.com" // httptest's certificate's
					tc := tls.Client(c, cfg)
					if err := tc.Handshake(); err != nil {
						t.Fatal(err)
					}
					return tc
				}
				return c
			}
			if useTLS {
				ts.StartTLS()
			} else {
				ts.Start()
			}
			// Closing the connections first ends a handler stuck in net/http's
			// wait for its background read (a deadline that did not work).
			defer func() { ts.CloseClientConnections(); ts.Close() }()
			watch := stalltest.Start(t)

			// Keep-alive: three requests on one connection.
			c := dial()
			br := bufio.NewReader(c)
			want := fmt.Sprintf("%x\n", sha256.Sum256(big)) + string(big)
			for i := range 3 {
				req, _ := http.NewRequest("POST", "http://x/", bytes.NewReader(big))
				if err := req.Write(c); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				resp, err := http.ReadResponse(br, req)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(got) != want {
					t.Fatalf("request %d: %d, %d bytes (%v), want 200 and %d bytes", i, resp.StatusCode, len(got), err, len(want))
				}
			}
			// Idle now: IdleTimeout closes it.
			if _, took, stalled, err := stalltest.ReadCut(c, br, watch, 7*time.Second); err != nil || took > idleTimeout+2*time.Second+stalled {
				t.Errorf("idle connection: closed after %v (stalled %v, %v), want about %v", took.Round(time.Millisecond), stalled.Round(time.Millisecond), err, idleTimeout)
			}

			// A stalled head: ReadHeaderTimeout closes it.
			c = dial()
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
			if _, took, stalled, err := stalltest.ReadCut(c, c, watch, 5*time.Second); err != nil || took > headerTimeout+2*time.Second+stalled {
				t.Errorf("stalled head: closed after %v (stalled %v, %v), want about %v", took.Round(time.Millisecond), stalled.Round(time.Millisecond), err, headerTimeout)
			}

			// A stalled body: the handler's read deadline ends its read.
			c = dial()
			io.WriteString(c, "POST /stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nfirst bytes")
			got, took, stalled, _ := stalltest.ReadCut(c, c, watch, 5*time.Second)
			if !strings.HasPrefix(got, "HTTP/1.1 408") || took > bodyDeadline+2*time.Second+stalled {
				t.Errorf("stalled body: %q after %v (stalled %v), want a 408 after about %v", strings.SplitN(got, "\r\n", 2)[0], took.Round(time.Millisecond), stalled.Round(time.Millisecond), bodyDeadline)
			}

			// A client that goes: the server's side ends when its read
			// sees the close. Every connection served is closed.
			c = dial()
			c.Close()
			for i := range 4 {
				if _, took, stalled, ok := stalltest.Await(closed, watch, 5*time.Second); !ok {
					t.Fatalf("%d of 4 connections closed by the server after %v (stalled %v)", i, took.Round(time.Millisecond), stalled.Round(time.Millisecond))
				}
			}

			mu.Lock()
			defer mu.Unlock()
			if len(served) != 4 {
				t.Errorf("%d connections served, want 4", len(served))
			}
			for i, sc := range served {
				if tc, ok := sc.(*tls.Conn); ok {
					sc = tc.NetConn()
				}
				if _, ok := sc.(*Conn); !ok {
					t.Errorf("connection %d served is a %T, not a *sockio.Conn", i, sc)
				}
			}
		})
	}
}
