package index

import (
	"context"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// One write transaction lets other goroutines run while it works: at
// GOMAXPROCS 1, a goroutine that only wants the CPU now and then gets it
// several times during an add that rewrites a nearly full block of the
// real size (its columns, its id run, the commit), not only after it.
// Not parallel: it sets blockSize and GOMAXPROCS for its duration.
func TestAddYieldsTheCPU(t *testing.T) {
	defer func(b uint64) { blockSize = b }(blockSize)
	blockSize = defaultBlockSize
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	const fill, step = defaultBlockSize - 300, 256
	appendEvents(t, l.Ledger, 0, fill, time.Millisecond)
	ix := openIndex(t, filepath.Join(dir, "index.db"))
	runUntil(t, ix, l, fill)
	appendEvents(t, l.Ledger, fill, 4*step, time.Millisecond)

	ctx := context.Background()
	var x extracted
	next := func(n int) []rec {
		var batch []rec
		for e, err := range l.Follow(ctx, ix.Indexed()) {
			if err != nil {
				t.Fatal(err)
			}
			batch = append(batch, decodeWith(e, &x))
			if len(batch) == n {
				break
			}
		}
		return batch
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for range 4 {
		batch := next(step)
		var stop atomic.Bool
		runs := make(chan int, 1)
		go func() { // a goroutine that wants the CPU briefly, often
			n := 0
			for !stop.Load() {
				n++
				runtime.Gosched()
			}
			runs <- n
		}()
		runtime.Gosched() // let it start
		start := time.Now()
		if err := ix.add(ctx, ix.Indexed(), batch); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		stop.Store(true)
		n := <-runs
		t.Logf("add of %d rows into a block of %d took %v; the other goroutine ran %d times meanwhile", len(batch), ix.Indexed()%defaultBlockSize, took, n)
		if n >= 10 {
			return
		}
	}
	t.Fatalf("the other goroutine ran fewer than 10 times during each add: the write transaction holds the only P")
}

// The writer does not yield when it is behind: Run's batches full (here
// every batch, the ledger holding 3 of them before Run starts), but does
// with a small batch (the records of a quiet moment). Under ingest load
// the yields let the index fall off the ledger's in-memory tail (index lag
// 11 s with bench/cmd/ingestload). Not parallel: it counts yields through
// yieldHook.
func TestWriterBehindDoesNotYield(t *testing.T) {
	for _, c := range []struct{ n, waiting, size int }{{2500, 0, 5000}, {0, 2500, 5000}, {100, 2500, 5000}} {
		if !behind(c.n, c.waiting, c.size) {
			t.Errorf("behind(%d, %d, %d) = false", c.n, c.waiting, c.size)
		}
	}
	if behind(100, 100, 5000) {
		t.Error("a batch of 100 with 100 waiting counts as behind")
	}
	var yields atomic.Int64
	defer func(h func()) { yieldHook = h }(yieldHook)
	yieldHook = func() { yields.Add(1) }

	for _, c := range []struct {
		name    string
		records int
		delay   time.Duration
		yield   bool
	}{
		{"3 full batches", 3000, time.Hour, false},
		{"one small batch", 100, 10 * time.Millisecond, true},
	} {
		dir := t.TempDir()
		l := openLedger(t, filepath.Join(dir, "ledger"))
		appendEvents(t, l.Ledger, 0, c.records, time.Millisecond)
		ix, err := Open(filepath.Join(dir, "index.db"), Options{BatchSize: 1000, BatchDelay: c.delay})
		if err != nil {
			t.Fatal(err)
		}
		yields.Store(0)
		runUntil(t, ix, l, uint64(c.records))
		ix.Close()
		if got := yields.Load(); (got > 0) != c.yield {
			t.Errorf("%s: the writer yielded %d times, want yields: %v", c.name, got, c.yield)
		}
	}
}
