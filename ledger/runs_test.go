package ledger

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/stalltest"
)

// runsLedger opens a ledger in a temporary directory, with the tail of
// appended records kept when tail is set (FollowAppended then serves them
// from memory, as for the collector's index and detection).
func runsLedger(t *testing.T, tail bool) *Ledger {
	t.Helper()
	opts := testOpts(newKey(t, testOrigin))
	if tail {
		opts.TailBytes = 1 << 20
	}
	l, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// appendRecords appends records [from, from+n) (record(i)) in one Append.
func appendRecords(t *testing.T, l *Ledger, from, n int) {
	t.Helper()
	recs := make([][]byte, n)
	for i := range recs {
		recs[i] = record(from + i)
	}
	if _, err := l.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
}

// nextRun receives the next run from rs, waiting up to limit (more when
// the process stalled meanwhile); nil when C was closed, a fatal error
// when nothing came.
func nextRun[T any](t *testing.T, rs *Runs[T], w *stalltest.Watch, limit time.Duration, what string) []T {
	t.Helper()
	run, took, stalled, ok := stalltest.Await(rs.C(), w, limit)
	if !ok {
		t.Fatalf("%s: no run after %v (longest stall %v)", what, took, stalled)
	}
	return run
}

// followerGoroutines counts the goroutines running a Runs' follower.
func followerGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "ledger.(*Runs[...]).follow(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// got is what TestFollowRunsEndAtSize converts each entry to: the
// conversion runs on the follower's goroutine, the consumer gets its
// results.
type got struct {
	idx  uint64
	data string
}

// TestFollowRunsEndAtSize: a run ends when full or with the last record
// the ledger holds, never waiting for the next append: after each append
// the consumer gets its records, in order and converted, in runs of Len
// and one of the rest (every record alone without Size), with no append
// after it.
func TestFollowRunsEndAtSize(t *testing.T) {
	for _, c := range []struct {
		name     string
		runLen   int
		sizeless bool
		tail     bool // FollowAppended, from the kept tail
		appends  []int
	}{
		{name: "len 4", runLen: 4, appends: []int{1, 4, 5, 9, 3, 8, 2}},
		{name: "len 64, from the tail", runLen: 64, tail: true, appends: []int{1, 63, 64, 65, 200, 2}},
		{name: "default len", appends: []int{1, 64, 130}},
		{name: "sizeless", runLen: 4, sizeless: true, appends: []int{1, 5, 3}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := runsLedger(t, c.tail)
			w := stalltest.Start(t)
			o := RunsOptions{Len: c.runLen, Queue: 2, Size: l.Size}
			if c.sizeless {
				o.Size = nil
			}
			follow := l.Follow
			if c.tail {
				follow = l.FollowAppended
			}
			rs := FollowRuns(context.Background(), follow, 0, func(e Entry) got { return got{e.Index, string(e.Data)} }, o)
			defer rs.Stop()
			runLen := c.runLen
			if runLen == 0 {
				runLen = 64
			}
			if c.sizeless {
				runLen = 1
			}
			n := 0
			for _, k := range c.appends {
				appendRecords(t, l, n, k)
				for left := k; left > 0; {
					want := min(left, runLen)
					run := nextRun(t, rs, w, 5*time.Second, "after an append of "+strconv.Itoa(k))
					if len(run) != want {
						t.Fatalf("after an append of %d: a run of %d records, want %d", k, len(run), want)
					}
					for _, g := range run {
						if g.idx != uint64(n) || g.data != string(record(n)) {
							t.Fatalf("record %d of a run: got index %d, %q", n, g.idx, g.data)
						}
						n++
					}
					left -= len(run)
					rs.Release(run)
				}
			}
			if err := rs.Stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("Stop: %v, want context.Canceled", err)
			}
		})
	}
}

// errBoom is the error failingAt's follow ends with.
var errBoom = errors.New("boom")

// failingAt follows l and fails with errBoom in place of record at, as a
// segment that ends early would.
func failingAt(l *Ledger, at uint64) func(context.Context, uint64) iter.Seq2[Entry, error] {
	return func(ctx context.Context, from uint64) iter.Seq2[Entry, error] {
		return func(yield func(Entry, error) bool) {
			for e, err := range l.Follow(ctx, from) {
				if err == nil && e.Index == at {
					yield(Entry{}, errBoom)
					return
				}
				if !yield(e, err) {
					return
				}
			}
		}
	}
}

// TestFollowRunsErrorAfterRecords: when the follow fails, every record
// read before the error reaches the consumer (the run being filled too,
// though the ledger holds more), then C is closed and Stop returns the
// error, whether the consumer keeps up or the follower waits for room.
func TestFollowRunsErrorAfterRecords(t *testing.T) {
	for _, c := range []struct {
		name    string
		records int
		failAt  int // -1: the ledger is closed once all are taken
		runLen  int
		slow    bool // the consumer lets the follower fill the queue first
		want    error
	}{
		{name: "mid-run", records: 10, failAt: 6, runLen: 4, want: errBoom},
		{name: "mid-run, queue full", records: 30, failAt: 27, runLen: 4, slow: true, want: errBoom},
		{name: "at a run's end", records: 10, failAt: 8, runLen: 4, want: errBoom},
		{name: "first record", records: 3, failAt: 0, runLen: 4, want: errBoom},
		{name: "ledger closed", records: 7, failAt: -1, runLen: 4, want: ErrClosed},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := runsLedger(t, false)
			w := stalltest.Start(t)
			appendRecords(t, l, 0, c.records)
			follow := l.Follow
			if c.failAt >= 0 {
				follow = failingAt(l, uint64(c.failAt))
			}
			rs := FollowRuns(context.Background(), follow, 0, func(e Entry) Entry { return e }, RunsOptions{Len: c.runLen, Queue: 1, Size: l.Size})
			defer rs.Stop()
			if c.slow {
				time.Sleep(50 * time.Millisecond)
			}
			wantRecords := c.failAt
			if c.failAt < 0 {
				wantRecords = c.records
			}
			n := 0
			for n < wantRecords {
				run := nextRun(t, rs, w, 5*time.Second, "records before the error")
				if run == nil {
					t.Fatalf("C closed after %d records, want %d before the error", n, wantRecords)
				}
				for _, e := range run {
					if e.Index != uint64(n) || !bytes.Equal(e.Data, record(n)) {
						t.Fatalf("record %d: got index %d, %q", n, e.Index, e.Data)
					}
					n++
				}
				rs.Release(run)
			}
			if c.failAt < 0 {
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if run := nextRun(t, rs, w, 5*time.Second, "C's close"); run != nil {
				t.Fatalf("a run of %d records (from %d) after the %d before the error", len(run), run[0].Index, wantRecords)
			}
			if err := rs.Stop(); !errors.Is(err, c.want) {
				t.Fatalf("Stop: %v, want %v", err, c.want)
			}
		})
	}
}

// TestFollowRunsReleaseClears: a run given back is reused, and never
// shows the consumer a record of its earlier use (beyond its length,
// where a longer earlier run left them) or counts one in Waiting.
func TestFollowRunsReleaseClears(t *testing.T) {
	for _, c := range []struct {
		name    string
		runLen  int
		appends []int
	}{
		{name: "long then short", runLen: 8, appends: []int{8, 1, 8, 2, 16, 3, 8, 1}},
		{name: "short then long", runLen: 8, appends: []int{1, 2, 3, 8, 24, 1, 5}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := runsLedger(t, false)
			w := stalltest.Start(t)
			rs := FollowRuns(context.Background(), l.Follow, 0, func(e Entry) Entry { return e }, RunsOptions{Len: c.runLen, Queue: 1, Size: l.Size})
			defer rs.Stop()
			seen := map[*Entry]bool{}
			reused, n := 0, 0
			for _, k := range c.appends {
				appendRecords(t, l, n, k)
				for left := k; left > 0; {
					run := nextRun(t, rs, w, 5*time.Second, "a run")
					if run == nil {
						t.Fatal("C closed")
					}
					if got := rs.Waiting(); got < len(run) {
						t.Fatalf("Waiting() = %d with a run of %d in hand", got, len(run))
					}
					for i, e := range run[len(run):cap(run)] {
						if e.Data != nil || e.Index != 0 {
							t.Fatalf("a run of %d (from record %d) holds record %d beyond its length, at %d", len(run), run[0].Index, e.Index, len(run)+i)
						}
					}
					if p := &run[:1][0]; seen[p] {
						reused++
					} else {
						seen[p] = true
					}
					n += len(run)
					left -= len(run)
					rs.Release(run)
				}
			}
			if reused == 0 {
				t.Fatalf("no run was reused in %d records", n)
			}
			if got := rs.Waiting(); got != 0 {
				t.Fatalf("Waiting() = %d with every run released", got)
			}
		})
	}
}

// TestFollowRunsStop: Stop, or the end of the context FollowRuns was
// given, ends the follower promptly, whether it waits for records or for
// room to hand a run over (a consumer that stopped taking them): C is
// closed, Stop returns the context's error, and no follower goroutine is
// left.
func TestFollowRunsStop(t *testing.T) {
	for _, c := range []struct {
		name    string
		records int // appended before: with Queue 1 and Len 4, more than 8 leave it waiting for room
		parent  bool
	}{
		{name: "idle, Stop", records: 0},
		{name: "idle, context ended", records: 3, parent: true},
		{name: "waiting for room, Stop", records: 50},
		{name: "waiting for room, context ended", records: 50, parent: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := followerGoroutines()
			l := runsLedger(t, false)
			w := stalltest.Start(t)
			if c.records > 0 {
				appendRecords(t, l, 0, c.records)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rs := FollowRuns(ctx, l.Follow, 0, func(e Entry) Entry { return e }, RunsOptions{Len: 4, Queue: 1, Size: l.Size})
			// Let the follower reach its wait: for records, or for room
			// (one run queued, one full in hand).
			for deadline := time.Now().Add(10 * time.Second); rs.Waiting() < min(c.records, 4); {
				if time.Now().After(deadline) {
					t.Fatalf("the follower handed over %d records of %d", rs.Waiting(), c.records)
				}
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
			var err error
			if c.parent {
				cancel()
				// C is closed without Stop: the follower ended by itself.
				for {
					run, took, stalled, ok := stalltest.Await(rs.C(), w, 2*time.Second)
					if !ok {
						t.Fatalf("C not closed %v after the context ended (longest stall %v)", took, stalled)
					}
					if run == nil {
						break
					}
				}
			}
			took, stalled, ok := stalltest.Run(func() { err = rs.Stop() }, w, 2*time.Second)
			if !ok {
				t.Fatalf("Stop had not returned after %v (longest stall %v)", took, stalled)
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Stop: %v, want context.Canceled", err)
			}
			for range rs.C() {
				// Runs queued before the stop may still be there; C is
				// closed after them.
			}
			// The goroutine may still be returning from the deferred
			// calls that ended Stop's wait: one that does not return at
			// all is the leak.
			for deadline := time.Now().Add(5 * time.Second); followerGoroutines() > before; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d follower goroutines after Stop, %d before", followerGoroutines(), before)
				}
			}
		})
	}
}
