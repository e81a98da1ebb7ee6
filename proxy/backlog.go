package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/httpaudit"
)

// maxUndurable bounds how old the oldest answered-but-not-yet-durable
// event of a single node may grow before new requests wait for the
// ledger. The gateway answers without waiting for its events to be
// durable, so a crash loses the events of the requests answered since the
// last commit; normally that is the commit gap and one fdatasync (tens of
// milliseconds). But the backlog between answer and durable write is
// otherwise bounded only by the event queue (65,536 events): when the
// event writer or the disk falls behind (CPU starvation, a slow
// fdatasync) the gateway kept answering at full rate while its events
// piled up, and a SIGKILL then lost seconds of answered requests
// (TestProxyCrashLosesOnlyTheGap failed so under load: 216 events, the
// oldest answered 449 ms before the kill). With this bound a request that
// arrives while the oldest pending event is older than maxUndurable waits
// for the ledger's next commit before it is served, so what a crash loses
// stays the requests served within ~maxUndurable of each other, whatever
// the load. Far above a normal commit's gap plus fdatasync (p99 ~35 ms
// here), so a gateway that keeps up never waits: at 100 ms, wrk's
// saturation of the single node (64 connections, a loaded 2-core machine)
// was held often enough to cost 15-25 % of its requests/s although its
// ledger kept up (no event dropped); at 250 ms it served as many as
// without the bound.
const maxUndurable = 250 * time.Millisecond

// backlog is the single node's bound on its undurable events
// (maxUndurable). nodeSink notes each write's start and end; requests ask
// wait before they are served.
type backlog struct {
	max   time.Duration
	stats func() httpaudit.Stats // the event queue's: Queued, Failing
	// hurry, if not nil, ends the event writer's wait to gather a bigger
	// commit (nodeSink's gap) when a request is held: it waits for that
	// commit.
	hurry chan<- struct{}

	// covered is when the last write that returned began (unix ns):
	// every event queued before it was in that write or an earlier one,
	// so no pending event is older. writing is when the write under way
	// began, 0 between writes.
	covered atomic.Int64
	writing atomic.Int64

	mu   sync.Mutex
	wake chan struct{} // closed when a write returns; nil: no waiter
	// held counts the requests that waited (Stats.LedgerWaits).
	held atomic.Uint64
}

// newBacklog returns a backlog bounded by max; its stats must be set
// before a request asks it to wait.
func newBacklog(max time.Duration) *backlog {
	b := &backlog{max: max}
	b.covered.Store(time.Now().UnixNano())
	return b
}

// begin notes that a write of the events queued until now begins.
func (b *backlog) begin(now time.Time) { b.writing.Store(now.UnixNano()) }

// done notes that the write begun at began returned (stored or failed:
// a failing ledger is the event queue's Failing, not a wait).
func (b *backlog) done(began time.Time) {
	b.covered.Store(began.UnixNano())
	b.writing.Store(0)
	b.mu.Lock()
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
	b.mu.Unlock()
}

// behind reports whether a request must wait: an event is pending (queued
// or in a write) and the last write that returned began more than max
// ago. The common case costs a clock reading and an atomic load.
func (b *backlog) behind(now int64) bool {
	if now-b.covered.Load() <= int64(b.max) {
		return false
	}
	st := b.stats()
	return !st.Failing && (st.Queued > 0 || b.writing.Load() != 0)
}

// wait returns once the backlog is within its bound, or ctx ends (the
// client is gone, or the gateway shuts down).
func (b *backlog) wait(ctx context.Context) {
	if !b.behind(time.Now().UnixNano()) {
		return
	}
	b.held.Add(1)
	if b.hurry != nil {
		select {
		case b.hurry <- struct{}{}:
		default: // already told
		}
	}
	for {
		b.mu.Lock()
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		wake := b.wake
		b.mu.Unlock()
		// Looked at again after taking wake: a write that returned
		// before is seen here, one after closes wake.
		if !b.behind(time.Now().UnixNano()) {
			return
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}
