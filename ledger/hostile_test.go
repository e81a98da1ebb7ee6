package ledger

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// verifyWithin runs Verify and fails the test if it does not return within
// d: a planted FIFO must not hang an auditor's verify.
func verifyWithin(t *testing.T, dir string, opts VerifyOptions, d time.Duration) (*Report, error) {
	t.Helper()
	type res struct {
		rep *Report
		err error
	}
	c := make(chan res, 1)
	go func() {
		rep, err := Verify(dir, opts)
		c <- res{rep, err}
	}()
	select {
	case r := <-c:
		return r.rep, r.err
	case <-time.After(d):
		t.Fatalf("verify did not return within %s", d)
		return nil, nil
	}
}

// TestAttackHostileFiles plants, in a copy of a ledger, what someone who
// can write the directory (or hands an auditor the copy) could put at the
// names verify reads: a FIFO (an open or read waits for ever), a link to
// /dev/zero (a whole-file read never ends) and sparse files claiming a
// tebibyte (a whole-file read takes all the memory there is). Each must
// end verify at once with a finding or an error naming the file, within
// bounded memory. Before regular.go, the FIFOs hung verify and the others
// ran it out of memory (ulimit -v 6 GB).
func TestAttackHostileFiles(t *testing.T) {
	defer func(old int64) { frameLogMax = old }(frameLogMax)
	frameLogMax = 1 << 20 // the sparse history must be refused at this bound, not read
	k := newKey(t, testOrigin)
	const n = 1000
	base := buildLedger(t, k, n, nil)
	segs, err := listSegments(filepath.Join(base, "seg"))
	if err != nil || len(segs) < 3 {
		t.Fatalf("segments: %v, %d", err, len(segs))
	}
	closed := filepath.Join("seg", filepath.Base(segs[1].path))
	cpLog := filepath.Join(cpDir, "00000000000000000000.log")
	fifo := func(t *testing.T, p string) {
		os.Remove(p)
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	zero := func(t *testing.T, p string) {
		os.Remove(p)
		if err := os.Symlink("/dev/zero", p); err != nil {
			t.Fatal(err)
		}
	}
	sparse := func(t *testing.T, p string) {
		if err := os.Truncate(p, 1<<40); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name  string
		file  string
		plant func(*testing.T, string)
		// kind is the finding expected on file; "" if Verify must return
		// an error naming it instead (it cannot read the records).
		kind string
		why  error
	}{
		{"checkpoint is a FIFO", "checkpoint", fifo, KindCheckpointForged, errNotRegular},
		{"checkpoint links to /dev/zero", "checkpoint", zero, KindCheckpointForged, errNotRegular},
		{"checkpoint is a sparse TiB", "checkpoint", sparse, KindCheckpointForged, errTooLarge},
		{"checkpoint history is a FIFO", cpLog, fifo, KindCheckpointForged, errNotRegular},
		{"checkpoint history links to /dev/zero", cpLog, zero, KindCheckpointForged, errNotRegular},
		{"checkpoint history is a sparse TiB", cpLog, sparse, KindCheckpointForged, errTooLarge},
		{"pruned.log links to /dev/zero", "pruned.log", zero, KindPruneRecordInvalid, errNotRegular},
		{"pruned.log is a FIFO", "pruned.log", fifo, KindPruneRecordInvalid, errNotRegular},
		{"closed segment's .idx links to /dev/zero", strings.TrimSuffix(closed, ".seg") + ".idx", zero, KindIndexDamaged, errNotRegular},
		{"closed segment's .idx is a sparse TiB", strings.TrimSuffix(closed, ".seg") + ".idx", sparse, KindIndexDamaged, errTooLarge},
		{"closed segment is a FIFO", closed, fifo, "", errNotRegular},
		{"closed segment links to /dev/zero", closed, zero, "", errNotRegular},
		{"newest segment is a FIFO", filepath.Join("seg", filepath.Base(segs[len(segs)-1].path)), fifo, "", errNotRegular},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, base)
			tc.plant(t, filepath.Join(dir, tc.file))
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			rep, err := verifyWithin(t, dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}}, time.Minute)
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
				t.Errorf("verify allocated %d MiB", alloc>>20)
			}
			if tc.kind == "" {
				if err == nil || !errors.Is(err, tc.why) || !strings.Contains(err.Error(), tc.file) {
					t.Fatalf("verify: %v, want an error naming %s (%v); report:\n%v", err, tc.file, tc.why, rep)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range rep.Findings {
				if f.Kind == tc.kind && strings.Contains(f.File+f.Message, tc.file) && strings.Contains(f.Message, tc.why.Error()) {
					t.Logf("%s", f)
					return
				}
			}
			t.Fatalf("no %s finding naming %s (%v):\n%s", tc.kind, tc.file, tc.why, rep)
		})
	}
}

// TestHostileHashFiles: the hash tiles are derived data (rebuilt by Open
// from the records), so a level file that cannot be read leaves verify
// checking every record against the signed roots alone. A FIFO planted
// there must not hang it, and the records must still be checked: one
// changed record is found.
func TestHostileHashFiles(t *testing.T) {
	k := newKey(t, testOrigin)
	const n = 1000
	base := buildLedger(t, k, n, nil)
	for _, change := range []bool{false, true} {
		dir := copyDir(t, base)
		p := filepath.Join(dir, hashDir, "0")
		os.Remove(p)
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
		if change {
			recs := readAll(t, dir)
			recs[500].data = []byte(strings.Replace(string(recs[500].data), "login", "logon", 1))
			rewrite(t, dir, recs, 0)
		}
		rep, err := verifyWithin(t, dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Records != n || rep.OK() == change {
			t.Fatalf("record changed %v: %s", change, rep)
		}
		t.Logf("record changed %v: %s", change, rep)
	}
}
