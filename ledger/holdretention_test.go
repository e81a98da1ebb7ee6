package ledger

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/internal/verifyhook"
	"github.com/trailguard/trailguard/retention"
)

// expiredLedger opens a ledger under pci-dss whose closed segments all hold
// records signed 400 days ago (as ledgertest.WritePCIDSS writes them), and
// one new segment. floor, if set, is its PruneFloor.
func expiredLedger(t *testing.T, k testKey, floor func() uint64) (*Ledger, string) {
	t.Helper()
	var now atomic.Int64
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now.Store(start.UnixNano())
	opts := testOpts(k)
	opts.SegmentSize = 8 << 10
	opts.Retention = retention.PCIDSS
	opts.PruneInterval = time.Hour // retention runs when the test says
	opts.Now = func() time.Time { return time.Unix(0, now.Load()) }
	opts.PruneFloor = floor
	dir := t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	appendN(t, l, 0, 300)
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	now.Store(start.Add(400 * retention.Day).UnixNano())
	appendN(t, l, 300, 10)
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.segMu.RLock()
	n := len(l.segs)
	l.segMu.RUnlock()
	if n < 4 {
		t.Fatalf("%d segments, want several expired ones", n)
	}
	return l, dir
}

// TestHoldRetention: while a HoldRetention is in force retention deletes
// nothing, and HoldRetention returns only once a retention pass that was
// already deleting a segment has stopped (it does not delete the next
// one), so that nothing is deleted between the hold and its release;
// after the release retention deletes what expired. Close does not wait
// for a hold.
func TestHoldRetention(t *testing.T) {
	k := newKey(t, testOrigin)
	// The first call of the floor stops the pass inside its first
	// segment, past the hold's check: a pass already deleting.
	var armed atomic.Bool
	entered, proceed := make(chan struct{}), make(chan struct{})
	floor := func() uint64 {
		if armed.Swap(false) {
			close(entered)
			<-proceed
		}
		return 1 << 40
	}
	l, dir := expiredLedger(t, k, floor)
	l.segMu.RLock()
	first := l.segs[1].first // where the first segment ends
	l.segMu.RUnlock()

	armed.Store(true)
	type pruned struct {
		recs []PruneRecord
		err  error
	}
	pass := make(chan pruned, 1)
	go func() {
		r, err := l.Prune()
		pass <- pruned{r, err}
	}()
	<-entered
	held := make(chan func(), 1)
	go func() { held <- l.HoldRetention() }()
	for l.retHolds.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-held:
		t.Fatal("HoldRetention returned while a retention pass was deleting a segment")
	case <-time.After(200 * time.Millisecond):
	}
	close(proceed)
	release := <-held
	if got := l.Pruned(); got != first {
		t.Fatalf("when HoldRetention returned, records [0, %d) were deleted, want [0, %d): the pass in progress ended", got, first)
	}
	p := <-pass
	if p.err != nil || len(p.recs) != 1 || p.recs[0].End != first {
		t.Fatalf("the pass the hold stopped deleted %+v (%v), want its one segment [0, %d)", p.recs, p.err, first)
	}

	// Held: a pass deletes nothing; a Verify of the directory whose
	// segments retention would delete after it read the retention
	// records finds nothing.
	vopts := VerifyOptions{Verifiers: []note.Verifier{k.verifier}}
	restore := verifyhook.SetAfterPruned(func(d string) {
		if d != dir {
			return
		}
		if got, err := l.Prune(); err != nil || len(got) != 0 {
			t.Errorf("prune during the hold deleted %+v (%v)", got, err)
		}
	})
	rep, err := Verify(dir, vopts)
	restore()
	if err != nil || !rep.OK() || rep.Pruned != first {
		t.Fatalf("verify during the hold: %v\n%s", err, rep)
	}
	if got := l.Pruned(); got != first {
		t.Fatalf("during the hold records [%d, %d) were deleted", first, got)
	}

	release()
	release() // once only: a second call must not end another hold
	other := l.HoldRetention()
	if got, err := l.Prune(); err != nil || len(got) != 0 {
		t.Fatalf("prune during a second hold, the first released twice: deleted %+v (%v)", got, err)
	}
	other()
	got, err := l.Prune()
	if err != nil || len(got) == 0 || l.Pruned() <= first {
		t.Fatalf("after the release: deleted %+v (%v), pruned %d", got, err, l.Pruned())
	}
	if rep, err := Verify(dir, VerifyOptions{Verifiers: vopts.Verifiers}); err != nil || !rep.OK() || rep.Pruned != l.Pruned() {
		t.Fatalf("verify after the release: %v\n%s", err, rep)
	}

	_ = l.HoldRetention() // never released
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for a hold")
	}
}

// TestVerifyPrunedUnderIt: a retention pass between Verify's reading of
// the retention records and of the segments (verifyhook.AfterPruned)
// deletes segments whose retention records Verify had not read. Unheld,
// Verify reads pruned.log again and reports them pruned (it reported them
// deleted without a retention record before); held, the pass deletes
// nothing and every record is read.
func TestVerifyPrunedUnderIt(t *testing.T) {
	k := newKey(t, testOrigin)
	for _, tc := range []struct {
		name string
		hold bool
	}{{"unheld: reported pruned", false}, {"held: nothing deleted", true}} {
		t.Run(tc.name, func(t *testing.T) {
			l, dir := expiredLedger(t, k, nil)
			var deleted []PruneRecord
			defer verifyhook.SetAfterPruned(func(d string) {
				if d != dir {
					return
				}
				var err error
				if deleted, err = l.Prune(); err != nil {
					t.Error(err)
				}
			})()
			release := func() {}
			if tc.hold {
				release = l.HoldRetention()
			}
			rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
			release()
			if err != nil {
				t.Fatal(err)
			}
			if tc.hold {
				if !rep.OK() || len(deleted) != 0 || rep.Pruned != 0 || rep.Records != l.Size() {
					t.Fatalf("held, the pass deleted %+v; report:\n%s", deleted, rep)
				}
				return
			}
			if len(deleted) == 0 {
				t.Fatal("unheld, the pass deleted nothing: the hook is not where a pass makes Verify wrong")
			}
			if !rep.OK() || rep.Pruned != l.Pruned() || rep.Records != l.Size() || countKind(rep.Notices, NoticePruned) != len(deleted) {
				t.Fatalf("unheld, the pass deleted %d segments (records below %d): want them reported pruned, got\n%s", len(deleted), l.Pruned(), rep)
			}
		})
	}
}

// countKind counts the findings (or notices) of a kind.
func countKind(fs []Finding, kind string) int {
	n := 0
	for _, f := range fs {
		if f.Kind == kind {
			n++
		}
	}
	return n
}
