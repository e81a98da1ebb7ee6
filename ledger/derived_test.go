package ledger

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailguard/trailguard/internal/testenv"
)

// allocated is the space a file takes on disk (its blocks), not its size.
func allocated(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512
	}
	return st.Size()
}

// leafTile is level-0 tile n of recs, as stored before trimming.
func leafTile(recs [][]byte, n uint64) []byte {
	return leafHashes(recs[n*tileWidth : (n+1)*tileWidth])
}

// leafHashes is the level-0 hashes of recs in order: hashes/0 as an
// older version left it, whole.
func leafHashes(recs [][]byte) []byte {
	b := make([]byte, 0, 32*len(recs))
	for _, r := range recs {
		h := LeafHash(r)
		b = append(b, h[:]...)
	}
	return b
}

// TestLeafHashesDerived: the level-0 hashes of compressed segments leave
// the disk (hashes/0 keeps its size, not its blocks), and everything that
// reads them gets the same bytes: tile reads, C2SP export, proofs and
// bundles, reads, verify; reopening for writing keeps them trimmed.
func TestLeafHashesDerived(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("hole punching is Linux-only here")
	}
	t.Parallel()
	k := newKey(t, testOrigin)
	dir, recs := compressedLedger(t, k, 20000)
	h0 := filepath.Join(dir, hashDir, "0")
	st, _ := os.Stat(h0)
	if st.Size() != int64(len(recs))*HashSize {
		t.Fatalf("hashes/0 is %d bytes, want %d (positions kept)", st.Size(), len(recs)*HashSize)
	}
	segs, _ := listSegments(filepath.Join(dir, "seg"))
	var inZseg uint64
	for _, s := range segs {
		if s.z != nil {
			inZseg += s.z.count
		}
	}
	if inZseg < 10000 {
		t.Fatalf("only %d records compressed: the test needs more", inZseg)
	}
	// Whole tiles inside compressed segments are punched: what stays
	// allocated is at most the rest, plus a tile at each segment edge.
	if a, most := allocated(t, h0), int64(len(recs)-int(inZseg)+2*len(segs)*tileWidth)*HashSize+4096; a > most {
		t.Fatalf("hashes/0 allocates %d bytes, want at most %d (%d of %d records compressed)", a, most, inZseg, len(recs))
	}

	s := newTileStore(dir, false)
	defer s.close()
	punched := 0
	for n := uint64(0); (n+1)*tileWidth <= uint64(len(recs)); n++ {
		raw, err := s.readRaw(0, n, tileWidth)
		if err != nil {
			t.Fatal(err)
		}
		if hasZeroHash(raw) {
			punched++
		}
		for _, w := range []int{tileWidth, 1, 77} {
			got, err := s.read(0, n, w)
			if err != nil || !bytes.Equal(got, leafTile(recs, n)[:w*HashSize]) {
				t.Fatalf("tile %d width %d: %v, not the records' leaf hashes", n, w, err)
			}
		}
	}
	if punched == 0 {
		t.Fatal("no level-0 tile punched")
	}

	out := t.TempDir()
	cp, _, err := ExportTiles(dir, out, 0)
	if err != nil {
		t.Fatal(err)
	}
	for n := uint64(0); n < cp.Size/tileWidth; n++ {
		b, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(tilePath(0, n, tileWidth))))
		if err != nil || !bytes.Equal(b, leafTile(recs, n)) {
			t.Fatalf("exported tile %d: %v, not the records' leaf hashes", n, err)
		}
	}

	l, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	signed, cp := l.LatestCheckpoint()
	for _, i := range []uint64{0, 255, 256, 4097, 9999, cp.Size - 1} {
		b, err := l.ProveInclusion(i, signed)
		if err != nil {
			t.Fatalf("prove %d: %v", i, err)
		}
		if !bytes.Equal(b.Record, recs[i]) {
			t.Fatalf("bundle %d holds another record", i)
		}
		if err := tlog.CheckRecord(b.Proof, int64(cp.Size), cp.Root, int64(i), tlog.RecordHash(recs[i])); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if e, err := l.Read(i); err != nil || !bytes.Equal(e.Data, recs[i]) {
			t.Fatalf("Read(%d): %v", i, err)
		}
	}
	l.Close()
	rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v\n%s", err, rep)
	}

	// Reopening for writing rebuilds nothing and keeps the trim.
	before := allocated(t, h0)
	w, err := Open(dir, testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if a := allocated(t, h0); a > before+tileBytes {
		t.Fatalf("reopening grew hashes/0 from %d to %d allocated bytes", before, a)
	}
}

// TestLeafHashesTrimmedAtOpen: a ledger whose hashes/0 is whole (written
// before trimming, or a crash between a compaction and its trim) is
// trimmed by the next Open for writing, and still verifies.
func TestLeafHashesTrimmedAtOpen(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("hole punching is Linux-only here")
	}
	t.Parallel()
	k := newKey(t, testOrigin)
	dir, recs := compressedLedger(t, k, 12000)
	h0 := filepath.Join(dir, hashDir, "0")
	// Rewrite hashes/0 whole, as an older version left it.
	if err := os.WriteFile(h0, leafHashes(recs), 0o644); err != nil {
		t.Fatal(err)
	}
	whole := allocated(t, h0)
	if rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}}); err != nil || !rep.OK() {
		t.Fatalf("verify of the whole hashes/0: %v\n%s", err, rep)
	}
	l, err := Open(dir, testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if a := allocated(t, h0); a >= whole/2 {
		t.Fatalf("hashes/0 allocates %d bytes after Open, %d before: not trimmed", a, whole)
	}
	if rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}}); err != nil || !rep.OK() {
		t.Fatalf("verify after the trim: %v\n%s", err, rep)
	}
}

// TestVerifyDerivedTiles: where the leaf hashes are not stored, verify
// still finds an altered record (checksums recomputed: named to its tile),
// and an altered level-1 hash; a removed level file is rebuilt by Open.
func TestVerifyDerivedTiles(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("hole punching is Linux-only here")
	}
	t.Parallel()
	k := newKey(t, testOrigin)
	base, _ := compressedLedger(t, k, 16000)
	segs, _ := listSegments(filepath.Join(base, "seg"))
	s := segs[1]
	if s.z == nil {
		t.Fatal("segment 1 is not compressed")
	}
	blk := s.z.blocks[1]
	target := s.first + blk.first + 5
	tile := target / tileWidth
	cases := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		kind   string
		index  uint64
	}{
		{"record changed, checksums recomputed", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "seg", filepath.Base(s.path))
			b, _ := os.ReadFile(p)
			got, _, err := decodeBlock(b[blk.off:blk.off+int64(blk.clen)], blk.count, nil)
			if err != nil {
				t.Fatal(err)
			}
			got[5].data = bytes.Replace(got[5].data, []byte("a"), []byte("b"), 1)
			nb, _ := encodeBlock(nil, got, nil)
			os.WriteFile(p, rebuildZseg(t, b, s.z, 1, nb), 0o644)
		}, KindRecordModified, target},
		{"level-1 hash changed", func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, hashDir, "1"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b := make([]byte, 1)
			f.ReadAt(b, int64(tile)*HashSize)
			b[0] ^= 1
			f.WriteAt(b, int64(tile)*HashSize)
		}, KindHashTilesAltered, tile * tileWidth},
		{"hashes/1 removed", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, hashDir, "1"))
		}, "", 0},
		{"hashes/0 removed", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, hashDir, "0"))
		}, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, base)
			tc.tamper(t, dir)
			rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
			if err != nil {
				t.Fatal(err)
			}
			t.Log(rep)
			if tc.kind == "" {
				// A level file removed: the records still give every
				// signed root (the tiles are derived data, as before
				// trimming), and the next Open rebuilds them.
				if !rep.OK() {
					t.Fatalf("verify without the file:\n%s", rep)
				}
				l, err := Open(dir, testOpts(k))
				if err != nil {
					t.Fatal(err)
				}
				signed, cp := l.LatestCheckpoint()
				b, err := l.ProveInclusion(target, signed)
				if err != nil || tlog.CheckRecord(b.Proof, int64(cp.Size), cp.Root, int64(target), tlog.RecordHash(b.Record)) != nil {
					t.Fatalf("proof after the rebuild: %v", err)
				}
				l.Close()
				if rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}}); err != nil || !rep.OK() {
					t.Fatalf("verify after the rebuild: %v\n%s", err, rep)
				}
				return
			}
			if rep.OK() {
				t.Fatalf("verify passes:\n%s", rep)
			}
			if tc.kind != "" && !hasKindInTile(rep.Findings, tc.kind, tc.index) {
				t.Fatalf("want %s at %d:\n%s", tc.kind, tc.index, rep)
			}
		})
	}
}

// TestTrimCrashChild is the process TestTrimCrash kills: it appends and
// stops (for the kill) at the stop-th trim of a compressed segment's leaf
// hashes, between the .zseg being durable and the punch.
func TestTrimCrashChild(t *testing.T) {
	dir := os.Getenv("TRAILGUARD_TRIM_DIR")
	if dir == "" {
		t.Skip("helper process for TestTrimCrash")
	}
	gen, _ := strconv.Atoi(os.Getenv("TRAILGUARD_TRIM_GEN"))
	stop, _ := strconv.Atoi(os.Getenv("TRAILGUARD_TRIM_STOP"))
	signer, err := note.NewSigner(os.Getenv("TRAILGUARD_TRIM_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	l, err := Open(dir, Options{
		Origin: testOrigin, Signer: signer, Logger: quietLogger(),
		SegmentSize: 64 << 10, CheckpointEvery: 200, CheckpointInterval: 25 * time.Millisecond, CompactBacklog: 1,
		trimHook: func() {
			if calls++; calls == stop {
				os.Stdout.WriteString("T\n")
				select {} // killed here
			}
		},
	})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	for seq := 0; ; seq++ {
		recs := make([][]byte, 8)
		for j := range recs {
			recs[j] = crashRecord(gen, 0, seq, j)
		}
		first, err := l.Append(context.Background(), recs...)
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(3)
		}
		os.Stdout.WriteString(fmt.Sprintf("A %d %d %d\n", first, len(recs), seq))
	}
}

// TestTrimCrash kills (SIGKILL) a real process between a compaction and
// the trim of its leaf hashes, several times; every acknowledged record
// stays readable, the ledger verifies, and the next Open trims what the
// killed one left.
func TestTrimCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	if runtime.GOOS != "linux" {
		t.Skip("hole punching is Linux-only here")
	}
	t.Parallel()
	skey, vkey, err := GenerateKey(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := note.NewVerifier(vkey)
	signer, _ := note.NewSigner(skey)
	dir := t.TempDir()
	acked := map[uint64][]byte{}
	for gen := 1; gen <= 3; gen++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTrimCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "TRAILGUARD_TRIM_DIR="+dir, "TRAILGUARD_TRIM_GEN="+strconv.Itoa(gen),
			"TRAILGUARD_TRIM_KEY="+skey, "TRAILGUARD_TRIM_STOP="+strconv.Itoa(gen))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.StartChild(t, cmd); err != nil {
			t.Fatal(err)
		}
		stopped := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) == 1 && f[0] == "T" {
					stopped <- true
					return
				}
				if len(f) == 4 && f[0] == "A" {
					first, _ := strconv.ParseUint(f[1], 10, 64)
					n, _ := strconv.Atoi(f[2])
					seq, _ := strconv.Atoi(f[3])
					for j := range n {
						acked[first+uint64(j)] = crashRecord(gen, 0, seq, j)
					}
				}
			}
			stopped <- false
		}()
		select {
		case ok := <-stopped:
			if !ok {
				t.Fatalf("generation %d ended before a trim", gen)
			}
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("generation %d: no trim within 60 s", gen)
		}
		cmd.Process.Kill()
		cmd.Wait()

		rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{v}})
		if err != nil || !rep.OK() {
			t.Fatalf("generation %d: verify after the kill: %v\n%s", gen, err, rep)
		}
		l, err := OpenReadOnly(dir)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range acked {
			if e, err := l.Read(i); err != nil || !bytes.Equal(e.Data, want) {
				l.Close()
				t.Fatalf("generation %d: acknowledged record %d: %v", gen, i, err)
			}
		}
		l.Close()
	}
	// The next Open trims every compressed segment.
	h0 := filepath.Join(dir, hashDir, "0")
	l, err := Open(dir, Options{Origin: testOrigin, Signer: signer, Logger: quietLogger(), DisableCompression: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := listSegments(filepath.Join(dir, "seg"))
	s := newTileStore(dir, false)
	defer s.close()
	for _, sg := range segs {
		if sg.z == nil {
			continue
		}
		for n := (sg.first + tileWidth - 1) / tileWidth; (n+1)*tileWidth <= sg.first+sg.z.count; n++ {
			raw, err := s.readRaw(0, n, tileWidth)
			if err != nil || !bytes.Equal(raw, make([]byte, tileBytes)) {
				t.Fatalf("tile %d of compressed segment %d not trimmed (%v)", n, sg.first, err)
			}
		}
	}
	if rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{v}}); err != nil || !rep.OK() {
		t.Fatalf("verify after the trim: %v\n%s", err, rep)
	}
	t.Logf("%d acknowledged records, hashes/0 allocates %d bytes", len(acked), allocated(t, h0))
}

// BenchmarkProveCompressed: an inclusion bundle for a record of a
// compressed segment, each from another level-0 tile (no cache helps),
// with the leaf hashes stored (as before trimming) and derived from the
// records.
func BenchmarkProveCompressed(b *testing.B) {
	k := newKey(b, testOrigin)
	dir, recs := compressedLedger(b, k, 40000)
	segs, _ := listSegments(filepath.Join(dir, "seg"))
	var compressed uint64
	for _, s := range segs {
		if s.z != nil {
			compressed = s.first + s.z.count
		}
	}
	all := leafHashes(recs)
	for _, mode := range []string{"stored", "derived", "stored", "derived"} {
		b.Run(mode, func(b *testing.B) {
			h0 := filepath.Join(dir, hashDir, "0")
			if mode == "stored" {
				if err := os.WriteFile(h0, all, 0o644); err != nil {
					b.Fatal(err)
				}
			} else {
				w, err := Open(dir, testOpts(k)) // trims
				if err != nil {
					b.Fatal(err)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
			l, err := OpenReadOnly(dir)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			signed, _ := l.LatestCheckpoint()
			b.ResetTimer()
			for i := range b.N {
				idx := uint64(i*(tileWidth+1)*7) % compressed
				if _, err := l.ProveInclusion(idx, signed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestReadDerivedTileHashedOnce: a sequential read authenticates the
// records of a derived tile by the hashes computed for it (the same
// decoded bytes), not by hashing each again; that path still compares
// with the authenticated hash, and a record changed on disk (block
// recompressed, checksums valid) still stops the read.
func TestReadDerivedTileHashedOnce(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("hole punching is Linux-only here")
	}
	t.Parallel()
	k := newKey(t, testOrigin)
	base, recs := compressedLedger(t, k, 16000)
	segs, _ := listSegments(filepath.Join(base, "seg"))
	s := segs[1]
	if s.z == nil {
		t.Fatal("segment 1 is not compressed")
	}
	blk := s.z.blocks[1]
	target := s.first + blk.first + 5

	t.Run("untouched", func(t *testing.T) {
		l, err := Open(copyDir(t, base), testOpts(k))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		n := 0
		for e, err := range l.Entries(0) {
			if err != nil || !bytes.Equal(e.Data, recs[e.Index]) {
				t.Fatalf("record %d: %v", e.Index, err)
			}
			n++
		}
		if n != len(recs) {
			t.Fatalf("read %d records, want %d", n, len(recs))
		}
		// The shortcut is taken: the tile of target, derived, holds the
		// very records the read yields.
		tn := target / tileWidth
		if _, _, err := l.auth.hashes(tn*tileWidth, tn*tileWidth+1); err != nil {
			t.Fatal(err)
		}
		d := l.tiles.deriver.lastTile(tn)
		if d == nil {
			l.auth.cacheMu.Lock()
			clear(l.auth.cache)
			l.auth.order = [2][]tileKey{}
			l.auth.cacheMu.Unlock()
			l.tiles.deriver.forget()
			if _, _, err := l.auth.hashes(tn*tileWidth, tn*tileWidth+1); err != nil {
				t.Fatal(err)
			}
			if d = l.tiles.deriver.lastTile(tn); d == nil {
				t.Fatalf("tile %d was not derived", tn)
			}
		}
		recAt := func(i uint64) []byte {
			for e, err := range l.Entries(i) {
				if err != nil {
					t.Fatal(err)
				}
				return e.Data
			}
			t.Fatal("no record")
			return nil
		}
		lc := leafChecker{l: l, end: l.Size(), on: true}
		rec := recAt(target)
		if err := lc.check(target, rec); err != nil {
			t.Fatal(err)
		}
		if _, ok := lc.derived.hashed(target, rec); !ok {
			t.Fatal("a record read from the block its tile was derived from is hashed again")
		}
		if _, ok := lc.derived.hashed(target, bytes.Clone(rec)); ok {
			t.Fatal("a copy of the record (other memory) is taken as the bytes hashed")
		}
		// A derived hash that is not the authenticated one fails: the
		// shortcut compares, it does not trust.
		bad := *lc.derived
		bad.hs = slices.Clone(bad.hs)
		bad.hs[target-bad.lo][0] ^= 1
		lc.derived = &bad
		if err := lc.check(target, rec); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("a wrong derived hash passed: %v", err)
		}
	})

	t.Run("record changed", func(t *testing.T) {
		dir := copyDir(t, base)
		p := filepath.Join(dir, "seg", filepath.Base(s.path))
		b, _ := os.ReadFile(p)
		got, _, err := decodeBlock(b[blk.off:blk.off+int64(blk.clen)], blk.count, nil)
		if err != nil {
			t.Fatal(err)
		}
		got[5].data = bytes.Replace(got[5].data, []byte("a"), []byte("b"), 1)
		if bytes.Equal(got[5].data, recs[target]) {
			t.Fatal("the record was not changed")
		}
		nb, _ := encodeBlock(nil, got, nil)
		os.WriteFile(p, rebuildZseg(t, b, s.z, 1, nb), 0o644)
		l, err := Open(dir, testOpts(k))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var last uint64
		var rerr error
		for e, err := range l.Entries(0) {
			if err != nil {
				rerr = err
				break
			}
			if !bytes.Equal(e.Data, recs[e.Index]) {
				t.Fatalf("record %d returned changed", e.Index)
			}
			last = e.Index
		}
		if !errors.Is(rerr, ErrCorrupt) || last >= target {
			t.Fatalf("sequential read of a changed record: read up to %d, then %v", last, rerr)
		}
	})
}
