package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// c2spReader is a tlog.TileReader for a tlog-tiles log that knows nothing
// of the ledger: it fetches tiles by their C2SP paths (tile/<L>/<N>[.p/<W>],
// no height element) with get.
type c2spReader struct {
	get   func(path string) ([]byte, error)
	paths []string // every tile fetched
}

func (r *c2spReader) Height() int { return 8 }

func (r *c2spReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		p := "tile/" + strings.TrimPrefix(t.Path(), "tile/8/")
		b, err := r.get(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out[i] = b
		r.paths = append(r.paths, p)
	}
	return out, nil
}

func (r *c2spReader) SaveTiles([]tlog.Tile, [][]byte) {}

// checkAsTlogClient reads a tlog-tiles log through get the way a client
// would: the signed checkpoint (its signature checked), then tiles through
// tlog.TileHashReader, which authenticates every tile against the signed
// root. Every record's inclusion proof must check against the records
// appended, every tile fetched must equal what tlog.ReadTileData computes
// from a reference tree, and a consistency proof from oldSize must check.
func checkAsTlogClient(t *testing.T, get func(string) ([]byte, error), v note.Verifier, recs [][]byte, oldSize uint64) {
	t.Helper()
	signed, err := get("checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	cp, _, err := OpenCheckpoint(signed, note.VerifierList(v))
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if cp.Size != uint64(len(recs)) {
		t.Fatalf("checkpoint size %d, %d records appended", cp.Size, len(recs))
	}
	var ref hashStore
	for i, r := range recs {
		hs, err := tlog.StoredHashes(int64(i), r, ref)
		if err != nil {
			t.Fatal(err)
		}
		ref = append(ref, hs...)
	}
	rd := &c2spReader{get: get}
	hr := tlog.TileHashReader(tlog.Tree{N: int64(cp.Size), Hash: cp.Root}, rd)
	// Every tile boundary and a stride through the rest (each proof reads
	// its tiles again: tlog's tile reader keeps none).
	var sample []int
	for i := range recs {
		if i%tileWidth <= 1 || i%tileWidth == tileWidth-1 || i%97 == 0 || i == len(recs)-1 {
			sample = append(sample, i)
		}
	}
	for _, i := range sample {
		p, err := tlog.ProveRecord(int64(cp.Size), int64(i), hr)
		if err != nil {
			t.Fatalf("prove record %d: %v", i, err)
		}
		if err := tlog.CheckRecord(p, int64(cp.Size), cp.Root, int64(i), tlog.RecordHash(recs[i])); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	tp, err := tlog.ProveTree(int64(cp.Size), int64(oldSize), hr)
	if err != nil {
		t.Fatal(err)
	}
	old, err := tlog.TreeHash(int64(oldSize), ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(tp, int64(cp.Size), cp.Root, int64(oldSize), old); err != nil {
		t.Fatalf("consistency %d..%d: %v", oldSize, cp.Size, err)
	}
	full, partial := 0, 0
	for _, p := range rd.paths {
		tl, err := parseTilePath(p)
		if err != nil {
			t.Fatal(err)
		}
		want, err := tlog.ReadTileData(tl, ref)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := get(p)
		if !bytes.Equal(got, want) {
			t.Fatalf("tile %s differs from what tlog computes", p)
		}
		if tl.W == tileWidth {
			full++
		} else {
			partial++
		}
	}
	if full == 0 || partial == 0 {
		t.Fatalf("the client read %d full and %d partial tiles; the test needs both", full, partial)
	}
}

func appendBatch(t testing.TB, l *Ledger, recs [][]byte) {
	t.Helper()
	for i := 0; i < len(recs); i += 100 {
		if _, err := l.Append(context.Background(), recs[i:min(i+100, len(recs))]...); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTilesServedToTlogClients: the collector's HTTP view of the level
// files is a C2SP tlog-tiles log that x/mod's tlog client code reads and
// authenticates unchanged, at two tile levels, full and partial tiles.
func TestTilesServedToTlogClients(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	l, err := Open(t.TempDir(), testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var recs [][]byte
	for i := range 1300 {
		recs = append(recs, record(i))
	}
	appendBatch(t, l, recs[:700])
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	appendBatch(t, l, recs[700:])
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/log", l.TileHandler()))
	defer srv.Close()
	get := func(p string) ([]byte, error) {
		resp, err := http.Get(srv.URL + "/log/" + p)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("%s: %s", resp.Status, b)
		}
		return b, err
	}
	checkAsTlogClient(t, get, k.verifier, recs, 700)

	// What the newest checkpoint does not cover, and what is no tile, is 404.
	for _, p := range []string{"tile/0/005", "tile/0/005.p/21", "tile/1/000", "tile/2/000.p/1", "tile/entries/000", "tile/0/x", "tile/0/001.p/0", "../seg", "hashes/0"} {
		if _, err := get(p); err == nil || !strings.Contains(err.Error(), "404") {
			t.Errorf("GET %s: %v, want 404", p, err)
		}
	}
	if b, err := get("tile/0/005.p/20"); err != nil || len(b) != 20*HashSize {
		t.Errorf("partial tile of the checkpoint: %d bytes, %v", len(b), err)
	}
	resp, err := http.Post(srv.URL+"/log/checkpoint", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %s", resp.Status)
	}
}

// TestExportTilesReadByTlog: trailguard tiles writes the C2SP layout that
// a file-based tlog client reads offline; exporting again after the log
// grew writes only the new tiles.
func TestExportTilesReadByTlog(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	dir := t.TempDir()
	l, err := Open(dir, testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	var recs [][]byte
	for i := range 1000 {
		recs = append(recs, record(i))
	}
	appendBatch(t, l, recs)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cp, n, err := ExportTiles(dir, out, 0)
	if err != nil || cp.Size != 1000 {
		t.Fatalf("export: %v, %+v", err, cp)
	}
	// 3 full level-0 tiles, one partial at levels 0 and 1, the checkpoint.
	if n != 6 {
		t.Fatalf("%d files written, want 6", n)
	}
	get := func(p string) ([]byte, error) { return os.ReadFile(filepath.Join(out, filepath.FromSlash(p))) }
	checkAsTlogClient(t, get, k.verifier, recs, 300)

	l, err = Open(dir, testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1000; i < 1100; i++ {
		recs = append(recs, record(i))
	}
	appendBatch(t, l, recs[1000:])
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, n, err = ExportTiles(dir, out, 0); err != nil || n != 4 {
		t.Fatalf("second export: %d files, %v; want the new full tile, two partial tiles and the checkpoint", n, err)
	}
	checkAsTlogClient(t, get, k.verifier, recs, 1000)
	// An older signed size can be exported too, and nothing else.
	if _, _, err := ExportTiles(dir, t.TempDir(), 999); err == nil {
		t.Fatal("export of a size no checkpoint signed")
	}
}

// TestLegacyTileLayoutMigrates: a ledger written with one file per tile
// (testdata/legacy-tiles: 700 records, 223 pruned by retention, partial
// tiles at two levels) verifies and reads as it is; the first Open for
// writing converts it to level files (the pruned records' leaf hashes
// included, which exist nowhere else), and it keeps verifying and proving.
func TestLegacyTileLayoutMigrates(t *testing.T) {
	t.Parallel()
	src := filepath.Join("testdata", "legacy-tiles")
	skey, _ := os.ReadFile(filepath.Join(src, "signer.key"))
	vkey, _ := os.ReadFile(filepath.Join(src, "verifier.pub"))
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatal(err)
	}
	vs := []note.Verifier{verifier}
	verify := func(dir string, want uint64) {
		t.Helper()
		rep, err := Verify(dir, VerifyOptions{Verifiers: vs})
		if err != nil || !rep.OK() || rep.Records != want || rep.Pruned != 223 {
			t.Fatalf("verify: %v\n%s", err, rep)
		}
	}
	proveAll := func(l *Ledger, n int) {
		t.Helper()
		signed, cp := l.LatestCheckpoint()
		for _, i := range []int{0, 222, 223, 500, n - 1} {
			b, err := l.ProveInclusion(uint64(i), signed)
			if err != nil {
				t.Fatalf("prove %d: %v", i, err)
			}
			if err := tlog.CheckRecord(b.Proof, int64(cp.Size), cp.Root, int64(i), tlog.RecordHash(record(i))); err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
		}
	}
	dir := copyDir(t, filepath.Join(src, "ledger"))
	verify(dir, 700)
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := ro.Read(650); err != nil || !bytes.Equal(e.Data, record(650)) {
		t.Fatalf("read-only read in the old layout: %v", err)
	}
	proveAll(ro, 700)
	ro.Close()
	// An export reads the old layout too.
	if cp, _, err := ExportTiles(dir, t.TempDir(), 0); err != nil || cp.Size != 700 {
		t.Fatalf("export from the old layout: %v", err)
	}

	// A crash in an earlier conversion left a half-built directory.
	if err := os.MkdirAll(filepath.Join(dir, hashDir+".tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, hashDir+".tmp", "0"), []byte("half"), 0o644)
	opts := Options{Origin: testOrigin, Signer: signer, Logger: quietLogger()}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, legacyTileDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("old tile files left after the conversion: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, hashDir+".tmp")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("conversion directory left: %v", err)
	}
	for i := 700; i < 900; i++ {
		if _, err := l.Append(context.Background(), record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	proveAll(l, 900)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	verify(dir, 900)

	// A crash after the conversion, before the old files were removed:
	// the level files win, and the next Open removes the old files.
	dir2 := copyDir(t, filepath.Join(src, "ledger"))
	if ok, err := migrateLegacyTiles(dir2); !ok || err != nil {
		t.Fatalf("convert: %v %v", ok, err)
	}
	// The level files hold the tree of the last checkpoint as they are
	// (recovery need not rebuild it from the records).
	st := newTileStore(dir2, false)
	_, last := mustLatest(t, dir2)
	if tr, err := loadTree(last.Size, st.read); err != nil || tr.root() != last.Root {
		t.Fatalf("converted level files do not give the last checkpoint's root: %v", err)
	}
	st.close()
	verify(dir2, 700)
	l, err = Open(dir2, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir2, legacyTileDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("old tile files left: %v", err)
	}
	verify(dir2, 700)
}

func mustLatest(t *testing.T, dir string) ([]byte, Checkpoint) {
	t.Helper()
	l, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.LatestCheckpoint()
}
