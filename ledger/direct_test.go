package ledger

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestDirectWrites: segments zeroed ahead are written with O_DIRECT, a
// block at a time, the block holding the end of the last write written
// again. Records of every size (within one block, across blocks, larger
// than what is left of a zeroed segment, larger than a segment) from
// several callers at once read back byte for byte, from the running
// ledger, from a copy of its directory taken while it runs (a crash), and
// after Close and Open; closed segments keep no zeros, and verify finds
// nothing.
func TestDirectWrites(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = 16 << 10
	opts.DisableCompression = true
	dir := t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	var sizes []int
	for range 400 {
		switch rng.IntN(10) {
		case 0:
			sizes = append(sizes, 4096-frameOverhead) // a frame of exactly one block
		case 1:
			sizes = append(sizes, 5000+rng.IntN(9000)) // across blocks
		default:
			sizes = append(sizes, rng.IntN(700))
		}
	}
	sizes[150] = 20 << 10 // larger than a segment: past the zeros
	want := map[uint64][]byte{}
	var mu sync.Mutex
	appendSome := func(w int, from, to int) {
		rng := rand.New(rand.NewPCG(uint64(w), 3))
		for i := from; i < to; {
			n := min(1+rng.IntN(6), to-i)
			if i <= 150 && 150 < i+n {
				// The record larger than a segment goes into a segment
				// zeroed ahead: written directly up to the zeros' end?
				// No: past them, through the page cache.
				n = 150 - i
				if n == 0 {
					waitZeroedAhead(t, dir, opts.SegmentSize)
					n = 1
				}
			}
			recs := make([][]byte, n)
			for j := range recs {
				r := fmt.Appendf(nil, "w%d-r%d-", w, i+j)
				recs[j] = append(r, bytes.Repeat([]byte{byte('a' + (i+j)%26)}, max(0, sizes[i+j]-len(r)))...)
			}
			first, err := l.Append(context.Background(), recs...)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			for j, r := range recs {
				want[first+uint64(j)] = r
			}
			mu.Unlock()
			i += n
			if rng.IntN(8) == 0 {
				time.Sleep(time.Millisecond) // let a segment be zeroed ahead
			}
		}
	}
	// One caller first (each write follows the last in its block), then
	// four at once (writes of several requests).
	appendSome(0, 0, 200)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			appendSome(w+1, 200+w*50, 250+w*50)
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if l.direct.Load() == 0 || l.directOut.Load() == 0 {
		t.Fatalf("%d direct writes, %d segments left for the page cache past their zeros; want both", l.direct.Load(), l.directOut.Load())
	}
	if a := newAIO(); a != nil {
		// Where the system has AIO, every direct write went through it
		// (aio_linux.go), and what is read back below is what it wrote.
		a.close()
		if l.aioWrites.Load() != l.direct.Load() {
			t.Fatalf("%d of %d direct writes through AIO, want all", l.aioWrites.Load(), l.direct.Load())
		}
		// And each was followed by a flush through AIO, which the syncer
		// waited for (TestDirectWritesPipelined); the other flushes are
		// fdatasyncs of batches written through the page cache.
		if n := l.flushes.Load() - l.cacheFlushes.Load(); n != l.direct.Load() {
			t.Fatalf("%d flushes submitted for %d direct writes, want one each", n, l.direct.Load())
		}
	} else if runtime.GOOS == "linux" {
		t.Log("no AIO here: direct writes were pwrites")
	}
	check := func(what string, l *Ledger, n int) {
		t.Helper()
		checkReadBack(t, what+": ", l, want, n, false)
	}
	check("running", l, len(want))
	crashed := t.TempDir()
	copyTree(t, dir, crashed)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, s := range mustSegments(t, filepath.Join(dir, "seg")) {
		res, err := scanSegment(s.path, s.first, maxFrameLen)
		if err != nil || res.end != res.size {
			t.Fatalf("segment %s: records end at %d, file is %d bytes (%v)", s.path, res.end, res.size, err)
		}
	}
	if rep := verifyDir(t, dir, k, ""); !rep.OK() || rep.Records != uint64(len(want)) {
		t.Fatalf("verify: %d records, want %d\n%s", rep.Records, len(want), rep)
	}
	n := len(want)
	for _, d := range []string{dir, crashed} {
		l2, err := Open(d, opts)
		if err != nil {
			t.Fatal(err)
		}
		check("reopened "+filepath.Base(d), l2, n)
		if d == dir {
			// The segment active at Open is zeroed to its end by Open
			// and written directly too, from the middle of a block.
			deadline := time.Now().Add(10 * time.Second)
			for i := 0; l2.direct.Load() == 0; i++ {
				if time.Now().After(deadline) {
					t.Fatal("the segment active at Open was never written directly")
				}
				r := fmt.Appendf(nil, "after-open-%d-%s", i, bytes.Repeat([]byte{'z'}, i%50))
				first, err := l2.Append(context.Background(), r)
				if err != nil {
					t.Fatal(err)
				}
				want[first] = r
				time.Sleep(time.Millisecond)
			}
			check("appended after Open", l2, len(want))
		}
		if err := l2.Close(); err != nil {
			t.Fatal(err)
		}
		if d == dir {
			if rep := verifyDir(t, dir, k, ""); !rep.OK() || rep.Records != uint64(len(want)) {
				t.Fatalf("verify after Open: %d records, want %d\n%s", rep.Records, len(want), rep)
			}
		}
	}
}

// waitZeroedAhead waits until the next segment is zeroed ahead and synced.
func waitZeroedAhead(t *testing.T, dir string, size int64) {
	t.Helper()
	ahead := filepath.Join(dir, "seg", zeroAheadName)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err := os.Stat(ahead); err == nil && st.Size() == size {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no segment zeroed ahead")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // its fsync
}

// TestDirectWritesLargeBatches: in a segment written directly, a batch
// larger than directMax goes through the page cache (synced by the
// syncer), and the direct writes after it start from its last block.
func TestDirectWritesLargeBatches(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = 1 << 20
	opts.DisableCompression = true
	dir := t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	add := func(recs ...[]byte) {
		t.Helper()
		first, err := l.Append(context.Background(), recs...)
		if err != nil {
			t.Fatal(err)
		}
		if first != uint64(len(want)) {
			t.Fatalf("appended at %d, want %d", first, len(want))
		}
		want = append(want, recs...)
	}
	small := func(i int) []byte { return fmt.Appendf(nil, "small-%d-%s", i, bytes.Repeat([]byte{'s'}, i%300)) }
	// The segment active at Open is written directly once zeroed.
	appendUntilDirect(t, l, func(int) error { add(small(len(want))); return nil })
	for round := range 3 {
		big := make([][]byte, 50)
		for i := range big {
			big[i] = fmt.Appendf(nil, "big-%d-%d-%s", round, i, bytes.Repeat([]byte{'B'}, 4000+i))
		}
		add(big...) // ~200 KiB: through the page cache
		direct := l.direct.Load()
		for range 5 {
			add(small(len(want)))
		}
		if l.direct.Load() == direct {
			t.Fatal("no direct write after the large batch")
		}
	}
	got := 0
	for e, err := range l.Entries(0) {
		if err != nil {
			t.Fatalf("record %d: %v", got, err)
		}
		if !bytes.Equal(e.Data, want[e.Index]) {
			t.Fatalf("record %d reads back as %.40q…, want %.40q…", e.Index, e.Data, want[e.Index])
		}
		got++
	}
	if got != len(want) {
		t.Fatalf("%d records, want %d", got, len(want))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyDir(t, dir, k, ""); !rep.OK() || rep.Records != uint64(len(want)) {
		t.Fatalf("verify: %d records, want %d\n%s", rep.Records, len(want), rep)
	}
}

// TestDirectWritesWhileSyncing: in a segment written directly, a batch
// written while the syncer is busy (here: a checkpoint asked for while it
// syncs a large batch) goes through the page cache, to be synced with the
// rest, and the direct writes after it start from the block it ended in.
// Not parallel: it holds the package's sync hook.
func TestDirectWritesWhileSyncing(t *testing.T) {
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = 1 << 20
	opts.DisableCompression = true
	opts.CheckpointInterval, opts.IdleInterval = time.Hour, time.Hour
	dir := t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var sent appended
	add := func(recs ...[]byte) error { _, err := sent.add(l, recs...); return err }
	small := func(i int) []byte { return fmt.Appendf(nil, "small-%d-%s", i, bytes.Repeat([]byte{'s'}, 20+i%40)) }
	appendUntilDirect(t, l, func(i int) error { return add(small(i)) })
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	hook := syncFunc(func(f *os.File) error {
		if strings.HasPrefix(f.Name(), dir) {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
		}
		return datasync(f)
	})
	syncHook.Store(&hook)
	defer syncHook.Store(nil)
	errs := make(chan error, 3)
	big := make([][]byte, 50)
	for i := range big {
		big[i] = bytes.Repeat([]byte{'B'}, 4000+i)
	}
	go func() { errs <- add(big...) }() // through the page cache: its sync waits
	<-entered
	go func() { errs <- add(small(1000)) }() // held while the syncer is busy
	time.Sleep(20 * time.Millisecond)
	go func() { _, err := l.Checkpoint(context.Background()); errs <- err }() // written now, syncer busy
	time.Sleep(20 * time.Millisecond)
	direct := l.direct.Load()
	close(release)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	syncHook.Store(nil)
	if l.direct.Load() != direct {
		t.Fatal("written directly while the syncer was busy")
	}
	for i := range 5 {
		if err := add(small(2000 + i)); err != nil {
			t.Fatal(err)
		}
	}
	if l.direct.Load() == direct {
		t.Fatal("no direct write afterwards")
	}
	checkReadBack(t, "", l, sent.recs, len(sent.recs), true)
}

// TestDirectWritesRefused: a file system that takes O_DIRECT at open and
// refuses its writes (EINVAL) costs one refused write, not a failed batch
// per segment: the batch goes through the page cache, and so does every
// segment after it; every record reads back and verify finds nothing.
// Not parallel: directWriteHook is the package's.
func TestDirectWritesRefused(t *testing.T) {
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = 16 << 10
	opts.DisableCompression = true
	dir := t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64][]byte{}
	add := func(i int) {
		t.Helper()
		r := fmt.Appendf(nil, "r%d-%s", i, bytes.Repeat([]byte{byte('a' + i%26)}, 300))
		first, err := l.Append(context.Background(), r)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		want[first] = r
	}
	i := appendUntilDirect(t, l, func(i int) error { add(i); return nil })
	var calls atomic.Int32
	hook := func(p []byte, off int64) error {
		calls.Add(1)
		return &os.PathError{Op: "write", Path: "segment", Err: syscall.EINVAL}
	}
	directWriteHook.Store(&hook)
	defer directWriteHook.Store(nil)
	direct := l.direct.Load()
	segs := len(mustSegments(t, filepath.Join(dir, "seg")))
	for end := i + 200; i < end; i++ {
		add(i) // ~3 segments more, each zeroed ahead while the last fills
		if i%8 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if n := len(mustSegments(t, filepath.Join(dir, "seg"))); n < segs+2 {
		t.Fatalf("%d segments after %d: the test needs rotations", n, segs)
	}
	if calls.Load() != 1 || l.directOff.Load() != 1 || l.direct.Load() != direct {
		t.Fatalf("%d direct writes refused (%d counted), %d made since; want 1, 1, 0", calls.Load(), l.directOff.Load(), l.direct.Load()-direct)
	}
	checkReadBack(t, "", l, want, len(want), false)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyDir(t, dir, k, ""); !rep.OK() || rep.Records < uint64(len(want)) {
		t.Fatalf("verify: %d records, want %d\n%s", rep.Records, len(want), rep)
	}
}

// checkReadBack reads every record of l: those in want must read back
// byte for byte and there must be at least n records; exact, every record
// must be in want and there must be exactly n.
func checkReadBack(t *testing.T, prefix string, l *Ledger, want map[uint64][]byte, n int, exact bool) {
	t.Helper()
	got := 0
	for e, err := range l.Entries(0) {
		if err != nil {
			t.Fatalf("%srecord %d: %v", prefix, got, err)
		}
		if w, ok := want[e.Index]; (ok || exact) && !bytes.Equal(e.Data, w) {
			t.Fatalf("%srecord %d reads back as %.40q…, want %.40q…", prefix, e.Index, e.Data, w)
		}
		got++
	}
	if got < n || exact && got != n {
		t.Fatalf("%s%d records, want %d", prefix, got, n)
	}
}

// TestDirectWritesPipelined: while the syncer waits for the flush of one
// direct write, the sequencer writes the next batch directly (after the
// first write completed: both write the block at their boundary) and
// submits its flush, up to flushDepth batches; no caller hears back
// before the flushes of its batch and of every batch before it, and
// acknowledgements stay in order. Not parallel: flushWaitHook is the
// package's.
func TestDirectWritesPipelined(t *testing.T) {
	l, dir, k := openFlushPipeline(t, 0, 1<<20)
	want := map[uint64][]byte{}
	var mu sync.Mutex
	rec := func(i int) []byte { return fmt.Appendf(nil, "p-%d-%s", i, bytes.Repeat([]byte{'p'}, 100+i%300)) }
	add := func(i int) (uint64, error) {
		r := rec(i)
		first, err := l.Append(context.Background(), r)
		mu.Lock()
		want[first] = r
		mu.Unlock()
		return first, err
	}
	appendUntilDirect(t, l, func(i int) error { _, err := add(i); return err })
	release := make(chan struct{})
	var held atomic.Int32
	entered := make(chan uint64, 8)
	hook := func(ticket uint64) {
		if held.Add(1) == 1 {
			entered <- ticket
			<-release
		}
	}
	flushWaitHook.Store(&hook)
	defer flushWaitHook.Store(nil)
	type result struct {
		n     int
		first uint64
		err   error
	}
	results := make(chan result, 16)
	start := func(n int) { go func() { f, err := add(1000 + n); results <- result{n, f, err} }() }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(100 * time.Microsecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never %s", what)
			}
		}
	}
	flushes := l.flushes.Load()
	start(0) // A: written, flushed; the syncer is held before its wait
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the syncer never waited for a flush")
	}
	depth := int(flushDepth)
	for n := 1; n < depth; n++ {
		start(n) // B…: written directly behind it, flushes submitted
		waitFor(fmt.Sprintf("wrote batch %d while the first one's flush was awaited", n+1), func() bool { return l.flushes.Load() == flushes+uint64(n+1) })
	}
	start(depth) // flushDepth batches wait for their flushes: held
	time.Sleep(30 * time.Millisecond)
	if n := l.flushes.Load(); n != flushes+uint64(depth) {
		t.Fatalf("%d batches written while %d waited for their flushes, want none", n-flushes-uint64(depth), depth)
	}
	select {
	case r := <-results:
		t.Fatalf("append %d answered (%v) before the first batch's flush was awaited", r.n, r.err)
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	firsts := map[int]uint64{}
	for range depth + 1 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		firsts[r.n] = r.first
	}
	if firsts[0] >= firsts[1] {
		t.Fatalf("A at %d, B at %d: want A first", firsts[0], firsts[1])
	}
	if d := l.Size(); d <= firsts[1] {
		t.Fatalf("durable size %d after B (at %d) was acknowledged", d, firsts[1])
	}
	flushWaitHook.Store(nil)
	checkReadBack(t, "", l, want, len(want), true)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyDir(t, dir, k, ""); !rep.OK() || rep.Records != uint64(len(want)) {
		t.Fatalf("verify: %d records, want %d\n%s", rep.Records, len(want), rep)
	}
}

// TestDirectWritesAckedOwnFlush: batches whose flushes the syncer finds
// waiting together are acknowledged one at a time, each once its own
// flush (and every earlier one) completed, not all after the last one's.
// Not parallel: flushWaitHook and flushDepth are the package's.
func TestDirectWritesAckedOwnFlush(t *testing.T) {
	l, _, _ := openFlushPipeline(t, 3, 1<<20)
	rec := func(i int) []byte { return fmt.Appendf(nil, "o-%d-%s", i, bytes.Repeat([]byte{'o'}, 200)) }
	appendUntilDirect(t, l, func(i int) error { _, err := l.Append(context.Background(), rec(i)); return err })
	releaseP, releaseB := make(chan struct{}), make(chan struct{})
	entered := make(chan uint64, 8)
	var first atomic.Uint64
	hook := func(ticket uint64) {
		first.CompareAndSwap(0, ticket)
		switch p := first.Load(); {
		case ticket == p:
			entered <- ticket
			<-releaseP
		case ticket >= p+2:
			entered <- ticket
			<-releaseB
		}
	}
	flushWaitHook.Store(&hook)
	defer flushWaitHook.Store(nil)
	results := make(chan int, 3)
	start := func(n int) {
		go func() {
			if _, err := l.Append(context.Background(), rec(1000+n)); err != nil {
				t.Error(err)
			}
			results <- n
		}()
	}
	flushes := l.flushes.Load()
	start(0) // P: its flush's wait held
	tp := <-entered
	start(1) // A, then B: written behind it, both waiting when P is answered
	for deadline := time.Now().Add(10 * time.Second); l.flushes.Load() < flushes+2; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatal("A never written")
		}
	}
	start(2)
	for deadline := time.Now().Add(10 * time.Second); l.flushes.Load() < flushes+3; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatal("B never written")
		}
	}
	close(releaseP)
	// B's flush is held: P and A, whose flushes are not, are answered.
	for got := 0; got < 2; got++ {
		select {
		case n := <-results:
			if n == 2 {
				t.Fatal("B answered while its flush was held")
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("A not answered while B's flush was held (P's ticket %d): acknowledged with B", tp)
		}
	}
	<-entered
	close(releaseB)
	if n := <-results; n != 2 {
		t.Fatalf("append %d answered last, want B", n)
	}
}

// TestHeldWakeUp: a request the sequencer holds because flushDepth
// batches await their flushes is written once the syncer acknowledges
// them, even when they are acknowledged between the sequencer's look at
// the pipeline (none free: hold) and its wait (which then must still
// listen for the syncer). The sequencer is stopped at the top of its loop
// with the request held while the syncer acknowledges every batch and
// goes idle; before the fix it then waited for new requests only, and the
// held one waited for the checkpoint timer (an hour here; the ledger
// suite hung under load). Not parallel: the hooks are the package's.
func TestHeldWakeUp(t *testing.T) {
	l, _, _ := openFlushPipeline(t, 2, 1<<20)
	rec := func(i int) []byte { return fmt.Appendf(nil, "w-%d-%s", i, bytes.Repeat([]byte{'w'}, 150)) }
	appendUntilDirect(t, l, func(i int) error { _, err := l.Append(context.Background(), rec(i)); return err })
	release := make(chan struct{})
	var first atomic.Uint64
	fhook := func(ticket uint64) {
		if first.CompareAndSwap(0, ticket) {
			<-release
		}
	}
	flushWaitHook.Store(&fhook)
	defer flushWaitHook.Store(nil)
	results := make(chan int, 3)
	start := func(n int) {
		go func() {
			if _, err := l.Append(context.Background(), rec(1000+n)); err != nil {
				t.Error(err)
			}
			results <- n
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(100 * time.Microsecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never %s", what)
			}
		}
	}
	flushes := l.flushes.Load()
	start(0) // A: its flush's wait held
	waitFor("wrote A", func() bool { return first.Load() != 0 })
	start(1) // B: written behind it; now flushDepth batches wait
	waitFor("wrote B while A's flush was awaited", func() bool { return l.flushes.Load() == flushes+2 })
	atTop, proceed := make(chan struct{}), make(chan struct{})
	var armed atomic.Bool
	armed.Store(true)
	shook := func(held int) {
		if held > 0 && armed.CompareAndSwap(true, false) {
			close(atTop)
			<-proceed
		}
	}
	seqLoopHook.Store(&shook)
	defer seqLoopHook.Store(nil)
	start(2) // C: held, no slot free
	select {
	case <-atTop:
	case <-time.After(10 * time.Second):
		t.Fatal("C never held")
	}
	close(release)
	for range 2 {
		if n := <-results; n == 2 {
			t.Fatal("C answered while held")
		}
	}
	// The syncer goes idle once both are acknowledged.
	waitFor("idle syncer", func() bool { return l.pipe.Load() == 0 && len(l.syncIdle) == 1 })
	close(proceed)
	select {
	case <-results:
	case <-time.After(10 * time.Second):
		t.Fatal("C not answered with the syncer idle: the sequencer missed its wake-up")
	}
}

// TestPageCacheFlushesOverlap: a batch written through the page cache —
// one too large to be written directly into a segment written directly,
// or any batch in a segment not zeroed ahead (here: no direct writes at
// all) — gets its fdatasync submitted through AIO at once, with room in
// the pipeline, as a direct write's flush is: the next batch is written
// and its flush submitted while the first one's is awaited, and neither
// caller hears back before its own flush (and every earlier one)
// completed. Before, the syncer fdatasynced each such batch itself, and
// a batch written meanwhile waited to be synced with the next. Not
// parallel: flushWaitHook is the package's.
func TestPageCacheFlushesOverlap(t *testing.T) {
	for _, tc := range []struct {
		name     string
		noDirect bool
		recs     int // per batch
		size     int // bytes per record
	}{
		{"over directMax in a segment written directly", false, 50, 4000}, // 200 KB
		{"segment written through the page cache", true, 3, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testPageCacheFlushesOverlap(t, tc.noDirect, tc.recs, tc.size)
		})
	}
}

func testPageCacheFlushesOverlap(t *testing.T, noDirect bool, nrecs, size int) {
	l, dir, k := openFlushPipeline(t, 2, 4<<20, func(o *Options) { o.noDirect = noDirect })
	var sent appended
	add := func(recs ...[]byte) (uint64, error) { return sent.add(l, recs...) }
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; !noDirect && l.direct.Load() == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("never written directly")
		}
		if _, err := add(fmt.Appendf(nil, "warm-%d", i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	release := make(chan struct{})
	var first atomic.Uint64
	hook := func(ticket uint64) {
		if first.CompareAndSwap(0, ticket) {
			<-release
		}
	}
	flushWaitHook.Store(&hook)
	defer flushWaitHook.Store(nil)
	big := func(tag byte) [][]byte {
		recs := make([][]byte, nrecs)
		for i := range recs {
			recs[i] = bytes.Repeat([]byte{tag}, size+i)
		}
		return recs
	}
	type result struct {
		n     int
		first uint64
		err   error
	}
	results := make(chan result, 2)
	start := func(n int, recs [][]byte) {
		go func() { f, err := add(recs...); results <- result{n, f, err} }()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(100 * time.Microsecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never %s", what)
			}
		}
	}
	flushes, direct := l.flushes.Load(), l.direct.Load()
	start(0, big('A'))
	waitFor("awaited A's flush (submitted through AIO)", func() bool { return first.Load() != 0 })
	start(1, big('B'))
	waitFor("submitted B's flush while A's was awaited", func() bool { return l.flushes.Load() == flushes+2 })
	select {
	case r := <-results:
		t.Fatalf("append %d answered (%v) while A's flush was held", r.n, r.err)
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	firsts := map[int]uint64{}
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		firsts[r.n] = r.first
	}
	if firsts[0] >= firsts[1] {
		t.Fatalf("A at %d, B at %d: want A first", firsts[0], firsts[1])
	}
	if l.direct.Load() != direct {
		t.Fatal("a batch over directMax, or with direct writes off, was written directly")
	}
	flushWaitHook.Store(nil)
	checkReadBack(t, "", l, sent.recs, len(sent.recs), true)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyDir(t, dir, k, ""); !rep.OK() || rep.Records != uint64(len(sent.recs)) {
		t.Fatalf("verify: %d records, want %d\n%s", rep.Records, len(sent.recs), rep)
	}
}

// openFlushPipeline opens a ledger in a new directory whose small
// segments are written directly (unless a tweak of its options says otherwise; with its directory and key), for the flush pipeline's tests; it skips
// the test where the kernel has no AIO flushes. depth > 0 sets flushDepth
// for the test (so callers are not parallel).
func openFlushPipeline(t *testing.T, depth int64, segmentSize int64, tweak ...func(*Options)) (l *Ledger, dir string, k testKey) {
	t.Helper()
	if a := newFlusher("test"); a == nil {
		t.Skip("no AIO flushes here: each direct write is followed by an fdatasync")
	} else {
		a.close()
	}
	if depth > 0 {
		t.Cleanup(func(d int64) func() { return func() { flushDepth = d } }(flushDepth))
		flushDepth = depth
	}
	k = newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = segmentSize
	opts.DisableCompression = true
	opts.CheckpointInterval, opts.IdleInterval = time.Hour, time.Hour
	for _, f := range tweak {
		f(&opts)
	}
	dir = t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, dir, k
}

// appendUntilDirect calls add(0), add(1), … a millisecond apart until the
// ledger has written a batch directly (the segment active at Open is
// written directly only once zeroed ahead) and returns how many calls it
// made; it fails the test after 10 s or on add's error.
func appendUntilDirect(t *testing.T, l *Ledger, add func(i int) error) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	i := 0
	for ; l.direct.Load() == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("never written directly")
		}
		if err := add(i); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	return i
}

// TestFrameBuffersSizedOnce: the sequencer's framing buffers are allocated
// once to a batch's framed size (not grown by doubling: on this VM each
// page touched for the first time is a fault of 17–41 µs), kept for the
// batches after it, and not kept above frameBufKeep: a batch larger than
// that leaves the buffers kept before it in place.
func TestFrameBuffersSizedOnce(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = 64 << 20 // the large batch in one segment: one buffer
	opts.DisableCompression = true
	dir := t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	add := func(recs [][]byte) {
		t.Helper()
		if _, err := l.Append(context.Background(), recs...); err != nil {
			t.Fatal(err)
		}
		n += len(recs)
		// (The sequencer's buffers, read after it is idle: appends returned.)
		if b := bufBytes(cap(l.w.buf), cap(l.w.ibuf), cap(l.w.leaves)); b > frameBufKeep {
			t.Fatalf("after %d records: %d bytes of framing buffers kept, want at most %d", n, b, frameBufKeep)
		}
	}
	batch := func(count, size int) ([][]byte, int) {
		recs, framed := make([][]byte, count), 0
		for i := range recs {
			recs[i] = fmt.Appendf(nil, "%d-%d-%s", n, i, bytes.Repeat([]byte{'r'}, size+i%37))
			framed += len(recs[i]) + frameOverhead
		}
		return recs, framed
	}
	recs, framed := batch(700, 3000) // ~2.1 MB, the 64 × 64 burst's size
	add(recs)
	// Sized once: one allocation rounds up to the heap's page (8 KiB);
	// grown by appending, it was allocated again and again and ends past
	// that (2,195,456 bytes for these 2,127,839).
	if c := cap(l.w.buf); c < framed || c >= framed+8<<10 {
		t.Errorf("frame buffer of %d bytes after a batch of %d framed, want it sized to the batch", c, framed)
	}
	if c := cap(l.w.leaves); c < len(recs) || c > len(recs)+256 {
		t.Errorf("leaf hash buffer of %d after a batch of %d records, want it sized to the batch", c, len(recs))
	}
	kept := &l.w.buf[:1][0]
	recs, _ = batch(700, 2900)
	add(recs)
	if &l.w.buf[:1][0] != kept {
		t.Error("a batch no larger than the last did not reuse the frame buffer")
	}
	// Above the bound: grown as needed for the batch, not kept.
	recs, framed = batch(20, 1<<20-64)
	if bufBytes(framed, len(recs)*idxEntrySize, len(recs)) <= frameBufKeep {
		t.Fatalf("test batch of %d bytes, want one over frameBufKeep", framed)
	}
	add(recs)
	if &l.w.buf[:1][0] != kept {
		t.Errorf("after a batch of %d bytes, above frameBufKeep: frame buffer of %d kept, want the one before it", framed, cap(l.w.buf))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyDir(t, dir, k, ""); !rep.OK() || rep.Records != uint64(n) {
		t.Fatalf("verify: %d records, want %d\n%s", rep.Records, n, rep)
	}
}

// TestRecentLeavesMovedToFront: at an anchor the leaf hashes kept in
// memory move to the front of their array, so appends after it reuse the
// array (resliced from the front, every append after an anchor copied all
// of them into a new one), and the hashes kept are the right ones.
func TestRecentLeavesMovedToFront(t *testing.T) {
	a := newLeafAuth(nil)
	a.resetRecent(10)
	hs := make([]Hash, 200)
	for i := range hs {
		hs[i][0], hs[i][1] = byte(i), byte(i>>8)
	}
	a.addRecent(hs[:100])
	a.setAnchor(10+90, Hash{})
	arr := &a.recent[:1][0]
	a.addRecent(hs[100:150])
	if &a.recent[:1][0] != arr {
		t.Error("appending after an anchor moved the leaf hashes to a new array")
	}
	if a.recentBase != 100 || len(a.recent) != 60 {
		t.Fatalf("recent from %d, %d hashes; want from 100, 60", a.recentBase, len(a.recent))
	}
	for i, h := range a.recent {
		if h != hs[90+i] {
			t.Fatalf("hash of record %d is the one of %d", 100+i, 10+int(h[0])|int(h[1])<<8)
		}
	}
}

// TestLargeBatchInGroups: a large batch written with room in the pipeline
// is cut into request groups (write.go, batchGroups), each written and
// its flush submitted before the next: the syncer waits for one flush per
// group, no caller hears back before the flush of its own group (and of
// every group before it) completed, the first group is answered while the
// second's flush is awaited, and what is answered first is a prefix of the
// batch in index order. Fails with the batch written as one job (one flush
// awaited, nobody answered before all of it is flushed), with a group
// answered before its flush, or out of order. Not parallel: the hooks are
// the package's.
func TestLargeBatchInGroups(t *testing.T) {
	for _, noDirect := range []bool{false, true} {
		t.Run(fmt.Sprintf("noDirect=%v", noDirect), func(t *testing.T) {
			testLargeBatchInGroups(t, noDirect)
		})
	}
}

func testLargeBatchInGroups(t *testing.T, noDirect bool) {
	l, dir, k := openFlushPipeline(t, 0, 64<<20, func(o *Options) { o.noDirect = noDirect })
	var sent appended
	var mu sync.Mutex
	add := func(recs [][]byte) (uint64, error) { return sent.add(l, recs...) }
	one := func(i int) error { _, err := add([][]byte{fmt.Appendf(nil, "warm-%d", i)}); return err }
	if noDirect {
		// (The flusher is made by the first flush submitted.)
		for i := 0; l.flushes.Load() == 0; i++ {
			if i == 1000 {
				t.Fatal("no flush submitted through AIO")
			}
			if err := one(i); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		appendUntilDirect(t, l, one)
	}
	const nreq, nrec = 16, 64 // 16 requests of ~40 KB: ~660 KB, over groupMin
	framed := 0
	reqs := make([][][]byte, nreq)
	for i := range reqs {
		reqs[i] = make([][]byte, nrec)
		for j := range reqs[i] {
			reqs[i][j] = fmt.Appendf(nil, "g-%d-%d-%s", i, j, bytes.Repeat([]byte{'g'}, 600+j%50))
			framed += len(reqs[i][j]) + frameOverhead
		}
	}
	if framed < groupMin {
		t.Fatalf("test batch of %d bytes, want at least groupMin (%d)", framed, groupMin)
	}
	// The sequencer waits at the top of its loop until all of them are
	// in l.in, so that it takes them as one batch.
	var armed atomic.Bool
	shook := func(held int) {
		if held == 0 && armed.CompareAndSwap(true, false) {
			for deadline := time.Now().Add(10 * time.Second); l.inCount.Load() < nreq && time.Now().Before(deadline); {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	seqLoopHook.Store(&shook)
	defer seqLoopHook.Store(nil)
	// The syncer's waits for flushes from now on: the first and second
	// are held until released.
	var tickets []uint64
	var calls atomic.Int32
	var on atomic.Bool
	entered := make(chan uint64, 1)
	release := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	fhook := func(ticket uint64) {
		if !on.Load() {
			return
		}
		mu.Lock()
		tickets = append(tickets, ticket)
		mu.Unlock()
		if n := calls.Add(1); n <= 2 {
			entered <- ticket
			<-release[n-1]
		}
	}
	flushWaitHook.Store(&fhook)
	defer flushWaitHook.Store(nil)
	armed.Store(true)
	if err := one(-1); err != nil { // wakes the sequencer: it is held at the top after this
		t.Fatal(err)
	}
	on.Store(true)
	flushes := l.flushes.Load()
	base := l.Size() // durable before the batch
	type result struct {
		n     int
		first uint64
		err   error
	}
	results := make(chan result, nreq)
	for i := range reqs {
		go func() { f, err := add(reqs[i]); results <- result{i, f, err} }()
	}
	waitEntered := func(what string) {
		t.Helper()
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("the syncer never waited for %s", what)
		}
	}
	waitEntered("the batch's first flush")
	select {
	case r := <-results:
		t.Fatalf("append %d answered (%v) before the first group's flush was awaited", r.n, r.err)
	case <-time.After(20 * time.Millisecond):
	}
	close(release[0])
	waitEntered("a second flush: the batch was written as one job")
	// Held at the second group's flush: the first group is answered, and
	// nothing after it. Its callers are awaited until every request below
	// the durable size has its answer (however late a loaded machine runs
	// their goroutines: a fixed window once saw none, or some, of them),
	// then 200 ms more for answers that must not come.
	answered := map[int]uint64{}
	stuck := time.After(30 * time.Second)
	var quiet <-chan time.Time
	for {
		if quiet == nil && len(answered) > 0 && uint64(len(answered))*nrec >= l.Size()-base {
			quiet = time.After(200 * time.Millisecond)
		}
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatal(r.err)
			}
			answered[r.n] = r.first
			continue
		case <-quiet:
		case <-stuck:
			t.Fatalf("%d appends answered in 30 s while the second group's flush was held (durable %d records of the batch), want the first group's", len(answered), l.Size()-base)
		}
		break
	}
	if len(answered) == 0 || len(answered) == nreq {
		t.Fatalf("%d of %d appends answered while the second group's flush was held, want the first group's", len(answered), nreq)
	}
	durable := l.Size()
	for n, first := range answered {
		if end := first + nrec; end > durable {
			t.Fatalf("append %d, records [%d, %d), answered with the durable size at %d", n, first, end, durable)
		}
	}
	close(release[1])
	for len(answered) < nreq {
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.first < durable {
				t.Fatalf("append %d at %d answered after the second group's flush, before it %d were durable: out of order", r.n, r.first, durable)
			}
			answered[r.n] = r.first
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d appends answered", len(answered), nreq)
		}
	}
	mu.Lock()
	waited := len(tickets)
	mu.Unlock()
	if got := l.flushes.Load() - flushes; got < uint64(batchGroups) || waited < batchGroups {
		t.Fatalf("%d flushes submitted and %d awaited for the batch, want one per group (%d)", got, waited, batchGroups)
	}
	flushWaitHook.Store(nil)
	checkReadBack(t, "", l, sent.recs, len(sent.recs), true)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyDir(t, dir, k, ""); !rep.OK() || rep.Records != uint64(len(sent.recs)) {
		t.Fatalf("verify: %d records, want %d\n%s", rep.Records, len(sent.recs), rep)
	}
}

// appended keeps what a test's appends sent, at the indexes they were
// given, for checkReadBack; safe for appends from several goroutines.
type appended struct {
	mu   sync.Mutex
	recs map[uint64][]byte
}

// add appends recs to l and keeps them at the indexes it returned.
func (a *appended) add(l *Ledger, recs ...[]byte) (uint64, error) {
	first, err := l.Append(context.Background(), recs...)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.recs == nil {
		a.recs = map[uint64][]byte{}
	}
	for i, r := range recs {
		a.recs[first+uint64(i)] = r
	}
	return first, err
}
