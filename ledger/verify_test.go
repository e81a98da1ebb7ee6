package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

type frameRec struct {
	time int64
	data []byte
}

// readAll returns every record of a ledger directory, in order.
func readAll(t *testing.T, dir string) []frameRec {
	t.Helper()
	segs, err := listSegments(filepath.Join(dir, "seg"))
	if err != nil {
		t.Fatal(err)
	}
	var out []frameRec
	for _, s := range segs {
		b, err := os.ReadFile(s.path)
		if err != nil {
			t.Fatal(err)
		}
		if s.z != nil {
			for _, blk := range s.z.blocks {
				recs, _, err := decodeBlock(b[blk.off:blk.off+int64(blk.clen)], blk.count, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					out = append(out, frameRec{r.time, append([]byte(nil), r.data...)})
				}
			}
			continue
		}
		ents, _, err := parseFrameLog(b[segHeaderSize:], maxFrameLen)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			out = append(out, frameRec{e.time, append([]byte(nil), e.data...)})
		}
	}
	return out
}

// rewrite replaces all segments with recs, correctly framed, with valid
// headers: what a careful attacker without the signing key would write.
func rewrite(t *testing.T, dir string, recs []frameRec, first uint64) {
	t.Helper()
	segDir := filepath.Join(dir, "seg")
	old, _ := listSegments(segDir)
	for _, s := range old {
		os.Remove(s.path)
		os.Remove(idxPath(s.path))
	}
	const per = 100
	for i := 0; i < len(recs); i += per {
		b := segHeader(first + uint64(i))
		for _, r := range recs[i:min(i+per, len(recs))] {
			b = appendFrame(b, r.time, r.data)
		}
		if err := os.WriteFile(filepath.Join(segDir, segName(first+uint64(i))), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// buildLedger writes n records with a checkpoint every 100 and closes.
// Its closed segments stay uncompressed, as written (the tampering tests
// edit frames); extra may turn compression on.
func buildLedger(t *testing.T, k testKey, n int, extra func(*Options)) string {
	t.Helper()
	dir := t.TempDir()
	opts := testOpts(k)
	opts.SegmentSize = 16 << 10
	opts.DisableCompression = true
	if extra != nil {
		extra(&opts)
	}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < n; i++ {
		if _, err := l.Append(ctx, record(i)); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 {
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rewriteCheckpointLog lets f edit the list of signed checkpoints.
func rewriteCheckpointLog(t *testing.T, dir string, f func([][]byte) [][]byte) {
	t.Helper()
	files, err := listCPLogs(dir)
	if err != nil {
		t.Fatal(err)
	}
	var notes [][]byte
	for _, cf := range files {
		ents, _, err := readFrameLog(cf.path, maxCheckpointSize)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			notes = append(notes, append([]byte(nil), e.data...))
		}
		os.Remove(cf.path)
	}
	var b []byte
	for _, n := range f(notes) {
		b = appendFrame(b, time.Now().UnixNano(), n)
	}
	if err := os.WriteFile(filepath.Join(dir, cpDir, fmt.Sprintf("%020d.log", 0)), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyFindsEveryTampering(t *testing.T) {
	k := newKey(t, testOrigin)
	const n = 1000
	base := buildLedger(t, k, n, nil)
	other := newKey(t, "mallory.example/ledger")

	cases := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		kind   string
		index  uint64
		count  uint64
	}{
		{"untouched", func(*testing.T, string) {}, "", 0, 0},
		{"record modified, checksum fixed", func(t *testing.T, dir string) {
			recs := readAll(t, dir)
			recs[500].data = []byte(strings.Replace(string(recs[500].data), "login", "logout", 1))
			rewrite(t, dir, recs, 0)
		}, KindRecordModified, 500, 1},
		{"record modified in place", func(t *testing.T, dir string) {
			// A byte flipped on disk, checksum left as it was.
			segs, _ := listSegments(filepath.Join(dir, "seg"))
			var idx uint64
			for _, s := range segs {
				data, _ := os.ReadFile(s.path)
				ents, _, _ := parseFrameLog(data[segHeaderSize:], maxFrameLen)
				if idx+uint64(len(ents)) > 500 {
					e := ents[500-idx]
					off := segHeaderSize + int(e.off) + frameHeader + strings.Index(string(e.data), "login")
					data[off] = 'L'
					os.WriteFile(s.path, data, 0o644)
					return
				}
				idx += uint64(len(ents))
			}
			t.Fatal("record 500 not found")
		}, KindRecordModified, 500, 1},
		{"record deleted", func(t *testing.T, dir string) {
			recs := readAll(t, dir)
			rewrite(t, dir, slices.Delete(recs, 500, 501), 0)
		}, KindRecordDeleted, 500, 1},
		{"three records deleted", func(t *testing.T, dir string) {
			recs := readAll(t, dir)
			rewrite(t, dir, slices.Delete(recs, 400, 403), 0)
		}, KindRecordDeleted, 400, 3},
		{"record inserted", func(t *testing.T, dir string) {
			recs := readAll(t, dir)
			recs = slices.Insert(recs, 500, frameRec{recs[500].time, []byte(`{"event":{"id":"forged"}}`)})
			rewrite(t, dir, recs, 0)
		}, KindRecordInserted, 500, 1},
		{"records reordered", func(t *testing.T, dir string) {
			recs := readAll(t, dir)
			recs[500], recs[501] = recs[501], recs[500]
			rewrite(t, dir, recs, 0)
		}, KindRecordsReordered, 500, 0},
		{"tail truncated", func(t *testing.T, dir string) {
			recs := readAll(t, dir)
			rewrite(t, dir, recs[:990], 0)
		}, KindTailTruncated, 990, 10},
		{"segment file deleted", func(t *testing.T, dir string) {
			segs, _ := listSegments(filepath.Join(dir, "seg"))
			if segs[2].first != 223 || segs[3].first != 332 {
				t.Fatalf("segment layout changed: %d, %d; update the expected finding", segs[2].first, segs[3].first)
			}
			os.Remove(segs[2].path)
		}, KindRecordDeleted, 223, 109},
		{"checkpoint forged", func(t *testing.T, dir string) {
			rewriteCheckpointLog(t, dir, func(ns [][]byte) [][]byte {
				s := string(ns[3])
				lines := strings.SplitN(s, "\n", 3)
				ns[3] = []byte(lines[0] + "\n" + "999" + "\n" + lines[2])
				return ns
			})
		}, KindCheckpointForged, 0, 0},
		{"checkpoint signed by unknown key", func(t *testing.T, dir string) {
			rewriteCheckpointLog(t, dir, func(ns [][]byte) [][]byte {
				c, _ := parseUnverified(ns[len(ns)-1])
				c.Size = 2000
				signed, err := SignCheckpoint(c, other.signer)
				if err != nil {
					t.Fatal(err)
				}
				return append(ns, signed)
			})
		}, KindCheckpointUnknownKey, 0, 0},
		{"hash tile altered", func(t *testing.T, dir string) {
			// Leaf hash 256+5: tile/0/001, hash 5.
			p := filepath.Join(dir, hashDir, "0")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[(256+5)*HashSize] ^= 1
			os.WriteFile(p, b, 0o644)
		}, KindHashTilesAltered, 256 + 5, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, base)
			tc.tamper(t, dir)
			rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
			if err != nil {
				t.Fatal(err)
			}
			if tc.kind == "" {
				if !rep.OK() || len(rep.Notices) != 0 || rep.Records != n {
					t.Fatalf("untouched ledger: %s", rep)
				}
				return
			}
			if rep.OK() {
				t.Fatalf("tampering not found:\n%s", rep)
			}
			f := rep.Findings[0]
			if f.Kind != tc.kind || (tc.index != 0 && f.Index != tc.index) || (tc.count != 0 && f.Count != tc.count) {
				t.Fatalf("first finding %+v, want %s at %d (count %d)\n%s", f, tc.kind, tc.index, tc.count, rep)
			}
			t.Logf("%s", f)
		})
	}
}

func TestVerifyWitnessDetectsTruncationByKeyHolder(t *testing.T) {
	k := newKey(t, testOrigin)
	wdir := t.TempDir()
	dir := buildLedger(t, k, 600, func(o *Options) { o.Witnesses = []Witness{DirWitness(wdir)} })
	v := []note.Verifier{k.verifier}

	// An operator with the key truncates records, tiles and checkpoints
	// consistently: the ledger alone cannot tell.
	trunc := copyDir(t, dir)
	recs := readAll(t, trunc)
	os.RemoveAll(filepath.Join(trunc, hashDir))
	os.RemoveAll(filepath.Join(trunc, cpDir))
	os.Remove(filepath.Join(trunc, "checkpoint"))
	rewrite(t, trunc, recs[:300], 0)
	// Open refuses records no checkpoint vouches for; the key holder
	// adopts them, which the ledger itself then reports for ever.
	if _, err := Open(trunc, Options{Origin: testOrigin, Signer: k.signer, Logger: quietLogger()}); !errors.Is(err, ErrUnsignedRecords) {
		t.Fatalf("open without checkpoints: %v", err)
	}
	l, err := Open(trunc, Options{Origin: testOrigin, Signer: k.signer, Logger: quietLogger(), AdoptUnsigned: 300})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if rep, _ := Verify(trunc, VerifyOptions{Verifiers: v}); !rep.OK() || !hasKind(rep.Notices, NoticeAdopted) {
		t.Fatalf("re-signed truncated ledger verifies on its own, with the adoption noted:\n%s", rep)
	}
	rep, err := Verify(trunc, VerifyOptions{Verifiers: v, WitnessDir: wdir})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Findings[0].Kind != KindTailTruncated {
		t.Fatalf("want %s against the witness:\n%s", KindTailTruncated, rep)
	}

	// Same, rewriting a record instead of truncating.
	rw := copyDir(t, dir)
	recs = readAll(t, rw)
	recs[10].data = []byte(`{"event":{"id":"rewritten"}}`)
	os.RemoveAll(filepath.Join(rw, hashDir))
	os.RemoveAll(filepath.Join(rw, cpDir))
	os.Remove(filepath.Join(rw, "checkpoint"))
	rewrite(t, rw, recs, 0)
	l, err = Open(rw, Options{Origin: testOrigin, Signer: k.signer, Logger: quietLogger(), AdoptUnsigned: 600})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	rep, err = Verify(rw, VerifyOptions{Verifiers: v, WitnessDir: wdir})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Findings[0].Kind != KindHistoryRewritten {
		t.Fatalf("want %s against the witness:\n%s", KindHistoryRewritten, rep)
	}
	// And the untouched ledger agrees with its witness.
	if rep, _ := Verify(dir, VerifyOptions{Verifiers: v, WitnessDir: wdir}); !rep.OK() {
		t.Fatalf("untouched ledger vs witness:\n%s", rep)
	}
}

func hasKind(fs []Finding, kind string) bool {
	for _, f := range fs {
		if f.Kind == kind {
			return true
		}
	}
	return false
}

// Incremental verification (VerifyOptions.Since) checks what came after a
// checkpoint verified before, and notices if that checkpoint is gone.
func TestVerifySince(t *testing.T) {
	k := newKey(t, testOrigin)
	v := []note.Verifier{k.verifier}
	dir := buildLedger(t, k, 600, nil)
	rep, err := Verify(dir, VerifyOptions{Verifiers: v})
	if err != nil || !rep.OK() || rep.Latest == nil || rep.Latest.Size != 600 {
		t.Fatalf("%v\n%s", err, rep)
	}
	since := rep.Latest
	l, err := Open(dir, testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 600, 150)
	l.Close()
	rep, err = Verify(dir, VerifyOptions{Verifiers: v, Since: since})
	if err != nil || !rep.OK() || rep.Records != 750 || rep.Latest.Size != 750 {
		t.Fatalf("incremental verify: %v\n%s", err, rep)
	}
	if rep.Checkpoints >= 10 {
		t.Fatalf("incremental verify checked %d checkpoints: it should start at the one given", rep.Checkpoints)
	}
	// A record after the starting point, altered with its checksum fixed.
	bad := copyDir(t, dir)
	recs := readAll(t, bad)
	recs[700].data = []byte(strings.Replace(string(recs[700].data), "login", "logout", 1))
	rewrite(t, bad, recs, 0)
	if rep, _ := Verify(bad, VerifyOptions{Verifiers: v, Since: since}); rep.OK() || rep.Findings[0].Kind != KindRecordModified || rep.Findings[0].Index != 700 {
		t.Fatalf("incremental verify of an altered record:\n%s", rep)
	}
	// The checkpoint verified before has been removed from the history.
	gone := copyDir(t, dir)
	rewriteCheckpointLog(t, gone, func(ns [][]byte) [][]byte {
		var out [][]byte
		for _, n := range ns {
			if c, _ := parseUnverified(n); c.Size != 600 {
				out = append(out, n)
			}
		}
		return out
	})
	if rep, _ := Verify(gone, VerifyOptions{Verifiers: v, Since: since}); rep.OK() || rep.Findings[0].Kind != KindHistoryRewritten {
		t.Fatalf("verified checkpoint gone from the history:\n%s", rep)
	}
}

// TestVerifyIndexDamagedSubtly: verify splits closed segments by their
// .idx and lets the workers check that every frame is where, and as long
// and as old as, the .idx says. A .idx that is still in order but wrong
// (an offset moved by a few bytes, a time changed) falls back to reading
// the frames one by one: the records verify and the .idx is named.
func TestVerifyIndexDamagedSubtly(t *testing.T) {
	k := newKey(t, testOrigin)
	base := buildLedger(t, k, 1000, nil)
	segs, _ := listSegments(filepath.Join(base, "seg"))
	s := segs[1] // closed
	for _, tc := range []struct {
		name   string
		victim uint64
		damage func(b []byte)
	}{
		{"offset moved", 7, func(b []byte) {
			binary.BigEndian.PutUint64(b[7*idxEntrySize:], binary.BigEndian.Uint64(b[7*idxEntrySize:])+3)
		}},
		{"time changed", 9, func(b []byte) { b[9*idxEntrySize+15] ^= 1 }},
		{"last offset moved", segs[2].first - s.first - 1, func(b []byte) {
			i := len(b) - idxEntrySize
			binary.BigEndian.PutUint64(b[i:], binary.BigEndian.Uint64(b[i:])-1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, base)
			p := filepath.Join(dir, "seg", strings.TrimSuffix(filepath.Base(s.path), ".seg")+".idx")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(b)
			os.WriteFile(p, b, 0o644)
			rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Findings) != 1 || rep.Findings[0].Kind != KindIndexDamaged || rep.Findings[0].Index != s.first+tc.victim || rep.Records != 1000 {
				t.Fatalf("want only %s at %d:\n%s", KindIndexDamaged, s.first+tc.victim, rep)
			}
		})
	}
}

// TestTileHasher: the two-way tile root is the RFC 6962 subtree root.
func TestTileHasher(t *testing.T) {
	leaves := make([]Hash, tileWidth)
	for i := range leaves {
		leaves[i] = LeafHash(fmt.Appendf(nil, "record %d", i))
	}
	var th tileHasher
	for range 2 { // the scratch state of one tile must not leak into the next
		if got, want := th.root(leaves), subtreeHash(leaves); got != want {
			t.Fatalf("tile root %x, want %x", got, want)
		}
		leaves[7][0] ^= 1
	}
}

// TestTileRun: the tiles the producer reads 64 at a time are the ones the
// workers would read one by one (a wrong offset would only slow verify
// down, every chunk taking the leaf-by-leaf path, so no other test sees it).
func TestTileRun(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	dir, _ := compressedLedger(t, k, 20000) // 78 tiles: two reads
	s := newTileStore(dir, false)
	defer s.close()
	limit := uint64(19900)
	tr := &tileRun{s: s, limit: limit}
	attached := 0
	for n := uint64(0); n*tileWidth < 20000; n++ {
		c := &chunk{start: n * tileWidth, leaves: make([]Hash, tileWidth)}
		tr.attach(c)
		if (n+1)*tileWidth > limit {
			if c.tile != nil {
				t.Fatalf("tile %d, beyond the signed size, attached", n)
			}
			continue
		}
		want, err := s.readRaw(0, n, tileWidth)
		if err != nil || !bytes.Equal(c.tile, want) {
			t.Fatalf("tile %d: attached %d bytes, want the stored tile (%v)", n, len(c.tile), err)
		}
		attached++
	}
	if attached != int(limit/tileWidth) {
		t.Fatalf("%d tiles attached", attached)
	}
}
