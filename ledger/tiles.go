package ledger

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailguard/trailguard/internal/regfile"
)

// The Merkle hashes are kept in one append-only file per tile level,
// hashes/<L>: entry k of level L is the hash of the k-th perfect subtree of
// height 8·L (level 0: every leaf hash, in record order), 32 bytes each.
// The C2SP tlog-tiles tile (L, N, W) — full (W = 256) or partial — is the
// W·32 bytes at offset N·8192 of hashes/<L>: every tile of every
// checkpoint, including the partial ones, is a byte range of these files.
// TileHandler serves them at their C2SP paths and ExportTiles writes them
// out as files, so tlog-tiles clients read them unchanged.
//
// Earlier versions wrote each tile to its own file (tile/<L>/<N>[.p/<W>]).
// Creating one 8 KiB file per 256 records took most of the CPU of a busy
// writer on ext4 (0.4–0.8 ms of kernel time each): appending to a few
// files costs a write per batch instead. A ledger in the old layout is
// still read as it is (verify, prove, read-only opens) and is converted
// by the first Open for writing (migrateLegacyTiles).

// hashDir holds the level files; legacyTileDir the old one-file-per-tile layout.
const (
	hashDir       = "hashes"
	legacyTileDir = "tile"
	tileBytes     = tileWidth * HashSize
)

// tileData is one tile of hashes: level, index and the concatenated hashes.
type tileData struct {
	level int
	n     uint64
	data  []byte
}

// tilePath returns the C2SP tlog-tiles path of a tile, relative to the log
// directory: tile/<L>/<N>[.p/<W>], N in 3-digit groups (x001/234).
func tilePath(level int, n uint64, w int) string {
	p := tlog.Tile{H: tileHeight, L: level, N: int64(n), W: w}.Path()
	// x/mod writes the sumdb form tile/<H>/<L>/...; tlog-tiles drops <H>.
	return "tile/" + strings.TrimPrefix(p, "tile/8/")
}

// parseTilePath parses a C2SP tlog-tiles hash tile path (tile/<L>/<N>[.p/<W>]).
func parseTilePath(p string) (tlog.Tile, error) {
	rest, ok := strings.CutPrefix(p, "tile/")
	if !ok || strings.HasPrefix(rest, "entries/") {
		return tlog.Tile{}, fmt.Errorf("ledger: %q is not a hash tile path", p)
	}
	t, err := tlog.ParseTilePath("tile/8/" + rest)
	if err != nil || t.L < 0 || t.W <= 0 || t.W > tileWidth {
		return tlog.Tile{}, fmt.Errorf("ledger: %q is not a hash tile path", p)
	}
	return t, nil
}

// tileStore reads and writes the hash level files of a ledger directory.
// Reads are safe for concurrent use; writes come from one goroutine at a
// time (recovery, then the publisher).
type tileStore struct {
	dir      string
	writable bool
	// legacy: the directory is in the one-file-per-tile layout (read-only).
	legacy bool

	// deriver computes the level-0 hashes punched out of hashes/0 for
	// compressed segments (derived.go).
	deriver *leafDeriver

	mu      sync.Mutex
	files   []*os.File
	dirty   []bool
	created bool // a level file was created since the last sync
}

// newTileStore returns the store of dir. A writable store uses (and
// creates) the level files; a read-only one reads the level files if they
// exist, else the old layout.
func newTileStore(dir string, writable bool) *tileStore {
	s := &tileStore{dir: dir, writable: writable, deriver: newLeafDeriver(filepath.Join(dir, "seg"))}
	if !writable {
		if _, err := os.Stat(filepath.Join(dir, hashDir)); err != nil {
			if _, err := os.Stat(filepath.Join(dir, legacyTileDir)); err == nil {
				s.legacy = true
			}
		}
	}
	return s
}

func (s *tileStore) levelPath(level int) string {
	return filepath.Join(s.dir, hashDir, strconv.Itoa(level))
}

// file returns the level file, opening (for a writer, creating) it.
func (s *tileStore) file(level int) (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.files) <= level {
		s.files = append(s.files, nil)
		s.dirty = append(s.dirty, false)
	}
	if f := s.files[level]; f != nil {
		return f, nil
	}
	var f *os.File
	var err error
	if s.writable {
		if err = os.MkdirAll(filepath.Join(s.dir, hashDir), 0o755); err != nil {
			return nil, err
		}
		p := s.levelPath(level)
		// Never through a link planted at the name (plant.go).
		if _, serr := os.Lstat(p); serr != nil {
			s.created = true
			f, err = createFresh(p, os.O_RDWR)
		} else {
			f, err = os.OpenFile(p, os.O_RDWR|oNoFollow, 0)
		}
	} else {
		f, _, err = regfile.Open(s.levelPath(level))
	}
	if err != nil {
		return nil, err
	}
	s.files[level] = f
	return f, nil
}

// close releases the file handles.
func (s *tileStore) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.files {
		if f != nil {
			f.Close()
			s.files[i] = nil
		}
	}
}

// read returns the first w hashes of tile (level, n). Level-0 hashes of
// compressed segments that are not stored are derived from the records.
func (s *tileStore) read(level int, n uint64, w int) ([]byte, error) {
	b, err := s.readRaw(level, n, w)
	if err != nil || level != 0 || !hasZeroHash(b) {
		return b, err
	}
	return s.fillDerived(n, b)
}

// readRaw returns the first w hashes of tile (level, n) as stored: zeros
// where level-0 hashes were punched out.
func (s *tileStore) readRaw(level int, n uint64, w int) ([]byte, error) {
	if s.legacy {
		return s.legacyRead(level, n, w)
	}
	b := make([]byte, w*HashSize)
	if err := s.readAt(level, n*tileWidth, b); err != nil {
		return nil, fmt.Errorf("tile %s: %w", tilePath(level, n, w), err)
	}
	return b, nil
}

// readAt fills b with the hashes of level from entry index k on. A level
// file that ends before is fs.ErrNotExist (not written yet).
func (s *tileStore) readAt(level int, k uint64, b []byte) error {
	f, err := s.file(level)
	if err != nil {
		return err
	}
	n, err := f.ReadAt(b, int64(k)*HashSize)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fs.ErrNotExist
	}
	return err
}

// count returns how many hashes the level file holds.
func (s *tileStore) count(level int) (uint64, error) {
	f, err := s.file(level)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return uint64(st.Size()) / HashSize, nil
}

// writeAt writes hashes of level from entry index k on (writer only).
func (s *tileStore) writeAt(level int, k uint64, data []byte) error {
	f, err := s.file(level)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, int64(k)*HashSize); err != nil {
		return err
	}
	s.mu.Lock()
	s.dirty[level] = true
	s.mu.Unlock()
	return nil
}

// truncate cuts the level files to the hashes of a tree of size leaves
// (recovery: what follows is rebuilt from the records).
func (s *tileStore) truncate(size uint64) error {
	return s.truncateLevels(func(L int) uint64 {
		if L*tileHeight >= 64 {
			return 0
		}
		return size >> (tileHeight * L)
	})
}

// truncateLevels cuts level file L to keep(L) hashes where it holds more.
func (s *tileStore) truncateLevels(keep func(L int) uint64) error {
	for L := 0; ; L++ {
		if _, err := os.Stat(s.levelPath(L)); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		f, err := s.file(L)
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if k := keep(L); uint64(st.Size()) > k*HashSize {
			if err := f.Truncate(int64(k * HashSize)); err != nil {
				return err
			}
			s.mu.Lock()
			s.dirty[L] = true
			s.mu.Unlock()
		}
	}
}

// sync makes what was written durable.
func (s *tileStore) sync() error { return s.syncWith(nil) }

// syncWith is sync with the level files' fdatasyncs submitted together
// through fl (the publisher's AIO context) when it is not nil: the
// publisher parks in the poller rather than blocking in two or three
// fdatasyncs in a row (each one a P that Go's monitor takes back, and the
// monitor polling after), and the file system commits them together. It
// returns once every one has completed, so the guarantee is sync's.
func (s *tileStore) syncWith(fl *aioFlusher) error {
	s.mu.Lock()
	var fs []*os.File
	for i, d := range s.dirty {
		if d {
			fs = append(fs, s.files[i])
			s.dirty[i] = false
		}
	}
	created := s.created
	s.created = false
	s.mu.Unlock()
	var ticket uint64
	for _, f := range fs {
		if fl != nil {
			if t, ok := fl.submit(f); ok {
				ticket = t
				continue
			}
		}
		if err := datasync(f); err != nil {
			return err
		}
	}
	if ticket != 0 {
		if err := fl.wait(ticket); err != nil {
			return err
		}
	}
	if created {
		return syncFile(filepath.Join(s.dir, hashDir))
	}
	return nil
}

// syncLeaves makes the leaf hashes of records [0, hi) durable; it fails
// with fs.ErrNotExist if they are not all written yet.
func (s *tileStore) syncLeaves(hi uint64) error {
	n, err := s.count(0)
	if err != nil {
		return err
	}
	if n < hi {
		return fs.ErrNotExist
	}
	return s.sync()
}

// nodeBuf collects the hashes a tree emits, per level, as consecutive runs
// to append to the level files.
type nodeBuf struct {
	from []uint64 // index of the first hash held, per level
	data [][]byte
}

// add is an emitFunc.
func (b *nodeBuf) add(level int, k uint64, h Hash) {
	for len(b.data) <= level {
		b.from = append(b.from, 0)
		b.data = append(b.data, nil)
	}
	if len(b.data[level]) == 0 {
		b.from[level] = k
	} else if b.from[level]+uint64(len(b.data[level]))/HashSize != k {
		panic(fmt.Sprintf("ledger: hash %d of level %d is not consecutive", k, level))
	}
	b.data[level] = append(b.data[level], h[:]...)
}

// merge appends o's hashes, which follow b's on every level (o is a later
// batch of the same tree), so that they are written with one pwrite per
// level.
func (b *nodeBuf) merge(o nodeBuf) {
	for L, d := range o.data {
		if len(d) == 0 {
			continue
		}
		for len(b.data) <= L {
			b.from = append(b.from, 0)
			b.data = append(b.data, nil)
		}
		if len(b.data[L]) == 0 {
			b.from[L] = o.from[L]
		} else if b.from[L]+uint64(len(b.data[L]))/HashSize != o.from[L] {
			panic(fmt.Sprintf("ledger: hashes of level %d from %d do not follow those held", L, o.from[L]))
		}
		b.data[L] = append(b.data[L], d...)
	}
}

// bytes is the number of bytes held.
func (b *nodeBuf) bytes() int {
	n := 0
	for _, d := range b.data {
		n += len(d)
	}
	return n
}

// writeTo writes the hashes held to s and empties b.
func (b *nodeBuf) writeTo(s *tileStore) error {
	for L, d := range b.data {
		if len(d) == 0 {
			continue
		}
		if err := s.writeAt(L, b.from[L], d); err != nil {
			return err
		}
		b.data[L] = d[:0]
	}
	return nil
}

// legacyRead returns the first w hashes of tile (level, n) in the old
// layout: from the full tile if it exists, else from the narrowest partial
// tile at least w wide.
func (s *tileStore) legacyRead(level int, n uint64, w int) ([]byte, error) {
	need := w * HashSize
	full := filepath.Join(s.dir, filepath.FromSlash(tilePath(level, n, tileWidth)))
	if b, err := os.ReadFile(full); err == nil && len(b) == tileBytes {
		return b[:need], nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	pdir := full + ".p"
	ents, err := os.ReadDir(pdir)
	if err != nil {
		return nil, fmt.Errorf("tile %s: %w", tilePath(level, n, w), err)
	}
	var widths []int
	for _, e := range ents {
		if x, err := strconv.Atoi(e.Name()); err == nil && x >= w && x < tileWidth {
			widths = append(widths, x)
		}
	}
	if len(widths) == 0 {
		return nil, fmt.Errorf("tile %s: %w", tilePath(level, n, w), fs.ErrNotExist)
	}
	sort.Ints(widths)
	b, err := os.ReadFile(filepath.Join(pdir, strconv.Itoa(widths[0])))
	if err != nil {
		return nil, err
	}
	if len(b) != widths[0]*HashSize {
		return nil, fmt.Errorf("tile %s: %d bytes, want %d", tilePath(level, n, widths[0]), len(b), widths[0]*HashSize)
	}
	return b[:need], nil
}

// migrateLegacyTiles converts the old one-file-per-tile layout into level
// files: every full tile of each level in order, then the widest partial
// tile after them. The level files are built aside and renamed into place
// once durable, so a crash leaves either layout complete; the old files
// are removed by removeLegacyTiles once the tree has been checked against
// the last checkpoint. It reports whether there was anything to migrate.
func migrateLegacyTiles(dir string) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, hashDir)); err == nil {
		return false, nil
	}
	if _, err := os.Stat(filepath.Join(dir, legacyTileDir)); err != nil {
		return false, nil
	}
	tmp := filepath.Join(dir, hashDir+".tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return false, err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return false, err
	}
	for L := 0; ; L++ {
		if _, err := os.Stat(filepath.Join(dir, legacyTileDir, strconv.Itoa(L))); err != nil {
			break
		}
		f, err := createFresh(filepath.Join(tmp, strconv.Itoa(L)), os.O_WRONLY)
		if err != nil {
			return false, err
		}
		for n := uint64(0); ; n++ {
			full := filepath.Join(dir, filepath.FromSlash(tilePath(L, n, tileWidth)))
			b, err := os.ReadFile(full)
			if err != nil || len(b) != tileBytes {
				// No full tile: the widest partial one ends the level.
				b = widestPartial(full + ".p")
			}
			if len(b) > 0 {
				if _, err := f.Write(b); err != nil {
					f.Close()
					return false, err
				}
			}
			if len(b) != tileBytes {
				break
			}
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return false, err
		}
		if err := f.Close(); err != nil {
			return false, err
		}
	}
	if err := syncFile(tmp); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, hashDir)); err != nil {
		return false, err
	}
	return true, syncFile(dir)
}

// widestPartial returns the widest well-formed partial tile in the old
// layout's directory pdir (tile/<L>/<N>.p), or nil.
func widestPartial(pdir string) []byte {
	ents, _ := os.ReadDir(pdir)
	best := []byte(nil)
	for _, e := range ents {
		w, err := strconv.Atoi(e.Name())
		if err != nil || w <= 0 || w >= tileWidth || w*HashSize <= len(best) {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(pdir, e.Name())); err == nil && len(b) == w*HashSize {
			best = b
		}
	}
	return best
}

// removeLegacyTiles deletes the old tile files once the level files hold
// their hashes.
func removeLegacyTiles(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, hashDir)); err != nil {
		return nil
	}
	return os.RemoveAll(filepath.Join(dir, legacyTileDir))
}

func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// tileReader adapts a tileStore to tlog.TileReader, so proofs are computed
// by x/mod's tlog.TileHashReader, which also authenticates every tile it
// reads against the checkpoint's root.
type tileReader struct{ s *tileStore }

func (r tileReader) Height() int { return tileHeight }

func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := r.s.read(t.L, uint64(t.N), t.W)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (r tileReader) SaveTiles([]tlog.Tile, [][]byte) {}
