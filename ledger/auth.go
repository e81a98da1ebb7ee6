package ledger

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
)

// leafAuth gives the read paths the leaf hash each record must have, so
// that no read returns a wrong record: not because a derived .idx file
// points at the wrong frame, nor because a segment was altered. Hashes of
// records covered by a checkpoint this process trusts (the anchor: the
// newest it signed, or for a read-only ledger the newest in the history)
// come from the hash tiles, each tile authenticated up to the anchor's
// root; hashes of records written since come from memory (the writer
// computed them from the records its callers appended).
type leafAuth struct {
	tiles *tileStore

	mu         sync.Mutex
	anchored   bool
	size       uint64
	root       Hash
	border     *tree // the anchor's partial tiles, authenticated; nil until needed
	recentBase uint64
	recent     []Hash // leaf hashes of records [recentBase, …) (writer)

	cacheMu sync.Mutex
	cache   map[tileKey][]Hash // authenticated full tiles
	// FIFO eviction, per kind: a sequential scan goes through level-0
	// tiles once each and must not evict the few upper tiles every read
	// needs.
	order [2][]tileKey
}

type tileKey struct {
	level int
	n     uint64
}

// authCacheTiles bounds the authenticated full tiles kept (8 KiB each):
// level-0 tiles, and upper tiles (each covers 65536 records or more).
var authCacheTiles = [2]int{64, 64}

var errTileAuth = errors.New("hash tiles do not match the checkpoint")

func newLeafAuth(tiles *tileStore) *leafAuth {
	// Read-only ledgers keep no leaf hashes in memory.
	return &leafAuth{tiles: tiles, cache: map[tileKey][]Hash{}, recentBase: math.MaxUint64}
}

// setAnchor trusts the tree of size with root from now on; leaf hashes
// kept in memory below size are dropped.
func (a *leafAuth) setAnchor(size uint64, root Hash) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.anchored, a.size, a.root, a.border = true, size, root, nil
	if size > a.recentBase {
		// Moved to the front of the array, not resliced from it: a
		// slice resliced at every checkpoint left no room at its end,
		// and every addRecent after it copied all it held into a new
		// array (52 MB in a benchmark run of 380k records; on this VM
		// each page touched for the first time is a fault of 20–35 µs).
		drop := min(size-a.recentBase, uint64(len(a.recent)))
		n := copy(a.recent, a.recent[drop:])
		a.recent = a.recent[:n]
		a.recentBase = size
	}
}

// resetRecent starts keeping leaf hashes from record n.
func (a *leafAuth) resetRecent(n uint64) {
	a.mu.Lock()
	a.recentBase, a.recent = n, nil
	a.mu.Unlock()
}

// addRecent records the leaf hashes of the next records written.
func (a *leafAuth) addRecent(hs []Hash) {
	a.mu.Lock()
	a.recent = append(a.recent, hs...)
	a.mu.Unlock()
}

// trimRecent forgets the leaf hashes of records n and later (rolled back).
func (a *leafAuth) trimRecent(n uint64) {
	a.mu.Lock()
	if n >= a.recentBase && n-a.recentBase < uint64(len(a.recent)) {
		a.recent = a.recent[:n-a.recentBase]
	}
	a.mu.Unlock()
}

// hashes returns the leaf hashes of records [lo, hi), which must lie in one
// level-0 tile. known is false if no hash is known for some of them (a
// read-only ledger's records after its newest checkpoint, whose positions
// come from scanning the segment itself).
func (a *leafAuth) hashes(lo, hi uint64) (hs []Hash, known bool, err error) {
	a.mu.Lock()
	out := make([]Hash, hi-lo)
	// From memory: records written since the anchor.
	if hi > a.recentBase {
		from := max(lo, a.recentBase)
		if hi-a.recentBase > uint64(len(a.recent)) {
			a.mu.Unlock()
			return nil, false, nil
		}
		copy(out[from-lo:], a.recent[from-a.recentBase:hi-a.recentBase])
		if from == lo {
			a.mu.Unlock()
			return out, true, nil
		}
		hi = from
	}
	if !a.anchored || hi > a.size {
		a.mu.Unlock()
		return nil, false, nil
	}
	size, root, border := a.size, a.root, a.border
	a.mu.Unlock()
	if border == nil {
		t, err := loadTree(size, a.tiles.read)
		if err != nil {
			return nil, false, fmt.Errorf("hash tiles of checkpoint %d: %w", size, err)
		}
		if t.root() != root {
			return nil, false, fmt.Errorf("partial hash tiles of checkpoint %d: %w", size, errTileAuth)
		}
		border = t
		a.mu.Lock()
		if a.size == size && a.root == root {
			a.border = border
		}
		a.mu.Unlock()
	}
	tn := lo / tileWidth
	var tile []Hash
	if (tn+1)*tileWidth <= size {
		if tile, err = a.fullTile(size, border, 0, tn); err != nil {
			return nil, false, err
		}
	} else {
		tile = border.levels[0]
	}
	copy(out, tile[lo-tn*tileWidth:hi-tn*tileWidth])
	return out, true, nil
}

// fullTile returns full tile (L, n), authenticated against its parent's
// hash, itself authenticated up to the anchor.
func (a *leafAuth) fullTile(size uint64, border *tree, L int, n uint64) ([]Hash, error) {
	key := tileKey{L, n}
	a.cacheMu.Lock()
	hs, ok := a.cache[key]
	a.cacheMu.Unlock()
	if ok {
		return hs, nil
	}
	data, err := a.tiles.read(L, n, tileWidth)
	if err != nil {
		return nil, err
	}
	hs = make([]Hash, tileWidth)
	for i := range hs {
		hs[i] = Hash(data[i*HashSize : (i+1)*HashSize])
	}
	want, err := a.node(size, border, L+1, n)
	if err != nil {
		return nil, err
	}
	if subtreeHash(hs) != want {
		return nil, fmt.Errorf("tile %s: %w", tilePath(L, n, tileWidth), errTileAuth)
	}
	a.cacheMu.Lock()
	if _, ok := a.cache[key]; !ok {
		kind := min(L, 1)
		if len(a.order[kind]) >= authCacheTiles[kind] {
			delete(a.cache, a.order[kind][0])
			a.order[kind] = slices.Delete(a.order[kind], 0, 1)
		}
		a.cache[key] = hs
		a.order[kind] = append(a.order[kind], key)
	}
	a.cacheMu.Unlock()
	return hs, nil
}

// node returns the hash of node n at tile level L (height 8·L) of the
// anchor's tree.
func (a *leafAuth) node(size uint64, border *tree, L int, n uint64) (Hash, error) {
	cnt := size >> (tileHeight * L)
	if n >= cnt {
		return Hash{}, fmt.Errorf("ledger: node %d at level %d beyond tree size %d", n, L, size)
	}
	tn := n / tileWidth
	if (tn+1)*tileWidth <= cnt {
		hs, err := a.fullTile(size, border, L, tn)
		if err != nil {
			return Hash{}, err
		}
		return hs[n%tileWidth], nil
	}
	return border.levels[L][n%tileWidth], nil
}
