package ledger

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
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

// tileStore reads and writes hash tiles under dir.
type tileStore struct {
	dir  string
	made *sync.Map // directories known to exist (writer only)
}

// write writes a tile. Full tiles are written in place (a torn one is
// caught by length and root checks and rewritten by recovery); partial
// tiles go through a temporary file and rename, because readers of the
// newest checkpoint fetch them while the log grows.
func (s tileStore) write(level int, n uint64, w int, data []byte) error {
	p := filepath.Join(s.dir, filepath.FromSlash(tilePath(level, n, w)))
	d := filepath.Dir(p)
	if s.made == nil {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	} else if _, ok := s.made.Load(d); !ok {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		s.made.Store(d, true)
	}
	if w == tileWidth {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			os.Remove(p) // a short tile would be taken for missing anyway
			return err
		}
		return nil
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, p)
}

// read returns the first w hashes of tile (level, n): from the full tile if
// it exists, else from the narrowest partial tile at least w wide.
func (s tileStore) read(level int, n uint64, w int) ([]byte, error) {
	need := w * HashSize
	full := filepath.Join(s.dir, filepath.FromSlash(tilePath(level, n, tileWidth)))
	if b, err := os.ReadFile(full); err == nil && len(b) == tileWidth*HashSize {
		return b[:need], nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	// No full tile yet (or one still being written): a partial one.
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

// removePartials deletes the partial tiles of (level, n) narrower than keep
// (keep = tileWidth removes them all, once the full tile exists).
func (s tileStore) removePartials(level int, n uint64, keep int) {
	pdir := filepath.Join(s.dir, filepath.FromSlash(tilePath(level, n, tileWidth))) + ".p"
	ents, err := os.ReadDir(pdir)
	if err != nil {
		return
	}
	left := 0
	for _, e := range ents {
		if x, err := strconv.Atoi(e.Name()); err == nil && x < keep {
			os.Remove(filepath.Join(pdir, e.Name()))
		} else {
			left++
		}
	}
	if left == 0 {
		os.Remove(pdir)
		if s.made != nil {
			s.made.Delete(pdir)
		}
	}
}

// syncLeafTiles makes the full level-0 tiles covering leaves [lo, hi)
// durable (hi must be tile-aligned or the caller accepts a partial tail).
func (s tileStore) syncLeafTiles(lo, hi uint64) error {
	dirs := map[string]bool{}
	for n := lo / tileWidth; n < hi/tileWidth; n++ {
		p := filepath.Join(s.dir, filepath.FromSlash(tilePath(0, n, tileWidth)))
		if err := syncFile(p); err != nil {
			return err
		}
		dirs[filepath.Dir(p)] = true
	}
	for d := range dirs {
		if err := syncFile(d); err != nil {
			return err
		}
	}
	return nil
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
type tileReader struct{ s tileStore }

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
