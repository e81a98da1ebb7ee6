package ledger

import (
	"cmp"
	"testing"
	"time"
)

// The free-space guard looks (statfs) rarely while far from the reserve,
// but never lets the writer take more than a sixteenth of the reserve
// between looks, and looks about once per batch near the edge.
func TestSpaceGuardChecksRarelyButInTime(t *testing.T) {
	const reserve = 64 << 20
	t0 := time.Unix(1e9, 0)
	for _, tc := range []struct {
		name       string
		res        int64 // reserve; 0: 64 MiB
		disk       int64 // free bytes statfs reports (less what the writer took)
		need       int64 // bytes per batch
		gap        time.Duration
		batches    int
		maxLooks   int
		minLooks   int
		stolenAt   int // batch after which someone else leaves only 3/4 of the reserve (0: nobody)
		refuseFrom int // first batch that must be refused (0: none)
	}{
		// 2,000 req/s in 80 batches/s of 25 KiB for 1 s: far from the
		// reserve, one look per 100 ms, not one per batch.
		{name: "far, slow", disk: 10 << 30, need: 25 << 10, gap: 12500 * time.Microsecond, batches: 80, minLooks: 9, maxLooks: 11},
		// Far from the reserve but writing fast: a look every 4 MiB.
		{name: "far, fast", disk: 10 << 30, need: 1 << 20, gap: time.Microsecond, batches: 64, minLooks: 16, maxLooks: 17},
		// A small reserve (4 MiB): a look every 256 KiB.
		{name: "small reserve", res: 4 << 20, disk: 10 << 30, need: 64 << 10, gap: time.Microsecond, batches: 64, minLooks: 16, maxLooks: 17},
		// Within one reserve of the limit: every batch 1 ms apart looks.
		{name: "near", disk: reserve + reserve/2 + 100<<20/100, need: 64 << 10, gap: time.Millisecond, batches: 20, minLooks: 20, maxLooks: 20},
		// Someone else fills the disk: seen within 100 ms even when far.
		{name: "stolen", disk: 10 << 30, need: 1 << 10, gap: 10 * time.Millisecond, batches: 30,
			minLooks: 2, maxLooks: 30, stolenAt: 5, refuseFrom: 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reserve := cmp.Or(tc.res, reserve)
			now := t0
			disk := tc.disk
			looks := 0
			g := spaceGuard{dir: "x", reserve: reserve,
				now:    func() time.Time { return now },
				statfs: func(string) int64 { looks++; return disk }}
			for i := range tc.batches {
				ok := g.allow(tc.need)
				wantOK := tc.refuseFrom == 0 || i < tc.refuseFrom
				if ok != wantOK {
					t.Fatalf("batch %d: allow = %v, want %v (looks %d, free %d)", i, ok, wantOK, looks, disk)
				}
				if ok {
					disk -= tc.need
				}
				if tc.stolenAt > 0 && i == tc.stolenAt {
					disk = reserve * 3 / 4
				}
				if disk < reserve/2 {
					t.Fatalf("batch %d: the writer ate into the reserve: %d free", i, disk)
				}
				now = now.Add(tc.gap)
			}
			if looks < tc.minLooks || looks > tc.maxLooks {
				t.Fatalf("%d statfs calls for %d batches, want %d..%d", looks, tc.batches, tc.minLooks, tc.maxLooks)
			}
		})
	}
}
