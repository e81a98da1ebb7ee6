package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/stalltest"
)

// pollFor polls cond until it holds or d passes.
func pollFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// dialStalled connects to the gateway and sends req; the caller then
// does not read (or reads at its pace).
func dialStalled(t *testing.T, addr, req string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(addr, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	tc := c.(*net.TCPConn)
	t.Cleanup(func() { tc.Close() })
	if _, err := io.WriteString(tc, req); err != nil {
		t.Fatal(err)
	}
	return tc
}

// TestWriteTimeoutStalledClient: a client that asks for a large answer
// and never reads it is disconnected within timeouts.write (plus the
// renewal's half and a margin), its request's event records the cut as a
// cut request is recorded (500, "handler aborted"), and neither a
// goroutine nor the upstream connection stays behind. Without the write
// timeout the gateway's write blocks for as long as the client stays.
func TestWriteTimeoutStalledClient(t *testing.T) {
	for _, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		t.Run(strings.ReplaceAll(mode, "/", ""), func(t *testing.T) {
			const size = 256 << 20 // far more than the sockets buffer
			chunk := make([]byte, 32<<10)
			bigDone := make(chan struct{})
			up := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/big" {
					return
				}
				defer close(bigDone)
				w.Header().Set("Content-Length", strconv.Itoa(size))
				for n := 0; n < size; n += len(chunk) {
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			})
			const wt = 300 * time.Millisecond
			cfg := Config{HTTP1: mode, Routes: []Route{{Upstream: up.URL}}}
			cfg.Timeouts.Write = wt
			_, addr, ms, srv := gatewayServer(t, cfg)
			get(t, addr+"/warm")
			before := len(ms.wait(t, "the warm-up's event", func(evs []*event.Event) bool { return len(evs) == 2 }))
			// The lean front end's connections (each its goroutine's),
			// counted on this gateway alone: the whole process's
			// goroutines also counted other tests' comings and goings.
			leanConns := func() int {
				f, ok := srv.(*front)
				if !ok {
					return 0
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				return len(f.conns)
			}
			base := leanConns()
			opened := up.opened.Load()

			// The cut's upper bound allows for a stall of this process
			// (one of 4 s failed it), which makes the cut as late.
			watch := stalltest.Start(t)
			start := time.Now()
			c := dialStalled(t, addr, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
			evs := ms.wait(t, "the stalled request's event", func(evs []*event.Event) bool {
				for _, ev := range evs[before:] {
					if ev.Path == "/big" {
						return true
					}
				}
				return false
			})
			took, stalled := time.Since(start), watch.Worst()
			var ev *event.Event
			for _, e := range evs[before:] {
				if e.Path == "/big" {
					ev = e
				}
			}
			if limit := wt + wt/2 + 2*time.Second; took > limit+stalled {
				t.Errorf("stalled client cut after %v (stalled up to %v), want within %v", took, stalled, limit)
			}
			if ev.StatusCode != http.StatusInternalServerError || ev.Outcome != event.OutcomeFailure || ev.ErrorMessage != "handler aborted" {
				t.Errorf("event: status %d outcome %s error %q, want 500 failure \"handler aborted\" (as a cut request)", ev.StatusCode, ev.Outcome, ev.ErrorMessage)
			}
			// The upstream's handler ends only when its connection is
			// closed (or the whole answer read).
			select {
			case <-bigDone:
			case <-time.After(5 * time.Second):
				t.Error("the upstream still writes the answer: its connection stays")
			}
			// The warm-up's connection idles in the pool; the stalled
			// request's (a new one, or that one) is closed.
			if !pollFor(5*time.Second, func() bool { return up.opened.Load()-up.closed.Load() <= 1 }) {
				t.Errorf("%d upstream connections open after the cut (%d before the request)",
					up.opened.Load()-up.closed.Load(), opened-up.closed.Load())
			}
			// The gateway's side is closed while the client is still
			// there: its connection's goroutine is gone (it closes the
			// connection as it ends, in both modes).
			if !pollFor(5*time.Second, func() bool { return leanConns() <= base }) {
				t.Errorf("%d connections on the lean front end, %d before the request", leanConns(), base)
			}
			// What the client then reads ends, before the answer's end:
			// the gateway closed it (a read that times out instead would
			// mean its side is still open).
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if n, err := io.Copy(io.Discard, c); n >= size || err != nil {
				t.Errorf("client read %d bytes (%v), want fewer than %d and the gateway's end", n, err, size)
			}
		})
	}
}

// TestWriteTimeoutSlowReader: a stream (SSE) longer than timeouts.write
// read slowly but steadily arrives whole: the timeout bounds a write
// without progress, not the answer.
func TestWriteTimeoutSlowReader(t *testing.T) {
	for _, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		t.Run(strings.ReplaceAll(mode, "/", ""), func(t *testing.T) {
			t.Parallel()
			const events, each = 16, 16 << 10
			line := "data: " + strings.Repeat("x", each-8) + "\n\n"
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				for i := 0; i < events; i++ {
					if _, err := io.WriteString(w, line); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					time.Sleep(50 * time.Millisecond)
				}
			})
			const wt = 250 * time.Millisecond
			cfg := Config{HTTP1: mode, Routes: []Route{{Upstream: up.URL}}}
			cfg.Timeouts.Write = wt
			_, addr, _, _ := gatewayServer(t, cfg)
			c := dialStalled(t, addr, "GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
			start := time.Now()
			br := bufio.NewReaderSize(c, 4096)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got int
			buf := make([]byte, 4096)
			for {
				n, err := resp.Body.Read(buf)
				got += n
				if err != nil {
					if err != io.EOF {
						t.Fatalf("after %d bytes, %v: %v", got, time.Since(start), err)
					}
					break
				}
				time.Sleep(time.Millisecond) // slow, but reading
			}
			if took := time.Since(start); took < 2*wt {
				t.Errorf("stream took %v: not longer than the timeout, the test shows nothing", took)
			}
			if got != events*len(line) {
				t.Errorf("got %d bytes, want %d", got, events*len(line))
			}
		})
	}
}

// TestWriteTimeoutStalledWebSocket: a WebSocket peer that stops reading
// what the upstream pushes is disconnected too, and the upstream's side
// of the tunnel ends with it.
func TestWriteTimeoutStalledWebSocket(t *testing.T) {
	for _, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		t.Run(strings.ReplaceAll(mode, "/", ""), func(t *testing.T) {
			t.Parallel()
			ended := make(chan time.Time, 1)
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				c, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					return
				}
				defer c.Close()
				brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				brw.Flush()
				chunk := make([]byte, 32<<10)
				c.SetWriteDeadline(time.Now().Add(20 * time.Second))
				for {
					if _, err := c.Write(chunk); err != nil {
						ended <- time.Now()
						return
					}
				}
			})
			const wt = 300 * time.Millisecond
			cfg := Config{HTTP1: mode, Routes: []Route{{Upstream: up.URL}}}
			cfg.Timeouts.Write = wt
			_, addr, _, _ := gatewayServer(t, cfg)
			// The cut's upper bound allows for a stall of this process
			// (one of 4 s failed it), which makes the cut as late.
			watch := stalltest.Start(t)
			start := time.Now()
			dialStalled(t, addr, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
			select {
			case at := <-ended:
				if took, limit, stalled := at.Sub(start), wt+wt/2+2*time.Second, watch.Worst(); took > limit+stalled {
					t.Errorf("stalled WebSocket peer cut after %v (stalled up to %v), want within %v", took, stalled, limit)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the upstream still pushes to a WebSocket peer that stopped reading")
			}
		})
	}
}

// TestWriteTimeoutStalledH2Stream: an HTTP/2 (h2c) client that stops
// reading one stream leaves that stream's flow-control window shut while
// its connection is read: the stream's writes are cut after
// timeouts.write, recorded as a cut request, and the upstream's side ends.
func TestWriteTimeoutStalledH2Stream(t *testing.T) {
	for _, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		t.Run(strings.ReplaceAll(mode, "/", ""), func(t *testing.T) {
			t.Parallel()
			const size = 256 << 20
			chunk := make([]byte, 32<<10)
			bigDone := make(chan struct{})
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				defer close(bigDone)
				w.Header().Set("Content-Length", strconv.Itoa(size))
				for n := 0; n < size; n += len(chunk) {
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			})
			const wt = 300 * time.Millisecond
			cfg := Config{HTTP1: mode, Routes: []Route{{Upstream: up.URL}}}
			cfg.Timeouts.Write = wt
			_, addr, ms, _ := gatewayServer(t, cfg)
			var protos http.Protocols
			protos.SetUnencryptedHTTP2(true)
			tr := &http.Transport{Protocols: &protos}
			t.Cleanup(tr.CloseIdleConnections)
			// The cut's upper bound allows for a stall of this process
			// (one of 4 s failed it), which makes the cut as late.
			watch := stalltest.Start(t)
			start := time.Now()
			resp, err := (&http.Client{Transport: tr}).Get(addr + "/big")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Fatalf("answered over %s, want HTTP/2", resp.Proto)
			}
			evs := ms.wait(t, "the stalled stream's event", func(evs []*event.Event) bool {
				for _, ev := range evs {
					if ev.Path == "/big" {
						return true
					}
				}
				return false
			})
			if took, limit, stalled := time.Since(start), wt+wt/2+2*time.Second, watch.Worst(); took > limit+stalled {
				t.Errorf("stalled stream cut after %v (stalled up to %v), want within %v", took, stalled, limit)
			}
			for _, ev := range evs {
				if ev.Path == "/big" && (ev.StatusCode != http.StatusInternalServerError || ev.ErrorMessage != "handler aborted") {
					t.Errorf("event: status %d error %q, want 500 \"handler aborted\"", ev.StatusCode, ev.ErrorMessage)
				}
			}
			select {
			case <-bigDone:
			case <-time.After(5 * time.Second):
				t.Error("the upstream still writes the stalled stream's answer")
			}
		})
	}
}
