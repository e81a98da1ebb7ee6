package ledger

import (
	"bytes"
	"slices"

	"errors"
	"github.com/klauspost/compress/zstd"
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
	frameLogMax = 1 << 20 // the sparse pruned.log must be refused at this bound, not read (a history file at cpFileMax: TestHostileSparseHistory)
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

// TestAttackCompressedBlocks: a compressed segment rebuilt with valid
// checksums (block index, trailer) whose blocks were swapped is found at
// the first record that moved; one whose blocks are replaced by zstd
// frames that expand to hundreds of MiB of zeros (a decompression bomb,
// with and without the size in the frame header) is refused per block
// within bounded memory, its records named.
func TestAttackCompressedBlocks(t *testing.T) {
	k := newKey(t, testOrigin)
	base, _ := compressedLedger(t, k, 16000)
	segs, _ := listSegments(filepath.Join(base, "seg"))
	s := segs[1]
	if s.z == nil || len(s.z.blocks) < 3 {
		t.Fatalf("segment 1 is not compressed into 3 blocks or more: %+v", s.z)
	}
	var bombs [2][]byte
	{
		zeros := make([]byte, 256<<20)
		bombs[0] = zEncoder().EncodeAll(zeros, nil) // the size in its header
		var buf bytes.Buffer
		w, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithSingleSegment(false))
		if err != nil {
			t.Fatal(err)
		}
		w.Write(zeros) // streamed: no size in its header
		w.Close()
		bombs[1] = buf.Bytes()
	}
	cases := []struct {
		name    string
		rebuild func(b []byte) []byte
		index   uint64
	}{
		{"blocks 1 and 2 swapped", func(b []byte) []byte {
			z := *s.z
			z.blocks = slices.Clone(z.blocks)
			z.blocks[1], z.blocks[2] = z.blocks[2], z.blocks[1]
			return rebuildZseg(t, b, &z, -1, nil)
		}, s.first + s.z.blocks[1].first},
		{"every block a bomb with its size", func(b []byte) []byte { return bombAll(t, b, s.z, bombs[0]) }, s.first},
		{"every block a streamed bomb", func(b []byte) []byte { return bombAll(t, b, s.z, bombs[1]) }, s.first},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, base)
			p := filepath.Join(dir, "seg", filepath.Base(s.path))
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(p, tc.rebuild(b), 0o644)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			rep, err := verifyWithin(t, dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}}, 2*time.Minute)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("allocated %d MiB, heap from the system %d MiB (%d before)\n%s", (after.TotalAlloc-before.TotalAlloc)>>20, after.HeapSys>>20, before.HeapSys>>20, rep)
			// Each block decodes to at most zMaxBlock (65 MiB: a block may
			// hold one record of maxFrameLen) before it is refused, and
			// verify decodes 16 blocks ahead: about 1 GiB at worst, where
			// the bombs, uncapped, would take 256 MiB each.
			if grew := int64(after.HeapSys) - int64(before.HeapSys); grew > 1536<<20 {
				t.Errorf("the heap grew by %d MiB", grew>>20)
			}
			if rep.OK() || !hasKindInTile(rep.Findings, KindRecordModified, tc.index) && !hasKindAt(rep.Findings, KindRecordsReordered, tc.index) {
				t.Fatalf("want a finding at record %d:\n%s", tc.index, rep)
			}
		})
	}
}

// bombAll replaces every block of a compressed segment with bomb.
func bombAll(t *testing.T, b []byte, z *zIndex, bomb []byte) []byte {
	out := b
	for bi := range z.blocks {
		zz, err := parseZIndex(bytes.NewReader(out), int64(len(out)))
		if err != nil {
			t.Fatal(err)
		}
		out = rebuildZseg(t, out, zz, bi, bomb)
	}
	return out
}

// TestHostileLinksOutside: a copy whose closed segment is a link to a
// file outside it is read through the link — verify checks what it reads,
// not where it lies: a faithful file verifies, an altered one is found at
// its record.
func TestHostileLinksOutside(t *testing.T) {
	k := newKey(t, testOrigin)
	base := buildLedger(t, k, 1000, nil)
	segs, err := listSegments(filepath.Join(base, "seg"))
	if err != nil || len(segs) < 3 {
		t.Fatalf("segments: %v, %d", err, len(segs))
	}
	s := segs[1]
	orig, err := os.ReadFile(s.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, altered := range []bool{false, true} {
		dir := copyDir(t, base)
		outside := filepath.Join(t.TempDir(), "elsewhere.seg")
		b := bytes.Clone(orig)
		if altered {
			i := bytes.Index(b, []byte(`"login"`))
			b[i+1] = 'L'
		}
		if err := os.WriteFile(outside, b, 0o644); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "seg", filepath.Base(s.path))
		os.Remove(p)
		if err := os.Symlink(outside, p); err != nil {
			t.Fatal(err)
		}
		rep := verifyDir(t, dir, k, "")
		if rep.OK() == altered || rep.Records != 1000 {
			t.Fatalf("segment linked outside, altered %v:\n%s", altered, rep)
		}
		if altered && (rep.Findings[0].Index < s.first || rep.Findings[0].Index >= segs[2].first) {
			t.Fatalf("the finding is not in the linked segment [%d, %d):\n%s", s.first, segs[2].first, rep)
		}
	}
}

// TestHostileSparseNewestSegment: the newest segment may end in zeros
// (written ahead, zeroahead.go), which verify takes for where the records
// end, after reading them to the end of the file. A copy whose newest
// segment is made a sparse file of a tebibyte after its records (what a
// truncate costs) must verify as the copy it is, within a minute: holes
// are skipped, not read (before, verify read the tebibyte of zeros, for
// many minutes). Data after the hole is still read, and found.
func TestHostileSparseNewestSegment(t *testing.T) {
	k := newKey(t, testOrigin)
	const n = 1000
	base := buildLedger(t, k, n, nil)
	segs, err := listSegments(filepath.Join(base, "seg"))
	if err != nil || len(segs) < 2 {
		t.Fatalf("segments: %v, %d", err, len(segs))
	}
	newest := filepath.Join("seg", filepath.Base(segs[len(segs)-1].path))
	for _, after := range []bool{false, true} {
		dir := copyDir(t, base)
		p := filepath.Join(dir, newest)
		if err := os.Truncate(p, 1<<40); err != nil {
			t.Fatal(err)
		}
		if after {
			// A byte written past the hole: not zeros to the end.
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte{1}, 1<<40-1)
			f.Close()
		}
		start := time.Now()
		rep, err := verifyWithin(t, dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("data after the hole %v: %s in %s", after, rep, time.Since(start))
		if rep.Records != n {
			t.Fatalf("data after the hole %v: %d records, want %d:\n%s", after, rep.Records, n, rep)
		}
		if !after && !rep.OK() {
			t.Fatalf("zeros to the end of the newest segment are a finding:\n%s", rep)
		}
		if after && !slices.ContainsFunc(rep.Notices, func(f Finding) bool { return f.Kind == NoticeTornTail }) && rep.OK() {
			t.Fatalf("a byte after the zeros is neither a finding nor a torn tail:\n%s", rep)
		}
	}
}

// TestHostileSparseHistory: a checkpoint history file made a sparse file
// of a tebibyte (a truncate) is read only up to cpFileMax, the most a
// history file the ledger closed can hold, by verify and by a read-only
// open and its proofs (prove, report): before, each read a gibibyte
// (frameLogMax, pruned.log's bound) into memory, 2 GB at the peak.
func TestHostileSparseHistory(t *testing.T) {
	k := newKey(t, testOrigin)
	base := buildLedger(t, k, 1000, nil)
	dir := copyDir(t, base)
	if err := os.Truncate(filepath.Join(dir, cpDir, "00000000000000000000.log"), 1<<40); err != nil {
		t.Fatal(err)
	}
	allocated := func(f func()) uint64 {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	var rep *Report
	if a := allocated(func() {
		var err error
		if rep, err = verifyWithin(t, dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}); a > 256<<20 {
		t.Errorf("verify allocated %d MiB", a>>20)
	}
	if rep.OK() || !slices.ContainsFunc(rep.Findings, func(f Finding) bool {
		return f.Kind == KindCheckpointForged && strings.Contains(f.Message, errTooLarge.Error())
	}) {
		t.Fatalf("no finding of the history file's size:\n%s", rep)
	}
	if a := allocated(func() {
		l, err := OpenReadOnly(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		signed, _, err := l.SignedCheckpoint(0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.ProveInclusion(3, signed); err != nil {
			t.Fatal(err)
		}
	}); a > 256<<20 {
		t.Errorf("a read-only open and a proof allocated %d MiB", a>>20)
	}
}

// TestHostileSegmentFlood: a copy with thousands of empty files named as
// segments after its records is reported (their headers are missing) at
// the cost of opening them, not of a read buffer each: verify made and
// faulted in an 8 MiB block (twice) for every segment it read rather than
// mapped, ~10 ms each, so 5,000 such files took a minute and 100,000 half
// an hour.
func TestHostileSegmentFlood(t *testing.T) {
	k := newKey(t, testOrigin)
	const n = 1000
	dir := buildLedger(t, k, n, nil)
	const junk = 2000
	for i := range junk {
		if err := os.WriteFile(filepath.Join(dir, "seg", segName(uint64(n+10+i))), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	rep, err := verifyWithin(t, dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}}, 5*time.Minute)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d empty segment files: %s, allocated %d MiB\n%.500s", junk, took, alloc>>20, rep)
	if rep.OK() {
		t.Fatalf("empty segment files are not a finding:\n%s", rep)
	}
	if alloc > 512<<20 {
		t.Errorf("verify allocated %d MiB for %d empty segment files (%d KiB each)", alloc>>20, junk, alloc/junk>>10)
	}
}
