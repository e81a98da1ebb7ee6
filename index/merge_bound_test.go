package index

import (
	"context"
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
