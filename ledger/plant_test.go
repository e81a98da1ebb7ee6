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

// precious is a file of the attacker's choosing (a stand-in for
// /etc/passwd) that planted symlinks point at: the ledger must never
// write it.
type precious struct {
	path string
	want []byte
}

func newPrecious(t *testing.T) precious {
	t.Helper()
	p := precious{path: filepath.Join(t.TempDir(), "precious"), want: []byte("root:x:0:0:root:/root:/bin/bash\n")}
	if err := os.WriteFile(p.path, p.want, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// untouched fails t unless the file holds what it did; when says at
// which point ("" or " after close").
func (p precious) untouched(t *testing.T, when string) {
	t.Helper()
	if got, err := os.ReadFile(p.path); err != nil || !bytes.Equal(got, p.want) {
		t.Fatalf("symlink target%s: %d bytes %q, %v; want it untouched (%q)", when, len(got), got[:min(len(got), 64)], err, p.want)
	}
}

// readBackClosedVerified reads records 0 to n-1 back from l (each as
// record(i) appended it), closes l and verifies dir: no finding.
func readBackClosedVerified(t *testing.T, l *Ledger, dir string, k testKey, n int) {
	t.Helper()
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
}

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
	target := newPrecious(t)
	const n = 120
	for i := 1; i <= n; i++ {
		p := filepath.Join(dir, "seg", fmt.Sprintf("%020d.idx.new", i))
		if err := os.Symlink(target.path, p); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if _, err := l.Append(context.Background(), record(i)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	target.untouched(t, " after rotations")
	segs, err := listSegments(filepath.Join(dir, "seg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) < 5 {
		t.Fatalf("%d segments: the test needs rotations", len(segs))
	}
	readBackClosedVerified(t, l, dir, k, n)
	target.untouched(t, " after close")
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
	target := newPrecious(t)
	ahead := filepath.Join(dir, "seg", zeroAheadName)
	plant := func() error {
		if err := os.Remove(ahead); err != nil && !os.IsNotExist(err) {
			return err
		}
		return os.Symlink(target.path, ahead)
	}
	opts := testOpts(k)
	opts.SegmentSize = 64 << 10
	var once sync.Once
	planted := make(chan error, 1)
	// The hook runs before the zeroer creates next.zeroed: the link is
	// there before it does.
	opts.zeroAheadHook = func() { once.Do(func() { planted <- plant() }) }
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
	deadline := time.Now().Add(30 * time.Second)
	waitZeroed := func() {
		t.Helper()
		for {
			target.untouched(t, "")
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
	target.untouched(t, "")
	segs, err := listSegments(filepath.Join(dir, "seg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		if st, err := os.Lstat(s.path); err != nil || !st.Mode().IsRegular() {
			t.Fatalf("segment %s: %v, %v; want a regular file", s.path, st, err)
		}
	}
	readBackClosedVerified(t, l, dir, k, n)
	target.untouched(t, "")
}

// TestPlantedLinks: someone with write access to the ledger's directory
// (or to a witness or export directory) replaces a file the ledger writes,
// or plants one where it will create one, with a symlink to a file of
// their choosing. The ledger never writes the target: a file it makes
// anew (derived .idx, temporary files, a new checkpoint log) replaces
// the link; one it writes again (a segment, the checkpoint log, a tile
// level file) fails with the path.
func TestPlantedLinks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	closed := func(t *testing.T, k testKey) (string, []*segment) {
		t.Helper()
		dir := buildLedger(t, k, 300, nil)
		segs, err := listSegments(filepath.Join(dir, "seg"))
		if err != nil || len(segs) < 3 {
			t.Fatalf("%d segments (%v), want several", len(segs), err)
		}
		return dir, segs
	}
	reopen := func(dir string, k testKey) (string, error) {
		opts := testOpts(k)
		opts.DisableCompression = true // (the .idx checked after stays)
		l, err := Open(dir, opts)
		if err != nil {
			return "", err
		}
		return "", l.Close()
	}
	for _, tc := range []struct {
		name string
		// run plants links with plant and does what writes there; it
		// returns the error of that and the path that must then be a
		// file of the ledger's own ("" for none).
		run     func(t *testing.T, k testKey, plant func(string)) (string, error)
		wantErr bool
	}{
		{"closed segment's .idx, rebuilt at Open", func(t *testing.T, k testKey, plant func(string)) (string, error) {
			dir, segs := closed(t, k)
			plant(idxPath(segs[1].path))
			_, err := reopen(dir, k)
			return idxPath(segs[1].path), err
		}, false},
		{"last segment's .idx, rebuilt at Open", func(t *testing.T, k testKey, plant func(string)) (string, error) {
			dir, segs := closed(t, k)
			plant(idxPath(segs[len(segs)-1].path))
			_, err := reopen(dir, k)
			return idxPath(segs[len(segs)-1].path), err
		}, false},
		{"new ledger's first .idx", func(t *testing.T, k testKey, plant func(string)) (string, error) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "seg"), 0o755); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "seg", segName(0))
			plant(idxPath(p))
			_, err := reopen(dir, k)
			return idxPath(p), err
		}, false},
		{"last segment, its torn tail cut at Open", func(t *testing.T, k testKey, plant func(string)) (string, error) {
			dir, segs := closed(t, k)
			plant(segs[len(segs)-1].path)
			return reopen(dir, k)
		}, true},
		{"newest checkpoint log, its torn tail cut at Open", func(t *testing.T, k testKey, plant func(string)) (string, error) {
			dir, _ := closed(t, k)
			logs, err := filepath.Glob(filepath.Join(dir, cpDir, "*.log"))
			if err != nil || len(logs) == 0 {
				t.Fatalf("checkpoint logs: %v, %v", logs, err)
			}
			plant(logs[len(logs)-1])
			return reopen(dir, k)
		}, true},
		{"checkpoint log, appended to", func(t *testing.T, k testKey, plant func(string)) (string, error) {
			dir, _ := closed(t, k)
			l, err := Open(dir, testOpts(k))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			logs, _ := filepath.Glob(filepath.Join(dir, cpDir, "*.log"))
			plant(logs[len(logs)-1])
			if _, err := l.Append(ctx, record(300)); err != nil {
				return "", err
			}
			_, err = l.Checkpoint(ctx)
			return "", err
		}, true},
		{"checkpoint.tmp", func(t *testing.T, k testKey, plant func(string)) (string, error) {
			dir, _ := closed(t, k)
			l, err := Open(dir, testOpts(k))
			if err != nil {
				t.Fatal(err)
			}
			plant(filepath.Join(dir, "checkpoint.tmp"))
			if _, err := l.Append(ctx, record(300)); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "checkpoint"), l.Close()
		}, false},
		{"compressed segments' .zseg.tmp", func(t *testing.T, k testKey, plant func(string)) (string, error) {
			dir := t.TempDir()
			opts := testOpts(k)
			opts.SegmentSize = 4 << 10
			l, err := Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			const n = 200
			for i := range n {
				plant(zsegPath(filepath.Join(dir, "seg", segName(uint64(i)))) + ".tmp")
			}
			for i := range n {
				if _, err := l.Append(ctx, record(i)); err != nil {
					t.Fatal(err)
				}
			}
			waitCompressed(t, l, time.Minute)
			segs, err := listSegments(filepath.Join(dir, "seg"))
			if err != nil || len(segs) < 3 {
				t.Fatalf("%d segments (%v)", len(segs), err)
			}
			for i := range n {
				if e, err := l.Read(uint64(i)); err != nil || !bytes.Equal(e.Data, record(i)) {
					t.Fatalf("record %d: %q, %v", i, e.Data, err)
				}
			}
			return segs[0].path, l.Close()
		}, false},
		{"tile level file", func(t *testing.T, k testKey, plant func(string)) (string, error) {
			dir := t.TempDir()
			l, err := Open(dir, testOpts(k))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			plant(filepath.Join(dir, hashDir, "1")) // made once 256 records are
			for i := range 300 {
				if _, err := l.Append(ctx, record(i)); err != nil {
					return "", err
				}
			}
			_, err = l.Checkpoint(ctx)
			return "", err
		}, true},
		{"witness copy's .tmp", func(t *testing.T, k testKey, plant func(string)) (string, error) {
			dir, _ := closed(t, k)
			l, err := OpenReadOnly(dir)
			if err != nil {
				t.Fatal(err)
			}
			signed, _, err := l.SignedCheckpoint(0)
			l.Close()
			if err != nil {
				t.Fatal(err)
			}
			cp, err := parseUnverified(signed)
			if err != nil {
				t.Fatal(err)
			}
			wdir := t.TempDir()
			p := filepath.Join(wdir, fmt.Sprintf("%020d-%d.checkpoint", cp.Size, cp.Time.UnixNano()))
			plant(p + ".tmp")
			return p, DirWitness(wdir).Publish(ctx, signed)
		}, false},
		{"exported tile's .tmp", func(t *testing.T, k testKey, plant func(string)) (string, error) {
			dir, _ := closed(t, k)
			out := t.TempDir()
			p := filepath.Join(out, filepath.FromSlash(tilePath(0, 0, tileWidth)))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			plant(p + ".tmp")
			_, _, err := ExportTiles(dir, out, 0)
			return p, err
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k := newKey(t, testOrigin)
			target := newPrecious(t)
			plant := func(p string) {
				t.Helper()
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				if err := os.Symlink(target.path, p); err != nil {
					t.Fatal(err)
				}
			}
			made, err := tc.run(t, k, plant)
			target.untouched(t, "")
			if tc.wantErr {
				if err == nil {
					t.Fatal("no error: want the write through the link refused")
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if made != "" {
				if st, err := os.Lstat(made); err != nil || !st.Mode().IsRegular() {
					t.Fatalf("%s: %v, %v; want a regular file", made, st, err)
				}
			}
		})
	}
}
