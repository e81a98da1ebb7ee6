package proxy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/sockio"
)

// TestLeanFrontLateGoroutineNotCutIdle: a kept-alive connection whose
// client sent its next request before the idle timeout, and whose
// goroutine is late to read it (on a loaded machine: parked in the poller
// with the readiness not yet delivered, or not yet scheduled), is not cut
// as idle when the sweeper finds it past the timeout: net/http's server
// reads bytes that came before its deadline. The goroutine is held, by the
// front end's idleHook, between the answer and its next read; the clock is
// moved past the idle timeout while it is held. The same hold does not
// protect a client that sent one byte and stalls (cut at the read-header
// timeout, counted from when the sweeper found the byte, not before), nor
// one that sent nothing (cut at the idle timeout), nor any at shutdown.
func TestLeanFrontLateGoroutineNotCutIdle(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t)
	const idle, readHeader = time.Hour, 30 * time.Minute
	cfg := Config{Routes: []Route{{Upstream: "http://" + up.ln.Addr().String()}},
		Timeouts: Timeouts{Idle: idle, ReadHeader: readHeader}}
	skewBy := func(f *front, d time.Duration) { f.skew.Add(int64(d / time.Microsecond)) }
	for _, tc := range []struct {
		name  string
		send  string // while the goroutine is held, past the idle timeout
		check func(t *testing.T, f *front, lc *leanConn, c net.Conn, br *bufio.Reader, release func())
	}{
		{"next request waiting", "GET /plain HTTP/1.1\r\nHost: a\r\n\r\n",
			func(t *testing.T, f *front, lc *leanConn, c net.Conn, br *bufio.Reader, release func()) {
				skewBy(f, idle+time.Minute)
				waitFor(t, "the sweep past the idle timeout", func() bool { return !lcIn(lc, stIdle, stIdleSeen) })
				release()
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("a request sent before the idle timeout, read late by its goroutine: %v (state %d), want its answer",
						err, lc.state.Load()&7)
				}
				io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200", resp.StatusCode)
				}
			}},
		{"one byte, then nothing", "G",
			func(t *testing.T, f *front, lc *leanConn, c net.Conn, br *bufio.Reader, release func()) {
				skewBy(f, idle+time.Minute)
				waitFor(t, "the sweep past the idle timeout", func() bool { return !lcIn(lc, stIdle, stIdleSeen) })
				if !lcIn(lc, stHeader) {
					t.Fatalf("state %d after a byte came before the idle timeout, want a head being read (%d)", lc.state.Load()&7, stHeader)
				}
				release() // the goroutine reads the byte and waits for more
				skewBy(f, readHeader-time.Minute)
				time.Sleep(5 * sweepEvery)
				if !lcIn(lc, stHeader) {
					t.Fatalf("state %d short of the read-header timeout, want a head being read (%d)", lc.state.Load()&7, stHeader)
				}
				skewBy(f, 2*time.Minute)
				wantEnd(t, c, br, "a byte and a stall, past the read-header timeout")
			}},
		{"nothing", "",
			func(t *testing.T, f *front, lc *leanConn, c net.Conn, br *bufio.Reader, release func()) {
				skewBy(f, idle-time.Minute)
				time.Sleep(5 * sweepEvery)
				if !lcIn(lc, stIdle, stIdleSeen) {
					t.Fatalf("state %d short of the idle timeout, want idle", lc.state.Load()&7)
				}
				skewBy(f, 2*time.Minute)
				waitFor(t, "the idle connection closed", func() bool { return lcIn(lc, stClosed) })
				release()
				wantEnd(t, c, br, "a connection past its idle timeout")
			}},
		{"next request waiting at shutdown", "GET /plain HTTP/1.1\r\nHost: a\r\n\r\n",
			func(t *testing.T, f *front, lc *leanConn, c net.Conn, br *bufio.Reader, release func()) {
				done := make(chan error, 1)
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					done <- f.Shutdown(ctx)
				}()
				waitFor(t, "the idle connection closed at shutdown", func() bool { return lcIn(lc, stClosed) })
				release()
				wantEnd(t, c, br, "an idle connection at shutdown")
				if err := <-done; err != nil {
					t.Fatalf("shutdown: %v", err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := cfg
			cfg.Sink = &memSink{}
			p, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			f := NewPlainServer(p, cfg, nil).(*front)
			held := make(chan *leanConn)
			unhold := make(chan struct{})
			// The first connection to go idle is held once; a test that
			// failed releases it at cleanup.
			first := true
			f.idleHook = func(lc *leanConn) {
				if first { // one connection, whose goroutine alone calls this
					first = false
					held <- lc
					<-unhold
				}
			}
			go f.Serve(ln)
			t.Cleanup(func() {
				f.Close()
				p.Close()
			})
			var once bool
			release := func() {
				if !once {
					once = true
					close(unhold)
				}
			}
			t.Cleanup(release)

			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			br := bufio.NewReader(c)
			io.WriteString(c, "GET /plain HTTP/1.1\r\nHost: a\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			var lc *leanConn
			select {
			case lc = <-held: // answered, idle, not reading
			case <-time.After(30 * time.Second):
				t.Fatal("the connection's goroutine did not go idle after its answer")
			}
			if tc.send != "" {
				io.WriteString(c, tc.send)
				waitFor(t, "the bytes in the gateway's socket", func() bool {
					var more bool
					lc.rc.Control(func(fd uintptr) { more, _ = sockio.PeekFD(fd) })
					return more
				})
			}
			tc.check(t, f, lc, c, br, release)
		})
	}
}

// lcIn reports whether lc is in one of the states sts.
func lcIn(lc *leanConn, sts ...int) bool {
	st := int(lc.state.Load() & 7)
	for _, s := range sts {
		if st == s {
			return true
		}
	}
	return false
}

// wantEnd fails unless the connection ends with nothing more from the
// gateway.
func wantEnd(t *testing.T, c net.Conn, br *bufio.Reader, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if b, err := io.ReadAll(br); err != nil || len(b) != 0 {
		t.Fatalf("%s: %q, %v; want the gateway's end", what, b, err)
	}
}
