package index

import (
	"bytes"
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// The writer's last block, fed by small batches (a moderate rate), is
// written a piece at a time: each batch appends a zstd frame of its rows to
// every column and writes its ids as a level-0 run of the block of their
// own. After every batch a reader sees every row and finds every id; a
// full block is kept as one frame per column and one run, byte for byte
// what Rebuild writes; an index closed while its last block is in pieces
// carries on from them after a reopen. Not parallel: it sets blockSize.
func TestOpenBlockWrittenInPieces(t *testing.T) {
	defer func(b uint64) { blockSize = b }(blockSize)
	blockSize = 600
	const batch = 23 // 26 batches a block: past maxFrames, so written whole mid-block too
	const n = 3*600 + 250
	const more = 600
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	appendEvents(t, l.Ledger, 0, n+more, time.Millisecond)
	path := filepath.Join(dir, "index.db")
	ctx := context.Background()

	var x extracted
	feed := func(ix *Index, to int) (maxFrames, maxDeltas int) {
		t.Helper()
		for ix.Indexed() < uint64(to) {
			var recs []rec
			for e, err := range l.Follow(ctx, ix.Indexed()) {
				if err != nil {
					t.Fatal(err)
				}
				recs = append(recs, decodeWith(e, &x))
				if len(recs) == batch || e.Index == uint64(to-1) {
					break
				}
			}
			if err := ix.add(ctx, ix.Indexed(), recs); err != nil {
				t.Fatal(err)
			}
			maxFrames, maxDeltas = max(maxFrames, ix.tail.nframes), max(maxDeltas, len(ix.tailDeltas))
			// A reader sees every row and the batch's ids (the last
			// record's, and the first's, in a delta run of its own).
			got := ix.Indexed()
			if rows, lo, hi := count(t, ix); rows != int64(got) || lo != 0 || hi != int64(got)-1 {
				t.Fatalf("after %d records the index holds %d rows, %d..%d", got, rows, lo, hi)
			}
			for _, i := range []uint64{got - 1, got - uint64(len(recs)), got / 2} {
				ev := genEvent(int(i), time.Millisecond)
				e, err := ix.ByEventID(ctx, ev.ID)
				if err != nil || e.Index != i {
					t.Fatalf("after %d records ByEventID(%s) = %d, %v; want record %d", got, ev.ID, e.Index, err, i)
				}
			}
		}
		return maxFrames, maxDeltas
	}

	ix := openIndexOn(t, path, l)
	frames, deltas := feed(ix, n)
	if frames < maxFrames || deltas < maxFrames-2 {
		t.Fatalf("the last block had at most %d frames and %d delta runs: not written in pieces", frames, deltas)
	}
	if len(ix.tailDeltas) == 0 || ix.tail.nframes < 2 {
		t.Fatalf("the last block ends with %d frames and %d delta runs: not written in pieces", ix.tail.nframes, len(ix.tailDeltas))
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ix = openIndexOn(t, path, l)
	feed(ix, n+more)
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}

	rebuilt := filepath.Join(dir, "rebuilt.db")
	if _, err := Rebuild(ctx, rebuilt, l); err != nil {
		t.Fatal(err)
	}
	live, want := openIndexOn(t, path, l), openIndexOn(t, rebuilt, l)
	a, b := dumpIndex(t, live), dumpIndex(t, want)
	for _, d := range []*indexDump{&a, &b} {
		for _, blk := range d.blocks {
			// Writer-only state, not the block.
			blk.frames, blk.framed, blk.nframes = [nCols][]byte{}, 0, 0
		}
	}
	if len(a.blocks) != 5 || !reflect.DeepEqual(a, b) {
		t.Fatalf("the index written in pieces (%d blocks) differs from the rebuilt one (%d)", len(a.blocks), len(b.blocks))
	}
	// Full blocks are stored as Rebuild stores them: one frame a column
	// (the same bytes) and one level-0 run each.
	ca, cb := colBlobs(t, live), colBlobs(t, want)
	for k, z := range cb {
		if uint64(k>>5) < 4 && !bytes.Equal(ca[k], z) {
			t.Errorf("column %d of block %d: %d bytes written in pieces, %d rebuilt", k&31, k>>5, len(ca[k]), len(z))
		}
	}
	tx, err := live.readTx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	rs, err := runs(ctx, tx, 0)
	if err != nil {
		t.Fatal(err)
	}
	per := map[uint64]int{}
	for _, r := range rs {
		per[r.lo]++
	}
	for blk := range uint64(4) {
		if per[blk] != 1 {
			t.Errorf("block %d has %d level-0 runs, want 1", blk, per[blk])
		}
	}
}

// colBlobs is every stored column of an index by key.
func colBlobs(t *testing.T, ix *Index) map[int64][]byte {
	t.Helper()
	rows, err := ix.r.Query(`SELECT k, data FROM cols`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64][]byte{}
	for rows.Next() {
		var k int64
		var z []byte
		if err := rows.Scan(&k, &z); err != nil {
			t.Fatal(err)
		}
		out[k] = z
	}
	return out
}
