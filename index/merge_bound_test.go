package index

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMergeBoundsTamperedRuns: merge pre-sizes its buffer from the blocks
// the runs say they cover (idruns' lo and hi, read from the index file).
// Someone with write access to the disk who sets them apart must not make
// the collector allocate more than a level's runs can hold.
func TestMergeBoundsTamperedRuns(t *testing.T) {
	// Not parallel: TotalAlloc counts every goroutine's allocations.
	for _, tc := range []struct {
		name   string
		lo, hi func(i int) int64
	}{
		{"hi far", func(i int) int64 { return int64(i) }, func(i int) int64 {
			if i == idFanout-1 {
				return 1 << 40
			}
			return int64(i)
		}},
		{"lo negative", func(i int) int64 {
			if i == 0 {
				return math.MinInt64 + 1
			}
			return int64(i)
		}, func(i int) int64 { return int64(i) }},
		{"hi below lo", func(i int) int64 { return int64(100 + i) }, func(i int) int64 { return 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, path := tamperFixture(t, 50)
			stmts := []string{`DELETE FROM idchunks`, `DELETE FROM idruns`}
			for i := range idFanout {
				stmts = append(stmts, fmt.Sprintf(`INSERT INTO idruns(run, lvl, lo, hi) VALUES(%d, 0, %d, %d)`, 1000+i, tc.lo(i), tc.hi(i)))
			}
			alter(t, path, stmts...)
			ix := openIndexOn(t, path, l)
			defer ix.Close()
			ctx := context.Background()
			tx, err := ix.w.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err = merge(ctx, tx, math.MaxUint64)
			runtime.ReadMemStats(&after)
			// Level 0: idFanout blocks of two ids a record at most.
			limit := uint64(idFanout*blockSize*2*16) + 1<<20
			if got := after.TotalAlloc - before.TotalAlloc; got > limit {
				t.Errorf("merge of %d empty runs allocated %d bytes (err %v), want at most %d", idFanout, got, err, limit)
			}
		})
	}
}

// TestIDRunsBoundedByTheirBlocks: the chunks of an id run are read whole
// (a merge reads idFanout runs, a writer's start its block's run), and
// their number is whatever the index file says. Someone with write access
// to the disk who adds chunks to runs must not make the collector hold
// more ids than the blocks the runs cover can have (two a record): the
// merge and the writer's start refuse such a run, saying to reindex, having
// held no more than that.
func TestIDRunsBoundedByTheirBlocks(t *testing.T) {
	// Not parallel: TotalAlloc counts every goroutine's allocations.
	const chunks = 300 // of idChunk entries each: 1.17M ids, 19 MB in memory
	chunk := binary.AppendUvarint(nil, idChunk)
	chunk = append(chunk, make([]byte, 2*idChunk)...) // entries (hash delta 0, offset 0)
	fill := func(t *testing.T, path string, run int) {
		t.Helper()
		db, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for i := range chunks {
			if _, err := tx.Exec(`INSERT OR REPLACE INTO idchunks(run, h0, data) VALUES(?,?,?)`, run, int64(1<<40+i), chunk); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	// limit is a level-0 merge's room (idFanout blocks, two ids a record)
	// and its sort's scratch, and a megabyte for the rest.
	limit := uint64(maxRunIDs(1)*16*2) + 1<<20
	measure := func(t *testing.T, what string, fn func() error) {
		t.Helper()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		err := fn()
		runtime.ReadMemStats(&after)
		if got := after.TotalAlloc - before.TotalAlloc; got > limit {
			t.Errorf("%s of a run with %d chunks allocated %d bytes (err %v), want at most %d", what, chunks, got, err, limit)
		}
		if !errors.Is(err, errRunTooLong) || !strings.Contains(err.Error(), "reindex") {
			t.Errorf("%s of a run with %d chunks: %v, want it refused, saying to reindex", what, chunks, err)
		}
	}

	t.Run("merge", func(t *testing.T) {
		l, path := tamperFixture(t, 50)
		stmts := []string{`DELETE FROM idchunks`, `DELETE FROM idruns`}
		for i := range idFanout {
			stmts = append(stmts, fmt.Sprintf(`INSERT INTO idruns(run, lvl, lo, hi) VALUES(%d, 0, %d, %d)`, 1000+i, i, i))
		}
		alter(t, path, stmts...)
		fill(t, path, 1000+idFanout/2)
		ix := openIndexOn(t, path, l)
		ctx := context.Background()
		tx, err := ix.w.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		measure(t, "merge", func() error { return merge(ctx, tx, math.MaxUint64) })
	})
	t.Run("writer start", func(t *testing.T) {
		l, path := tamperFixture(t, 50) // one block, the writer's: its run is read back at the next add
		var run int
		db, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		err = db.QueryRow(`SELECT run FROM idruns WHERE lvl=0 AND lo=0`).Scan(&run)
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		// Open first: Open's salt check looks the newest record's id up,
		// and the chunks fill adds hide it (Open then refuses the file,
		// saying to reindex, before the bound is reached).
		ix := openIndexOn(t, path, l)
		fill(t, path, run)
		ctx := context.Background()
		tx, err := ix.w.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		measure(t, "reading the writer's block's run", func() error { _, _, _, err := tailRuns(ctx, tx, 0); return err })
		tx.Rollback()
		// And so the indexer stops, saying to reindex, at its next batch
		// (without the bound it would carry on following the ledger).
		appendEvents(t, l.Ledger, 50, 5, time.Second)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := ix.Run(rctx, l); !errors.Is(err, errRunTooLong) {
			t.Errorf("Run over the altered run: %v, want %v", err, errRunTooLong)
		}
	})
}

// TestMissingSalt: the ids are keyed by the salt in meta; an index file
// whose salt was deleted while it holds ids must not get a fresh one (every
// id indexed before would be missed, silently): Open refuses it.
func TestMissingSalt(t *testing.T) {
	t.Parallel()
	l, path := tamperFixture(t, 50)
	alter(t, path, `DELETE FROM meta WHERE k='salt'`)
	ix, err := Open(path, Options{Ledger: l.Ledger})
	if err == nil {
		defer ix.Close()
		_, lerr := ix.ByEventID(context.Background(), genEvent(7, time.Second).ID)
		t.Fatalf("Open of an index whose salt was deleted: no error (ByEventID(7): %v)", lerr)
	}
	if !strings.Contains(err.Error(), "reindex") {
		t.Errorf("Open: %v; want the error to say to reindex", err)
	}
}

// TestChangedSalt: someone with write access to the disk replaces the
// index's salt (rather than deleting it, TestMissingSalt): every id stored
// under the old one would be missed, silently (ByEventID not found for
// every event). Open looks the newest indexed record up by its event.id
// and refuses the file, saying to reindex; before, it opened and missed.
func TestChangedSalt(t *testing.T) {
	t.Parallel()
	l, path := tamperFixture(t, 50)
	alter(t, path, `UPDATE meta SET v = x'00112233445566778899aabbccddeeff' WHERE k='salt'`)
	ix, err := Open(path, Options{Ledger: l.Ledger})
	if err == nil {
		defer ix.Close()
		_, lerr := ix.ByEventID(context.Background(), genEvent(7, time.Second).ID)
		t.Fatalf("Open of an index whose salt was changed: no error (ByEventID(7): %v)", lerr)
	}
	if !strings.Contains(err.Error(), "reindex") {
		t.Errorf("Open: %v; want the error to say to reindex", err)
	}
	// The file as written opens.
	l2, path2 := tamperFixture(t, 50)
	ix, err = Open(path2, Options{Ledger: l2.Ledger})
	if err != nil {
		t.Fatalf("Open of an index nobody altered: %v", err)
	}
	ix.Close()
}

// TestTailRunsBounded: no writer leaves its last block more than maxFrames
// level-0 runs (storeTail writes it whole before); a file altered to list
// more (each run's ids bounded on its own, thousands of runs are not)
// stops the indexer, saying to reindex, instead of reading them all.
func TestTailRunsBounded(t *testing.T) {
	t.Parallel()
	l, path := tamperFixture(t, 50) // the last block, 0, holds 50 of its 97 rows
	var stmts []string
	for i := range 3 * maxFrames {
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO idruns(run, lvl, lo, hi) VALUES(%d, 0, 0, 0)`, 1000+i))
	}
	alter(t, path, stmts...)
	ix := openIndexOn(t, path, l)
	appendEvents(t, l.Ledger, 50, 5, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ix.Run(ctx, l); !errors.Is(err, errRunTooLong) {
		t.Errorf("Run over %d level-0 runs of its last block: %v, want %v", 3*maxFrames, err, errRunTooLong)
	}
}
