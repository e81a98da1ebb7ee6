package ledger

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/retention"
)

// prunedLedger writes 600 records over 400 fake days, prunes the oldest
// by retention and closes: the leaf hashes in hashes/ are then the only
// evidence that the kept records extend the signed trees.
func prunedLedger(t *testing.T, k testKey, salt string) (dir string, cut uint64) {
	t.Helper()
	var now atomic.Int64
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now.Store(start.UnixNano())
	opts := testOpts(k)
	opts.SegmentSize = 8 << 10
	opts.Retention = retention.PCIDSS
	opts.PruneInterval = time.Hour
	opts.Now = func() time.Time { return time.Unix(0, now.Load()) }
	dir = t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	add := func(from, n int) {
		for i := from; i < from+n; i++ {
			if _, err := l.Append(ctx, append(record(i), salt...)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	add(0, 300)
	now.Store(start.Add(200 * retention.Day).UnixNano())
	add(300, 300)
	now.Store(start.Add(400 * retention.Day).UnixNano())
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := l.Prune()
	if err != nil || len(got) == 0 {
		t.Fatalf("prune: %v %v", got, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, got[len(got)-1].End
}

// TestPrunedLedgerTiles: with the oldest records pruned, the hash tiles
// are not derived data any more. Deleting, altering or replacing them
// must be a finding, never OK (an unpruned ledger recomputes them from
// its records, TestRetention).
func TestPrunedLedgerTiles(t *testing.T) {
	k := newKey(t, testOrigin)
	orig, cut := prunedLedger(t, k, "")
	other, _ := prunedLedger(t, k, " ") // same key, same sizes, other records
	vopts := VerifyOptions{Verifiers: []note.Verifier{k.verifier}}
	if rep, err := Verify(orig, vopts); err != nil || !rep.OK() || rep.Pruned != cut {
		t.Fatalf("pruned ledger as written: %v\n%s", err, rep)
	}
	hashes := func(dir string) string { return filepath.Join(dir, hashDir) }
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string)
	}{
		{"deleted", func(t *testing.T, dir string) { must(t, os.RemoveAll(hashes(dir))) }},
		{"replaced by a file", func(t *testing.T, dir string) {
			must(t, os.RemoveAll(hashes(dir)))
			must(t, os.WriteFile(hashes(dir), []byte("x"), 0o644))
		}},
		{"level 0 emptied", func(t *testing.T, dir string) { must(t, os.Truncate(filepath.Join(hashes(dir), "0"), 0)) }},
		{"pruned leaves cut short", func(t *testing.T, dir string) {
			must(t, os.Truncate(filepath.Join(hashes(dir), "0"), int64(cut-1)*HashSize))
		}},
		{"pruned leaf altered", func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(hashes(dir), "0"), os.O_RDWR, 0)
			must(t, err)
			defer f.Close()
			h := sha256.Sum256([]byte("forged"))
			_, err = f.WriteAt(h[:], 7*HashSize)
			must(t, err)
		}},
		{"every level rebuilt from other leaves", func(t *testing.T, dir string) {
			// Consistent tiles of another ledger of the same sizes: the
			// levels agree with each other, not with the signed roots.
			must(t, os.RemoveAll(hashes(dir)))
			must(t, os.CopyFS(hashes(dir), os.DirFS(hashes(other))))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, orig)
			tc.tamper(t, dir)
			rep, err := Verify(dir, vopts)
			if err == nil && rep.OK() {
				t.Fatalf("pruned ledger with its tiles %s verifies:\n%s", tc.name, rep)
			}
			// The finding is at or below the first checkpoint past the
			// cut (size 300): nothing tells the pruned leaves apart from
			// the kept records they are signed with.
			named := err != nil
			for _, f := range rep.Findings {
				named = named || f.Index < 300
			}
			if !named {
				t.Fatalf("tiles %s: no finding below the first signed size past the cut:\n%s", tc.name, rep)
			}
			t.Logf("%v\n%s", err, rep)
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
