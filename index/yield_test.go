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
	// Blocks as long as a batch: batches then end with blocks, so that
	// the writer behind makes 3 full batches of the 3000 records (with
	// TestMain's small blocks it ends each batch with a block instead,
	// TestBehindWriterStoresBlocksOnce, and the last records would wait
	// for the hour-long BatchDelay).
	defer func(b uint64) { blockSize = b }(blockSize)
	blockSize = 1000
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

// TestBehindWriterStoresBlocksOnce: a writer behind the ledger ends its
// batches with blocks, so that it encodes and writes each block (and its
// ids) once, not once more for every batch that adds rows to it. Here
// batches of up to 1000 rows and blocks of 600: cut at 1000 rows, the
// 10800 records take 25 block writes (a block written again by each batch
// that ends inside it); ended with blocks, 18. The blocks' id runs are merged as blocks
// fill (a batch that starts a block seals the ones before), and the index
// answers for every record.
// Not parallel: it sets blockSize.
func TestBehindWriterStoresBlocksOnce(t *testing.T) {
	defer func(b uint64) { blockSize = b }(blockSize)
	blockSize = 600
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	const n = 18 * 600
	appendEvents(t, l.Ledger, 0, n, time.Millisecond)
	ix, err := Open(filepath.Join(dir, "index.db"), Options{BatchSize: 1000, BatchDelay: time.Hour, Ledger: l.Ledger})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	runUntil(t, ix, l, n)
	if ix.stores != n/600 {
		t.Errorf("%d block writes for %d blocks", ix.stores, n/600)
	}
	// The blocks' id runs were merged as blocks filled: idFanout (16) of
	// the 18 blocks' runs are one run of level 1.
	tx, err := ix.readTx(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rs, err := runs(context.Background(), tx, -1)
	tx.Rollback()
	if err != nil {
		t.Fatal(err)
	}
	levels := map[int]int{}
	for _, r := range rs {
		levels[r.lvl]++
	}
	if levels[1] != 1 || levels[0] != 2 || len(rs) != 3 {
		t.Errorf("id runs by level %v, want 2 of level 0 and 1 of level 1", levels)
	}
	if rows, lo, hi := count(t, ix); rows != n || lo != 0 || hi != n-1 {
		t.Errorf("index holds %d rows, %d..%d; want %d, 0..%d", rows, lo, hi, n, n-1)
	}
	for _, i := range []int{0, 599, 600, 1234, n - 1} {
		ev := genEvent(i, time.Millisecond)
		got, err := ix.ByEventID(context.Background(), ev.ID)
		if err != nil || got.Index != uint64(i) {
			t.Errorf("ByEventID(%s) = %v, %v; want record %d", ev.ID, got.Index, err, i)
		}
	}
}
