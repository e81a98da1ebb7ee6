package ledger

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestAttackZeroedIndexServesNoWrongRecord: verify takes zeros at the end
// of the newest segment's .idx for a crash (index-stale, a notice;
// 009b98a). Someone with write access to the disk zeros that .idx
// entirely, and a closed segment's too (a finding): reads, by a writer
// reopening the ledger and by a read-only open (prove, reindex), still
// return every record as appended, never the bytes an entry of zeros
// points at (the segment header).
func TestAttackZeroedIndexServesNoWrongRecord(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	const n = 300
	dir := buildLedger(t, k, n, func(o *Options) {
		o.SegmentSize = 16 << 10
		o.DisableCompression = true
	})
	segs, err := listSegments(filepath.Join(dir, "seg"))
	if err != nil || len(segs) < 3 {
		t.Fatalf("%d segments (%v), want several", len(segs), err)
	}
	zero := func(s *segment) {
		p := idxPath(s.path)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, st.Size()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	zero(segs[len(segs)-1])
	zero(segs[1])
	rep := verifyDir(t, dir, k, "")
	if rep.OK() || firstKind(rep) != KindIndexDamaged {
		t.Fatalf("a closed segment's zeroed .idx must stay a finding:\n%s", rep)
	}
	check := func(what string, l *Ledger) {
		t.Helper()
		for i := uint64(0); i < n; i++ {
			e, err := l.Read(i)
			if err != nil {
				t.Fatalf("%s: read %d: %v", what, i, err)
			}
			if !bytes.Equal(e.Data, record(int(i))) {
				t.Fatalf("%s: record %d is %q, want %q", what, i, e.Data, record(int(i)))
			}
		}
		i := uint64(0)
		for e, err := range l.Entries(0) {
			if err != nil {
				t.Fatalf("%s: entries at %d: %v", what, i, err)
			}
			if e.Index != i || !bytes.Equal(e.Data, record(int(i))) {
				t.Fatalf("%s: entry %d is record %d %q", what, i, e.Index, e.Data)
			}
			i++
		}
		if i < n {
			t.Fatalf("%s: %d entries, want at least %d", what, i, n)
		}
	}
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	check("read-only", ro)
	ro.Close()
	l, err := Open(dir, testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	check("writer", l)
}
