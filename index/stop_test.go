package index

import (
	"context"
	"errors"
	"iter"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trailguard/trailguard/ledger"
)

// handedSource counts the records Run took from the ledger.
type handedSource struct {
	l    *ledger.Ledger
	sent atomic.Uint64
}

func (h *handedSource) Follow(ctx context.Context, from uint64) iter.Seq2[ledger.Entry, error] {
	return func(yield func(ledger.Entry, error) bool) {
		for e, err := range h.l.Follow(ctx, from) {
			if !yield(e, err) {
				return
			}
			h.sent.Add(1)
		}
	}
}

// TestStopLeavesUncommittedToTheNextRun: a stopped Run does not commit the
// records it read and had not committed yet (on a loaded collector that
// was up to two batches, seconds of inserts in the shutdown); the next
// Run, on the reopened index, reads them again from the ledger, with the
// records appended meanwhile, and the index then holds every record
// exactly once.
func TestStopLeavesUncommittedToTheNextRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	// 2,500 records, batches of 1,000 and no commit by time: the records
	// after the last full batch or block (the tests' blocks hold 97) wait
	// uncommitted until the stop.
	const n, more = 2500, 130
	appendEvents(t, l.Ledger, 0, n, time.Second)
	path := filepath.Join(dir, "index.db")
	ix, err := Open(path, Options{Ledger: l, BatchSize: 1000, BatchDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	src := &handedSource{l: l.Ledger}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ix.Run(ctx, src) }()
	deadline := time.Now().Add(30 * time.Second)
	for src.sent.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("Run read %d of %d records in 30 s", src.sent.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("stopped Run returned %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not stop in 30 s")
	}
	left := ix.Indexed()
	if left >= n {
		t.Fatalf("Indexed() = %d after the stop: the stop committed what it had read, want the uncommitted records left to the next Run", left)
	}
	if rows, _, _ := count(t, ix); uint64(rows) != left {
		t.Fatalf("the stopped index holds %d rows, its meta says %d", rows, left)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}

	// The next start: the ledger grew meanwhile.
	appendEvents(t, l.Ledger, n, more, time.Second)
	ix = openIndexOn(t, path, l)
	if got := ix.Indexed(); got != left {
		t.Fatalf("reopened Indexed() = %d, want %d", got, left)
	}
	runUntil(t, ix, l, n+more)
	if rows, lo, hi := count(t, ix); rows != n+more || lo != 0 || hi != n+more-1 {
		t.Fatalf("rows %d [%d,%d], want %d [0,%d]", rows, lo, hi, n+more, n+more-1)
	}
	res, err := ix.Search(context.Background(), Request{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	for _, h := range res.Hits {
		seen[h.Index]++
	}
	for i := range uint64(n + more) {
		if seen[i] != 1 {
			t.Errorf("record %d found %d times, want once", i, seen[i])
		}
	}
	if len(res.Hits) != n+more {
		t.Errorf("%d hits, want %d", len(res.Hits), n+more)
	}
	t.Logf("%d of %d records committed at the stop; the next Run indexed the other %d and %d new ones", left, n, n-left, more)
}
