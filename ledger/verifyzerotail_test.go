package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestVerifyOpenZeroTail: the newest segment of an open ledger is zeroed
// after its records (at Open, and ahead of every rotation that takes a
// segment zeroed ahead: zeroahead.go) until Close cuts the zeros. Verify of
// an open ledger — in place, from the collector's process or another, or a
// copy of it (what a crash leaves) — reported those zeros as a torn write
// ('torn-tail') although nothing was ever written there. Zeros from the
// end of the newest segment's last complete frame to its end are now the
// end of its records, no notice; a torn frame, zeros followed by records,
// and zeros after a closed segment's records are reported as before.
func TestVerifyOpenZeroTail(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = 64 << 10
	opts.DisableCompression = true
	opts.CheckpointEvery = 1 << 20 // checkpoints only where the test makes them
	opts.CheckpointInterval = time.Hour
	dir := t.TempDir()
	segDir := filepath.Join(dir, "seg")
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	n := 0
	for len(mustSegments(t, segDir)) < 3 { // the newest taken from a segment zeroed ahead
		appendN(t, l, n, 50)
		n += 50
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, n, 5) // an unsigned tail
	n += 5
	segs := mustSegments(t, segDir)
	newest, closed := segs[len(segs)-1], segs[0]
	if st, err := os.Stat(newest.path); err != nil || st.Size() != opts.SegmentSize {
		t.Fatalf("the newest segment of the open ledger: %v, want %d bytes (zeroed after its records)", st, opts.SegmentSize)
	}
	res, err := scanSegment(newest.path, newest.first, maxFrameLen)
	if err != nil || res.end >= res.size {
		t.Fatalf("newest segment: records end at %d of %d (%v), want zeros after them", res.end, res.size, err)
	}
	// The frames of the newest segment.
	data, err := os.ReadFile(newest.path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := int64(segHeaderSize); off < res.end; {
		m, err := frameLen(data[off:], maxFrameLen)
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, off)
		off += int64(m)
	}
	if len(offs) < 5 {
		t.Fatalf("%d frames in the newest segment, want the 5 unsigned ones at least", len(offs))
	}
	write := func(path string, at int64, b []byte) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, at); err != nil {
			t.Fatal(err)
		}
	}
	inCopy := func(d string, s *segment) string { return filepath.Join(d, "seg", filepath.Base(s.path)) }
	// tornHeader is the start of a frame of 4000 bytes of record.
	tornHeader := func() []byte {
		b := binary.BigEndian.AppendUint32(nil, 4000)
		b = binary.BigEndian.AppendUint64(b, uint64(time.Now().UnixNano()))
		return append(b, bytes.Repeat([]byte{0xa5}, 100)...)
	}
	for _, tc := range []struct {
		name    string
		inPlace bool // verify the open ledger's own directory
		edit    func(d string)
		ok      bool
		torn    int // record index of the torn-tail notice wanted; -1 none
	}{
		{name: "open ledger, verified in place", inPlace: true, ok: true, torn: -1},
		{name: "copy of the open ledger (a crash)", ok: true, torn: -1},
		{name: "a torn frame at the end of the file", ok: true, torn: n, edit: func(d string) {
			p := inCopy(d, newest)
			write(p, res.end, tornHeader())
			if err := os.Truncate(p, res.end+int64(len(tornHeader()))); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a torn frame in the zeros (its first sector written)", ok: true, torn: n, edit: func(d string) {
			write(inCopy(d, newest), res.end, tornHeader())
		}},
		{name: "an unsigned record zeroed, records after it", ok: true, torn: n - 3, edit: func(d string) {
			p := inCopy(d, newest)
			i := len(offs) - 3
			write(p, offs[i], make([]byte, offs[i+1]-offs[i]))
		}},
		{name: "a signed record zeroed, records after it", ok: false, torn: n - 6, edit: func(d string) {
			p := inCopy(d, newest)
			i := len(offs) - 6
			write(p, offs[i], make([]byte, offs[i+1]-offs[i]))
		}},
		{name: "zeros after a closed segment's records", ok: false, torn: -1, edit: func(d string) {
			p := inCopy(d, closed)
			write(p, fileSize(t, p), make([]byte, 4<<10))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := dir
			if !tc.inPlace {
				d = copyDir(t, dir)
			}
			if tc.edit != nil {
				tc.edit(d)
			}
			rep := verifyDir(t, d, k, "")
			torn := -1
			for _, f := range rep.Notices {
				if f.Kind == NoticeTornTail && f.File != "" && filepath.Dir(f.File) == "seg" {
					torn = int(f.Index)
				}
			}
			if rep.OK() != tc.ok || torn != tc.torn {
				t.Fatalf("OK %t, torn-tail at %d; want OK %t, torn-tail at %d (-1: none)\n%s", rep.OK(), torn, tc.ok, tc.torn, rep)
			}
			// Records read: up to the torn frame, else all.
			if want := n; tc.ok && (tc.torn < 0 && rep.Records != uint64(want) || tc.torn >= 0 && rep.Records != uint64(tc.torn)) {
				t.Fatalf("%d records read, want %d (or up to the torn frame)\n%s", rep.Records, want, rep)
			}
		})
	}
}
