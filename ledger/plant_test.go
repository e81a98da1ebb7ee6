package ledger

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
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
