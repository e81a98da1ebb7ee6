package proxy

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ledgerStall holds the single node's ledger appends once armed, as a
// ledger that falls behind would (a starved writer, an fdatasync that does
// not return): an armed append says it began, then waits for unblock.
type ledgerStall struct {
	g       *Gateway
	armed   atomic.Bool
	stalled chan struct{}
	release chan struct{}
	once    sync.Once
}

// stallLedger puts an unarmed ledgerStall before each append of g's single
// node. The test's end unblocks it, so a test that fails while an append
// is held does not leave Serve's shutdown waiting for it.
func stallLedger(t *testing.T, g *Gateway) *ledgerStall {
	t.Helper()
	s := &ledgerStall{g: g, stalled: make(chan struct{}, 1), release: make(chan struct{})}
	hook := func() {
		if s.armed.Load() {
			select {
			case s.stalled <- struct{}{}:
			default:
			}
			<-s.release
		}
	}
	g.node.stall.Store(&hook)
	t.Cleanup(s.unblock)
	return s
}

// arm makes the next appends wait for unblock, once every event so far is
// written and no write is under way: under load the write of an earlier
// event could still be going on, and the stall then took that write, not
// the one the test means to hold.
func (s *ledgerStall) arm(t *testing.T) {
	t.Helper()
	b := s.g.node.backlog
	waitFor(t, "the events so far written", func() bool {
		st := b.stats()
		return st.Written+st.Dropped+st.Failed+st.Lost == st.Enqueued && b.writing.Load() == 0
	})
	s.armed.Store(true)
}

// waitStalled fails the test unless an armed append begins within 30 s;
// what names that append's event.
func (s *ledgerStall) waitStalled(t *testing.T, what string) {
	t.Helper()
	select {
	case <-s.stalled:
	case <-time.After(30 * time.Second):
		t.Fatalf("the ledger's append of %s did not start", what)
	}
}

// unblock lets the held appends, and every later one, go on. It may be
// called more than once.
func (s *ledgerStall) unblock() { s.once.Do(func() { close(s.release) }) }
