package index

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/ledger"
)

// rawIDHits is lookupID without dropping repeats: every ledger index the
// runs of one snapshot list for event.id v, once per run entry.
func rawIDHits(ctx context.Context, ix *Index, v string) ([]uint64, error) {
	tx, err := ix.readTx(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return ix.idHits(ctx, tx, fEventID, v, maxIDCandidates+1)
}

// mergesAgain checks that an index whose level-2 merge was lost (closed
// or killed between preparing and swapping it) still has the level-1
// runs and finds each of its next records once, then runs it until the merge is done again and checks
// again.
func mergesAgain(t *testing.T, ix *Index, l *testLedger, next int, when string) {
	t.Helper()
	if n := levelRuns(t, ix); n[2] != 0 || n[1] < idFanout {
		t.Fatalf("runs by level %v %s, want %d+ of level 1 and none of level 2", n, when, idFanout)
	}
	checkAllIDs(t, ix, 0, next)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- ix.Run(ctx, l) }()
	growUntil(t, l, ix, &next, func() bool { return levelRuns(t, ix)[2] == 1 })
	cancel()
	if err := <-runErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	checkAllIDs(t, ix, 0, next)
}

// levelRuns counts the id runs of each level.
func levelRuns(t *testing.T, ix *Index) [idMaxLevel + 1]int {
	t.Helper()
	var n [idMaxLevel + 1]int
	rs, err := runs(context.Background(), ix.r, -1)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		n[r.lvl]++
	}
	return n
}

// checkAllIDs fails unless every record from from to n-1 is found by its
// event.id exactly once.
func checkAllIDs(t *testing.T, ix *Index, from, n int) {
	t.Helper()
	for i := from; i < n; i++ {
		got, err := rawIDHits(context.Background(), ix, fmt.Sprintf("ev-%08d", i))
		if err != nil || len(got) != 1 || got[0] != uint64(i) {
			t.Fatalf("record %d: event.id gives %v, %v; want it once", i, got, err)
		}
	}
}

// growUntil appends records to l, a few at a time, until cond holds
// (bounded).
func growUntil(t *testing.T, l *testLedger, ix *Index, next *int, cond func() bool) {
	t.Helper()
	for range 300 {
		if cond() {
			return
		}
		appendEvents(t, l.Ledger, *next, 5, time.Millisecond)
		*next += 5
		wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ix.WaitIndexed(wctx, uint64(*next))
		cancel()
	}
	t.Fatalf("condition not met after %d records", *next)
}

// TestLevel2MergeOffTheWriter: the merge of idFanout level-1 runs into one
// of level 2 (2^20 records at the default block size) is prepared by
// another goroutine while the writer goes on indexing, and swapped in by a
// later batch. Held before it reads anything, the writer still indexes
// well past the boundary (it never waits for the merge's reading and
// sorting); lookups from another goroutine meanwhile, and across the swap,
// find every id exactly once.
func TestLevel2MergeOffTheWriter(t *testing.T) {
	// Not parallel: a small blockSize, so that level 2 is 1,024 records.
	defer func(b uint64) { blockSize = b }(blockSize)
	blockSize = 4
	boundary := int(idFanout * idFanout * blockSize)
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	next := boundary + 3*int(idFanout*blockSize)
	appendEvents(t, l.Ledger, 0, next, time.Millisecond)
	ix := openIndexOn(t, filepath.Join(dir, "index.db"), l)
	started, release := make(chan struct{}), make(chan struct{})
	ix.prepareHook = func() {
		close(started)
		<-release
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- ix.Run(ctx, l) }()

	select {
	case <-started:
	case <-time.After(60 * time.Second):
		t.Fatal("the level-2 merge was never prepared")
	}
	// Lookups of the ids below the boundary (indexed: the merge is prepared
	// after the commit that sealed their runs), from another goroutine,
	// until the swap is done and looked up once more.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var lookErr error
	sweeps := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for last := false; !last; sweeps++ {
			select {
			case <-stop:
				last = true
			default:
			}
			for i := 0; i < boundary; i += 7 {
				got, err := rawIDHits(context.Background(), ix, fmt.Sprintf("ev-%08d", i))
				if err != nil || len(got) != 1 || got[0] != uint64(i) {
					lookErr = fmt.Errorf("sweep %d: record %d: event.id gives %v, %v; want it once", sweeps, i, got, err)
					return
				}
			}
		}
	}()

	// The preparing goroutine is held: the writer indexes everything
	// appended, past the boundary, without the merge.
	if err := waitIndexing(ix, uint64(next)); err != nil {
		t.Fatalf("writer stopped while the merge was held: %v", err)
	}
	if n := levelRuns(t, ix); n[2] != 0 || n[1] < idFanout {
		t.Fatalf("runs by level %v while the merge is held, want %d+ of level 1 and none of level 2", n, idFanout)
	}
	// Lookups in the middle of the swap (its inputs deleted, the merged
	// run not yet inserted, uncommitted), from the read pool, while the
	// writer waits.
	var swapErr error
	swapLookups := 0
	ix.swapHook = func() {
		for i := 0; i < boundary && swapErr == nil; i += 3 {
			got, err := rawIDHits(context.Background(), ix, fmt.Sprintf("ev-%08d", i))
			if err != nil || len(got) != 1 || got[0] != uint64(i) {
				swapErr = fmt.Errorf("during the swap: record %d: event.id gives %v, %v; want it once", i, got, err)
			}
			swapLookups++
		}
	}
	close(release)
	growUntil(t, l, ix, &next, func() bool { return levelRuns(t, ix)[2] == 1 })
	close(stop)
	wg.Wait()
	if lookErr != nil {
		t.Fatal(lookErr)
	}
	cancel()
	if err := <-runErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if swapErr != nil || swapLookups == 0 {
		t.Fatalf("%d lookups during the swap: %v", swapLookups, swapErr)
	}
	if c := ix.mergeCounts; c.prepared != 1 || c.applied != 1 || c.discarded != 0 {
		t.Fatalf("merges %+v, want one prepared and applied", c)
	}
	rs, err := runs(context.Background(), ix.r, 2)
	if err != nil || len(rs) != 1 || rs[0].lo != 0 || rs[0].hi != idFanout*idFanout-1 {
		t.Fatalf("level-2 runs %v, %v; want one of blocks 0-%d", rs, err, idFanout*idFanout-1)
	}
	checkAllIDs(t, ix, 0, next)
	t.Logf("%d lookup sweeps", sweeps)
}

// TestLevel2MergeLostAtClose: an index closed after the merge was
// prepared and before it was swapped in (as by a crash: nothing of it is
// written before the swap) holds every id once; reopened, the merge is
// prepared again and swapped in.
func TestLevel2MergeLostAtClose(t *testing.T) {
	defer func(b uint64) { blockSize = b }(blockSize)
	blockSize = 4
	boundary := int(idFanout * idFanout * blockSize)
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	next := boundary + int(idFanout*blockSize)
	appendEvents(t, l.Ledger, 0, next, time.Millisecond)
	path := filepath.Join(dir, "index.db")
	ix, err := Open(path, Options{Ledger: l})
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	ix.prepareHook = func() {
		close(started)
		<-release
	}
	runUntil(t, ix, l, uint64(next))
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the level-2 merge was never prepared")
	}
	close(release)
	<-ix.merging.done // prepared, never applied: Run has returned
	if ix.merging.err != nil || ix.merging.stale || len(ix.merging.chunks) == 0 {
		t.Fatalf("prepared merge: err %v, stale %v, %d chunks", ix.merging.err, ix.merging.stale, len(ix.merging.chunks))
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}

	ix = openIndexOn(t, path, l)
	mergesAgain(t, ix, l, next, "after close")
}

// TestLevel2MergeDiscardedAfterPrune: a prune between the merge's
// preparation and its swap deletes one of its input runs; the prepared run
// (which holds that run's ids) is discarded, not swapped in, and the runs
// left are merged later.
func TestLevel2MergeDiscardedAfterPrune(t *testing.T) {
	defer func(b uint64) { blockSize = b }(blockSize)
	blockSize = 4
	// Pruned before the goroutine reads the runs (it finds them gone), or
	// after (the swap finds them gone).
	for _, afterRead := range []bool{false, true} {
		t.Run(fmt.Sprintf("after read %v", afterRead), func(t *testing.T) { testMergeDiscarded(t, afterRead) })
	}
}

func testMergeDiscarded(t *testing.T, afterRead bool) {
	boundary := int(idFanout * idFanout * blockSize)
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	next := boundary + int(idFanout*blockSize)
	appendEvents(t, l.Ledger, 0, next, time.Millisecond)
	ix := openIndexOn(t, filepath.Join(dir, "index.db"), l)
	// The preparation waits for release until Run has returned: a merge
	// left to finish while Run went on could be swapped in by a later
	// batch before the prune.
	release := make(chan struct{})
	ix.prepareHook = func() { <-release }
	runUntil(t, ix, l, uint64(next))
	if ix.merging == nil {
		t.Fatal("the level-2 merge was never prepared")
	}
	// The first level-1 run covers blocks 0-15: pruned whole.
	cut := int((idFanout + 2) * blockSize)
	ctx := context.Background()
	if afterRead {
		close(release)
		<-ix.merging.done
		if ix.merging.stale || ix.merging.err != nil {
			t.Fatalf("prepared merge: stale %v, err %v", ix.merging.stale, ix.merging.err)
		}
	}
	if err := ix.prune(ctx, uint64(cut)); err != nil {
		t.Fatal(err)
	}
	if !afterRead {
		close(release)
	}
	<-ix.merging.done
	if err := ix.applyMerge(ctx); err != nil {
		t.Fatal(err)
	}
	if c := ix.mergeCounts; c.prepared != 1 || c.applied != 0 || c.discarded != 1 {
		t.Fatalf("merges %+v, want one prepared and discarded", c)
	}
	if n := levelRuns(t, ix); n[2] != 0 {
		t.Fatalf("runs by level %v after the prune, want none of level 2", n)
	}
	checkAllIDs(t, ix, int(idFanout*blockSize), next)
	rctx, cancel := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- ix.Run(rctx, l) }()
	growUntil(t, l, ix, &next, func() bool { return levelRuns(t, ix)[2] == 1 })
	cancel()
	if err := <-runErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	checkAllIDs(t, ix, int(idFanout*blockSize), next)
	if got, err := rawIDHits(ctx, ix, "ev-00000000"); err != nil || len(got) != 0 {
		t.Fatalf("a pruned record's id gives %v, %v", got, err)
	}
}

// TestLevel2CrashChild is the process TestLevel2MergeKilled kills; it
// only runs when started by it. Its level-2 merge is held before reading
// anything, so the kill lands between preparation and swap.
func TestLevel2CrashChild(t *testing.T) {
	dir := os.Getenv("TRAILGUARD_INDEX_L2CRASH_DIR")
	if dir == "" {
		t.Skip("helper process for TestLevel2MergeKilled")
	}
	blockSize = 4
	l, err := ledger.OpenReadOnly(filepath.Join(dir, "ledger"))
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	ix, err := Open(filepath.Join(dir, "index.db"), Options{BatchSize: 100, BatchDelay: time.Millisecond})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	ix.prepareHook = func() {
		fmt.Println("PREPARING")
		select {} // until killed
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		for last := uint64(0); ctx.Err() == nil; time.Sleep(time.Millisecond) {
			if n := ix.Indexed(); n != last {
				fmt.Println("AT", n)
				last = n
			}
		}
	}()
	fmt.Println("DONE", ix.Run(ctx, l))
	os.Exit(4) // not killed within a minute
}

// TestLevel2MergeKilled: a process killed (SIGKILL) after it started
// preparing a level-2 merge and indexed past it, before the swap, leaves
// an index that holds every id once; a restart merges the runs again.
func TestLevel2MergeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	defer func(b uint64) { blockSize = b }(blockSize)
	blockSize = 4
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	next := int(idFanout*idFanout*blockSize) + 3*int(idFanout*blockSize)
	appendEvents(t, l.Ledger, 0, next, time.Millisecond)
	l.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestLevel2CrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TRAILGUARD_INDEX_L2CRASH_DIR="+dir)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.StartChild(t, cmd); err != nil {
		t.Fatal(err)
	}
	ready, want := make(chan struct{}), next
	go func() {
		sc := bufio.NewScanner(pipe)
		preparing, at, closed := false, 0, false
		for sc.Scan() {
			preparing = preparing || sc.Text() == "PREPARING"
			fmt.Sscanf(sc.Text(), "AT %d", &at)
			if preparing && at >= want && !closed {
				close(ready)
				closed = true
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("child neither prepared the merge nor indexed %d records in 60 s", next)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	l = openLedgerKey(t, filepath.Join(dir, "ledger"), l.signerKey)
	ix := openIndexOn(t, filepath.Join(dir, "index.db"), l)
	if got := ix.Indexed(); got != uint64(next) {
		t.Fatalf("indexed %d after the kill, want %d", got, next)
	}
	mergesAgain(t, ix, l, next, "after the kill")
}

// TestLevel2MergeClosedDuringPrepare: Close while the merge is being
// prepared cancels it and waits for its goroutine (which reads on the read
// pool Close then closes): Close returns once the goroutine has ended, the
// merge ends with the cancellation, nothing of it is written, and the
// reopened index holds every id once. Close on an index whose Run noted a
// merge does not start one either.
func TestLevel2MergeClosedDuringPrepare(t *testing.T) {
	defer func(b uint64) { blockSize = b }(blockSize)
	blockSize = 4
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	next := int(idFanout*idFanout*blockSize) + int(idFanout*blockSize)
	appendEvents(t, l.Ledger, 0, next, time.Millisecond)
	path := filepath.Join(dir, "index.db")
	ix, err := Open(path, Options{Ledger: l})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	cancelled := make(chan bool, 1)
	ix.prepareHook = func() {
		close(started)
		select {
		case <-ix.bgCtx.Done():
			// Still running a while after the cancellation: a Close that
			// did not wait would return first.
			time.Sleep(50 * time.Millisecond)
			cancelled <- true
		case <-time.After(60 * time.Second):
			// Counted from the merge's start, before runUntil has even
			// returned: a loaded machine may take seconds to get to Close.
			cancelled <- false
		}
	}
	runUntil(t, ix, l, uint64(next))
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the level-2 merge was never prepared")
	}
	m := ix.merging
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.done:
	default:
		t.Fatal("Close returned before the preparing goroutine ended")
	}
	if !<-cancelled {
		t.Fatal("Close did not cancel the merge being prepared")
	}
	if !errors.Is(m.err, context.Canceled) || len(m.chunks) != 0 {
		t.Fatalf("merge after Close: err %v, %d chunks; want context.Canceled and none", m.err, len(m.chunks))
	}

	// A merge noted but not started when Close came (a Run that outlived
	// Close, which it must not): none starts after.
	ix.merging, ix.mergeNext = nil, m.in
	ix.prepareHook = func() { t.Error("a merge was prepared after Close") }
	ix.startMerge()
	if ix.merging != nil {
		t.Fatal("startMerge after Close started a merge")
	}

	ix = openIndexOn(t, path, l)
	if n := levelRuns(t, ix); n[2] != 0 || n[1] < idFanout {
		t.Fatalf("runs by level %v after close, want %d+ of level 1 and none of level 2", n, idFanout)
	}
	checkAllIDs(t, ix, 0, next)
}

// TestLevel2MergePrepareError: a merge whose preparation fails (a chunk
// of an input run that does not decode: a damaged file) fails the batch
// that would swap it in, with the cause; nothing is swapped in and the
// inputs stay.
func TestLevel2MergePrepareError(t *testing.T) {
	defer func(b uint64) { blockSize = b }(blockSize)
	blockSize = 4
	ix := openIndex(t, filepath.Join(t.TempDir(), "i.db"))
	ctx := context.Background()
	rs := level1Runs(t, ix)
	if _, err := ix.w.ExecContext(ctx, `UPDATE idchunks SET data = x'ff' WHERE run = ?`, rs[3].run); err != nil {
		t.Fatal(err)
	}
	ix.mergeNext = rs
	ix.startMerge()
	<-ix.merging.done
	err := ix.applyMerge(ctx)
	if !errors.Is(err, errBadChunk) {
		t.Fatalf("swap of a merge whose reading failed: %v, want %v", err, errBadChunk)
	}
	if ix.merging != nil || ix.mergeCounts.applied != 0 {
		t.Fatalf("merge still pending (%v) or applied (%+v)", ix.merging != nil, ix.mergeCounts)
	}
	if n := levelRuns(t, ix); n[2] != 0 || n[1] != idFanout {
		t.Fatalf("runs by level %v, want the %d inputs and none of level 2", n, idFanout)
	}
}
