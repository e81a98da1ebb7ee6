package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLeanFrontTimeoutsKeepTime: the lean front end's read-header and
// idle timeouts are measured in time, not in the sweeper's ticks (which a
// loaded machine drops: a 2 s idle timeout took over 3 s). The clock is
// moved forward as a sweeper held up by load would find it: a connection
// is closed at the first sweep past its timeout, and not before it.
func TestLeanFrontTimeoutsKeepTime(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t)
	const idle, readHeader = time.Hour, 30 * time.Minute
	_, url, _, srv := gatewayServer(t, Config{Routes: []Route{{Upstream: "http://" + up.ln.Addr().String()}},
		Timeouts: Timeouts{Idle: idle, ReadHeader: readHeader}})
	f := srv.(*front)
	addr := strings.TrimPrefix(url, "http://")
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ask := func(c net.Conn, br *bufio.Reader) error {
		io.WriteString(c, "GET /plain HTTP/1.1\r\nHost: a\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	closed := func(c net.Conn, what string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
			t.Fatalf("%s: %q, %v; want the gateway's end", what, b, err)
		}
	}
	states := func(want ...int) func() bool {
		return func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			for lc := range f.conns {
				st := int(lc.state.Load() & 7)
				if !slices.Contains(want, st) {
					return false
				}
			}
			return true
		}
	}

	idler := dial()
	ibr := bufio.NewReader(idler)
	if err := ask(idler, ibr); err != nil {
		t.Fatal(err)
	}
	slow := dial() // half a head
	io.WriteString(slow, "GET /plain HTTP/1.1\r\n")
	waitFor(t, "one connection idle, one reading a head", func() bool {
		f.mu.Lock()
		n := len(f.conns)
		f.mu.Unlock()
		return n == 2 && states(stIdle, stIdleSeen, stHeader)()
	})

	// Past the read-header timeout, short of the idle one: the sweep that
	// closes the head's connection leaves the idle one open.
	f.skew.Add(int64((idle - time.Minute) / time.Microsecond))
	closed(slow, "a head past its read-header timeout")
	if err := ask(idler, ibr); err != nil {
		t.Fatalf("a connection idle for %v of its %v idle timeout was closed: %v", idle-time.Minute, idle, err)
	}
	// Past the idle timeout since that request: closed at the next sweep.
	// Once the connection is idle: its idle time starts when its goroutine
	// gets to it after the answer, which a loaded machine delayed past
	// the skew (the connection then had an hour from the skewed clock).
	waitFor(t, "the connection idle after its answer", states(stIdle, stIdleSeen))
	f.skew.Add(int64((idle + time.Minute) / time.Microsecond))
	closed(idler, "a connection past its idle timeout")
}
