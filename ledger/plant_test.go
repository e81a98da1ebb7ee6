package ledger

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestPlantedIdxSymlink: someone with write access to the ledger's
// directory plants, after Open, a symlink at every name a rotation could
// give a new segment's pending .idx (seg/<first>.idx.new), pointing at a
// file of theirs choosing (here a stand-in for /etc/passwd). The rotations
// must not truncate or write the target: the ledger replaces the link with
// a file of its own and goes on appending; every record reads back and
// verify finds nothing.
func TestPlantedIdxSymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k := newKey(t, "plant")
	opts := testOpts(k)
	opts.SegmentSize = 2 << 10
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "precious")
	want := []byte("root:x:0:0:root:/root:/bin/bash\n")
	if err := os.WriteFile(target, want, 0o644); err != nil {
		t.Fatal(err)
	}
	const n = 120
	for i := 1; i <= n; i++ {
		p := filepath.Join(dir, "seg", fmt.Sprintf("%020d.idx.new", i))
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if _, err := l.Append(context.Background(), record(i)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if got, err := os.ReadFile(target); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("symlink target after rotations: %q, %v; want it untouched (%q)", got, err, want)
	}
	segs, err := listSegments(filepath.Join(dir, "seg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) < 5 {
		t.Fatalf("%d segments: the test needs rotations", len(segs))
	}
	for i := range n {
		e, err := l.Read(uint64(i))
		if err != nil || !bytes.Equal(e.Data, record(i)) {
			t.Fatalf("record %d: %q, %v", i, e.Data, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyDir(t, dir, k, ""); len(rep.Findings) > 0 {
		t.Fatalf("verify: %+v", rep.Findings)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, want) {
		t.Fatalf("symlink target after close: %q", got)
	}
}

// TestPlantedZeroedSymlink: the next segment is zeroed ahead under
// seg/next.zeroed (zeroahead.go). Someone with write access to the
// directory plants a symlink there, pointing at a file of their choosing,
// before the zeroer creates it, and swaps the zeroed file for such a link
// before a rotation takes it. Neither the zeros nor a segment's header and
// records may reach the target: the ledger replaces the link with a file
// of its own (or creates the segment empty) and goes on; every record
// reads back and verify finds nothing.
func TestPlantedZeroedSymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k := newKey(t, "plant")
	target := filepath.Join(t.TempDir(), "precious")
	want := []byte("root:x:0:0:root:/root:/bin/bash\n")
	if err := os.WriteFile(target, want, 0o644); err != nil {
		t.Fatal(err)
	}
	ahead := filepath.Join(dir, "seg", zeroAheadName)
	plant := func() error {
		if err := os.Remove(ahead); err != nil && !os.IsNotExist(err) {
			return err
		}
		return os.Symlink(target, ahead)
	}
	opts := testOpts(k)
	opts.SegmentSize = 64 << 10
	var once sync.Once
	planted := make(chan error, 1)
	// The zeroer zeros the first segment's tail, then creates next.zeroed:
	// the link is there before it does.
	opts.zeroTailHook = func() { once.Do(func() { planted <- plant() }) }
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-planted:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the zeroer never zeroed the first segment's tail")
	}
	var n int
	appendUntil := func(segs int) {
		t.Helper()
		for ; ; n++ {
			got, err := listSegments(filepath.Join(dir, "seg"))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) >= segs {
				return
			}
			if _, err := l.Append(context.Background(), record(n)); err != nil {
				t.Fatalf("append %d: %v", n, err)
			}
		}
	}
	untouched := func() {
		t.Helper()
		if got, err := os.ReadFile(target); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("symlink target: %d bytes %q, %v; want it untouched (%q)", len(got), got[:min(len(got), 64)], err, want)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	waitZeroed := func() {
		t.Helper()
		for {
			untouched()
			st, err := os.Lstat(ahead)
			if err == nil && st.Mode().IsRegular() && st.Size() == opts.SegmentSize {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the next segment was never zeroed ahead")
			}
			time.Sleep(time.Millisecond)
		}
	}
	// The first zeroed file becomes the second segment.
	waitZeroed()
	appendUntil(2)
	// Each later zeroed file is swapped for a link before the rotation
	// that would take it.
	for segs := 3; segs <= 5; segs++ {
		waitZeroed()
		if err := plant(); err != nil {
			t.Fatal(err)
		}
		appendUntil(segs)
	}
	untouched()
	segs, err := listSegments(filepath.Join(dir, "seg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		if st, err := os.Lstat(s.path); err != nil || !st.Mode().IsRegular() {
			t.Fatalf("segment %s: %v, %v; want a regular file", s.path, st, err)
		}
	}
	for i := range n {
		e, err := l.Read(uint64(i))
		if err != nil || !bytes.Equal(e.Data, record(i)) {
			t.Fatalf("record %d: %q, %v", i, e.Data, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyDir(t, dir, k, ""); len(rep.Findings) > 0 {
		t.Fatalf("verify: %+v", rep.Findings)
	}
	untouched()
}
