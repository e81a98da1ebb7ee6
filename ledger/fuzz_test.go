package ledger

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func FuzzFrames(f *testing.F) {
	f.Add(appendFrame(appendFrame(nil, 1, []byte(`{"a":1}`)), 2, nil))
	f.Add(appendFrame(nil, 3, []byte("x"))[:7])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(segHeader(42))
	f.Fuzz(func(t *testing.T, b []byte) {
		ents, end, err := parseFrameLog(b, 1<<20)
		if end > int64(len(b)) || (err == nil && end != int64(len(b))) {
			t.Fatalf("end %d of %d, err %v", end, len(b), err)
		}
		// Whatever parsed re-encodes to the same bytes.
		var re []byte
		for _, e := range ents {
			re = appendFrame(re, e.time, e.data)
		}
		if !bytes.Equal(re, b[:end]) {
			t.Fatal("frames do not round-trip")
		}
		if first, err := parseSegHeader(b); err == nil && !bytes.Equal(segHeader(first), b[:segHeaderSize]) {
			t.Fatal("segment header does not round-trip")
		}
		// The segment scanner agrees with the frame parser.
		if len(b) >= segHeaderSize {
			p := filepath.Join(t.TempDir(), segName(7))
			os.WriteFile(p, append(segHeader(7), b...), 0o644)
			res, err := scanSegment(p, 7, 1<<20)
			if err != nil || len(res.entries) != len(ents) {
				t.Fatalf("scanSegment found %d frames, parser %d (%v)", len(res.entries), len(ents), err)
			}
		}
	})
}

func FuzzCheckpoint(f *testing.F) {
	f.Add([]byte("example.com/log\n42\nnND/nri/U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=\ntime 2026-01-01T00:00:00Z\n"))
	f.Add([]byte("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	f.Add([]byte("o\n-1\nAAAA\n\n"))
	f.Add([]byte("o\n01\nnND/nri/U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=\next\n"))
	f.Add([]byte("o\n7\nnND/nri/U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=\ntime 2026-01-01T00:00:00Z\ncadence every=16 interval=1s unsigned-max=32\nadopt 0 7 no-checkpoint\nshutdown\n"))
	f.Add([]byte("o\n7\nnND/nri/U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=\ncadence every=x unsigned-max=-1\nadopt 9 3 over-bound\nadopt 1\n"))
	k := newKey(f, "fuzz.example/log")
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCheckpoint(b)
		if err != nil {
			return
		}
		// Extension lines from untrusted checkpoints: never panic, and a
		// stated bound is positive.
		if cd := cadenceOf(c); cd.unsignedMax == 0 {
			t.Fatalf("cadence %+v from %q", cd, c.Extra)
		}
		for _, a := range adoptionsOf(c) {
			if a.To < a.From {
				t.Fatalf("adoption %+v", a)
			}
		}
		c2, err := ParseCheckpoint(c.Marshal())
		if err != nil || c2.Size != c.Size || c2.Root != c.Root || c2.Origin != c.Origin || !c2.Time.Equal(c.Time) || len(c2.Extra) != len(c.Extra) {
			t.Fatalf("checkpoint does not round-trip: %+v vs %+v (%v)", c, c2, err)
		}
		// Signed notes: signing then opening gives the same checkpoint.
		if signed, err := SignCheckpoint(c, k.signer); err == nil {
			c3, _, err := OpenCheckpoint(signed, note.VerifierList(k.verifier))
			if err != nil || c3.Size != c.Size || c3.Root != c.Root {
				t.Fatalf("signed checkpoint does not open: %v", err)
			}
		}
		// Arbitrary bytes as a signed note never panic.
		OpenCheckpoint(b, note.VerifierList(k.verifier))
		parseUnverified(b)
		parsePruneNote(b)
	})
}

// FuzzCompressedSegment feeds compressed segment files as a disk could
// hold them (damaged, or written by an attacker) to the parser and block
// decoder: they never panic, never believe a block larger than zMaxBlock,
// and what decodes holds exactly the records the index promises, which
// encode and decode again to themselves.
func FuzzCompressedSegment(f *testing.F) {
	dir := f.TempDir()
	p := filepath.Join(dir, segName(5))
	seg := segHeader(5)
	for i := range 40 {
		seg = appendFrame(seg, int64(1000+i/3), []byte(`{"event":{"id":"e-`+string(rune('a'+i%26))+`"},"n":`+string(rune('0'+i%10))+`}`))
	}
	os.WriteFile(p, seg, 0o644)
	zp, err := compressSegment(p, 5, 40)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(zp)
	f.Add(good)
	f.Add(good[:len(good)-5])
	f.Add([]byte(zMagic))
	raw, _ := encodeBlock(nil, []zRec{{time: 7, data: []byte("abc")}, {time: 9, data: []byte(`{"x":1}`)}}, nil)
	f.Add(raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		// The bytes as a block (past the segment's checksums) and as a
		// decoded block: errors, never panics.
		if recs, out, err := decodeBlock(b, uint32(len(b)%5), nil); len(out) > zMaxBlock || err == nil && len(recs) != len(b)%5 {
			t.Fatalf("block: %d records, %d bytes, %v", len(recs), len(out), err)
		}
		recs, err := splitBlock(b, uint32(len(b)%7))
		if err == nil && len(recs) != len(b)%7 {
			t.Fatalf("split %d records", len(recs))
		}
		// Verify's parse (records only) agrees with the reads' one.
		_, data, err2 := parseBlock(b, uint32(len(b)%7), nil, nil)
		if (err == nil) != (err2 == nil) || err == nil && len(data) != len(recs) {
			t.Fatalf("parseBlock: %d records, %v; splitBlock: %d, %v", len(data), err2, len(recs), err)
		}
		for i := range data {
			if !bytes.Equal(data[i], recs[i].data) {
				t.Fatalf("record %d differs between the two parses", i)
			}
		}
		// A huge count from a damaged index is refused, not allocated.
		if _, err := splitBlock(b, ^uint32(0)); err == nil {
			t.Fatalf("a block of %d bytes claims 2^32-1 records", len(b))
		}
		z, err := parseZIndex(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		n := uint64(0)
		for _, blk := range z.blocks {
			recs, raw, err := decodeBlock(b[blk.off:blk.off+int64(blk.clen)], blk.count, nil)
			if len(raw) > zMaxBlock {
				t.Fatalf("a block decoded to %d bytes", len(raw))
			}
			if err != nil {
				continue
			}
			if len(recs) != int(blk.count) {
				t.Fatalf("block holds %d records, index says %d", len(recs), blk.count)
			}
			again, _ := encodeBlock(nil, recs, nil)
			back, _, err := decodeBlock(again, blk.count, nil)
			if err != nil || len(back) != len(recs) {
				t.Fatalf("records do not survive a second round: %v", err)
			}
			for i := range recs {
				if back[i].time != recs[i].time || !bytes.Equal(back[i].data, recs[i].data) {
					t.Fatalf("record %d changed in a second round", i)
				}
			}
			n += uint64(blk.count)
		}
		if n > z.count {
			t.Fatalf("%d records decoded, the header says %d", n, z.count)
		}
	})
}

// FuzzTilePath: the collector parses tile paths from requests. Whatever
// it accepts is a hash tile path it would write itself.
func FuzzTilePath(f *testing.F) {
	for _, s := range []string{"tile/0/000", "tile/1/x001/x234/067.p/17", "tile/entries/000", "tile/0/001.p/0", "tile/9/1000", "tile//", "checkpoint"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		tl, err := parseTilePath(p)
		if err != nil {
			return
		}
		if tl.L < 0 || tl.W <= 0 || tl.W > tileWidth || tl.N < 0 {
			t.Fatalf("%q parsed as %+v", p, tl)
		}
		if got := tilePath(tl.L, uint64(tl.N), tl.W); got != p {
			t.Fatalf("%q parsed as %+v, which is %q", p, tl, got)
		}
	})
}

// FuzzScanFrames: reading a frame log past its damage (scanFrames) never
// panics; its frames and damaged stretches cover the bytes exactly, in
// order and without overlap; every frame is the bytes at its offset; and
// up to the first damage it agrees with the parser that stops there.
func FuzzScanFrames(f *testing.F) {
	a := appendFrame(nil, 1, []byte("trailguard/fuzz\n1\nAAAA\n"))
	f.Add(append(append(append([]byte(nil), a...), 0xff, 0, 0, 1, 7), a...))
	f.Add(append(a[:9:9], a...))
	f.Add(bytes.Repeat([]byte{0, 0, 0x20, 0}, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		valid := func(rec []byte) bool { return len(rec) > 0 && rec[0] != 0 }
		ents, dmg := scanFrames(b, 1<<10, valid)
		off, ei, di := int64(0), 0, 0
		for ei < len(ents) || di < len(dmg) {
			switch {
			case ei < len(ents) && ents[ei].off == off:
				fr := appendFrame(nil, ents[ei].time, ents[ei].data)
				if !bytes.Equal(fr, b[off:off+int64(len(fr))]) {
					t.Fatalf("frame at %d is not the bytes there", off)
				}
				off += int64(len(fr))
				ei++
			case di < len(dmg) && dmg[di].off == off && dmg[di].end > off:
				off = dmg[di].end
				di++
			default:
				t.Fatalf("nothing starts at %d (frames %d/%d, damage %d/%d)", off, ei, len(ents), di, len(dmg))
			}
		}
		if off != int64(len(b)) {
			t.Fatalf("covered %d of %d bytes", off, len(b))
		}
		pents, pend, _ := parseFrameLog(b, 1<<10)
		if len(dmg) > 0 && (pend != dmg[0].off || len(pents) > len(ents)) {
			t.Fatalf("the parser stops at %d with %d frames, the scan's first damage is at %d", pend, len(pents), dmg[0].off)
		}
	})
}
