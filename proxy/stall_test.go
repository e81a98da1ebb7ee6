package proxy

// Helpers for tests that bound how late a timeout's effect may come (a
// cut connection, an ended exchange) on a machine that may stall this
// process for seconds (a full -race run at load 8-25 on two cores): the
// upper bounds allow the longest stall seen while the test waited, and a
// wait that timed out during such a stall waits again, so that an effect
// that never comes still fails.

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// readAll reads c until it ends, and reports what came and when.
func readAll(c net.Conn, limit time.Duration) (string, time.Duration, error) {
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	b, err := io.ReadAll(c)
	return string(b), time.Since(start), err
}

// stallWatch notes how late this process's goroutines are woken: one that
// sleeps stallTick at a time records its largest overrun since the last
// reset. A cut a server makes that much late says nothing of its timeout:
// a stalled machine or process delays every timer and goroutine alike, the
// server's and the test's (at load 8-10, in one full -race run, both of
// TestLeanFrontTimeouts' servers cut ~4.6 s late together, net/http's by
// its own read deadline, which no sweeper of ours keeps).
type stallWatch struct {
	base    time.Time
	worstNs atomic.Int64
	// sleptAt is when (since base) the current sleep began: a stall that
	// just ended counts before the watcher is woken from it (the server's
	// close may be seen first).
	sleptAt atomic.Int64
}

const stallTick = 5 * time.Millisecond

// watchStalls starts a stallWatch, stopped at t's end.
func watchStalls(t *testing.T) *stallWatch {
	w := &stallWatch{base: time.Now()}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			at := time.Now()
			w.sleptAt.Store(int64(at.Sub(w.base)))
			select {
			case <-stop:
				return
			case <-time.After(stallTick):
			}
			late := int64(time.Since(at) - stallTick)
			for {
				old := w.worstNs.Load()
				if late <= old || w.worstNs.CompareAndSwap(old, late) {
					break
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return w
}

func (w *stallWatch) reset() { w.worstNs.Store(0) }
func (w *stallWatch) worst() time.Duration {
	now := time.Since(w.base) - time.Duration(w.sleptAt.Load()) - stallTick
	return max(time.Duration(w.worstNs.Load()), now)
}

// readCut reads r (c's) until it ends, the way readAll does, and says how
// long the process stalled meanwhile. A read that times out during a stall
// that took up most of its wait is given another wait (twice at most): the
// test was not there to see the cut, which a stalled server makes late. One
// that times out otherwise is a connection that was not cut.
func readCut(c net.Conn, r io.Reader, w *stallWatch, limit time.Duration) (got string, took, stalled time.Duration, err error) {
	start := time.Now()
	w.reset()
	var b []byte
	for waits := 1; ; waits++ {
		c.SetReadDeadline(time.Now().Add(limit))
		var more []byte
		more, err = io.ReadAll(r)
		b = append(b, more...)
		if !errors.Is(err, os.ErrDeadlineExceeded) || waits == 3 || w.worst() < limit/2 {
			break
		}
	}
	return string(b), time.Since(start), w.worst(), err
}

// await waits for a value on ch the way readCut waits for a connection's
// end: up to limit, with another wait (twice at most) when the process
// stalled for most of one, and says how long it waited and the longest
// stall meanwhile. ok is false when no value came.
func await[T any](ch <-chan T, w *stallWatch, limit time.Duration) (v T, took, stalled time.Duration, ok bool) {
	start := time.Now()
	w.reset()
	for waits := 1; ; waits++ {
		select {
		case v = <-ch:
			return v, time.Since(start), w.worst(), true
		case <-time.After(limit):
		}
		if waits == 3 || w.worst() < limit/2 {
			return v, time.Since(start), w.worst(), false
		}
	}
}
