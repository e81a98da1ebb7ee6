package index

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/retention"
)

// TestPrunedRecords: records retention deletes from the ledger are never
// returned, and their rows are deleted by Run.
func TestPrunedRecords(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	skey, _, err := ledger.GenerateKey(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	var now atomic.Int64
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now.Store(start.UnixNano())
	l, err := ledger.Open(filepath.Join(dir, "ledger"), ledger.Options{
		Origin: testOrigin, Signer: signer, SegmentSize: 16 << 10, Retention: retention.PCIDSS,
		PruneInterval: time.Hour, Now: func() time.Time { return time.Unix(0, now.Load()) },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	appendEvents(t, l, 0, 300, time.Second) // old
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	now.Store(start.Add(200 * retention.Day).UnixNano())
	appendEvents(t, l, 300, 300, time.Second)
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "index.db")
	ix := openIndexOn(t, path, l)
	runUntil(t, ix, l, 600)

	now.Store(start.Add(400 * retention.Day).UnixNano())
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Prune(); err != nil || len(got) == 0 {
		t.Fatalf("Prune = %v, %v", got, err)
	}
	cut := l.Pruned()
	if cut == 0 || cut > 300 {
		t.Fatalf("pruned below %d", cut)
	}
	// Before Run deletes the rows, queries leave the records out.
	res, err := ix.Search(ctx, Request{Limit: MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hits) != 600-int(cut) || res.Hits[0].Index != cut || len(res.Mismatches)+len(res.Unreadable) > 0 {
		t.Fatalf("after prune: %d hits from %d, mismatches %v, unreadable %v", len(res.Hits), res.Hits[0].Index, res.Mismatches, res.Unreadable)
	}
	if _, err := ix.ByEventID(ctx, "ev-00000000"); err == nil {
		t.Fatal("a pruned event was found by id")
	}
	// Run deletes them (on its first batch, or its periodic check).
	appendEvents(t, l, 600, 1, time.Second)
	runUntil(t, ix, l, 601)
	if n, lo, _ := count(t, ix); n != 601-int64(cut) || lo != int64(cut) {
		t.Fatalf("rows %d from %d, want %d from %d", n, lo, 601-cut, cut)
	}
	st, err := ix.Stats(ctx, StatsRequest{From: t0, To: t0.Add(time.Hour), Interval: time.Hour})
	if err != nil || st.Buckets[0].Count != 601-int64(cut) {
		t.Fatalf("Stats after prune: %+v, %v", st.Buckets, err)
	}
	// A rebuild starts at the first record retained.
	ix.Close()
	rs, err := Rebuild(ctx, path, l)
	if err != nil || rs.First != cut || rs.Next != 601 {
		t.Fatalf("Rebuild = %+v, %v", rs, err)
	}
}
