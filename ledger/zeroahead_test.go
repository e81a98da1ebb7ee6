package ledger

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestZeroAhead: segments are zeroed ahead and linked in at rotation; no
// closed segment keeps zeros after its records, Close cuts them from the
// last one, verify of the live ledger finds nothing wrong, and a copy of
// the directory taken while it runs (a crash) opens with every record.
func TestZeroAhead(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = 8 << 10
	opts.DisableCompression = true
	dir := t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	segDir := filepath.Join(dir, "seg")
	ahead := filepath.Join(segDir, zeroAheadName)
	zeroedSeen := false
	n := 0
	for rot := 0; rot < 6; rot++ {
		// Wait for the next segment's zeros, then fill the active one.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if st, err := os.Stat(ahead); err == nil && st.Size() == opts.SegmentSize {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no segment zeroed ahead")
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // its fsync
		before := len(mustSegments(t, segDir))
		for len(mustSegments(t, segDir)) == before {
			if _, err := l.Append(context.Background(), record(n)); err != nil {
				t.Fatal(err)
			}
			n++
		}
		// The new active segment is the zeroed one: its size is the
		// segment size, far beyond its one record.
		segs := mustSegments(t, segDir)
		if st, err := os.Stat(segs[len(segs)-1].path); err == nil && st.Size() == opts.SegmentSize {
			zeroedSeen = true
		}
		for _, s := range segs[:len(segs)-1] {
			res, err := scanSegment(s.path, s.first, maxFrameLen)
			if err != nil || res.end != res.size {
				t.Fatalf("closed segment %s: records end at %d, file is %d bytes (%v)", s.path, res.end, res.size, err)
			}
		}
	}
	if !zeroedSeen {
		t.Fatal("no segment was zeroed ahead")
	}
	// Verify of the running ledger: the zeros are no finding.
	if rep := verifyDir(t, dir, k, ""); !rep.OK() || rep.Records != uint64(n) {
		t.Fatalf("verify while running: %d records, want %d\n%s", rep.Records, n, rep)
	}
	// A crash: the directory as it is now.
	crashed := t.TempDir()
	copyTree(t, dir, crashed)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs := mustSegments(t, segDir)
	res, err := scanSegment(segs[len(segs)-1].path, segs[len(segs)-1].first, maxFrameLen)
	if err != nil || res.end != res.size {
		t.Fatalf("after Close the last segment's records end at %d, file is %d bytes (%v)", res.end, res.size, err)
	}
	if _, err := os.Stat(ahead); !os.IsNotExist(err) {
		t.Fatalf("%s left after Close: %v", ahead, err)
	}
	l2, err := Open(crashed, opts)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Size() != uint64(n) {
		t.Fatalf("after the crash %d records, want %d", l2.Size(), n)
	}
	if _, err := l2.Append(context.Background(), record(n)); err != nil {
		t.Fatal(err)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyDir(t, crashed, k, ""); !rep.OK() || rep.Records != uint64(n+1) {
		t.Fatalf("verify after recovery: %d records, want %d\n%s", rep.Records, n+1, rep)
	}
}

func mustSegments(t *testing.T, dir string) []*segment {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// copyTree copies the regular files under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestZeroTailAtOpen: the segment active at Open is zeroed after its
// records, and synced, before Open returns, so that the first append is
// written directly (no appending fdatasync); with appends going on past
// two rotations, every acknowledged record reads back (also from a copy
// of the directory taken mid-way, a crash), no closed segment keeps
// zeros, Close cuts them from the last one, and verify finds nothing.
func TestZeroTailAtOpen(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = 4 << 20
	opts.DisableCompression = true
	dir := t.TempDir()
	segDir := filepath.Join(dir, "seg")
	big := func(i int) []byte { return append(record(i), bytes.Repeat([]byte{'y'}, 4000)...) }
	var recs [][]byte
	appendN := func(l *Ledger, n, per int) {
		t.Helper()
		batch := make([][]byte, 0, per)
		for range n {
			batch = append(batch, big(len(recs)+len(batch)))
			if len(batch) == cap(batch) {
				if _, err := l.Append(context.Background(), batch...); err != nil {
					t.Fatal(err)
				}
				recs = append(recs, batch...)
				batch = batch[:0]
			}
		}
	}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(l, 128, 64)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// The tail is zeroed up to the segment size when Open returns, and
	// the first append overwrites zeros directly.
	var crashed string
	var acked int
	for round := range 2 {
		segs := mustSegments(t, segDir)
		l, err = Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		active := segs[len(segs)-1].path
		if st, err := os.Stat(active); err != nil || st.Size() != opts.SegmentSize {
			t.Fatalf("round %d: the segment active at Open is %d bytes when Open returns, want %d (zeroed after its records) (%v)", round, st.Size(), opts.SegmentSize, err)
		}
		appendN(l, 1, 1)
		if l.direct.Load() != 1 {
			t.Fatalf("round %d: the first append after Open: %d direct writes, want 1", round, l.direct.Load())
		}
		for i := 0; len(mustSegments(t, segDir)) < len(segs)+2; i++ {
			appendN(l, 256, 256)
			if i == 1 && crashed == "" {
				crashed, acked = t.TempDir(), len(recs)
				copyTree(t, dir, crashed)
			}
		}
		for i, r := range recs {
			if e, err := l.Read(uint64(i)); err != nil || !bytes.Equal(e.Data, r) {
				t.Fatalf("round %d: Read(%d) of %d: %v", round, i, len(recs), err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	n := len(recs)
	for _, s := range mustSegments(t, segDir) {
		if res, err := scanSegment(s.path, s.first, maxFrameLen); err != nil || res.end != res.size {
			t.Fatalf("segment %s: records end at %d, file is %d bytes (%v)", s.path, res.end, res.size, err)
		}
	}
	if rep := verifyDir(t, dir, k, ""); !rep.OK() || rep.Records != uint64(n) {
		t.Fatalf("verify: %d records, want %d\n%s", rep.Records, n, rep)
	}
	l2, err := Open(crashed, opts)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Size() < uint64(acked) {
		t.Fatalf("after the crash %d records, %d were acknowledged", l2.Size(), acked)
	}
	for i := range l2.Size() {
		if e, err := l2.Read(i); err != nil || !bytes.Equal(e.Data, recs[i]) {
			t.Fatalf("after the crash Read(%d): %v", i, err)
		}
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestNoZeroAheadForLargeSyncs: a writer whose fdatasyncs carry more than
// zeroAheadMaxSync bytes each stops zeroing segments ahead (the zeros
// would cost more CPU than the syncs they make cheaper); the segments are
// created empty and filled as before, and verify finds nothing.
func TestNoZeroAheadForLargeSyncs(t *testing.T) {
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
	segDir := filepath.Join(dir, "seg")
	// The zeroing started at Open ends before the first rotation, which
	// takes it: finished later (under load), a later rotation took it
	// and the last segment could be the zeroed one.
	waitZeroedAhead(t, dir, opts.SegmentSize)
	n := 0
	for len(mustSegments(t, segDir)) < 5 {
		batch := make([][]byte, 0, 128)
		for range cap(batch) {
			batch = append(batch, append(record(n), bytes.Repeat([]byte{'z'}, 2000)...))
			n++
		}
		if _, err := l.Append(context.Background(), batch...); err != nil {
			t.Fatal(err)
		}
	}
	// None after the first rotation.
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(segDir, zeroAheadName)); !os.IsNotExist(err) {
		t.Fatalf("a segment zeroed ahead with ~270 KiB per sync: %v", err)
	}
	segs := mustSegments(t, segDir)
	if st, err := os.Stat(segs[len(segs)-1].path); err != nil || st.Size() >= opts.SegmentSize {
		t.Fatalf("the active segment is %d bytes (zeroed?): %v", st.Size(), err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyDir(t, dir, k, ""); !rep.OK() || rep.Records != uint64(n) {
		t.Fatalf("verify: %d records, want %d\n%s", rep.Records, n, rep)
	}
}

// TestNextZeroedAtOpen: when Open returns, the next segment is zeroed
// ahead to its full size and durable (zeroAtOpen), for a new ledger and
// for one reopened with a stale zeroed file left behind; the first
// rotation takes it, and its records are written directly.
func TestNextZeroedAtOpen(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	// The default size: a smaller segment is zeroed so fast that a
	// zeroer running behind Open would be done too when it returns.
	opts.SegmentSize = 16 << 20
	opts.DisableCompression = true
	big := func(i int) []byte { return append(record(i), bytes.Repeat([]byte{'y'}, 4000)...) }
	dir := t.TempDir()
	ahead := filepath.Join(dir, "seg", zeroAheadName)
	n := 0
	for round := range 2 {
		if round == 1 {
			// A stale file from a process that stopped mid-zeroing: not
			// all zeros, and short.
			if err := os.WriteFile(ahead, []byte("stale, not zeros"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		l, err := Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(ahead)
		if err != nil || int64(len(b)) != opts.SegmentSize || !bytes.Equal(b, make([]byte, len(b))) {
			t.Fatalf("round %d: when Open returns, %s is %d bytes, all zeros %v (%v); want %d bytes of zeros", round, zeroAheadName, len(b), bytes.Equal(b, make([]byte, len(b))), err, opts.SegmentSize)
		}
		segs := len(mustSegments(t, filepath.Join(dir, "seg")))
		for len(mustSegments(t, filepath.Join(dir, "seg"))) == segs {
			batch := make([][]byte, 16)
			for i := range batch {
				batch[i] = big(n + i)
			}
			if _, err := l.Append(context.Background(), batch...); err != nil {
				t.Fatal(err)
			}
			n += len(batch)
		}
		// The rotation took the zeroed file: the new segment is written
		// directly from its first record.
		d := l.direct.Load()
		if _, err := l.Append(context.Background(), big(n)); err != nil {
			t.Fatal(err)
		}
		n++
		if l.direct.Load() != d+1 {
			t.Fatalf("round %d: the first append after the rotation made %d direct writes, want 1", round, l.direct.Load()-d)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range n {
		if e, err := l.Read(uint64(i)); err != nil || !bytes.Equal(e.Data, big(i)) {
			t.Fatalf("Read(%d) of %d: %v", i, n, err)
		}
	}
}
