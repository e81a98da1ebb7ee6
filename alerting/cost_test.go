package alerting

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/costtest"
	"github.com/trailguard/trailguard/ledger"
)

// TestRaiseCostFlat: raising an alert costs about as much with 10,000
// alerts kept (MaxAlerts, which a collector reaches in time) as with none,
// on a real ledger and state file. Before, every alert rewrote and synced
// the whole state file (~5 MB) under the store's lock: 80-700 ms an alert
// at 10,000, and detection waits for each. The file is saved by Run and
// Flush now; a store opened without the last save (a kill -9) has every
// alert from the ledger.
func TestRaiseCostFlat(t *testing.T) {
	const kept = 10_000
	r := testRule("brute")
	ctx := context.Background()
	open := func(dir string, l *ledger.Ledger) *Store {
		t.Helper()
		s, err := Open(Options{Path: filepath.Join(dir, "alerts.json"), Append: func(ctx context.Context, rec []byte) (uint64, error) {
			return l.Append(ctx, rec)
		}}, l)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now().UTC()

	emptyDir := t.TempDir()
	el := openLedger(t, filepath.Join(emptyDir, "ledger"))
	defer el.Close()
	es := open(emptyDir, el)

	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	defer l.Close()
	err := costtest.Parallel(32, kept, func(i int) error {
		a := testAlert(fmt.Sprint("seed", i), r, now, fmt.Sprintf("10.0.%d.%d", i>>8&255, i&255))
		_, err := l.Append(ctx, a.AppendJSON(nil))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s := open(dir, l)
	if n := s.Stats().Open; n != kept {
		t.Fatalf("%d open alerts, want %d", n, kept)
	}
	// Interleaved, so that a loaded machine's slow spells weigh on both.
	stores, prefixes := []*Store{es, s}, []string{"e", "f"}
	med := costtest.Medians(2, 15, func(v, i int) {
		if _, folded, err := stores[v].Raise(ctx, testAlert(fmt.Sprint(prefixes[v], i), r, now, fmt.Sprintf("192.0.2.%d", i))); err != nil || folded {
			t.Fatalf("alert %s%d: folded %v, %v", prefixes[v], i, folded, err)
		}
	})
	empty, full := med[0], med[1]
	t.Logf("median alert: %v with none kept, %v with %d", empty, full, kept)
	if full > 4*empty+40*time.Millisecond {
		t.Errorf("an alert took %v with %d kept, %v with none", full, kept, empty)
	}

	// Not saved since (a kill -9): the ledger has the alerts.
	again := open(dir, l)
	if _, ok := again.Get("f14"); !ok {
		t.Fatal("the last alert is lost")
	}

	// Run saves the file within a second or so of a change.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.Run(rctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if data, err := os.ReadFile(filepath.Join(dir, "alerts.json")); err == nil && bytes.Contains(data, []byte(`"192.0.2.14"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not save the state file in 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Opened from the file alone (no catch-up past its through).
	fresh := open(dir, l)
	if _, ok := fresh.Get("f14"); !ok || fresh.through != l.Size() {
		t.Fatalf("the saved file: f14 %v, through %d of %d", ok, fresh.through, l.Size())
	}
}

// TestRaiseCostFlatPastMaxAlerts: past MaxAlerts, with none resolved (an
// attack: nobody resolves them while it lasts), raising an alert costs
// about as much as in an empty store. Before, every alert sorted all the
// alerts kept to find none to drop (10,000-20,000 of them): 60 ms an
// alert at twice MaxAlerts under -race (80 µs now), and detection waits
// for each.
func TestRaiseCostFlatPastMaxAlerts(t *testing.T) {
	const maxAlerts = 10_000
	r := testRule("brute")
	ctx := context.Background()
	now := time.Now().UTC()
	empty, err := Open(Options{MaxAlerts: maxAlerts}, nil)
	if err != nil {
		t.Fatal(err)
	}
	full, err := Open(Options{MaxAlerts: maxAlerts}, nil)
	if err != nil {
		t.Fatal(err)
	}
	full.mu.Lock()
	for i := range 2 * maxAlerts {
		a := fromDetect(testAlert(fmt.Sprint("seed", i), r, now.Add(-time.Hour+time.Duration(i)*time.Millisecond), fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255)))
		full.add(a)
	}
	full.mu.Unlock()
	stores, prefixes := []*Store{empty, full}, []string{"e", "f"}
	med := costtest.Medians(2, 41, func(v, i int) {
		if _, folded, err := stores[v].Raise(ctx, testAlert(fmt.Sprint(prefixes[v], i), r, now, fmt.Sprintf("192.0.2.%d", i))); err != nil || folded {
			t.Fatalf("alert %s%d: folded %v, %v", prefixes[v], i, folded, err)
		}
	})
	t.Logf("median alert: %v with none kept, %v with %d open (MaxAlerts %d)", med[0], med[1], 2*maxAlerts, maxAlerts)
	if med[1] > 4*med[0]+time.Millisecond {
		t.Errorf("an alert took %v with %d open kept, %v with none", med[1], 2*maxAlerts, med[0])
	}
	if n := full.Stats().Open; n > 2*maxAlerts {
		t.Errorf("%d alerts kept, more than twice MaxAlerts", n)
	}
}
