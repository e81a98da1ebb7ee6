package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/detect"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
)

var t0 = time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)

func testRule(name string) *detect.Rule {
	return &detect.Rule{ID: "id-" + name, Name: name, Title: "Rule " + name, Level: "high", Ruleset: "trailguard",
		Correlation: &detect.Correlation{Type: detect.EventCount}}
}

func testAlert(id string, r *detect.Rule, at time.Time, ip string) *detect.Alert {
	return &detect.Alert{ID: id, Rule: r, Time: at, First: at.Add(-time.Minute), Last: at, Count: 10,
		Group: []detect.Field{{Name: "client.ip", ECS: "client.ip", Value: ip}}}
}

func openLedger(t *testing.T, dir string) *ledger.Ledger {
	t.Helper()
	skey, _, _ := ledger.GenerateKey("test/alerting")
	signer, _ := note.NewSigner(skey)
	l, err := ledger.Open(dir, ledger.Options{Origin: "test/alerting", Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestSuppressionAndLifecycle(t *testing.T) {
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	defer l.Close()
	var notices []Notice
	open := func() *Store {
		s, err := Open(Options{Path: filepath.Join(dir, "alerts.json"), Suppress: 10 * time.Minute,
			Append: func(ctx context.Context, rec []byte) (uint64, error) { return l.Append(ctx, rec) }, Notify: func(n Notice) { notices = append(notices, n) }}, l)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	ctx := context.Background()
	r := testRule("brute")
	a1, folded, err := s.Raise(ctx, testAlert("a1", r, t0, "203.0.113.5"))
	if err != nil || folded || a1.Status != StatusOpen {
		t.Fatalf("first: %+v %v %v", a1, folded, err)
	}
	// The same rule and address within the window: folded.
	got, folded, _ := s.Raise(ctx, testAlert("a2", r, t0.Add(5*time.Minute), "203.0.113.5"))
	if !folded || got.ID != "a1" || got.Repeats != 1 || got.Count != 20 {
		t.Fatalf("repeat: %+v folded %v", got, folded)
	}
	// Another address is another alert.
	if _, folded, _ := s.Raise(ctx, testAlert("b1", r, t0.Add(6*time.Minute), "198.51.100.9")); folded {
		t.Fatal("another address was folded")
	}
	// Past the window (counted from the last repeat): a new alert.
	if _, folded, _ := s.Raise(ctx, testAlert("a3", r, t0.Add(14*time.Minute), "203.0.113.5")); !folded {
		t.Fatal("within 10 minutes of the last repeat: want folded")
	}
	if _, folded, _ := s.Raise(ctx, testAlert("a4", r, t0.Add(27*time.Minute), "203.0.113.5")); folded {
		t.Fatal("27 minutes later: want a new alert")
	}
	// Resolving ends suppression at once.
	if _, _, err := s.SetStatus("a4", StatusResolved, "analyst", "blocked at the firewall"); err != nil {
		t.Fatal(err)
	}
	if _, folded, _ := s.Raise(ctx, testAlert("a5", r, t0.Add(28*time.Minute), "203.0.113.5")); folded {
		t.Fatal("after resolution: want a new alert")
	}
	if _, _, err := s.SetStatus("a1", "closed", "x", ""); err != ErrStatus {
		t.Errorf("bad status: %v", err)
	}
	if _, _, err := s.SetStatus("nope", StatusAcknowledged, "x", ""); err != ErrNotFound {
		t.Errorf("unknown id: %v", err)
	}
	s.SetStatus("b1", StatusAcknowledged, "analyst", "looking")
	want := s.List(Filter{})
	if len(want) != 4 || want[0].ID != "a5" {
		t.Fatalf("list: %+v", want)
	}
	if open := s.List(Filter{Status: StatusOpen}); len(open) != 2 {
		t.Errorf("open: %d", len(open))
	}
	// Notices: four raised, two status changes.
	raised := 0
	for _, n := range notices {
		if n.Change == "raised" {
			raised++
			if err := event.Validate(n.Doc); err != nil {
				t.Errorf("alert document: %v", err)
			}
		}
	}
	if raised != 4 || len(notices) != 6 {
		t.Errorf("%d notices, %d raised", len(notices), raised)
	}
	s.Flush()

	// Reopen from the file.
	if got := open().List(Filter{}); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reopened:\n got %+v\nwant %+v", got, want)
	}
	// Rebuild from the ledger alone: the alert documents are there; the
	// status changes are the audit events the collector writes. An
	// application's audit event naming a resource "alert/…" of its own
	// (any service but the collector) changes nothing, and neither does an
	// alert-looking document of another dataset.
	for _, c := range []struct{ id, status, by, service string }{
		{"a4", StatusResolved, "analyst", event.CollectorService}, {"b1", StatusAcknowledged, "analyst", event.CollectorService},
		{"a5", StatusResolved, "app-user", "shop"}, {"a5", StatusResolved, "app-user", ""},
	} {
		doc := map[string]any{"@timestamp": t0, "event": map[string]any{"action": "alert_status_change", "reason": "n"},
			"user": map[string]any{"name": c.by}, "trailguard": map[string]any{"audit": map[string]any{"resource": ResourcePrefix + c.id,
				"after": map[string]any{"status": c.status}}}}
		if c.service != "" {
			doc["service"] = map[string]any{"name": c.service}
		}
		rec, _ := json.Marshal(doc)
		l.Append(ctx, rec)
	}
	l.Append(ctx, []byte(`{"@timestamp":"2026-01-01T09:30:00Z","event":{"kind":"alert","dataset":"suricata.eve","id":"not-ours"},"tags":["trailguard.alert"]}`))
	os.Remove(filepath.Join(dir, "alerts.json"))
	rebuilt := open().List(Filter{})
	if len(rebuilt) != 4 {
		t.Fatalf("rebuilt %d alerts", len(rebuilt))
	}
	for i := range rebuilt {
		if rebuilt[i].ID != want[i].ID || rebuilt[i].Status != want[i].Status || rebuilt[i].Index != want[i].Index ||
			rebuilt[i].Message != want[i].Message || !rebuilt[i].Time.Equal(want[i].Time) {
			t.Errorf("rebuilt %+v\nwant %+v", rebuilt[i], want[i])
		}
	}
}

func TestStoredAlertsNotAppendedTwice(t *testing.T) {
	var n int
	s, _ := Open(Options{Append: func(context.Context, []byte) (uint64, error) { n++; return uint64(n), nil }}, nil)
	a := testAlert("x", testRule("r"), t0, "192.0.2.1")
	a.Stored = true
	s.Raise(context.Background(), a)
	if n != 0 {
		t.Errorf("a stored alert was appended %d times", n)
	}
}
