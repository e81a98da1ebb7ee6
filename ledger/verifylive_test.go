package ledger

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// TestVerifyLiveDirectory: Verify run on a running collector's directory
// sees segments compacted (their .seg and .idx replaced by a .zseg) or
// deleted after it listed them — before a closed segment is mapped ahead,
// after it is mapped, or the newest, read from its file. A compacted one is
// verified in its compressed form: a clean report with every record
// checked. One gone with no replacement gives exactly the findings of a
// segment deleted before Verify listed the directory (not an error, and no
// records silently skipped).
func TestVerifyLiveDirectory(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	base := t.TempDir()
	opts := testOpts(k)
	opts.SegmentSize = 64 << 10
	opts.DisableCompression = true
	l, err := Open(base, opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	var recs [][]byte
	for i := range n {
		recs = append(recs, zRecord(i))
	}
	// Two sessions: the first one's last checkpoint is where an
	// incremental Verify starts, inside a closed segment.
	appendBatch(t, l, recs[:n/2])
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	first, err := Verify(base, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
	if err != nil || !first.OK() || first.Latest == nil || first.Latest.Size != n/2 {
		t.Fatalf("first session: %v\n%s", err, first)
	}
	if l, err = Open(base, opts); err != nil {
		t.Fatal(err)
	}
	appendBatch(t, l, recs[n/2:])
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := listSegments(filepath.Join(base, "seg"))
	if len(segs) < 4 {
		t.Fatalf("%d segments", len(segs))
	}
	last := len(segs) - 1
	mid := 0 // the segment the incremental Verify starts in
	for mid+1 < len(segs) && segs[mid+1].first <= n/2 {
		mid++
	}
	if mid == last || segs[mid].first == n/2 {
		t.Fatalf("record %d is not inside a closed segment: %d segments", n/2, len(segs))
	}
	vopts := VerifyOptions{Verifiers: []note.Verifier{k.verifier}}

	// path of segment si in the copy dir.
	segPath := func(dir string, si int) string {
		return filepath.Join(dir, "seg", filepath.Base(segs[si].path))
	}
	compact := func(t *testing.T, dir string, si int) {
		end := uint64(n)
		if si < last {
			end = segs[si+1].first
		}
		p := segPath(dir, si)
		if _, err := compressSegment(p, segs[si].first, end-segs[si].first); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		os.Remove(idxPath(p))
	}
	remove := func(t *testing.T, dir string, si int) {
		p := segPath(dir, si)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		os.Remove(idxPath(p))
	}
	verify := func(t *testing.T, dir string, since *Checkpoint, hookAt int, change func(t *testing.T, dir string)) *Report {
		o := vopts
		o.Since = since
		done := false
		o.segHook = func(_ []*segment, si int) {
			if si == hookAt && !done {
				done = true
				change(t, dir)
			}
		}
		rep, err := Verify(dir, o)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if !done {
			t.Fatalf("the directory was not changed under Verify (hook at %d)", hookAt)
		}
		return rep
	}

	clean, err := Verify(base, vopts)
	if err != nil || !clean.OK() || clean.Records != n {
		t.Fatalf("untouched ledger: %v\n%s", err, clean)
	}

	compacted := []struct {
		name   string
		hookAt int // -1: after the listing, before anything is mapped
		seg    int
		// incremental: from the first session's checkpoint (its segment
		// is split frame by frame and its .idx checked).
		incremental bool
	}{
		{"closed segment compacted before it is mapped", -1, 1, false},
		{"closed segment compacted after it is mapped", 1, 1, false},
		{"first segment compacted before it is mapped", -1, 0, false},
		{"newest segment compacted before it is opened", last, last, false},
		{"incremental, its first segment compacted after it is mapped", mid, mid, true},
		{"incremental, its first segment compacted before it is mapped", -1, mid, true},
	}
	for _, tc := range compacted {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, base)
			var since *Checkpoint
			want := clean
			if tc.incremental {
				since = first.Latest
				var err error
				if want, err = Verify(copyDir(t, base), VerifyOptions{Verifiers: vopts.Verifiers, Since: since}); err != nil || !want.OK() {
					t.Fatalf("incremental, untouched: %v\n%s", err, want)
				}
			}
			rep := verify(t, dir, since, tc.hookAt, func(t *testing.T, dir string) { compact(t, dir, tc.seg) })
			if !rep.OK() || rep.Records != n || !reflect.DeepEqual(rep.Notices, want.Notices) {
				t.Fatalf("want a clean report of %d records (notices %v), got\n%s", n, want.Notices, rep)
			}
		})
	}

	deleted := []struct {
		name   string
		hookAt int
		seg    int
		zseg   bool // compressed before Verify, the .zseg deleted (retention)
	}{
		{"closed segment deleted before it is mapped", -1, 2, false},
		{"newest segment deleted before it is opened", last, last, false},
		{"compressed segment deleted before it is mapped", -1, 2, true},
	}
	for _, tc := range deleted {
		t.Run(tc.name, func(t *testing.T) {
			at := copyDir(t, base)
			rm := func(t *testing.T, dir string) { remove(t, dir, tc.seg) }
			if tc.zseg {
				compact(t, at, tc.seg)
				rm = func(t *testing.T, dir string) {
					if err := os.Remove(zsegPath(segPath(dir, tc.seg))); err != nil {
						t.Fatal(err)
					}
				}
			}
			before := copyDir(t, at)
			rm(t, before)
			want, err := Verify(before, vopts)
			if err != nil || want.OK() {
				t.Fatalf("segment deleted before Verify: %v\n%s", err, want)
			}
			dir := copyDir(t, at)
			got := verify(t, dir, nil, tc.hookAt, rm)
			if got.Records != want.Records || !reflect.DeepEqual(got.Findings, want.Findings) || !reflect.DeepEqual(got.Notices, want.Notices) {
				t.Fatalf("deleted under Verify:\n%s\nwant, as deleted before:\n%s", got, want)
			}
		})
	}
}
