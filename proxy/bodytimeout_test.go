package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/stalltest"
)

// TestBodyTimeoutStalledClient: a client that sends a request head and
// part of its body, then nothing, is cut within timeouts.body (plus the
// renewal's half and a margin), in both listener modes, and the upstream
// exchange ends with it (review, MEDIUM, network: no read of a request
// body was bounded, so each such connection held a gateway goroutine, a
// file descriptor and an upstream connection for as long as the client
// liked; nginx's client_body_timeout is 60s). A body that keeps coming,
// slowly, is not cut.
func TestBodyTimeoutStalledClient(t *testing.T) {
	for _, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		t.Run(strings.ReplaceAll(mode, "/", ""), func(t *testing.T) {
			t.Parallel()
			ended := make(chan error, 4)
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				_, err := io.ReadAll(r.Body)
				select {
				case ended <- err:
				default: // the trickled bodies' (started over under load)
				}
			})
			const bt = 300 * time.Millisecond
			cfg := Config{HTTP1: mode, Routes: []Route{{Upstream: up.URL}},
				Logins: []Login{{Path: "/login", User: "json:user"}}}
			cfg.Timeouts.Body = bt
			_, addr, ms, _ := gatewayServer(t, cfg)
			// The cuts' upper bounds allow for a stall of this process
			// (one of 4 s failed them), which makes them as late.
			watch := stalltest.Start(t)

			for _, path := range []string{"/upload", "/login"} {
				c := dialStalled(t, addr, "POST "+path+" HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"user\":")
				// Until the gateway answers and closes, or the deadline.
				_, took, stalled, err := stalltest.ReadCut(c, c, watch, 5*time.Second)
				if errors.Is(err, os.ErrDeadlineExceeded) || took > bt+bt/2+time.Second+stalled {
					t.Errorf("%s: the stalled body's connection lasted %v (stalled up to %v, %v), want about %v", path, took, stalled, err, bt)
				}
				if path == "/upload" {
					if err, took, stalled, ok := stalltest.Await(ended, watch, 5*time.Second); !ok || took > 2*time.Second+stalled {
						t.Errorf("the upstream exchange did not end with the client's (%v later, stalled up to %v)", took, stalled)
					} else if err == nil {
						t.Error("the upstream read a whole body the client never sent")
					}
				}
			}

			// The cut requests are on record.
			evs := ms.wait(t, "the cut requests' events", func(evs []*event.Event) bool {
				n := 0
				for _, ev := range evs {
					if ev.Action == event.ActionHTTPRequest && (ev.Path == "/upload" || ev.Path == "/login") {
						n++
					}
				}
				return n >= 2
			})
			for _, ev := range evs {
				if ev.Action == event.ActionHTTPRequest {
					t.Logf("%s %d %s", ev.Path, ev.StatusCode, ev.ErrorMessage)
				}
			}

			// A body that trickles in, each piece within the timeout,
			// goes through. The gateway renews its deadline at each read,
			// so a cut means that no byte came for bt after a read: the
			// time from before the client wrote one piece (or the head)
			// to after it wrote the next bounds that, however loaded the
			// machine. A run with a longer gap (a bt/3 sleep overrun under
			// load: "write: connection reset by peer" at load 20-22,
			// where the sleeps were taken for the gaps) may rightly be
			// cut and proves nothing: it starts over.
			for runs, deadline := 1, time.Now().Add(60*time.Second); ; runs++ {
				if time.Now().After(deadline) {
					t.Fatalf("no run of pieces each within %v of the one before in 60s (%d runs): too loaded to tell", bt, runs)
				}
				prev := time.Now()
				c := dialStalled(t, addr, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\n\r\n")
				var worst time.Duration
				var err error
				for range 8 {
					time.Sleep(bt / 3)
					before := time.Now()
					_, err = c.Write([]byte("x"))
					worst = max(worst, time.Since(prev))
					prev = before
					if err != nil {
						break
					}
				}
				if err == nil {
					c.SetReadDeadline(time.Now().Add(30 * time.Second))
					var resp *http.Response
					if resp, err = http.ReadResponse(bufio.NewReader(c), nil); err == nil {
						resp.Body.Close()
						if resp.StatusCode == 200 {
							break
						}
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				c.Close()
				if worst < bt {
					t.Fatalf("slow but steady body (each piece within %v of the one before, timeout %v): %v", worst, bt, err)
				}
				t.Logf("run %d: a piece came up to %v after the one before (timeout %v): %v; starting over", runs, worst, bt, err)
			}
		})
	}
}

// TestBodyTimeoutStalledH2Stream: timeouts.body holds for an HTTP/2
// stream's body too (h2c, both listener modes): a stream that sends part
// of its body and then nothing is ended, and its upstream exchange with it.
func TestBodyTimeoutStalledH2Stream(t *testing.T) {
	for _, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		t.Run(strings.ReplaceAll(mode, "/", ""), func(t *testing.T) {
			t.Parallel()
			ended := make(chan error, 1)
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				_, err := io.ReadAll(r.Body)
				ended <- err
			})
			const bt = 300 * time.Millisecond
			cfg := Config{HTTP1: mode, Routes: []Route{{Upstream: up.URL}}}
			cfg.Timeouts.Body = bt
			_, addr, _, _ := gatewayServer(t, cfg)
			var protos http.Protocols
			protos.SetUnencryptedHTTP2(true)
			tr := &http.Transport{Protocols: &protos}
			t.Cleanup(tr.CloseIdleConnections)
			pr, pw := io.Pipe()
			t.Cleanup(func() { pw.Close() })
			go pw.Write([]byte("part of a body"))
			req, _ := http.NewRequest("POST", addr+"/upload", pr)
			req.ContentLength = 1000
			watch := stalltest.Start(t)
			done := make(chan struct{})
			go func() {
				defer close(done)
				if resp, err := (&http.Client{Transport: tr}).Do(req); err == nil {
					resp.Body.Close()
				}
			}()
			// As late as a stall of this process makes it (one of 4 s
			// failed a fixed bound), and no later.
			err, took, stalled, ok := stalltest.Await(ended, watch, 5*time.Second)
			if !ok {
				t.Fatalf("the stalled stream's upstream exchange did not end (%v, stalled up to %v)", took, stalled)
			}
			if err == nil {
				t.Error("the upstream read a whole body the client never sent")
			}
			if took > bt+bt/2+2*time.Second+stalled {
				t.Errorf("stalled stream ended after %v (stalled up to %v)", took, stalled)
			}
			pw.CloseWithError(io.ErrUnexpectedEOF)
			<-done
		})
	}
}

// TestRefusedStalledBodyBounded: a request the gateway refuses without
// reading its body (a path it will not forward, a blocked client) and
// whose client announced a body and sends nothing is answered and let go
// within timeouts.body (review, MEDIUM, network: net/http waits to
// discard the announced body before it answers, with no deadline, so each
// such connection was held for ever).
func TestRefusedStalledBodyBounded(t *testing.T) {
	for _, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		t.Run(strings.ReplaceAll(mode, "/", ""), func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
			const bt = 300 * time.Millisecond
			cfg := Config{HTTP1: mode, Routes: []Route{{Upstream: up.URL}}, TrustedProxies: []string{"127.0.0.1"}}
			cfg.Timeouts.Body = bt
			p, addr, _, _ := gatewayServer(t, cfg)
			p.Apply("test", Update{New: []Decision{{Type: "ban", Scope: "Ip", Value: "203.0.113.7", Duration: "1h"}}})
			// The answers' upper bound allows for a stall of this process
			// (one of 4 s failed it), which makes them as late.
			watch := stalltest.Start(t)
			for _, head := range []string{
				"POST /a%2Fb HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n",
				"POST /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.7\r\nContent-Length: 100000\r\n\r\n",
			} {
				watch.Reset()
				c := dialStalled(t, addr, head)
				start := time.Now()
				c.SetReadDeadline(start.Add(30 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Errorf("%q: no answer after %v (%v)", head, time.Since(start).Round(time.Millisecond), err)
					continue
				}
				resp.Body.Close()
				if took, stalled := time.Since(start), watch.Worst(); took > bt+bt/2+time.Second+stalled {
					t.Errorf("%q: %d after %v (stalled up to %v)", head, resp.StatusCode, took.Round(time.Millisecond), stalled.Round(time.Millisecond))
				}
			}
		})
	}
}
