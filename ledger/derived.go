package ledger

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/trailguard/trailguard/internal/regfile"
	"github.com/trailguard/trailguard/ledger/internal/sha256x2"
)

// The level-0 hashes of records in compressed segments are not kept on
// disk: each is SHA-256(0x00 || record) of a record the .zseg holds, so
// hashes/0 would repeat, at 32 bytes per record, what the records already
// determine (a third of the store). Once a segment is compressed (and the
// .zseg durable), the full level-0 tiles inside its range are punched out
// of hashes/0 (fallocate PUNCH_HOLE, KEEP_SIZE): the file keeps its size
// and positions, the blocks are freed, and the punched entries read as
// zeros. A zero entry is never a real hash (SHA-256 has no known zero
// preimage), so a reader that meets one derives the tile from the records
// (leafDeriver): decode the block(s) of the 256 records, hash them. Every
// path that reads level-0 tiles (proofs, bundles, C2SP tiles and export,
// the read path's authentication, Open's tree) goes through tileStore.read
// and gets the same bytes as before; tiles so derived are authenticated
// against the stored level-1 hashes and the signed root like stored ones.
//
// Where the hashes must outlive the records — retention deletes a segment
// and keeps its leaf hashes — they are written back first (fillLeaves).
// Verify reads the level files raw (readRaw): a derived leaf would only
// repeat the record's hash, so for a punched tile it checks the root of the
// records' 256 leaf hashes against the stored level-1 hash instead.
//
// Crash safety: punching is the last step of a compaction and repeated by
// every Open for writing (trimLeaves), so a crash before or during it
// leaves stored hashes (valid) or zeros (derived), in any mix, per entry.

var errPunchUnsupported = errors.New("ledger: the file system cannot punch holes")

// derivedCacheTiles bounds the derived level-0 tiles a store keeps (8 KiB
// each): a proof reads one level-0 tile, a scan of the read path one per
// 256 records.
const derivedCacheTiles = 16

// leafDeriver computes level-0 hashes from the compressed segments.
type leafDeriver struct {
	segDir string
	// source, if set (an open Ledger), appends the records [lo, hi) that
	// one compressed segment holds, through the ledger's block cache and
	// read handles; the segment files are read directly otherwise.
	source func(lo, hi uint64, recs *[][]byte) (uint64, error)

	mu     sync.Mutex
	firsts []uint64 // first record of each .zseg, sorted, as last listed
	cache  map[uint64][]byte
	order  []uint64
	last   *derivedRecs // the records of the tile derived last
}

// derivedRecs are the records whose leaf hashes were just computed for a
// tile, and those hashes. The read path, which authenticates a tile and
// then checks its records one by one, needs no second hash of a record it
// got from the same decoded block (the very bytes hashed: same memory,
// same length; decoded blocks are never written to and records are handed
// out capped, so that memory still holds what was hashed): it compares
// the hash computed here with the authenticated one instead. Only the
// last tile is kept: it holds the decoded blocks of ≤ 256 records (those
// of one tile, ~2 blocks of 128 KiB for the demo's traffic) alive.
type derivedRecs struct {
	lo   uint64
	recs [][]byte
	hs   []Hash
}

// lastTile returns the records of tile n and their hashes if they were
// the last derived, nil otherwise.
func (d *leafDeriver) lastTile(n uint64) *derivedRecs {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last != nil && d.last.lo == n*tileWidth {
		return d.last
	}
	return nil
}

// hashed reports whether rec, record i, is the very bytes (same memory,
// same length) whose leaf hash h was computed: then h is its leaf hash.
func (r *derivedRecs) hashed(i uint64, rec []byte) (Hash, bool) {
	if r == nil || i < r.lo || i-r.lo >= uint64(len(r.recs)) {
		return Hash{}, false
	}
	k := i - r.lo
	x := r.recs[k]
	if len(x) != len(rec) || unsafe.SliceData(x) != unsafe.SliceData(rec) {
		return Hash{}, false
	}
	return r.hs[k], true
}

func newLeafDeriver(segDir string) *leafDeriver {
	return &leafDeriver{segDir: segDir, cache: map[uint64][]byte{}}
}

// list reads the names of the compressed segments.
func (d *leafDeriver) list() error {
	ents, err := os.ReadDir(d.segDir)
	if err != nil {
		return err
	}
	var firsts []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".zseg")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(name, 10, 64); err == nil {
			firsts = append(firsts, n)
		}
	}
	slices.Sort(firsts)
	d.mu.Lock()
	d.firsts = firsts
	d.mu.Unlock()
	return nil
}

// find returns the path of the compressed segment that would hold record i
// (the one with the greatest first index not above i).
func (d *leafDeriver) find(i uint64, relist bool) (string, bool) {
	if relist {
		if err := d.list(); err != nil {
			return "", false
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := sort.Search(len(d.firsts), func(k int) bool { return d.firsts[k] > i }) - 1
	if k < 0 {
		return "", false
	}
	return filepath.Join(d.segDir, fmt.Sprintf("%020d.zseg", d.firsts[k])), true
}

// leaves returns the leaf hashes of records [lo, hi), concatenated, from
// the compressed segments that hold them.
func (d *leafDeriver) leaves(lo, hi uint64) ([]byte, error) {
	out := make([]byte, 0, (hi-lo)*HashSize)
	var recs [][]byte
	for lo < hi {
		var n uint64
		err := errors.ErrUnsupported
		if d.source != nil {
			n, err = d.source(lo, hi, &recs)
		}
		if err != nil {
			n, err = d.segmentLeaves(lo, hi, &recs, false)
		}
		if err != nil {
			n, err = d.segmentLeaves(lo, hi, &recs, true)
		}
		if err != nil {
			return nil, err
		}
		lo += n
	}
	start := hi - uint64(len(recs))
	hs := make([]Hash, len(recs))
	sha256x2.Prefixed(hs, 0, recs)
	for _, h := range hs {
		out = append(out, h[:]...)
	}
	if d.source != nil && start%tileWidth == 0 && len(recs) == tileWidth {
		d.mu.Lock()
		d.last = &derivedRecs{lo: start, recs: recs, hs: hs}
		d.mu.Unlock()
	}
	return out, nil
}

// segmentLeaves appends to recs the records from lo on (below hi) that one
// compressed segment holds and returns their number.
func (d *leafDeriver) segmentLeaves(lo, hi uint64, recs *[][]byte, relist bool) (uint64, error) {
	path, ok := d.find(lo, relist)
	if !ok {
		return 0, fmt.Errorf("ledger: leaf hash %d: not stored, and no compressed segment holds the record: %w", lo, fs.ErrNotExist)
	}
	f, st, err := regfile.Open(path)
	if err != nil {
		return 0, fmt.Errorf("ledger: leaf hash %d: %w", lo, err)
	}
	defer f.Close()
	z, err := parseZIndex(f, st.Size())
	if err != nil {
		return 0, fmt.Errorf("ledger: leaf hash %d: %s: %w", lo, filepath.Base(path), err)
	}
	if lo < z.first || lo >= z.first+z.count {
		return 0, fmt.Errorf("ledger: leaf hash %d: not stored, and %s does not hold the record: %w", lo, filepath.Base(path), fs.ErrNotExist)
	}
	start := lo
	for bi := z.block(lo - z.first); bi < len(z.blocks) && lo < hi; bi++ {
		b := z.blocks[bi]
		if int64(b.clen) > zMaxBlock {
			return 0, fmt.Errorf("ledger: leaf hash %d: %s: %w: block of %d bytes", lo, filepath.Base(path), errZseg, b.clen)
		}
		comp := make([]byte, b.clen)
		if _, err := f.ReadAt(comp, b.off); err != nil {
			return 0, fmt.Errorf("ledger: leaf hash %d: %s: %w", lo, filepath.Base(path), err)
		}
		rs, _, err := decodeBlock(comp, b.count, nil)
		if err != nil {
			return 0, fmt.Errorf("ledger: leaf hash %d: %s: %w", lo, filepath.Base(path), err)
		}
		for k := lo - (z.first + b.first); k < uint64(len(rs)) && lo < hi; k++ {
			*recs = append(*recs, rs[k].data)
			lo++
		}
	}
	return lo - start, nil
}

// tile returns the leaf hashes of records [n·256, n·256+w), from the cache
// or derived (the whole tile where the records exist, so that proofs for
// other records of the tile find it).
func (d *leafDeriver) tile(n uint64, w int) ([]byte, error) {
	d.mu.Lock()
	b, ok := d.cache[n]
	d.mu.Unlock()
	if ok && len(b) >= w*HashSize {
		return b, nil
	}
	lo := n * tileWidth
	b, err := d.leaves(lo, lo+tileWidth)
	if err != nil && w < tileWidth {
		b, err = d.leaves(lo, lo+uint64(w))
	}
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if _, ok := d.cache[n]; !ok {
		if len(d.order) >= derivedCacheTiles {
			delete(d.cache, d.order[0])
			d.order = slices.Delete(d.order, 0, 1)
		}
		d.order = append(d.order, n)
	}
	d.cache[n] = b
	d.mu.Unlock()
	return b, nil
}

// forget drops what the deriver holds (the segments changed: pruned,
// rolled back).
func (d *leafDeriver) forget() {
	d.mu.Lock()
	d.cache, d.order, d.firsts, d.last = map[uint64][]byte{}, nil, nil, nil
	d.mu.Unlock()
}

var zeroHash Hash

// hasZeroHash reports whether b, concatenated hashes, holds an all-zero
// one: a punched (derived) entry.
func hasZeroHash(b []byte) bool {
	for i := 0; i+HashSize <= len(b); i += HashSize {
		if Hash(b[i:i+HashSize]) == zeroHash {
			return true
		}
	}
	return false
}

// fillDerived replaces the zero entries of b, the first hashes of level-0
// tile n, by the hashes derived from the records.
func (s *tileStore) fillDerived(n uint64, b []byte) ([]byte, error) {
	w := len(b) / HashSize
	d, err := s.deriver.tile(n, w)
	if err != nil {
		return nil, fmt.Errorf("tile %s: %w", tilePath(0, n, w), err)
	}
	for i := 0; i < w; i++ {
		e := b[i*HashSize : (i+1)*HashSize]
		if Hash(e) == zeroHash {
			copy(e, d[i*HashSize:(i+1)*HashSize])
		}
	}
	return b, nil
}

// punchLeaves frees the level-0 hashes of the full tiles inside records
// [lo, hi), which a durable compressed segment holds. Only hashes already
// written are punched; a file system without hole punching keeps them.
func (s *tileStore) punchLeaves(lo, hi uint64) error {
	if !s.writable || s.legacy {
		return nil
	}
	cnt, err := s.count(0)
	if err != nil {
		return err
	}
	a, b := (lo+tileWidth-1)/tileWidth, min(hi, cnt)/tileWidth
	if a >= b {
		return nil
	}
	f, err := s.file(0)
	if err != nil {
		return err
	}
	if err := punchHole(f, int64(a)*tileBytes, int64(b-a)*tileBytes); err != nil && !errors.Is(err, errPunchUnsupported) {
		return fmt.Errorf("ledger: trimming leaf hashes [%d, %d): %w", a*tileWidth, b*tileWidth, err)
	}
	return nil
}

// fillLeaves writes back the derived level-0 hashes of records [lo, hi)
// (before their segment is deleted: the leaf hashes of pruned records are
// all that remains of them). It fails with fs.ErrNotExist if they are not
// all written yet.
func (s *tileStore) fillLeaves(lo, hi uint64) error {
	cnt, err := s.count(0)
	if err != nil {
		return err
	}
	if cnt < hi {
		return fs.ErrNotExist
	}
	for n := lo / tileWidth; n*tileWidth < hi; n++ {
		w := int(min(tileWidth, cnt-n*tileWidth))
		b, err := s.readRaw(0, n, w)
		if err != nil {
			return err
		}
		if !hasZeroHash(b) {
			continue
		}
		if b, err = s.fillDerived(n, b); err != nil {
			return err
		}
		if err := s.writeAt(0, n*tileWidth, b); err != nil {
			return err
		}
	}
	return nil
}

// zsegRecords is a leafDeriver source: it appends the records from lo on
// (below hi) that the compressed segment holding lo has, decoded through
// the block cache the reads share (a proof's record and its tile are
// mostly the same blocks).
func (l *Ledger) zsegRecords(lo, hi uint64, recs *[][]byte) (uint64, error) {
	s, err := l.segmentFor(lo)
	if err != nil {
		return 0, err
	}
	s.swap.RLock()
	defer s.swap.RUnlock()
	z := s.z
	if z == nil || lo-s.first >= z.count {
		return 0, fmt.Errorf("ledger: record %d is not in a compressed segment: %w", lo, fs.ErrNotExist)
	}
	start := lo
	for bi := z.block(lo - s.first); bi < len(z.blocks) && lo < hi; bi++ {
		rs, err := s.zrecs(bi, l.zcache, l.fds)
		if err != nil {
			return 0, err
		}
		for k := lo - (s.first + z.blocks[bi].first); k < uint64(len(rs)) && lo < hi; k++ {
			*recs = append(*recs, rs[k].data)
			lo++
		}
	}
	return lo - start, nil
}
