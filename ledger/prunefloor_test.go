package ledger

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trailguard/trailguard/retention"
)

// TestPruneFloor: retention deletes no segment holding a record at or above
// the floor a reader (a forwarding output) still needs, and deletes it once
// the floor has moved past it.
func TestPruneFloor(t *testing.T) {
	k := newKey(t, testOrigin)
	var now, floor atomic.Int64
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now.Store(start.UnixNano())
	opts := testOpts(k)
	opts.SegmentSize = 8 << 10
	opts.Retention = retention.PCIDSS
	opts.PruneInterval = time.Hour
	opts.Now = func() time.Time { return time.Unix(0, now.Load()) }
	opts.PruneFloor = func() uint64 { return uint64(floor.Load()) }
	l, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(t, l, 0, 300)
	// Signed at the old time (the cadence does this within a second):
	// retention goes by signed checkpoint times.
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	now.Store(start.Add(400 * retention.Day).UnixNano())
	appendN(t, l, 300, 10) // a new segment, so the old ones are closed

	if got, err := l.Prune(); err != nil || len(got) != 0 {
		t.Fatalf("prune with floor 0 deleted %+v (%v)", got, err)
	}
	floor.Store(150)
	got, err := l.Prune()
	if err != nil || len(got) == 0 {
		t.Fatalf("prune with floor 150: %+v %v", got, err)
	}
	for _, r := range got {
		if r.End > 150 {
			t.Fatalf("pruned %+v past the floor 150", r)
		}
	}
	if _, err := l.Read(149); err != nil {
		t.Fatalf("record 149, below the floor but in a segment holding 150, was deleted: %v", err)
	}
	floor.Store(1 << 40)
	if got, err := l.Prune(); err != nil || len(got) == 0 || l.Pruned() < 200 {
		t.Fatalf("prune with the floor past everything: %+v %v (pruned %d)", got, err, l.Pruned())
	}
}
