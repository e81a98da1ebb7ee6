package ledger

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// The C2SP tlog-tiles view of the level files: served over HTTP
// (TileHandler) and written out as files (ExportTiles), so that standard
// tlog-tiles clients and tools read the ledger's Merkle tree unchanged.

// TileHandler serves the ledger's Merkle tree as a C2SP tlog-tiles log
// rooted where it is mounted (strip the prefix with http.StripPrefix):
// GET checkpoint is the newest signed checkpoint, GET tile/<L>/<N> a full
// hash tile and tile/<L>/<N>.p/<W> a partial one, each answered when the
// newest checkpoint covers it (404 otherwise). Entry bundles
// (tile/entries/…) are not served: records are read through the
// collector's API, each with its inclusion proof.
func (l *Ledger) TileHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := strings.TrimPrefix(r.URL.Path, "/")
		signed, cp := l.LatestCheckpoint()
		if p == "checkpoint" {
			if signed == nil {
				http.Error(w, "no checkpoint yet", http.StatusNotFound)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.Write(signed)
			return
		}
		t, err := parseTilePath(p)
		if err != nil {
			http.Error(w, "not found: the log serves checkpoint and tile/<L>/<N>[.p/<W>]", http.StatusNotFound)
			return
		}
		if !tileCovered(cp.Size, t.L, uint64(t.N), t.W) {
			http.Error(w, fmt.Sprintf("tile %s is beyond the newest checkpoint (size %d)", p, cp.Size), http.StatusNotFound)
			return
		}
		data, err := l.tiles.read(t.L, uint64(t.N), t.W)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				http.Error(w, "tile not found", http.StatusNotFound)
				return
			}
			l.opts.Logger.Error("ledger: serving a tile", "dir", l.dir, "tile", p, "err", err)
			http.Error(w, "tile unreadable", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if t.W == tileWidth {
			// Full tiles never change.
			w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		w.Write(data)
	})
}

// tileCovered reports whether the tree of size holds the first w hashes of
// tile (level, n).
func tileCovered(size uint64, level int, n uint64, w int) bool {
	if level < 0 || level*tileHeight >= 64 || w <= 0 || w > tileWidth || n > (1<<56) {
		return false
	}
	return n*tileWidth+uint64(w) <= size>>(tileHeight*level)
}

// ExportTiles writes the tiles of the signed checkpoint of the given size
// (0: the newest) from the ledger in dir to out, in the C2SP tlog-tiles
// layout: out/checkpoint, every full tile out/tile/<L>/<N> and the partial
// tiles out/tile/<L>/<N>.p/<W> of that size — what a tlog-tiles client
// needs to check inclusion and consistency proofs against that checkpoint,
// offline. Full tiles already in out with the right length are kept (they
// never change), so exporting again after the log grew writes only the new
// ones. It returns the checkpoint exported and the number of tiles written.
func ExportTiles(dir, out string, size uint64) (Checkpoint, int, error) {
	l, err := OpenReadOnly(dir)
	if err != nil {
		return Checkpoint{}, 0, err
	}
	defer l.Close()
	signed, cp, err := l.SignedCheckpoint(size)
	if err != nil {
		return Checkpoint{}, 0, fmt.Errorf("ledger: export tiles: %w", err)
	}
	written := 0
	put := func(rel string, data []byte) error {
		p := filepath.Join(out, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		tmp := p + ".tmp"
		if err := writeFresh(tmp, data, false); err != nil { // (plant.go)
			os.Remove(tmp)
			return err
		}
		written++
		return os.Rename(tmp, p)
	}
	for L := 0; L*tileHeight < 64 && cp.Size>>(tileHeight*L) > 0; L++ {
		cnt := cp.Size >> (tileHeight * L)
		for n := uint64(0); n < cnt/tileWidth; n++ {
			rel := tilePath(L, n, tileWidth)
			p := filepath.Join(out, filepath.FromSlash(rel))
			if st, err := os.Stat(p); err == nil && st.Size() == tileBytes {
				continue // read only what is missing
			}
			data, err := l.tiles.read(L, n, tileWidth)
			if err != nil {
				return cp, written, fmt.Errorf("ledger: export tiles: %w", err)
			}
			if err := put(rel, data); err != nil {
				return cp, written, fmt.Errorf("ledger: export tiles: %w", err)
			}
		}
		if w := int(cnt % tileWidth); w > 0 {
			data, err := l.tiles.read(L, cnt/tileWidth, w)
			if err != nil {
				return cp, written, fmt.Errorf("ledger: export tiles: %w", err)
			}
			if err := put(tilePath(L, cnt/tileWidth, w), data); err != nil {
				return cp, written, fmt.Errorf("ledger: export tiles: %w", err)
			}
		}
	}
	if err := put("checkpoint", signed); err != nil {
		return cp, written, fmt.Errorf("ledger: export tiles: %w", err)
	}
	return cp, written, nil
}
