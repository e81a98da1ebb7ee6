package proxy

import (
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The gate holds a client's answers while a failure of that client is not
// yet evaluated by the lane, releases them when it is (withholding them if
// the client is blocked by then), never holds other clients, and never
// holds an answer longer than gateMaxHold, even behind a flood of
// failures the lane never sees.
func TestAnswerGate(t *testing.T) {
	t.Parallel()
	var enqueued, observed atomic.Uint64
	g := newAnswerGate(enqueued.Load, observed.Load)
	attacker, other := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	var isBlocked atomic.Bool
	blocked := func() bool { return isBlocked.Load() }

	withhold, e := g.pass(attacker, http.StatusUnauthorized, blocked)
	if withhold || e == nil {
		t.Fatal("a first failure was not let through and noted")
	}
	enqueued.Store(7) // its events, and others before them, are queued
	g.end(e)

	// Another client is not held.
	start := time.Now()
	if withhold, _ := g.pass(other, http.StatusOK, blocked); withhold || time.Since(start) > gateMaxHold/2 {
		t.Fatalf("another client's answer held %v (withheld %v)", time.Since(start), withhold)
	}
	// The attacker's next answer waits for the lane, which blocks.
	done := make(chan bool)
	go func() {
		w, _ := g.pass(attacker, http.StatusOK, blocked)
		done <- w
	}()
	select {
	case <-done:
		t.Fatal("answer given before the lane saw the failure before it")
	case <-time.After(20 * time.Millisecond):
	}
	isBlocked.Store(true)
	observed.Store(7)
	g.notify()
	if !<-done {
		t.Fatal("answer given to a client the lane blocked meanwhile")
	}

	// A flood of failures the lane never sees: each answer waits at most
	// gateMaxHold.
	isBlocked.Store(false)
	var wg sync.WaitGroup
	var slowest atomic.Int64
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, e := g.pass(attacker, http.StatusUnauthorized, blocked)
			if e != nil {
				enqueued.Add(1)
				g.end(e)
			}
			if d := int64(time.Since(start)); d > slowest.Load() {
				slowest.Store(d)
			}
		}()
	}
	wg.Wait()
	if d := time.Duration(slowest.Load()); d > gateMaxHold+gateMaxHold/2 {
		t.Fatalf("an answer was held %v behind failures the lane never saw (bound %v)", d, gateMaxHold)
	}
}
