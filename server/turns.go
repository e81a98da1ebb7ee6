package server

import (
	"cmp"
	"runtime"
	"slices"
	"sync"
)

// prepTurns lets a few ingest requests at a time prepare their events
// (scrub, check, normalise: the CPU work of a request), the others waiting
// in line, first come first served, instead of all of them sharing the
// cores at once.
//
// Why: each request waits for its events to be durable before it is
// answered, and concurrent appends share one fdatasync. When eight
// requests share two cores, all eight finish preparing at about the same
// time, append together, and then all wait for the same sync while the
// cores idle (an execution trace of `bench/cmd/ingestload` against the
// collector: the handlers in lockstep, 1.6 of 2 cores used). Taking turns,
// the first requests are prepared in a fraction of that time and their
// append is synced while the next ones are prepared: the sync overlaps
// the CPU work instead of following it.
//
// A turn is held only while the request works on bytes it has in memory:
// forLines gives it up before it reads more of the body (a slow client
// never holds up the others) and the handlers before they append (the
// wait for durability is never done holding one).
//
// Turns go to the request that first asked for one: a request that gave
// its turn up to read more of its body is served, once it has, before
// requests that started after it, so that requests finish in the order
// they started instead of all together.
type prepTurns struct {
	mu      sync.Mutex
	free    int
	next    uint64    // the next request's ticket
	waiting []*waiter // by ticket
}

type waiter struct {
	ticket uint64
	ready  chan struct{}
}

// newPrepTurns allows n requests to prepare at once (0: unlimited).
func newPrepTurns(n int) *prepTurns {
	if n <= 0 {
		return nil
	}
	return &prepTurns{free: n}
}

// defaultPrepTurns is the number of requests that prepare at once: one
// fewer than the collector's processors, which serve runs one more of than
// it has cores (the spare one for the ledger's goroutines back from a
// sync), so one per core. The followers (index, detection, reports,
// overview) then share the cores with the preparing requests, and use
// them when those wait for a sync.
//
// One per core fewer (a core kept for the followers) left a core idle
// while the only preparing request was handed the turn and the followers
// had caught up: quiet, 5 alternated pairs of 600,000 events on 2 cores,
// 230k events/s against 219k, 1.72 cores used against 1.67, CPU per event
// 7.45 against 7.57 µs (bench/cmd/ingestload).
func defaultPrepTurns() int {
	return max(1, runtime.GOMAXPROCS(0)-1)
}

// newTurn returns a request's use of t (nil when t is).
func (t *prepTurns) newTurn() *turn {
	if t == nil {
		return nil
	}
	return &turn{t: t, ready: make(chan struct{}, 1)}
}

// turn is one request's use of prepTurns.
type turn struct {
	t      *prepTurns
	ticket uint64
	asked  bool
	held   bool
	ready  chan struct{}
}

// take waits for a turn, unless the request holds one.
func (u *turn) take() {
	if u == nil || u.held {
		return
	}
	t := u.t
	t.mu.Lock()
	if !u.asked {
		u.asked, u.ticket = true, t.next
		t.next++
	}
	if t.free > 0 {
		t.free--
		t.mu.Unlock()
		u.held = true
		return
	}
	i, _ := slices.BinarySearchFunc(t.waiting, u.ticket, func(w *waiter, k uint64) int { return cmp.Compare(w.ticket, k) })
	t.waiting = slices.Insert(t.waiting, i, &waiter{u.ticket, u.ready})
	t.mu.Unlock()
	<-u.ready
	u.held = true
}

// give gives the turn up, if held: to the oldest request waiting for one.
func (u *turn) give() {
	if u == nil || !u.held {
		return
	}
	u.held = false
	t := u.t
	t.mu.Lock()
	if len(t.waiting) == 0 {
		t.free++
		t.mu.Unlock()
		return
	}
	w := t.waiting[0]
	t.waiting = slices.Delete(t.waiting, 0, 1)
	t.mu.Unlock()
	w.ready <- struct{}{}
}
