package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/ledger"
)

func openLedger(t testing.TB, dir string) *ledger.Ledger {
	t.Helper()
	keyFile := filepath.Join(dir, "signer.key")
	skey, err := os.ReadFile(keyFile)
	if err != nil {
		s, _, err := ledger.GenerateKey("test/detect")
		if err != nil {
			t.Fatal(err)
		}
		skey = []byte(s)
		os.WriteFile(keyFile, skey, 0o600)
	}
	signer, err := note.NewSigner(string(skey))
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(filepath.Join(dir, "ledger"), ledger.Options{Origin: "test/detect", Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// attackStream is a stream of events with several attacks whose windows
// straddle any split point: brute force bursts from a few addresses, a
// stuffing run, successes after failures, a steady 401 baseline and a
// spike.
func attackStream(n int) [][]byte {
	t0 := time.Date(2026, 1, 10, 10, 0, 0, 0, time.UTC) // in the past: not clamped to the append time
	var out [][]byte
	for i := 0; i < n; i++ {
		at := t0.Add(time.Duration(i) * 700 * time.Millisecond).Format(time.RFC3339Nano)
		var ev map[string]any
		switch {
		case i%7 == 0:
			ev = map[string]any{"event": map[string]any{"category": []string{"web"}, "outcome": "failure"},
				"http": map[string]any{"response": map[string]any{"status_code": 401}}, "service": map[string]any{"name": "shop"},
				"client": map[string]any{"ip": fmt.Sprintf("192.0.2.%d", i%50)}}
		case i > n/2 && i < n/2+60:
			ev = map[string]any{"event": map[string]any{"category": []string{"web"}, "outcome": "failure"},
				"http": map[string]any{"response": map[string]any{"status_code": 401}}, "service": map[string]any{"name": "shop"},
				"client": map[string]any{"ip": "203.0.113.9"}}
		case i%3 == 0:
			ev = map[string]any{"event": map[string]any{"category": []string{"authentication"}, "outcome": "failure"},
				"client": map[string]any{"ip": fmt.Sprintf("203.0.113.%d", i%4)}, "user": map[string]any{"name": fmt.Sprintf("user%d", i%23)}}
		case i%11 == 0:
			ev = map[string]any{"event": map[string]any{"category": []string{"authentication"}, "outcome": "success"},
				"client": map[string]any{"ip": fmt.Sprintf("203.0.113.%d", i%4)}, "user": map[string]any{"name": fmt.Sprintf("user%d", i%23)}}
		default:
			ev = map[string]any{"event": map[string]any{"category": []string{"web"}, "outcome": "success"},
				"http": map[string]any{"response": map[string]any{"status_code": 200}}, "url": map[string]any{"path": "/api/x"},
				"client": map[string]any{"ip": "198.51.100.1"}, "service": map[string]any{"name": "shop"}}
		}
		ev["@timestamp"] = at
		ev["event"].(map[string]any)["id"] = fmt.Sprintf("ev-%d", i)
		b, _ := json.Marshal(ev)
		out = append(out, b)
	}
	return out
}

func builtinEngine(t testing.TB) *Engine {
	e, errs := NewEngine(Builtin(), Options{})
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	return e
}

// referenceAlerts replays the whole ledger through a fresh engine.
func referenceAlerts(t *testing.T, l *ledger.Ledger) []string {
	e := builtinEngine(t)
	var ids []string
	for en, err := range l.Entries(0) {
		if err != nil {
			t.Fatal(err)
		}
		e.Process(Record{Index: en.Index, Time: en.Time, Data: en.Data}, func(a *Alert) { ids = append(ids, a.ID) })
	}
	return ids
}

type collector struct {
	mu  sync.Mutex
	ids []string
	l   *ledger.Ledger // when set, alerts are appended to it
}

func (c *collector) emit(a *Alert) error {
	if a.Stored {
		return nil // raised again for its response only
	}
	c.mu.Lock()
	c.ids = append(c.ids, a.ID)
	c.mu.Unlock()
	if c.l != nil {
		_, err := c.l.Append(context.Background(), a.AppendJSON(nil))
		return err
	}
	return nil
}

// runUntil runs a Runner until it has processed the ledger to its end.
func runUntil(t *testing.T, r *Runner, l *ledger.Ledger) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for r.Next() < l.Size() {
		if time.Now().After(deadline) {
			t.Fatalf("runner at %d of %d", r.Next(), l.Size())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run: %v", err)
	}
}

// TestRunnerRestart splits a stream at many points: a runner stopped at
// the split and restarted from its cursor raises exactly the alerts of
// one uninterrupted replay.
func TestRunnerRestart(t *testing.T) {
	stream := attackStream(1200)
	var want []string
	for _, split := range []int{1, 150, 337, 600, 601, 640, 999} {
		t.Run(fmt.Sprint(split), func(t *testing.T) {
			dir := t.TempDir()
			l := openLedger(t, dir)
			defer l.Close()
			cursor := filepath.Join(dir, "detect.cursor")
			var got collector
			if _, err := l.Append(context.Background(), stream[:split]...); err != nil {
				t.Fatal(err)
			}
			runUntil(t, &Runner{Engine: builtinEngine(t), Source: l, CursorPath: cursor, Emit: got.emit}, l)
			if _, err := l.Append(context.Background(), stream[split:]...); err != nil {
				t.Fatal(err)
			}
			runUntil(t, &Runner{Engine: builtinEngine(t), Source: l, CursorPath: cursor, Emit: got.emit}, l)
			ref := referenceAlerts(t, l)
			if want == nil {
				want = ref
				if len(want) < 10 {
					t.Fatalf("the stream raised only %d alerts", len(want))
				}
			}
			if !slices.Equal(got.ids, ref) {
				t.Fatalf("restart at %d: %d alerts, uninterrupted %d; first difference at %d", split, len(got.ids), len(ref), firstDiff(got.ids, ref))
			}
			if !slices.Equal(ref, want) {
				t.Fatalf("the same stream gave other alerts in another ledger: %d vs %d", len(ref), len(want))
			}
		})
	}
}

// TestRunnerCrashDedup: alerts stored in the ledger after the last saved
// cursor (the process died before saving) are not raised again.
func TestRunnerCrashDedup(t *testing.T) {
	dir := t.TempDir()
	l := openLedger(t, dir)
	defer l.Close()
	cursor := filepath.Join(dir, "detect.cursor")
	stream := attackStream(800)
	if _, err := l.Append(context.Background(), stream[:400]...); err != nil {
		t.Fatal(err)
	}
	first := collector{l: l}
	runUntil(t, &Runner{Engine: builtinEngine(t), Source: l, CursorPath: cursor, Emit: first.emit}, l)
	saved, err := os.ReadFile(cursor)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), stream[400:]...); err != nil {
		t.Fatal(err)
	}
	runUntil(t, &Runner{Engine: builtinEngine(t), Source: l, CursorPath: cursor, Emit: first.emit}, l)
	if len(first.ids) == 0 {
		t.Fatal("no alerts")
	}
	// The crash: the second run stored its alerts but died before saving
	// its cursor.
	os.WriteFile(cursor, saved, 0o600)

	second := collector{l: l}
	runUntil(t, &Runner{Engine: builtinEngine(t), Source: l, CursorPath: cursor, Emit: second.emit}, l)
	if len(second.ids) != 0 {
		t.Fatalf("%d alerts raised again after the restart: %v", len(second.ids), second.ids)
	}
	// Each alert is in the ledger once.
	seen := map[string]int{}
	for en, err := range l.Entries(0) {
		if err != nil {
			t.Fatal(err)
		}
		if isAlertDoc(en.Data) {
			var a struct {
				Event struct{ ID string } `json:"event"`
			}
			json.Unmarshal(en.Data, &a)
			seen[a.Event.ID]++
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("alert %s stored %d times", id, n)
		}
	}
	if len(seen) != len(first.ids) {
		t.Errorf("%d alerts stored, %d raised", len(seen), len(first.ids))
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
