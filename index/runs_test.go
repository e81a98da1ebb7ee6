package index

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/trailguard/trailguard/ledger"
)

// sizeless is a Source without Size: Run's follower then hands every
// record over alone.
type sizeless struct{ l *ledger.Ledger }

func (s sizeless) Follow(ctx context.Context, from uint64) iter.Seq2[ledger.Entry, error] {
	return s.l.Follow(ctx, from)
}

// TestRunRunsMatchRebuild: records handed from Run's follower to its
// writer in runs (ending where the ledger ends, inside blocks and batches,
// and at a stop) are indexed each once, in order: an index Run builds
// while the ledger grows in appends of odd sizes, stopped and restarted
// on the way, holds the same rows, terms and ids as one rebuilt from the
// ledger, at batch sizes below, around and above a run and a block.
func TestRunRunsMatchRebuild(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		batch    int
		sizeless bool
	}{
		{batch: 1}, {batch: 7}, {batch: runLen + 1}, {batch: 150}, {batch: 5000}, {batch: 150, sizeless: true},
	} {
		t.Run(fmt.Sprintf("batch=%d,sizeless=%v", c.batch, c.sizeless), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			l := openLedger(t, filepath.Join(dir, "ledger"))
			ix, err := Open(filepath.Join(dir, "live.db"), Options{Ledger: l, BatchSize: c.batch, BatchDelay: time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer ix.Close()
			var src Source = l
			if c.sizeless {
				src = sizeless{l.Ledger}
			}
			sizes := []int{1, 13, runLen, runLen + 1, 200, 3, 700, 2 * runLen, 97, 5}
			n := 0
			for round := range 3 {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- ix.Run(ctx, src) }()
				for k, sz := range sizes {
					recs := make([][]byte, sz)
					for j := range recs {
						recs[j] = genEvent(n+j, time.Second).AppendJSON(nil)
					}
					if _, err := l.Append(context.Background(), recs...); err != nil {
						t.Fatal(err)
					}
					n += sz
					if k%3 == round%3 {
						time.Sleep(time.Millisecond) // let the follower catch up sometimes
					}
				}
				if round < 2 {
					// Stopped with records in flight: the next Run reads
					// them again from Indexed().
					cancel()
					if err := <-done; !errors.Is(err, context.Canceled) {
						t.Fatalf("Run returned %v, want context.Canceled", err)
					}
					continue
				}
				err := waitIndexing(ix, uint64(n))
				cancel()
				if err != nil {
					t.Fatalf("waiting for %d records indexed: %v", n, err)
				}
				if err := <-done; !errors.Is(err, context.Canceled) {
					t.Fatalf("Run returned %v, want context.Canceled", err)
				}
			}
			if got := ix.Indexed(); got != uint64(n) {
				t.Fatalf("Indexed() = %d, want %d", got, n)
			}
			if _, err := Rebuild(context.Background(), filepath.Join(dir, "rebuilt.db"), l); err != nil {
				t.Fatal(err)
			}
			rebuilt := openIndexOn(t, filepath.Join(dir, "rebuilt.db"), l)
			a, b := dumpIndex(t, ix), dumpIndex(t, rebuilt)
			if len(a.blocks) < n/int(blockSize) {
				t.Fatalf("dump of %d blocks for %d records", len(a.blocks), n)
			}
			if !reflect.DeepEqual(a, b) {
				for i := range a.blocks {
					if i < len(b.blocks) && !reflect.DeepEqual(a.blocks[i], b.blocks[i]) {
						t.Fatalf("block %d differs:\n live    %+v\n rebuilt %+v", i, *a.blocks[i], *b.blocks[i])
					}
				}
				t.Fatalf("the live index and the rebuilt one differ (%d and %d blocks; terms equal: %v)", len(a.blocks), len(b.blocks), reflect.DeepEqual(a.terms, b.terms))
			}
			for _, j := range []int{0, 1, runLen - 1, runLen, n - 1} {
				id := fmt.Sprintf("ev-%08d", j)
				if _, err := ix.ByEventID(context.Background(), id); err != nil {
					t.Fatalf("%s: %v", id, err)
				}
			}
		})
	}
}
