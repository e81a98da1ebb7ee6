package index

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// The id table: keyed hashes of event.id and http.request.id to ledger
// indexes, for the lookups that must stay fast at any size. A B-tree row
// per id cost ~17 bytes (two per event: a third of the whole store), so
// ids are kept in sorted runs instead, a small log-structured merge: each
// block's ids are a run of level 0 (the writer's last block's a run and
// one more for each batch that added rows to it since, until it is full:
// storeTail), and idFanout runs of one level are merged into one of
// the next, up to idMaxLevel (idFanout^idMaxLevel blocks, 1M records). A
// run is stored in chunks of up to ~4 KiB, each entry the hash's
// delta from the previous one and the record's offset from the run's first
// block, as varints: ~7 bytes an id. A lookup reads one chunk per run
// (one query for all of them): at 10M records ~25 runs (10 of level 2,
// up to 15 of each level below). Each id is written once per level: two
// levels of 16 instead of three of 8 (2M records) write it three times
// instead of four, and merging was a twentieth of the collector's CPU
// under ingest load. The writer merges into level idMaxLevel off its
// transaction (merge_async.go): until that merge is swapped in, a level
// may hold idFanout runs or a few more.
const (
	idFanout   = 16
	idMaxLevel = 2
	// idChunkBytes keeps a chunk within one 4 KiB page of SQLite's
	// (no overflow pages, whose last one is half empty on average).
	idChunkBytes = 3900
	// idChunk bounds the entries of a chunk a reader accepts.
	idChunk = idChunkBytes
)

// idEntry is one id: its hash (idHash + 2^47, so non-negative) and the
// record's ledger index.
type idEntry struct{ h, idx uint64 }

func idKey(salt []byte, f int, v string) uint64 { return uint64(idHash(salt, f, v) + 1<<47) }

func cmpID(a, b idEntry) int {
	switch {
	case a.h < b.h:
		return -1
	case a.h > b.h:
		return 1
	case a.idx < b.idx:
		return -1
	case a.idx > b.idx:
		return 1
	}
	return 0
}

// sortIDs sorts es and drops repeated entries. es is mostly runs already
// sorted (a merge's runs one after the other; the writer's last block's
// sorted entries and the batch's new ones): each run is sorted on its own
// if it is not, and the runs merged, which costs far less than sorting the
// whole.
func sortIDs(es []idEntry) []idEntry {
	var runs [][]idEntry
	for start := 0; start < len(es); {
		end := start + 1
		for end < len(es) && cmpID(es[end-1], es[end]) <= 0 {
			end++
		}
		runs = append(runs, es[start:end])
		start = end
		if len(runs) > 64 {
			// Not runs, past the first: the writer's sorted entries and
			// a batch's new ones. Sort the new ones and merge the two.
			first := len(runs[0])
			bucketSort(es[first:])
			runs = [][]idEntry{es[:first], es[first:]}
			break
		}
	}
	if len(runs) <= 1 {
		return slices.Compact(es)
	}
	// Pairwise merges, back and forth between es and a scratch slice
	// (not copied back after each round: a merge of 16 runs of 8192
	// ids each moved 32 MB twice per round).
	bufs := [2][]idEntry{es, make([]idEntry, len(es))}
	cur := 0 // the runs lie in bufs[cur]
	for len(runs) > 1 {
		dst := bufs[1-cur][:0]
		var next [][]idEntry
		for k := 0; k < len(runs); k += 2 {
			start := len(dst)
			if k+1 == len(runs) {
				dst = append(dst, runs[k]...)
			} else {
				a, b := runs[k], runs[k+1]
				i, j := 0, 0
				for i < len(a) && j < len(b) {
					if cmpID(b[j], a[i]) < 0 {
						dst = append(dst, b[j])
						j++
					} else {
						dst = append(dst, a[i])
						i++
					}
				}
				dst = append(append(dst, a[i:]...), b[j:]...)
			}
			next = append(next, dst[start:len(dst):len(dst)])
		}
		runs, cur = next, 1-cur
	}
	return slices.Compact(bufs[cur][:len(es)])
}

// bucketSort sorts es by cmpID. The entries a batch adds are hashes in
// random order: they are spread over buckets by their top bits (about four
// to a bucket) and each bucket sorted on its own, in two passes over es
// instead of the log2(n) of a comparison sort (slices.SortFunc was 2.4 %
// of the collector's CPU under ingest load). A bucket that gets more than
// a few entries — the same id many times, or hashes that are not spread
// (an index's salt keeps a client from choosing them) — is sorted with
// slices.SortFunc, so no input costs more than a comparison sort.
func bucketSort(es []idEntry) {
	n := len(es)
	if n < 256 {
		slices.SortFunc(es, cmpID)
		return
	}
	var or uint64
	for _, e := range es {
		or |= e.h
	}
	b := min(bits.Len(uint(n))-2, 16)
	shift := max(bits.Len64(or)-b, 0)
	// start[k] is where bucket k begins in out; every h>>shift is below
	// 1<<b, since h < 1<<bits.Len64(or).
	start := make([]int32, 1<<b+1)
	for _, e := range es {
		start[e.h>>shift+1]++
	}
	for k := 1; k < len(start); k++ {
		start[k] += start[k-1]
	}
	out := make([]idEntry, n)
	next := slices.Clone(start[:len(start)-1])
	for _, e := range es {
		k := e.h >> shift
		out[next[k]] = e
		next[k]++
	}
	for k := 0; k < len(start)-1; k++ {
		bk := out[start[k]:start[k+1]]
		if len(bk) > 16 {
			slices.SortFunc(bk, cmpID)
			continue
		}
		for i := 1; i < len(bk); i++ {
			for j := i; j > 0 && cmpID(bk[j-1], bk[j]) > 0; j-- {
				bk[j-1], bk[j] = bk[j], bk[j-1]
			}
		}
	}
	copy(es, out)
}

// idRun is the idruns row of a run: its level and the blocks it covers.
type idRun struct {
	run    int64
	lvl    int
	lo, hi uint64 // first and last block
}

func (r idRun) base() uint64 { return r.lo * blockSize }

var (
	errBadChunk   = errors.New("index: id chunk does not decode (run trailguard reindex)")
	errRunTooLong = errors.New("index: an id run holds more ids than the blocks it covers can (run trailguard reindex)")
)

// maxRunIDs is the most ids a run of level lvl can hold: two a record (the
// event.id and the http.request.id) over the idFanout^lvl blocks it
// covers at most. A reader takes no more: the number of chunks of a run
// is whatever the file says, and someone with write access to the disk
// could otherwise make a merge or a writer's start hold as many ids in
// memory as the disk holds.
func maxRunIDs(lvl int) int {
	n := 2 * int(blockSize)
	for range lvl {
		n *= idFanout
	}
	return n
}

// decodeChunk calls fn for each entry of a chunk whose first hash is h0.
func decodeChunk(data []byte, h0, base uint64, fn func(idEntry)) error {
	n, k := binary.Uvarint(data)
	if k <= 0 || n > idChunk {
		return errBadChunk
	}
	data = data[k:]
	h := h0
	for range n {
		d, k := binary.Uvarint(data)
		if k <= 0 {
			return errBadChunk
		}
		data = data[k:]
		off, k2 := binary.Uvarint(data)
		if k2 <= 0 {
			return errBadChunk
		}
		data = data[k2:]
		h += d
		fn(idEntry{h, base + off})
	}
	if len(data) != 0 {
		return errBadChunk
	}
	return nil
}

// deleteRuns deletes runs rs and their chunks; what names the operation
// in an error.
func deleteRuns(ctx context.Context, tx execer, rs []idRun, what string) error {
	for _, r := range rs {
		if _, err := tx.ExecContext(ctx, qChunksDel, r.run); err != nil {
			return fmt.Errorf("index: %s: %w", what, err)
		}
		if _, err := tx.ExecContext(ctx, qRunDel, r.run); err != nil {
			return fmt.Errorf("index: %s: %w", what, err)
		}
	}
	return nil
}

// writeRun stores es (sorted) as run r, replacing what r held.
func writeRun(ctx context.Context, tx execer, r idRun, es []idEntry) error {
	if _, err := tx.ExecContext(ctx, qChunksDel, r.run); err != nil {
		return fmt.Errorf("index: write ids: %w", err)
	}
	if _, err := tx.ExecContext(ctx, qRunPut, r.run, r.lvl, int64(r.lo), int64(r.hi)); err != nil {
		return fmt.Errorf("index: write ids: %w", err)
	}
	return encodeRun(r, es, func(h0 uint64, chunk []byte) error {
		if _, err := tx.ExecContext(ctx, qChunkPut, r.run, int64(h0), chunk); err != nil {
			return fmt.Errorf("index: write ids: %w", err)
		}
		yieldCPU(ctx)
		return nil
	})
}

// encodeRun cuts es (sorted) into the chunks of run r and calls fn with
// each chunk's first hash and bytes (reused after fn returns).
func encodeRun(r idRun, es []idEntry, fn func(h0 uint64, chunk []byte) error) error {
	var body, chunk []byte
	base := r.base()
	for len(es) > 0 {
		body = body[:0]
		n := 0
		for ; n < len(es); n++ {
			// Entries of one hash stay in one chunk, so that a lookup
			// reads the one chunk whose first hash is the last at or
			// below it.
			if len(body) >= idChunkBytes && es[n].h != es[n-1].h {
				break
			}
			body = binary.AppendUvarint(body, es[n].h-es[max(n-1, 0)].h)
			body = binary.AppendUvarint(body, es[n].idx-base)
		}
		chunk = append(binary.AppendUvarint(chunk[:0], uint64(n)), body...)
		if err := fn(es[0].h, chunk); err != nil {
			return err
		}
		es = es[n:]
	}
	return nil
}

// readRun returns every entry of run r, sorted: at most maxRunIDs(r.lvl),
// else errRunTooLong.
func readRun(ctx context.Context, q querier, r idRun) ([]idEntry, error) {
	return appendRun(ctx, q, r, nil, maxRunIDs(r.lvl))
}

// appendRun appends every entry of run r, sorted, to es, as long as es
// stays within limit entries (errRunTooLong otherwise: es then grows no
// further).
func appendRun(ctx context.Context, q querier, r idRun, es []idEntry, limit int) ([]idEntry, error) {
	rows, err := q.QueryContext(ctx, qChunksGet, r.run)
	if err != nil {
		return es, fmt.Errorf("index: read ids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var h0 int64
		var data []byte
		if err := rows.Scan(&h0, &data); err != nil {
			return nil, fmt.Errorf("index: read ids: %w", err)
		}
		over := false
		err := decodeChunk(data, uint64(h0), r.base(), func(e idEntry) {
			if len(es) >= limit {
				over = true
				return
			}
			es = append(es, e)
		})
		if err != nil {
			return nil, err
		}
		if over {
			return nil, fmt.Errorf("%w: run %d of level %d, blocks %d-%d", errRunTooLong, r.run, r.lvl, r.lo, r.hi)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: read ids: %w", err)
	}
	return es, nil
}

// runs lists the runs of level lvl (all levels if lvl < 0), by first block.
func runs(ctx context.Context, q querier, lvl int) ([]idRun, error) {
	rows, err := q.QueryContext(ctx, qRunsGet, lvl, lvl)
	if err != nil {
		return nil, fmt.Errorf("index: id runs: %w", err)
	}
	defer rows.Close()
	var out []idRun
	for rows.Next() {
		var r idRun
		var lo, hi int64
		if err := rows.Scan(&r.run, &r.lvl, &lo, &hi); err != nil {
			return nil, fmt.Errorf("index: id runs: %w", err)
		}
		r.lo, r.hi = uint64(lo), uint64(hi)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: id runs: %w", err)
	}
	return out, nil
}

// tailRuns is the level-0 run of block blk (a new, empty run if there is
// none), the block's other level-0 runs (those the writer adds while the
// block is not full, storeTail), and their entries: each run's sorted,
// one run after the other, at most maxRunIDs(0) in all (errRunTooLong
// otherwise: the block's records have no more ids).
func tailRuns(ctx context.Context, tx writeTx, blk uint64) (idRun, []idRun, []idEntry, error) {
	r := idRun{lo: blk, hi: blk}
	rows, err := tx.QueryContext(ctx, qTailRun, int64(blk), maxFrames+1)
	if err != nil {
		return r, nil, nil, fmt.Errorf("index: id runs: %w", err)
	}
	var nums []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return r, nil, nil, fmt.Errorf("index: id runs: %w", err)
		}
		nums = append(nums, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return r, nil, nil, fmt.Errorf("index: id runs: %w", err)
	}
	if len(nums) > maxFrames {
		// No writer makes more (an altered file).
		return r, nil, nil, fmt.Errorf("%w: block %d has more than %d level-0 runs", errRunTooLong, blk, maxFrames)
	}
	if len(nums) == 0 {
		if err := tx.QueryRowContext(ctx, qNewRun).Scan(&r.run); err != nil {
			return r, nil, nil, fmt.Errorf("index: id runs: %w", err)
		}
		return r, nil, nil, nil
	}
	var es []idEntry
	var deltas []idRun
	for i, n := range nums {
		run := idRun{run: n, lo: blk, hi: blk}
		if i == 0 {
			r = run
		} else {
			deltas = append(deltas, run)
		}
		if es, err = appendRun(ctx, tx, run, es, maxRunIDs(0)); err != nil {
			return r, nil, nil, err
		}
	}
	return r, deltas, es, nil
}

// merge merges idFanout runs of a level into one of the next, level by
// level, among the runs of blocks before sealed (the writer's last block's
// run is still growing). The writer itself merges only up to level
// idMaxLevel-1 in its transaction (mergeLevels) and prepares the last
// level's merge off its path (merge_async.go); merge does it all at once
// (Rebuild, tests).
func merge(ctx context.Context, tx writeTx, sealed uint64) error {
	_, err := mergeLevels(ctx, tx, sealed, idMaxLevel)
	return err
}

// mergeLevels merges as merge does, levels below upTo only. If level upTo
// (< idMaxLevel) is reached and has idFanout sealed runs, it returns them:
// the merge left to do.
func mergeLevels(ctx context.Context, tx writeTx, sealed uint64, upTo int) ([]idRun, error) {
	for lvl := 0; lvl < idMaxLevel; lvl++ {
		rs, err := sealedRuns(ctx, tx, lvl, sealed)
		if err != nil {
			return nil, err
		}
		if len(rs) < idFanout {
			// The next level still: its merge may be left to do (one
			// prepared off the writer and lost to a crash or a Close).
			continue
		}
		rs = rs[:idFanout]
		if lvl >= upTo {
			return rs, nil
		}
		all, err := readRuns(ctx, tx, rs)
		if err != nil {
			return nil, err
		}
		if err := deleteRuns(ctx, tx, rs, "merge ids"); err != nil {
			return nil, err
		}
		all = sortIDs(all)
		if err := writeRun(ctx, tx, mergedRun(rs), all); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// sealedRuns lists the runs of level lvl of blocks before sealed, by
// first block.
func sealedRuns(ctx context.Context, q querier, lvl int, sealed uint64) ([]idRun, error) {
	rs, err := runs(ctx, q, lvl)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(rs, func(r idRun) bool { return r.hi >= sealed }), nil
}

// mergedRun is the run that idFanout runs rs of one level merge into. It
// takes the first run's number: numbers stay unique, and a new tail run
// takes max+1.
func mergedRun(rs []idRun) idRun {
	return idRun{run: rs[0].run, lvl: rs[0].lvl + 1, lo: rs[0].lo, hi: rs[len(rs)-1].hi}
}

// readRuns reads the entries of rs, idFanout runs of one level, unsorted.
func readRuns(ctx context.Context, q querier, rs []idRun) ([]idEntry, error) {
	// Room for the runs' entries at once (two ids a record at most), for
	// no more blocks than the level's runs cover (a file altered to say
	// otherwise gets no more).
	blocks := uint64(1)
	for range rs[0].lvl + 1 {
		blocks *= idFanout
	}
	if span := rs[len(rs)-1].hi - rs[0].lo + 1; span < blocks {
		blocks = span
	}
	all := make([]idEntry, 0, blocks*blockSize*2)
	var err error
	for _, r := range rs {
		// No more than the room made: each run within what its level
		// holds, and all within what the blocks hold.
		if all, err = appendRun(ctx, q, r, all, min(cap(all), len(all)+maxRunIDs(r.lvl))); err != nil {
			return nil, err
		}
	}
	return all, nil
}

// maxIDCandidates bounds what one lookup collects.
const maxIDCandidates = 100000

// lookupID returns the ledger indexes the id table lists for field f's
// value v, sorted, at most maxIDCandidates+1.
func (ix *Index) lookupID(ctx context.Context, q querier, f int, v string) ([]uint64, error) {
	out, err := ix.idHits(ctx, q, f, v, maxIDCandidates+1)
	if err != nil {
		return nil, err
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// idHits returns the ledger indexes the id runs list for field f's value
// v, once per run entry and in run order (a repeat means two runs list the
// same record), at most limit.
func (ix *Index) idHits(ctx context.Context, q querier, f int, v string, limit int) ([]uint64, error) {
	h := idKey(ix.salt, f, v)
	// One seek per run: the chunk whose first hash is the last at or
	// below h.
	rows, err := q.QueryContext(ctx, `SELECT r.lo, c.h0, c.data FROM idruns r, idchunks c
		WHERE c.rowid = (SELECT rowid FROM idchunks WHERE run = r.run AND h0 <= ? ORDER BY h0 DESC LIMIT 1)`, int64(h))
	if err != nil {
		return nil, fmt.Errorf("index: ids: %w", err)
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var lo, h0 int64
		var data []byte
		if err := rows.Scan(&lo, &h0, &data); err != nil {
			return nil, fmt.Errorf("index: ids: %w", err)
		}
		err := decodeChunk(data, uint64(h0), uint64(lo)*blockSize, func(e idEntry) {
			if e.h == h && len(out) < limit {
				out = append(out, e.idx)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: ids: %w", err)
	}
	return out, nil
}
