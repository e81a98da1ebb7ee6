package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// zRecord is a record that compresses like an event: repeated structure,
// varying ids.
func zRecord(i int) []byte {
	return []byte(strings.Repeat(" ", i%7) + `{"@timestamp":"2026-01-01T00:00:00Z","event":{"id":"ev-` + string(rune('a'+i%26)) + `-` +
		strings.Repeat("7", i%13) + `","action":"login","outcome":"failure"},"user":{"name":"u` + string(rune('a'+i%5)) + `"},"n":` +
		strconv.Itoa(i) + `}`)
}

// waitCompressed waits, at most within, until every closed segment of l is
// compressed and none is queued for it; the write stall's count of
// uncompressed segments is then zero (a segment counted and never
// compressed would stall the writer for good).
func waitCompressed(t testing.TB, l *Ledger, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		l.compactMu.Lock()
		done := len(l.compactQ) == 0 && l.backlog.Load() == 0
		l.compactMu.Unlock()
		l.segMu.RLock()
		segs := l.segs
		l.segMu.RUnlock()
		for _, s := range segs[:len(segs)-1] {
			if _, z := s.source(); z == nil {
				done = false
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("closed segments not compressed after %s (%d counted uncompressed)", within, l.backlog.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// compressedLedger writes n records in segments of 1 MiB (eight blocks
// each: more than verify decodes ahead) and waits until the closed ones
// are compressed.
func compressedLedger(t testing.TB, k testKey, n int) (string, [][]byte) {
	t.Helper()
	dir := t.TempDir()
	opts := testOpts(k)
	opts.SegmentSize = 1 << 20
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	var recs [][]byte
	for i := range n {
		recs = append(recs, zRecord(i))
	}
	appendBatch(t, l, recs)
	waitCompressed(t, l, 60*time.Second)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, recs
}

// TestCompressedSegments: closed segments are replaced by compressed ones
// holding the same records; random and sequential reads, proofs, read-only
// opens, reopening and verify all work on them, with the public key alone.
func TestCompressedSegments(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	dir, recs := compressedLedger(t, k, 20000)
	segs, _ := listSegments(filepath.Join(dir, "seg"))
	if len(segs) < 3 {
		t.Fatalf("%d segments", len(segs))
	}
	var zbytes, raw int64
	for _, s := range segs[:len(segs)-1] {
		if s.z == nil || len(s.z.blocks) < 6 || s.leftover != "" {
			t.Fatalf("segment %s: compressed %v, %d blocks, leftover %q", s.path, s.z != nil, len(s.z.blocks), s.leftover)
		}
		if _, err := os.Stat(strings.TrimSuffix(s.path, ".zseg") + ".idx"); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the .idx of compressed segment %s is left: %v", s.path, err)
		}
		st, _ := os.Stat(s.path)
		zbytes += st.Size()
		for k := s.first; k < s.first+s.z.count; k++ {
			raw += int64(len(recs[k]) + frameOverhead + idxEntrySize)
		}
	}
	if zbytes*3 > raw {
		t.Fatalf("compressed segments take %d bytes for %d written", zbytes, raw)
	}
	t.Logf("closed segments: %d bytes compressed, %d as written", zbytes, raw)

	rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
	if err != nil || !rep.OK() || rep.Records != uint64(len(recs)) {
		t.Fatalf("verify: %v\n%s", err, rep)
	}
	check := func(l *Ledger) {
		t.Helper()
		for _, i := range []int{0, 1, 1500, 4321, len(recs) - 1, 2, 4322} {
			e, err := l.Read(uint64(i))
			if err != nil || !bytes.Equal(e.Data, recs[i]) {
				t.Fatalf("Read(%d): %v %q", i, err, e.Data)
			}
		}
		n := 0
		for e, err := range l.Entries(1000) {
			if err != nil || !bytes.Equal(e.Data, recs[e.Index]) {
				t.Fatalf("Entries at %d: %v", e.Index, err)
			}
			n++
		}
		if n != len(recs)-1000 {
			t.Fatalf("Entries read %d", n)
		}
		signed, cp := l.LatestCheckpoint()
		b, err := l.ProveInclusion(2000, signed)
		if err != nil || tlog.CheckRecord(b.Proof, int64(cp.Size), cp.Root, 2000, tlog.RecordHash(recs[2000])) != nil || !bytes.Equal(b.Record, recs[2000]) {
			t.Fatalf("proof of a compressed record: %v", err)
		}
	}
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	check(ro)
	ro.Close()
	l, err := Open(dir, testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCompactionInterrupted: whatever a stop or crash leaves of a
// compaction — a half-written .zseg.tmp, a complete .zseg beside its .seg,
// a damaged .zseg beside its .seg — Open keeps exactly one complete form
// of every segment, compresses what is left, and the ledger verifies.
func TestCompactionInterrupted(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	dir := t.TempDir()
	opts := testOpts(k)
	opts.SegmentSize = 64 << 10
	opts.DisableCompression = true
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	var recs [][]byte
	for i := range 3000 {
		recs = append(recs, zRecord(i))
	}
	appendBatch(t, l, recs)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := listSegments(filepath.Join(dir, "seg"))
	if len(segs) < 4 {
		t.Fatalf("%d segments", len(segs))
	}
	// Segment 0: compressed, the .seg not yet removed.
	if _, err := compressSegment(segs[0].path, segs[0].first, segs[1].first-segs[0].first); err != nil {
		t.Fatal(err)
	}
	// Segment 1: a damaged .zseg beside it (cannot come from a crash, but
	// the complete .seg is what counts).
	zp, err := compressSegment(segs[1].path, segs[1].first, segs[2].first-segs[1].first)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(zp)
	os.WriteFile(zp, b[:len(b)-3], 0o644)
	// Segment 2: a half-written temporary file.
	os.WriteFile(strings.TrimSuffix(segs[2].path, ".seg")+".zseg.tmp", []byte("TGLZSG1\nhalf"), 0o644)

	opts.DisableCompression = false
	l, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	waitCompressed(t, l, 20*time.Second)
	for i := range recs {
		if e, err := l.Read(uint64(i)); err != nil || !bytes.Equal(e.Data, recs[i]) {
			t.Fatalf("Read(%d): %v", i, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "seg", "*"))
	n := 0
	for _, p := range left {
		if strings.HasSuffix(p, ".tmp") || strings.HasSuffix(p, ".seg") && n > 0 {
			t.Errorf("left after compaction: %s", p)
		}
		if strings.HasSuffix(p, ".seg") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d uncompressed segments left, want the open one: %v", n, left)
	}
	if rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}}); err != nil || !rep.OK() || rep.Records != 3000 {
		t.Fatalf("verify: %v\n%s", err, rep)
	}
}

// TestVerifyFindsTamperingInCompressedSegments: damage to a compressed
// block is named (the block, its records), a record changed and the
// block recompressed with valid checksums is named to the record, a
// deleted compressed segment is a deletion, and reads refuse all of it.
func TestVerifyFindsTamperingInCompressedSegments(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	base, recs := compressedLedger(t, k, 16000)
	segs, _ := listSegments(filepath.Join(base, "seg"))
	s := segs[1]
	blk := s.z.blocks[1]
	blockFirst := s.first + blk.first
	cases := []struct {
		name      string
		tamper    func(t *testing.T, dir string)
		kind      string
		index     uint64
		count     uint64
		frameKind bool // a frame-corrupt finding is expected too (or merged)
		readIndex uint64
	}{
		{"byte flipped in a block", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "seg", filepath.Base(s.path))
			b, _ := os.ReadFile(p)
			b[blk.off+int64(blk.clen)/2] ^= 0x40
			os.WriteFile(p, b, 0o644)
		}, KindRecordModified, blockFirst, uint64(blk.count), true, blockFirst + 3},
		{"record changed, block recompressed with valid checksums", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "seg", filepath.Base(s.path))
			b, _ := os.ReadFile(p)
			got, _, err := decodeBlock(b[blk.off:blk.off+int64(blk.clen)], blk.count, nil)
			if err != nil {
				t.Fatal(err)
			}
			got[5].data = bytes.Replace(got[5].data, []byte("failure"), []byte("success"), 1)
			nb, _ := encodeBlock(nil, got, nil)
			rebuilt := rebuildZseg(t, b, s.z, 1, nb)
			os.WriteFile(p, rebuilt, 0o644)
		}, KindRecordModified, blockFirst + 5, 1, false, blockFirst + 5},
		{"compressed segment deleted", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "seg", filepath.Base(s.path)))
		}, KindRecordDeleted, s.first, s.z.count, false, 0},
		{"trailer damaged", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "seg", filepath.Base(s.path))
			b, _ := os.ReadFile(p)
			b[len(b)-1] ^= 1
			os.WriteFile(p, b, 0o644)
		}, KindRecordModified, s.first, s.z.count, true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, base)
			tc.tamper(t, dir)
			rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || !hasKindInTile(rep.Findings, tc.kind, tc.index) {
				t.Fatalf("want %s at %d:\n%s", tc.kind, tc.index, rep)
			}
			for _, f := range rep.Findings {
				if f.Kind == tc.kind && f.Index == tc.index && f.Count != tc.count {
					t.Errorf("%s counts %d record(s), want %d", f.Kind, f.Count, tc.count)
				}
			}
			if tc.frameKind && !strings.Contains(rep.String(), "block") && !strings.Contains(rep.String(), "unreadable") {
				t.Errorf("the damage is not named:\n%s", rep)
			}
			t.Log(rep)
			if tc.readIndex == 0 {
				return
			}
			l, err := OpenReadOnly(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if e, err := l.Read(tc.readIndex); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Read(%d) of a tampered record: %v %q", tc.readIndex, err, e.Data)
			}
			// The nearest record of another tile: those of the same tile
			// are authenticated through hashes derived from the changed
			// record (their leaf hashes are not stored: derived.go).
			nb := tc.readIndex/tileWidth*tileWidth - 1
			if e, err := l.Read(nb); tc.kind == KindRecordModified && tc.count == 1 && (err != nil || !bytes.Equal(e.Data, recs[nb])) {
				t.Fatalf("Read of the untouched neighbour: %v", err)
			}
		})
	}
}

// rebuildZseg replaces block bi of a compressed segment and writes the
// index and trailer again, with valid checksums: what a careful attacker
// without the signing key would do.
func rebuildZseg(t *testing.T, b []byte, z *zIndex, bi int, nb []byte) []byte {
	t.Helper()
	out := append([]byte(nil), b[:zHeaderSize]...)
	var index []byte
	for k, blk := range z.blocks {
		data := b[blk.off : blk.off+int64(blk.clen)]
		if k == bi {
			data = nb
		}
		index = binary.BigEndian.AppendUint64(index, uint64(len(out)))
		index = binary.BigEndian.AppendUint32(index, uint32(len(data)))
		index = binary.BigEndian.AppendUint32(index, blk.count)
		out = append(out, data...)
	}
	ioff := len(out)
	out = append(out, index...)
	out = binary.BigEndian.AppendUint64(out, uint64(ioff))
	out = binary.BigEndian.AppendUint32(out, uint32(len(z.blocks)))
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(index, castagnoli))
	return append(out, zEndMagic...)
}

// TestReadOnlyFollowsCompaction: a read-only ledger opened beside a
// running writer (prove, reindex, detect --replay) keeps reading segments
// the writer compresses and removes after the read-only open.
func TestReadOnlyFollowsCompaction(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	dir := t.TempDir()
	opts := testOpts(k)
	opts.SegmentSize = 160 << 10 // three segments: the compactor waits for the writer to idle
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var recs [][]byte
	for i := range 3000 {
		recs = append(recs, zRecord(i))
	}
	// Appends without a pause keep the compactor waiting.
	appendBatch(t, w, recs)
	if _, err := w.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if segs, _ := listSegments(filepath.Join(dir, "seg")); segs[0].z != nil {
		t.Skip("compressed before the read-only open; nothing to follow")
	}
	waitCompressed(t, w, 20*time.Second)
	for _, i := range []uint64{0, 1000, 2999} {
		if e, err := ro.Read(i); err != nil || !bytes.Equal(e.Data, recs[i]) {
			t.Fatalf("read-only Read(%d) after compaction: %v", i, err)
		}
	}
	n := 0
	for e, err := range ro.Entries(0) {
		if err != nil || !bytes.Equal(e.Data, recs[e.Index]) {
			t.Fatalf("read-only Entries at %d after compaction: %v", e.Index, err)
		}
		n++
	}
	if n != len(recs) {
		t.Fatalf("read %d of %d", n, len(recs))
	}
}

// TestVerifySinceInCompressedSegment: incremental verification from a
// checkpoint in the middle of a compressed block steps over the records
// before it (not even decoding earlier blocks), checks the rest, and still
// names an altered record after it.
func TestVerifySinceInCompressedSegment(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	v := []note.Verifier{k.verifier}
	dir := t.TempDir()
	opts := testOpts(k)
	opts.SegmentSize = 1 << 20
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	var recs [][]byte
	for i := range 16000 {
		recs = append(recs, zRecord(i))
	}
	const at = 9000 // inside the second segment's blocks (asserted below)
	appendBatch(t, l, recs[:at])
	signed, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	since, _, err := OpenCheckpoint(signed, note.VerifierList(v...))
	if err != nil || since.Size != at {
		t.Fatalf("checkpoint: %v (size %d)", err, since.Size)
	}
	appendBatch(t, l, recs[at:])
	waitCompressed(t, l, 20*time.Second)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := listSegments(filepath.Join(dir, "seg"))
	inside := false
	for _, s := range segs {
		if s.z == nil || s.first >= at {
			continue
		}
		for _, b := range s.z.blocks {
			inside = inside || (s.first+b.first < at && at < s.first+b.first+uint64(b.count))
		}
	}
	if !inside {
		t.Fatalf("checkpoint %d is not inside a compressed block: the test needs other sizes", at)
	}
	rep, err := Verify(dir, VerifyOptions{Verifiers: v, Since: &since})
	if err != nil || !rep.OK() || rep.Records != uint64(len(recs)) {
		t.Fatalf("incremental verify: %v\n%s", err, rep)
	}
	// A record after the starting point, in a compressed block rebuilt
	// with valid checksums.
	for _, s := range segs {
		if s.z == nil || s.first+s.z.count <= at+10 || s.first > at+10 {
			continue
		}
		bi := s.z.block(at + 10 - s.first)
		blk := s.z.blocks[bi]
		p := filepath.Join(dir, "seg", filepath.Base(s.path))
		b, _ := os.ReadFile(p)
		got, _, err := decodeBlock(b[blk.off:blk.off+int64(blk.clen)], blk.count, nil)
		if err != nil {
			t.Fatal(err)
		}
		k := at + 10 - s.first - blk.first
		got[k].data = bytes.Replace(got[k].data, []byte("failure"), []byte("success"), 1)
		nb, _ := encodeBlock(nil, got, nil)
		os.WriteFile(p, rebuildZseg(t, b, s.z, bi, nb), 0o644)
	}
	if rep, _ := Verify(dir, VerifyOptions{Verifiers: v, Since: &since}); rep.OK() || !hasKindInTile(rep.Findings[:1], KindRecordModified, at+10) {
		t.Fatalf("incremental verify of an altered record:\n%s", rep)
	}
}

// TestBlockCountBounded: a block and index that claim a huge record count
// (an attacker with the disk recomputes both checksums) are refused
// before anything that size is allocated: a record takes at least two
// bytes of its block.
func TestBlockCountBounded(t *testing.T) {
	const claim = 1 << 28
	raw := binary.AppendUvarint(nil, claim)
	raw = append(raw, 2, 4, 3, 'a', 'b', 'c')
	raw = binary.BigEndian.AppendUint32(raw, crc32.Checksum(raw, castagnoli))
	comp := zEncoder().EncodeAll(raw, nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := decodeBlock(comp, claim, nil)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a 10-byte block holding 2^28 records decoded")
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("refusing the block allocated %d bytes", n)
	}
}

// TestVerifyHugeBlockCount: a compressed segment whose index (checksums
// recomputed) gives a block 2^32-1 records is a finding, reported at once:
// verify stands in for no more unreadable records than the ledger can
// hold (it used to step through all of them).
func TestVerifyHugeBlockCount(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	dir, _ := compressedLedger(t, k, 16000)
	segs, _ := listSegments(filepath.Join(dir, "seg"))
	s := segs[1]
	p := filepath.Join(dir, "seg", filepath.Base(s.path))
	b, _ := os.ReadFile(p)
	z := *s.z
	z.blocks = slices.Clone(z.blocks)
	z.blocks[1].count = ^uint32(0)
	total := uint64(0)
	for _, blk := range z.blocks {
		total += uint64(blk.count)
	}
	out := rebuildZseg(t, b, &z, -1, nil)
	binary.BigEndian.PutUint64(out[len(zMagic)+8:], total)
	binary.BigEndian.PutUint32(out[zHeaderSize-4:], crc32.Checksum(out[:zHeaderSize-4], castagnoli))
	os.WriteFile(p, out, 0o644)
	done := make(chan *Report, 1)
	go func() {
		rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	select {
	case rep := <-done:
		if rep == nil || rep.OK() || !strings.Contains(rep.String(), "block") {
			t.Fatalf("a block claiming 2^32-1 records is not named:\n%s", rep)
		}
		t.Log(rep)
	case <-time.After(30 * time.Second):
		t.Fatal("verify still runs after 30 s")
	}
}

// TestVerifyHugeCompressedBlock: a compressed block whose index entry
// claims gigabytes (the segment sparse, its index and trailer rewritten
// with valid checksums) is named as damaged without being read into
// memory: verify reads each block of a segment it did not map into a
// buffer, and a block longer than any block of its records compresses to
// cannot be one.
func TestVerifyHugeCompressedBlock(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	dir, _ := compressedLedger(t, k, 16000)
	segs, _ := listSegments(filepath.Join(dir, "seg"))
	s := segs[1]
	p := filepath.Join(dir, "seg", filepath.Base(s.path))
	b, _ := os.ReadFile(p)
	const hole = 3 << 30
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	// The blocks as they were, block 1 followed by a hole it claims.
	var index []byte
	off := int64(0)
	write := func(d []byte) {
		if _, err := f.WriteAt(d, off); err != nil {
			t.Fatal(err)
		}
		off += int64(len(d))
	}
	write(b[:zHeaderSize])
	for bi, blk := range s.z.blocks {
		clen := int64(blk.clen)
		if bi == 1 {
			clen += hole
		}
		index = binary.BigEndian.AppendUint64(index, uint64(off))
		index = binary.BigEndian.AppendUint32(index, uint32(clen))
		index = binary.BigEndian.AppendUint32(index, blk.count)
		write(b[blk.off : blk.off+int64(blk.clen)])
		off += clen - int64(blk.clen)
	}
	ioff := off
	write(index)
	tr := binary.BigEndian.AppendUint64(nil, uint64(ioff))
	tr = binary.BigEndian.AppendUint32(tr, uint32(len(s.z.blocks)))
	tr = binary.BigEndian.AppendUint32(tr, crc32.Checksum(index, castagnoli))
	write(append(tr, zEndMagic...))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	first := s.first + s.z.blocks[1].first
	named := fmt.Sprintf("records %d to %d (%s block at offset %d)", first, first+uint64(s.z.blocks[1].count)-1, filepath.Join("seg", filepath.Base(p)), s.z.blocks[1].off)
	if rep.OK() || !strings.Contains(rep.String(), named) {
		t.Fatalf("the block claiming %d bytes is not named (%s):\n%s", hole, named, rep)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew >= hole {
		t.Fatalf("verify allocated %d MiB: the block was read", grew>>20)
	}
	t.Log(rep)
}

// TestVerifyUnreadableSegmentHugeGap: an unreadable compressed segment
// holds as many records as the next segment's name says, but no more than
// the ledger can hold: renamed to start at 10^19, the next segment does
// not make verify stand in for 10^19 records.
func TestVerifyUnreadableSegmentHugeGap(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	dir, _ := compressedLedger(t, k, 16000)
	segs, _ := listSegments(filepath.Join(dir, "seg"))
	p := filepath.Join(dir, "seg", filepath.Base(segs[len(segs)-2].path))
	b, _ := os.ReadFile(p)
	b[len(b)-1] ^= 1 // trailer: the segment is unreadable
	os.WriteFile(p, b, 0o644)
	last := segs[len(segs)-1].path
	if err := os.Rename(last, filepath.Join(filepath.Dir(last), "10000000000000000000.seg")); err != nil {
		t.Fatal(err)
	}
	os.Remove(idxPath(last))
	done := make(chan *Report, 1)
	go func() {
		rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	select {
	case rep := <-done:
		if rep == nil || rep.OK() || !strings.Contains(rep.String(), "unreadable") {
			t.Fatalf("the unreadable segment is not named:\n%s", rep)
		}
		t.Log(rep)
	case <-time.After(30 * time.Second):
		t.Fatal("verify still runs after 30 s")
	}
}

// TestCompressSegmentRefuses: compaction proves the compressed segment
// holds exactly the segment's records before anything replaces it. A
// damaged source frame, a source with fewer records than the ledger
// counts, a compressed block that does not decode, one that decodes to
// other records (checksums recomputed: only the record-by-record
// comparison sees it), one with another append time, and a damaged block
// index are all refused, and no compressed file is left.
func TestCompressSegmentRefuses(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	dir := t.TempDir()
	opts := testOpts(k)
	opts.SegmentSize = 256 << 10
	opts.DisableCompression = true
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	var recs [][]byte
	for i := range 3000 {
		recs = append(recs, zRecord(i))
	}
	appendBatch(t, l, recs)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := listSegments(filepath.Join(dir, "seg"))
	if len(segs) < 2 {
		t.Fatalf("%d segments", len(segs))
	}
	s, count := segs[0], segs[1].first-segs[0].first
	orig, err := os.ReadFile(s.path)
	if err != nil {
		t.Fatal(err)
	}
	// reblock decodes block bi of a compressed segment being built, lets
	// change alter its records, and encodes it again (with a valid block
	// checksum).
	reblock := func(bi int, change func([]zRec) []zRec) func(int, []byte) []byte {
		return func(k int, comp []byte) []byte {
			if k != bi {
				return comp
			}
			raw, err := decodeRaw(comp, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := binary.Uvarint(raw)
			got, err := splitBlock(raw[:len(raw)-4], uint32(n))
			if err != nil {
				t.Fatal(err)
			}
			nb, _ := encodeBlock(nil, change(got), nil)
			return nb
		}
	}
	for _, tc := range []struct {
		name  string
		src   func([]byte) []byte
		count uint64
		alter zAlter
		want  string
		// during, if not nil, changes the source file after it was read
		// (someone else's hand; closed segments are never written).
		during func(t *testing.T, p string)
	}{
		{name: "intact", count: count},
		{name: "source frame damaged", count: count, src: func(b []byte) []byte {
			b[segHeaderSize+frameHeader+3] ^= 1
			return b
		}, want: "checksum"},
		{name: "source short of records", count: count + 1, want: "holds"},
		{name: "block does not decode", count: count, alter: zAlter{block: func(k int, comp []byte) []byte {
			if k == 0 {
				comp[20] ^= 0xff
			}
			return comp
		}}, want: "compressing"},
		{name: "block decodes to another record", count: count, alter: zAlter{block: reblock(1, func(r []zRec) []zRec {
			r[3].data = bytes.Replace(r[3].data, []byte("failure"), []byte("success"), 1)
			return r
		})}, want: "does not survive"},
		{name: "block gives another append time", count: count, alter: zAlter{block: reblock(0, func(r []zRec) []zRec {
			r[5].time++
			return r
		})}, want: "does not survive"},
		{name: "block repeats a record", count: count, alter: zAlter{block: reblock(1, func(r []zRec) []zRec {
			r[len(r)-1] = r[len(r)-2]
			return r
		})}, want: "does not survive"},
		{name: "block drops its last record", count: count, alter: zAlter{block: reblock(1, func(r []zRec) []zRec {
			return r[:len(r)-1]
		})}, want: "record count"},
		{name: "block index damaged", count: count, alter: zAlter{out: func(out []byte) []byte {
			out[len(out)-zTrailerSize-3] ^= 1
			return out
		}}, want: "index"},
		// The segment cut or rewritten by someone else once it was read:
		// the compressed form holds the records as read and checked.
		{name: "source cut after it was read", count: count, during: func(t *testing.T, p string) {
			if err := os.Truncate(p, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "source changed after it was read", count: count, during: func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{orig[len(orig)-10] ^ 1}, int64(len(orig)-10)); err != nil {
				t.Fatal(err)
			}
		}},
		// A source that ends inside its last frame: the read finds the
		// torn frame.
		{name: "source ends inside a frame", count: count, src: func(b []byte) []byte {
			return b[:len(b)-3]
		}, want: "torn frame"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := slices.Clone(orig)
			if tc.src != nil {
				src = tc.src(src)
			}
			p := filepath.Join(t.TempDir(), filepath.Base(s.path))
			if err := os.WriteFile(p, src, 0o644); err != nil {
				t.Fatal(err)
			}
			alter := tc.alter
			if tc.during != nil {
				alter.out = func(out []byte) []byte {
					tc.during(t, p)
					return out
				}
			}
			zp, err := compressSegmentAltered(p, s.first, tc.count, alter)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				z, err := readZIndex(zp)
				if err != nil || z.count != count {
					t.Fatalf("compressed: %v, %d records, want %d", err, z.count, count)
				}
				// The records as first read, whatever became of the file.
				zb, err := os.ReadFile(zp)
				if err != nil {
					t.Fatal(err)
				}
				at := segHeaderSize
				for _, b := range z.blocks {
					got, _, err := decodeBlock(zb[b.off:b.off+int64(b.clen)], b.count, nil)
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range got {
						tm, rec, n, err := decodeFrame(orig[at:], maxFrameLen)
						if err != nil || tm != r.time || !bytes.Equal(rec, r.data) {
							t.Fatalf("record at %d: %v, or not the segment's", at, err)
						}
						at += n
					}
				}
				if at != len(orig) {
					t.Fatalf("compressed form ends at %d of %d bytes", at, len(orig))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to say %q", err, tc.want)
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), "*.zseg*")); len(left) > 0 {
				t.Fatalf("left after a refused compaction: %v", left)
			}
		})
	}
}

// TestCompactionBacklogBounded: with the compactor held up, the writer
// stops (a write stall) once 2 × CompactBacklog closed segments wait, so
// the uncompressed segments on disk stay within 2 × CompactBacklog plus
// the open one, by count and by bytes (the batches here are smaller than
// a segment); a compactor that has no room
// for its copies (deferring them) does not hold the writer; once it runs,
// everything is compressed and verifies.
func TestCompactionBacklogBounded(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	dir := t.TempDir()
	opts := testOpts(k)
	opts.SegmentSize = 64 << 10
	opts.CompactBacklog = 2
	var mode atomic.Int32 // 0: held at the gate, 1: no room (deferred), 2: runs
	gate := make(chan struct{})
	opts.compactHook = func() error {
		if mode.Load() == 0 {
			<-gate
		}
		if mode.Load() == 1 {
			return errCompactLater
		}
		return nil
	}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	gateOpen := false
	defer func() {
		if !gateOpen {
			close(gate)
		}
		l.Close()
	}()
	var recs [][]byte
	for i := range 30000 {
		recs = append(recs, zRecord(i))
	}
	done := make(chan error, 1)
	go func() {
		for i := 0; i < len(recs); i += 50 {
			if _, err := l.Append(context.Background(), recs[i:i+50]...); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	segDir := filepath.Join(dir, "seg")
	const bound = 2*2 + 1 // closed, waiting, plus the open segment
	maxSegs, maxBytes := 0, int64(0)
	sample := func() {
		n, bytes := 0, int64(0)
		files, _ := filepath.Glob(filepath.Join(segDir, "*.seg"))
		for _, f := range files {
			if st, err := os.Stat(f); err == nil {
				n++
				bytes += st.Size()
			}
		}
		maxSegs, maxBytes = max(maxSegs, n), max(maxBytes, bytes)
		if n > bound || bytes > bound*opts.SegmentSize {
			t.Fatalf("%d uncompressed segments (%d bytes) on disk with compaction held, bound %d segments", n, bytes, bound)
		}
	}
	// Held: the writer stalls; its size stops growing.
	deadline := time.Now().Add(20 * time.Second)
	last, since := l.Size(), time.Now()
	for l.compactStalls.Load() == 0 || time.Since(since) < 300*time.Millisecond {
		sample()
		if s := l.Size(); s != last {
			last, since = s, time.Now()
		}
		select {
		case err := <-done:
			t.Fatalf("all %d records appended (err %v) with the compactor held: no write stall", len(recs), err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write stall within 20 s: %d stalls, size %d", l.compactStalls.Load(), l.Size())
		}
		time.Sleep(2 * time.Millisecond)
	}
	stalledAt := l.Size()
	t.Logf("writer stalled at %d records; at most %d uncompressed segments, %d bytes", stalledAt, maxSegs, maxBytes)
	// No room for the compactor's copies: the writer goes on (the
	// Reserve, not the stall, bounds the disk then).
	mode.Store(1)
	close(gate)
	gateOpen = true
	for l.Size() < stalledAt+2000 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("writer still waits (size %d) on a compactor that has no room", l.Size())
		}
		time.Sleep(2 * time.Millisecond)
	}
	mode.Store(2)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitCompressed(t, l, 30*time.Second)
	for _, i := range []int{0, 1234, 15000, len(recs) - 1} {
		if e, err := l.Read(uint64(i)); err != nil || !bytes.Equal(e.Data, recs[i]) {
			t.Fatalf("Read(%d): %v", i, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}}); err != nil || !rep.OK() || rep.Records != uint64(len(recs)) {
		t.Fatalf("verify: %v\n%s", err, rep)
	}
}

// TestWriteStallEndsWithoutQueuedSegments: a count of closed segments that
// no compaction will ever take back (a counting fault) does not hold the
// writer for ever: with nothing queued and nothing being compressed for a
// few seconds, the stall ends (logged).
func TestWriteStallEndsWithoutQueuedSegments(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.CompactBacklog = 1
	l, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.backlog.Add(5) // counted, never queued
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := l.Append(context.Background(), record(1))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the writer still waits for segments nobody will compress")
	}
	if l.compactStalls.Load() == 0 || time.Since(start) < 2*time.Second {
		t.Fatalf("no stall (%d) or too short (%v): the test did not test the stall's end", l.compactStalls.Load(), time.Since(start))
	}
}

// TestBlockEndFitsOneZstdBlock: blockEnd cuts blocks whose decoded form
// is as large as fits in zBlockSize and no larger (exactly: one record
// more would not fit), whatever the records' sizes and the gaps between
// their append times; each is then encoded as a single zstd block, and
// decodes to its records.
func TestBlockEndFitsOneZstdBlock(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name  string
		n     int
		size  func(i int) int
		delta func(i int) int64 // time since the record before
	}{
		{"event-sized, one batch", 3000, func(i int) int { return 560 + i%40 }, func(int) int64 { return 0 }},
		{"event-sized, appended apart", 3000, func(i int) int { return 700 + i%90 }, func(i int) int64 { return int64(rng.IntN(1e9)) }},
		{"tiny records, far apart", 40000, func(int) int { return 1 }, func(i int) int64 { return 1 << 40 }},
		{"times going back", 3000, func(i int) int { return 100 + i%300 }, func(i int) int64 { return -int64(rng.IntN(1e12)) }},
		{"mixed sizes", 600, func(i int) int { return []int{1, 127, 128, 16383, 16384, 40000}[i%6] }, func(i int) int64 { return int64(i % 3 * 1000) }},
		{"records past a block", 20, func(i int) int { return zBlockSize + 1000 + i }, func(int) int64 { return 5 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var recs []zRec
			tm := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixNano()
			for i := range tt.n {
				tm += tt.delta(i)
				data := bytes.Repeat([]byte{byte('a' + i%26)}, tt.size(i))
				recs = append(recs, zRec{time: tm, data: data})
			}
			var raw, dec []byte
			blocks := 0
			for i := 0; i < len(recs); blocks++ {
				j := blockEnd(recs, i)
				if j <= i {
					t.Fatalf("block at %d ends at %d", i, j)
				}
				var comp []byte
				comp, raw = encodeBlock(nil, recs[i:j], raw)
				if len(raw) > zBlockSize && j > i+1 {
					t.Fatalf("block of records %d..%d decodes to %d bytes, more than %d", i, j-1, len(raw), zBlockSize)
				}
				if j < len(recs) {
					_, more := encodeBlock(nil, recs[i:j+1], nil)
					if len(more) <= zBlockSize {
						t.Fatalf("block of records %d..%d (%d bytes) stops short: with record %d it is %d bytes", i, j-1, len(raw), j, len(more))
					}
				}
				var h zstd.Header
				if err := h.Decode(comp); err != nil || !h.FirstBlock.OK {
					t.Fatalf("block at %d: frame header: %v", i, err)
				}
				if len(raw) <= zBlockSize && !h.FirstBlock.Last {
					t.Fatalf("block of records %d..%d (%d bytes) is more than one zstd block", i, j-1, len(raw))
				}
				got, d, err := decodeBlock(comp, uint32(j-i), dec)
				dec = d
				if err != nil {
					t.Fatalf("block at %d: %v", i, err)
				}
				for k, r := range got {
					if r.time != recs[i+k].time || !bytes.Equal(r.data, recs[i+k].data) {
						t.Fatalf("record %d does not decode to itself", i+k)
					}
				}
				i = j
			}
			t.Logf("%d records in %d blocks", len(recs), blocks)
		})
	}
}

// TestCompressSegmentStreams: the compactor reads its segment through a
// small buffer it reuses (segStream), frames crossing the buffer's end,
// blocks of tiny records whose frames outgrow it, and a frame larger than
// it: the compressed segment must hold every record, in the same blocks
// as blockEnd makes of the whole segment, whatever the buffer's size.
func TestCompressSegmentStreams(t *testing.T) {
	var recs []zRec
	now := int64(1_700_000_000_000_000_000)
	add := func(n, size int) {
		for i := range n {
			now += int64(i%7) * 1000
			recs = append(recs, zRec{time: now, data: fmt.Appendf(nil, "%d-%s", len(recs), bytes.Repeat([]byte{'s'}, size+i%13))})
		}
	}
	add(500, 700)   // ordinary records, frames across every buffer size
	add(20000, 2)   // tiny: a block's frames take ~2.5× its size
	add(1, 600<<10) // one frame larger than the default buffer
	add(300, 5000)  // larger records after it
	add(1, 200<<10) // a block of one record over zBlockSize
	add(50, 100)
	const first = 77
	seg := segHeader(first)
	for _, r := range recs {
		seg = appendFrame(seg, r.time, r.data)
	}
	var want []uint32 // records per block
	for i := 0; i < len(recs); {
		j := blockEnd(recs, i)
		want = append(want, uint32(j-i))
		i = j
	}
	for _, bufSize := range []int{0, 4096, 1000, 64 << 10} {
		t.Run(fmt.Sprintf("buf=%d", bufSize), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), segName(first))
			if err := os.WriteFile(p, seg, 0o644); err != nil {
				t.Fatal(err)
			}
			bufs := newCompactBufs()
			bufs.stream = make([]byte, bufSize)
			for round := range 2 { // the second with the buffers the first left
				zp, err := compressSegmentWith(bufs, p, first, uint64(len(recs)), zAlter{})
				if err != nil {
					t.Fatal(err)
				}
				out, err := os.ReadFile(zp)
				if err != nil {
					t.Fatal(err)
				}
				z, err := parseZIndex(bytes.NewReader(out), int64(len(out)))
				if err != nil {
					t.Fatal(err)
				}
				if len(z.blocks) != len(want) {
					t.Fatalf("round %d: %d blocks, want %d", round, len(z.blocks), len(want))
				}
				k := 0
				for bi, b := range z.blocks {
					if b.count != want[bi] {
						t.Fatalf("round %d: block %d holds %d records, want %d (blockEnd)", round, bi, b.count, want[bi])
					}
					got, _, err := decodeBlock(out[b.off:b.off+int64(b.clen)], b.count, nil)
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range got {
						if r.time != recs[k].time || !bytes.Equal(r.data, recs[k].data) {
							t.Fatalf("round %d: record %d reads back as %.30q at %d, want %.30q at %d", round, k, r.data, r.time, recs[k].data, recs[k].time)
						}
						k++
					}
				}
				if k != len(recs) {
					t.Fatalf("round %d: %d records, want %d", round, k, len(recs))
				}
				os.Remove(zp)
			}
			if bufSize == 0 && cap(bufs.stream) > 2*(600<<10+frameOverhead) {
				t.Errorf("stream buffer of %d bytes kept, want it grown only to the largest frame", cap(bufs.stream))
			}
		})
	}
}
