package ledger

import (
	"crypto/sha256"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailguard/trailguard/ledger/internal/sha256x2"
)

// Hash is a SHA-256 Merkle tree hash (RFC 6962 leaf or interior node).
type Hash = tlog.Hash

const (
	tileHeight = 8               // C2SP tlog-tiles: tiles of 2^8 hashes
	tileWidth  = 1 << tileHeight // hashes per full tile
)

// emptyRoot is the RFC 6962 hash of the empty tree, SHA-256 of "".
var emptyRoot = Hash(sha256.Sum256(nil))

// LeafHash returns the RFC 6962 leaf hash of a record, SHA-256(0x00 || rec).
func LeafHash(rec []byte) Hash { return tlog.RecordHash(rec) }

// tree is an append-only RFC 6962 Merkle tree that keeps only what the
// tlog-tiles layout needs: for every tile level, the hashes of the tile
// currently being filled. Level L holds hashes of the perfect subtrees of
// height 8·L. Completed tiles are handed to emit and forgotten, so memory is
// O(256·log n) however large the log grows, and resuming after a restart
// needs nothing but the partial tiles of the last checkpoint.
type tree struct {
	size   uint64
	levels [][]Hash
}

// emitFunc receives every hash the tree gains, in order: level 0 every
// leaf hash, level L+1 the root of every completed level-L tile, with its
// index k at that level (the entry of the level file hashes/<L>).
type emitFunc func(level int, k uint64, h Hash)

// append adds one leaf hash.
func (t *tree) append(h Hash, emit emitFunc) {
	t.size++
	t.push(0, h, emit)
}

// appendTile adds 256 leaves at once, given their hashes and their subtree
// root (computed elsewhere, e.g. in parallel). size must be tile-aligned.
func (t *tree) appendTile(leaves []Hash, root Hash, emit emitFunc) {
	if t.size%tileWidth != 0 || len(leaves) != tileWidth {
		panic("ledger: appendTile on unaligned tree")
	}
	if len(t.levels) == 0 {
		t.levels = append(t.levels, nil)
	}
	if emit != nil {
		for i, h := range leaves {
			emit(0, t.size+uint64(i), h)
		}
	}
	t.size += tileWidth
	t.push(1, root, emit)
}

// appendSubtree adds 256 leaves given only their subtree root (their
// hashes are not known). size must be tile-aligned.
func (t *tree) appendSubtree(root Hash) {
	if t.size%tileWidth != 0 {
		panic("ledger: appendSubtree on unaligned tree")
	}
	if len(t.levels) == 0 {
		t.levels = append(t.levels, nil)
	}
	t.size += tileWidth
	t.push(1, root, nil)
}

func (t *tree) push(level int, h Hash, emit emitFunc) {
	for {
		for len(t.levels) <= level {
			t.levels = append(t.levels, make([]Hash, 0, tileWidth))
		}
		t.levels[level] = append(t.levels[level], h)
		if emit != nil {
			// t.size already counts the leaf that brought this hash.
			emit(level, t.size>>(tileHeight*level)-1, h)
		}
		if len(t.levels[level]) < tileWidth {
			return
		}
		full := t.levels[level]
		h = subtreeHash(full)
		t.levels[level] = full[:0]
		level++
	}
}

// root returns the RFC 6962 tree hash of the current tree.
func (t *tree) root() Hash {
	if t.size == 0 {
		return emptyRoot
	}
	var border []Hash // perfect subtree hashes, left to right
	for L := len(t.levels) - 1; L >= 0; L-- {
		entries := t.levels[L]
		pos := 0
		for b := tileHeight - 1; b >= 0; b-- {
			if len(entries)&(1<<b) != 0 {
				border = append(border, subtreeHash(entries[pos:pos+1<<b]))
				pos += 1 << b
			}
		}
	}
	h := border[len(border)-1]
	for i := len(border) - 2; i >= 0; i-- {
		h = tlog.NodeHash(border[i], h)
	}
	return h
}

// clone returns an independent copy.
// Only the hashes held are copied (the writer clones the tree for every
// batch, to roll back to: with one record per batch, zeroing three 8 KiB
// tiles each time was most of the sequencer's work).
func (t *tree) clone() *tree {
	c := &tree{size: t.size, levels: make([][]Hash, len(t.levels))}
	for i, l := range t.levels {
		c.levels[i] = append([]Hash(nil), l...)
	}
	return c
}

// partialTiles returns the tiles that are not full at the current size, as
// (level, index, data) — the .p/W tiles of the tlog-tiles layout.
func (t *tree) partialTiles() []tileData {
	var out []tileData
	for L, entries := range t.levels {
		if len(entries) == 0 {
			continue
		}
		out = append(out, tileData{
			level: L,
			n:     (t.size >> (tileHeight * L)) / tileWidth,
			data:  hashesBytes(entries),
		})
	}
	return out
}

// load restores the tree at size from the tiles (full or partial) that
// cover it, as read by read(level, n, width).
func loadTree(size uint64, read func(level int, n uint64, w int) ([]byte, error)) (*tree, error) {
	t := &tree{size: size}
	for L := 0; size>>(tileHeight*L) > 0; L++ {
		cnt := size >> (tileHeight * L)
		w := int(cnt % tileWidth)
		entries := make([]Hash, 0, tileWidth)
		if w > 0 {
			data, err := read(L, cnt/tileWidth, w)
			if err != nil {
				return nil, err
			}
			if len(data) < w*HashSize {
				return nil, fmt.Errorf("tile %d/%d: short (%d bytes, need %d)", L, cnt/tileWidth, len(data), w*HashSize)
			}
			for i := 0; i < w; i++ {
				entries = append(entries, Hash(data[i*HashSize:(i+1)*HashSize]))
			}
		}
		t.levels = append(t.levels, entries)
	}
	return t, nil
}

// HashSize is the size of a Merkle tree hash in bytes.
const HashSize = tlog.HashSize

// subtreeHash returns the root of a perfect subtree given its 2^k leaves
// (at whatever level). It does not modify hs.
func subtreeHash(hs []Hash) Hash {
	switch len(hs) {
	case 1:
		return hs[0]
	case 2:
		return tlog.NodeHash(hs[0], hs[1])
	}
	// Two node hashes at a time (sha256x2): the sequencer computes one
	// per record.
	var buf [tileWidth / 2]Hash
	n := len(hs) / 2
	sha256x2.Nodes(buf[:n], hs[:2*n])
	for n > 1 {
		sha256x2.Nodes(buf[:n/2], buf[:n])
		n /= 2
	}
	return buf[0]
}

func hashesBytes(hs []Hash) []byte {
	b := make([]byte, 0, len(hs)*HashSize)
	for _, h := range hs {
		b = append(b, h[:]...)
	}
	return b
}
