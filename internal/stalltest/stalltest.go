// Package stalltest helps tests that bound how late a timeout's effect may
// come (a cut connection, an ended exchange, a finished Close) on a machine
// that may stall the test process for seconds (a full -race run at load
// 8-25 on two cores, or a SIGSTOP): a Watch measures the longest stall seen
// while the test waited, an upper bound allows bound + that stall, and a
// wait that timed out during such a stall waits again, so that an effect
// that never comes, or comes late without a stall to explain it, still
// fails.
package stalltest

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// Tick is how long a Watch's goroutine sleeps at a time; an overrun of a
// sleep is a stall.
const Tick = 5 * time.Millisecond

// Watch notes how late this process's goroutines are woken: one that
// sleeps Tick at a time records its largest overrun since the last Reset.
// A timeout's effect that comes that much late says nothing of the
// timeout: a stalled machine or process delays every timer and goroutine
// alike, the code's under test and the test's (at load 8-10, in one full
// -race run, two servers cut ~4.6 s late together).
type Watch struct {
	base    time.Time
	worstNs atomic.Int64
	// sleptAt is when (since base) the current sleep began: a stall that
	// just ended counts before the watcher is woken from it (the effect
	// under test may be seen first).
	sleptAt atomic.Int64
}

// Start starts a Watch, stopped when t ends.
func Start(t testing.TB) *Watch {
	w := &Watch{base: time.Now()}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			at := time.Now()
			w.sleptAt.Store(int64(at.Sub(w.base)))
			select {
			case <-stop:
				return
			case <-time.After(Tick):
			}
			w.note(time.Since(at) - Tick)
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return w
}

func (w *Watch) note(late time.Duration) {
	for {
		old := w.worstNs.Load()
		if int64(late) <= old || w.worstNs.CompareAndSwap(old, int64(late)) {
			return
		}
	}
}

// Reset forgets the stalls seen so far; call it when the wait to be
// bounded begins.
func (w *Watch) Reset() { w.worstNs.Store(0) }

// Worst is the longest stall since the last Reset, counting one still
// under way (the watcher's current sleep overrun so far).
func (w *Watch) Worst() time.Duration {
	now := time.Since(w.base) - time.Duration(w.sleptAt.Load()) - Tick
	return max(time.Duration(w.worstNs.Load()), now)
}

// ReadCut reads r (c's) until it ends, and says what came, how long it
// took and how long the process stalled meanwhile. A read that times out
// (after limit) during a stall that took up most of its wait is given
// another wait (twice at most): the test was not there to see the cut,
// which a stalled server makes late. One that times out otherwise is a
// connection that was not cut, and err says so.
func ReadCut(c net.Conn, r io.Reader, w *Watch, limit time.Duration) (got string, took, stalled time.Duration, err error) {
	start := time.Now()
	w.Reset()
	var b []byte
	for waits := 1; ; waits++ {
		c.SetReadDeadline(time.Now().Add(limit))
		var more []byte
		more, err = io.ReadAll(r)
		b = append(b, more...)
		if !errors.Is(err, os.ErrDeadlineExceeded) || waits == 3 || w.Worst() < limit/2 {
			break
		}
	}
	return string(b), time.Since(start), w.Worst(), err
}

// Await waits for a value on ch the way ReadCut waits for a connection's
// end: up to limit, with another wait (twice at most) when the process
// stalled for most of one, and says how long it waited and the longest
// stall meanwhile. ok is false when no value came.
func Await[T any](ch <-chan T, w *Watch, limit time.Duration) (v T, took, stalled time.Duration, ok bool) {
	start := time.Now()
	w.Reset()
	for waits := 1; ; waits++ {
		select {
		case v = <-ch:
			return v, time.Since(start), w.Worst(), true
		case <-time.After(limit):
		}
		if waits == 3 || w.Worst() < limit/2 {
			return v, time.Since(start), w.Worst(), false
		}
	}
}

// Run calls f in a goroutine and waits for it to return the way Await
// waits for a value, for bounding a call (a Close, a Serve) that must end
// in time: it says how long f took and the longest stall meanwhile; ok is
// false when f had not returned after the waits.
func Run(f func(), w *Watch, limit time.Duration) (took, stalled time.Duration, ok bool) {
	done := make(chan time.Time, 1)
	start := time.Now()
	go func() { f(); done <- time.Now() }()
	end, _, stalled, ok := Await(done, w, limit)
	if !ok {
		return time.Since(start), stalled, false
	}
	return end.Sub(start), stalled, true
}
