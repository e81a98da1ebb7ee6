package ledger

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTornPageTail: after a power loss the last frame of the last segment,
// acknowledged to no caller and signed by no checkpoint, can span a page
// boundary with only its first sectors written back, the rest still the
// zeros the segment was zeroed with. That exact signature is a torn tail
// (a notice; Open cuts it); every near miss stays frame-corrupt.
func TestTornPageTail(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = 32 << 10
	opts.DisableCompression = true
	opts.CheckpointEvery = 1 << 20
	opts.CheckpointInterval = time.Hour
	dir := t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	// A big record (it spans several sectors and a 4 KiB page) after
	// ordinary ones.
	big := func(i int) []byte {
		return append(record(i)[:len(record(i))-1], append(append([]byte(`,"big":"`), bytes.Repeat([]byte{'y'}, 9000)...), `"}`...)...)
	}
	n := 0
	add := func(rec []byte) {
		t.Helper()
		if _, err := l.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
		n++
	}
	for n < 200 {
		add(record(n))
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	signedN := n
	for n < signedN+8 { // over a segment end, two in the last
		add(big(n))
	}
	unsigned := copyDir(t, dir) // mid-run: the last records unsigned
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	signed := copyDir(t, dir) // mid-run: every record signed

	segs, err := listSegments(filepath.Join(unsigned, "seg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) < 2 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	// frames returns the offsets and sizes of a segment's frames and the
	// size of the file.
	frames := func(dir string, s *segment) (offs, sizes []int64, size int64) {
		t.Helper()
		p := filepath.Join(dir, "seg", filepath.Base(s.path))
		res, err := scanSegment(p, s.first, maxFrameLen)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range res.entries {
			fl, err := frameLen(data[e.off:], maxFrameLen)
			if err != nil {
				t.Fatal(err)
			}
			offs, sizes = append(offs, e.off), append(sizes, int64(fl))
		}
		return offs, sizes, int64(len(data))
	}
	lastSeg, earlier := segs[len(segs)-1], segs[len(segs)-2]
	write := func(dir string, s *segment, at int64, b []byte) {
		t.Helper()
		f, err := os.OpenFile(filepath.Join(dir, "seg", filepath.Base(s.path)), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, at); err != nil {
			t.Fatal(err)
		}
	}
	// boundary returns the first multiple of unit inside the frame at off
	// past its header.
	boundary := func(off, size, unit int64) int64 {
		t.Helper()
		b := (off + frameHeader + unit) / unit * unit
		if b >= off+size {
			t.Fatalf("no %d boundary inside the frame [%d, %d)", unit, off, off+size)
		}
		return b
	}
	// tornAt zeros the frame from b to the end of the file (and 8 KiB past
	// it: the zeros a segment was zeroed ahead with).
	tornAt := func(dir string, s *segment, b int64) {
		_, _, size := frames(dir, s)
		write(dir, s, b, make([]byte, size-b+8<<10))
	}
	lastFrame := func(dir string, s *segment) (int64, int64) {
		offs, sizes, _ := frames(dir, s)
		return offs[len(offs)-1], sizes[len(sizes)-1]
	}

	// zeroEarlier zeros the last frame of the segment before the last, unsigned,
	// from a sector boundary to the end of the segment.
	zeroEarlier := func(d string) {
		off, size := lastFrame(d, earlier)
		if offs, _, _ := frames(d, earlier); earlier.first+uint64(len(offs))-1 < uint64(signedN) {
			t.Fatalf("the segment before the last ends with signed record %d", earlier.first+uint64(len(offs))-1)
		}
		tornAt(d, earlier, boundary(off, size, sectorSize))
	}

	if offs, _, _ := frames(unsigned, lastSeg); len(offs) < 2 {
		t.Fatalf("the last segment holds %d frames, want two or more", len(offs))
	}

	for _, tc := range []struct {
		name string
		base string
		edit func(dir string)
		torn bool // a torn-tail notice and no finding; else the frame is a finding
		// cutTo: for a finding, Open recovers to this many records (the
		// frames after the damaged one go with it) and verify is clean
		// after; 0: not opened.
		cutTo int
	}{
		{"last frame, first sector written", unsigned, func(d string) {
			off, size := lastFrame(d, lastSeg)
			tornAt(d, lastSeg, boundary(off, size, sectorSize))
		}, true, 0},
		{"last frame, first page written", unsigned, func(d string) {
			off, size := lastFrame(d, lastSeg)
			tornAt(d, lastSeg, boundary(off, size, 4096))
		}, true, 0},
		{"zeros not from a sector boundary", unsigned, func(d string) {
			off, size := lastFrame(d, lastSeg)
			tornAt(d, lastSeg, off+size-4) // the checksum only: the last sector's start is not zero
		}, false, 0},
		{"non-zero garbage after a sector boundary", unsigned, func(d string) {
			off, size := lastFrame(d, lastSeg)
			b := boundary(off, size, sectorSize)
			write(d, lastSeg, b, bytes.Repeat([]byte{0xa5}, int(off+size-b)))
		}, false, 0},
		{"zeros then a non-zero byte after the frame", unsigned, func(d string) {
			off, size := lastFrame(d, lastSeg)
			tornAt(d, lastSeg, boundary(off, size, sectorSize))
			write(d, lastSeg, off+size+5000, []byte{1})
		}, false, 0},
		{"zeros then a non-zero byte inside the frame", unsigned, func(d string) {
			off, size := lastFrame(d, lastSeg)
			tornAt(d, lastSeg, boundary(off, size, sectorSize))
			write(d, lastSeg, off+size-4, []byte{1})
		}, false, 0},
		{"middle frame zeroed from a sector boundary", unsigned, func(d string) {
			offs, sizes, _ := frames(d, lastSeg)
			off, size := offs[len(offs)-2], sizes[len(sizes)-2]
			b := boundary(off, size, sectorSize)
			write(d, lastSeg, b, make([]byte, off+size-b))
		}, false, 0},
		// What a power failure can leave when the device's cache wrote a
		// later batch's blocks back before an earlier one's (batches wait
		// for their flushes two at a time, direct.go; within one write
		// this could happen before): zeros from a sector boundary, then
		// frames, none signed or acknowledged. Verify of the ledger as
		// the failure left it reports the frame (it cannot tell this from
		// a change), Open cuts there.
		{"hole of zeros, then frames", unsigned, func(d string) {
			offs, sizes, _ := frames(d, lastSeg)
			off, size := offs[len(offs)-2], sizes[len(sizes)-2]
			b := boundary(off, size, sectorSize)
			write(d, lastSeg, b, make([]byte, offs[len(offs)-1]+frameHeader-b))
		}, false, n - 2},
		{"last frames of an earlier segment", unsigned, zeroEarlier, false, 0},
		{"last frames of an earlier segment without its .idx", unsigned, func(d string) {
			zeroEarlier(d)
			if err := os.Remove(idxPath(filepath.Join(d, "seg", filepath.Base(earlier.path)))); err != nil {
				t.Fatal(err)
			}
		}, false, 0},
		{"last frame signed by a checkpoint", signed, func(d string) {
			off, size := lastFrame(d, lastSeg)
			tornAt(d, lastSeg, boundary(off, size, sectorSize))
		}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := copyDir(t, tc.base)
			tc.edit(d)
			rep := verifyDir(t, d, k, "")
			if tc.torn {
				if !rep.OK() || !hasTorn(rep.Notices, uint64(n-1)) {
					t.Fatalf("want a torn-tail notice at record %d and no finding:\n%s", n-1, rep)
				}
				// Open cuts it the same way: one record fewer, and a clean
				// ledger after.
				o := testOpts(k)
				o.DisableCompression = true
				l2, err := Open(d, o)
				if err != nil {
					t.Fatal(err)
				}
				if got := l2.Size(); got != uint64(n-1) {
					t.Errorf("after recovery %d records, want %d", got, n-1)
				}
				if err := l2.Close(); err != nil {
					t.Fatal(err)
				}
				if rep := verifyDir(t, d, k, ""); !rep.OK() || rep.Records != uint64(n-1) {
					t.Fatalf("after recovery:\n%s", rep)
				}
				return
			}
			// A finding for the damaged frame (frame-corrupt, or
			// record-modified where a signed tree names the record), and
			// no torn tail before the records' end (the zeros written
			// ahead after them are one).
			damaged := false
			for _, f := range rep.Findings {
				damaged = damaged || strings.Contains(f.Message, "frame checksum mismatch")
			}
			torn := false
			for _, f := range rep.Notices {
				torn = torn || f.Kind == NoticeTornTail && f.Index < uint64(n)
			}
			if !damaged || torn {
				t.Fatalf("want the frame reported damaged, not a torn tail:\n%s", rep)
			}
			if tc.cutTo > 0 {
				o := testOpts(k)
				o.DisableCompression = true
				l2, err := Open(d, o)
				if err != nil {
					t.Fatal(err)
				}
				if got := l2.Size(); got != uint64(tc.cutTo) {
					t.Errorf("after recovery %d records, want %d", got, tc.cutTo)
				}
				if err := l2.Close(); err != nil {
					t.Fatal(err)
				}
				if rep := verifyDir(t, d, k, ""); !rep.OK() || rep.Records != uint64(tc.cutTo) {
					t.Fatalf("after recovery:\n%s", rep)
				}
			}
		})
	}
}

// hasTorn reports whether notices include a torn tail at record idx.
func hasTorn(notices []Finding, idx uint64) bool {
	for _, f := range notices {
		if f.Kind == NoticeTornTail && f.Index == idx {
			return true
		}
	}
	return false
}

// TestStaleIndexTail: after a power loss the newest segment's .idx can
// have its size on disk but not its last entries (ext4 commits the size
// of an append inside an allocated block with whatever journal commit
// comes next; the .idx is synced only when its segment closes): zeros
// from an entry to the end of the newest .idx are a stale index (a
// notice, rebuilt by Open), like a short one. Zeros in a closed
// segment's .idx, or zeros followed by anything else, stay index-damaged.
func TestStaleIndexTail(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = 16 << 10
	opts.DisableCompression = true
	dir := t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 300 {
		if _, err := l.Append(ctx, record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := listSegments(filepath.Join(dir, "seg"))
	if err != nil || len(segs) < 2 {
		t.Fatalf("%d segments (%v), want several", len(segs), err)
	}
	lastSeg, earlier := segs[len(segs)-1], segs[len(segs)-2]
	// zeroIdx writes b over a segment's .idx from its entry i on.
	zeroIdx := func(d string, s *segment, i int, b []byte) {
		t.Helper()
		f, err := os.OpenFile(idxPath(filepath.Join(d, "seg", filepath.Base(s.path))), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, int64(i)*idxEntrySize); err != nil {
			t.Fatal(err)
		}
	}
	entries := func(s *segment) int {
		st, err := os.Stat(idxPath(s.path))
		if err != nil {
			t.Fatal(err)
		}
		return int(st.Size() / idxEntrySize)
	}
	if entries(lastSeg) < 4 {
		t.Fatalf("the last segment holds %d records, want several", entries(lastSeg))
	}
	for _, tc := range []struct {
		name  string
		edit  func(d string)
		stale bool
	}{
		{"newest .idx, zeros to its end", func(d string) {
			n := entries(lastSeg)
			zeroIdx(d, lastSeg, n-3, make([]byte, 3*idxEntrySize))
		}, true},
		{"newest .idx, zeros then an entry", func(d string) {
			n := entries(lastSeg)
			zeroIdx(d, lastSeg, n-3, make([]byte, 2*idxEntrySize))
		}, false},
		{"newest .idx, zeros then one non-zero byte", func(d string) {
			n := entries(lastSeg)
			b := make([]byte, 3*idxEntrySize)
			b[len(b)-1] = 1
			zeroIdx(d, lastSeg, n-3, b)
		}, false},
		{"closed segment's .idx, zeros to its end", func(d string) {
			n := entries(earlier)
			zeroIdx(d, earlier, n-3, make([]byte, 3*idxEntrySize))
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := copyDir(t, dir)
			tc.edit(d)
			rep := verifyDir(t, d, k, "")
			damaged, stale := false, false
			for _, f := range rep.Findings {
				damaged = damaged || f.Kind == KindIndexDamaged
			}
			for _, f := range rep.Notices {
				stale = stale || f.Kind == NoticeIndexStale
			}
			if tc.stale {
				if !rep.OK() || !stale {
					t.Fatalf("want an index-stale notice and no finding:\n%s", rep)
				}
				// Open rebuilds it: clean after.
				l2, err := Open(d, opts)
				if err != nil {
					t.Fatal(err)
				}
				if err := l2.Close(); err != nil {
					t.Fatal(err)
				}
				if rep := verifyDir(t, d, k, ""); !rep.OK() || hasKind(rep.Notices, NoticeIndexStale) {
					t.Fatalf("after Open:\n%s", rep)
				}
				return
			}
			if !damaged {
				t.Fatalf("want index-damaged:\n%s", rep)
			}
		})
	}
}
