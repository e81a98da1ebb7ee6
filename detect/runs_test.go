package detect

import (
	"context"
	"iter"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/trailguard/trailguard/ledger"
)

// sizeless is a Source that does not tell its size: the runner then hands
// over every record alone.
type sizeless struct{ l *ledger.Ledger }

func (s sizeless) Follow(ctx context.Context, from uint64) iter.Seq2[ledger.Entry, error] {
	return s.l.Follow(ctx, from)
}

func (s sizeless) Entries(from uint64) iter.Seq2[ledger.Entry, error] { return s.l.Entries(from) }

// TestRunnerRuns: the runner's follower hands records over in runs, yet
// no record waits for the next to come: after every append (of 1 to 200
// records, across the runs' length) the runner processes the ledger to
// its end without more appends, and raises the alerts of one replay of
// the whole ledger, in order, with a source that tells its size and with
// one that does not.
func TestRunnerRuns(t *testing.T) {
	for _, sized := range []bool{true, false} {
		name := "sized"
		if !sized {
			name = "sizeless"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			l := openLedger(t, dir)
			defer l.Close()
			var src Source = l
			if !sized {
				src = sizeless{l}
			}
			c := &collector{}
			r := &Runner{Engine: builtinEngine(t), Source: src, CursorPath: filepath.Join(dir, "cursor"), Emit: c.emit}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			stream := attackStream(3000)
			for i, n := 0, 0; i < len(stream); i += n {
				n = min([]int{1, 63, 64, 65, 2, 200, 129, 7}[n%8]+i%5, len(stream)-i)
				if _, err := l.Append(context.Background(), stream[i:i+n]...); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(10 * time.Second)
				for r.Next() < l.Size() {
					if time.Now().After(deadline) {
						t.Fatalf("after appending records %d to %d: the runner is at %d of %d", i, i+n, r.Next(), l.Size())
					}
					time.Sleep(time.Millisecond)
				}
			}
			cancel()
			if err := <-done; err != context.Canceled {
				t.Fatalf("Run: %v", err)
			}
			want := referenceAlerts(t, l)
			if len(want) < 5 || !slices.Equal(c.ids, want) {
				t.Fatalf("alerts %v, a replay raises %v", c.ids, want)
			}
		})
	}
}
