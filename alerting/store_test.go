package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

	// The collector audits each change after making it (server's PATCH
	// handler): the ledger holds them.
	auditChange := func(id, status, by, service string) {
		doc := map[string]any{"@timestamp": t0, "event": map[string]any{"action": "alert_status_change", "reason": "n"},
			"user": map[string]any{"name": by}, "trailguard": map[string]any{"audit": map[string]any{"resource": ResourcePrefix + id,
				"after": map[string]any{"status": status}}}}
		if service != "" {
			doc["service"] = map[string]any{"name": service}
		}
		rec, _ := json.Marshal(doc)
		l.Append(ctx, rec)
	}
	auditChange("a4", StatusResolved, "analyst", event.CollectorService)
	auditChange("b1", StatusAcknowledged, "analyst", event.CollectorService)
	statuses := func(as []Alert) string {
		var b strings.Builder
		for _, a := range as {
			fmt.Fprintf(&b, "%s:%s ", a.ID, a.Status)
		}
		return b.String()
	}

	// Reopen from the file.
	if got := open(); statuses(got.List(Filter{})) != statuses(want) || got.Stats().Rejected != 0 {
		t.Fatalf("reopened (%d rejected):\n got %+v\nwant %+v", got.Stats().Rejected, got.List(Filter{}), want)
	}
	// Rebuild from the ledger alone: the alert documents are there; the
	// status changes are the audit events the collector writes. An
	// application's audit event naming a resource "alert/…" of its own
	// (any service but the collector) changes nothing, and neither does an
	// alert-looking document of another dataset.
	auditChange("a5", StatusResolved, "app-user", "shop")
	auditChange("a5", StatusResolved, "app-user", "")
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

// TestStateFileEditedOnDisk: someone with write access to the data
// directory edits alerts.json — resolves an open alert, borrows another
// alert's audited change, adds an alert the ledger never held — and
// restarts. The ledger wins: each edit is undone, logged, counted and
// recorded as alert_state_rejected; an unedited file opens quietly.
func TestStateFileEditedOnDisk(t *testing.T) {
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	defer l.Close()
	path := filepath.Join(dir, "alerts.json")
	open := func() *Store {
		t.Helper()
		s, err := Open(Options{Path: path, Append: func(ctx context.Context, rec []byte) (uint64, error) { return l.Append(ctx, rec) }}, l)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	ctx := context.Background()
	r := testRule("brute")
	for i, ip := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"} {
		if _, _, err := s.Raise(ctx, testAlert(fmt.Sprint("a", i), r, t0.Add(time.Duration(i)*time.Minute), ip)); err != nil {
			t.Fatal(err)
		}
	}
	// a0 resolved by an analyst, audited as the collector does; observed
	// as detection follows the ledger.
	if _, _, err := s.SetStatus("a0", StatusResolved, "analyst", "done"); err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(map[string]any{"@timestamp": time.Now(), "service": map[string]any{"name": event.CollectorService},
		"trailguard": map[string]any{"audit": map[string]any{"resource": ResourcePrefix + "a0", "after": map[string]any{"status": StatusResolved}}}})
	idx, err := l.Append(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	s.Observe(idx, rec)
	s.Flush()
	statuses := func(s *Store) string {
		var b strings.Builder
		for _, a := range s.List(Filter{}) {
			fmt.Fprintf(&b, "%s:%s ", a.ID, a.Status)
		}
		return b.String()
	}
	want := statuses(s)
	if want != "a2:open a1:open a0:resolved " {
		t.Fatalf("before: %s", want)
	}
	if n := open().Stats().Rejected; n != 0 {
		t.Fatalf("an unedited file: %d rejected", n)
	}
	saved, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(fn func(alerts []any) []any) {
		var st map[string]any
		if err := json.Unmarshal(saved, &st); err != nil {
			t.Fatal(err)
		}
		st["alerts"] = fn(st["alerts"].([]any))
		data, _ := json.Marshal(st)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	byID := func(alerts []any, id string) map[string]any {
		for _, a := range alerts {
			if a := a.(map[string]any); a["id"] == id {
				return a
			}
		}
		t.Fatalf("no %s in the file", id)
		return nil
	}
	for _, tc := range []struct {
		name string
		fn   func(alerts []any) []any
	}{
		{"open alert resolved", func(as []any) []any { byID(as, "a2")["status"] = StatusResolved; return as }},
		{"another alert's audited change", func(as []any) []any {
			a := byID(as, "a2")
			a["status"], a["status_index"] = StatusResolved, byID(as, "a0")["status_index"]
			return as
		}},
		{"resolved alert reopened", func(as []any) []any { byID(as, "a0")["status"] = StatusOpen; return as }},
		{"alert the ledger never held", func(as []any) []any {
			f := maps.Clone(byID(as, "a1"))
			f["id"] = "forged"
			return append(as, f)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			edit(tc.fn)
			before := l.Size()
			s := open()
			if got := statuses(s); got != want {
				t.Errorf("after the edit: %s, want %s", got, want)
			}
			if s.Stats().Rejected == 0 {
				t.Error("not counted")
			}
			recorded := 0
			for e, err := range l.Entries(before) {
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(e.Data, []byte("alert_state_rejected")) {
					recorded++
				}
			}
			if recorded == 0 {
				t.Error("not recorded in the ledger")
			}
			if n := open().Stats().Rejected; n != 0 {
				t.Errorf("the rewritten file: %d rejected", n)
			}
		})
	}
}

// TestTrimKeepsTheNewest: past MaxAlerts the oldest resolved alerts go,
// past twice it the oldest of any status, an eighth of MaxAlerts more
// each time; the open ones below twice MaxAlerts all stay.
func TestTrimKeepsTheNewest(t *testing.T) {
	s, err := Open(Options{MaxAlerts: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := testRule("brute")
	raise := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if _, folded, err := s.Raise(ctx, testAlert(fmt.Sprint("a", i), r, t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("10.0.0.%d", i))); err != nil || folded {
				t.Fatalf("alert a%d: folded %v, %v", i, folded, err)
			}
		}
	}
	kept := func() []string {
		var ids []string
		for _, a := range s.List(Filter{}) {
			ids = append(ids, a.ID)
		}
		slices.Reverse(ids)
		return ids
	}
	ids := func(from, to int, except ...int) []string {
		var out []string
		for i := from; i < to; i++ {
			if !slices.Contains(except, i) {
				out = append(out, fmt.Sprint("a", i))
			}
		}
		return out
	}
	for _, step := range []struct {
		name string
		do   func()
		want []string
	}{
		{"12 open: all kept (≤ 2 × 8)", func() { raise(0, 12) }, ids(0, 12)},
		{"3 resolved, one more raised: the resolved go", func() {
			for _, id := range []string{"a1", "a4", "a9"} {
				if _, _, err := s.SetStatus(id, StatusResolved, "admin", ""); err != nil {
					t.Fatal(err)
				}
			}
			raise(12, 13)
		}, ids(0, 13, 1, 4, 9)},
		{"open up to 16: all kept", func() { raise(13, 19) }, ids(0, 19, 1, 4, 9)},
		{"the 17th: the oldest go, down to 15", func() { raise(19, 20) }, ids(0, 20, 0, 1, 2, 4, 9)},
	} {
		step.do()
		if got := kept(); !slices.Equal(got, step.want) {
			t.Fatalf("%s: kept %v, want %v", step.name, got, step.want)
		}
	}
}

// TestOpenFromTheLedgerKeepsMaxAlerts: a store rebuilt from the ledger
// (its state file lost) keeps MaxAlerts as a running one does, the newest.
// Before, it kept every alert the ledger held — years of them — in memory
// and then in a state file too large to open at the next start.
func TestOpenFromTheLedgerKeepsMaxAlerts(t *testing.T) {
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	defer l.Close()
	ctx := context.Background()
	r := testRule("brute")
	const raised, maxAlerts = 1000, 40
	for i := range raised {
		a := testAlert(fmt.Sprint("a", i), r, t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("10.0.%d.%d", i>>8, i&255))
		if _, err := l.Append(ctx, a.AppendJSON(nil)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "alerts.json")
	s, err := Open(Options{Path: path, MaxAlerts: maxAlerts}, l)
	if err != nil {
		t.Fatal(err)
	}
	got := s.List(Filter{})
	if len(got) > 2*maxAlerts || len(got) < 2*maxAlerts-maxAlerts/8 {
		t.Fatalf("%d alerts kept of %d in the ledger, want %d-%d", len(got), raised, 2*maxAlerts-maxAlerts/8, 2*maxAlerts)
	}
	if got[0].ID != fmt.Sprint("a", raised-1) {
		t.Errorf("the newest kept is %s, want a%d", got[0].ID, raised-1)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil || len(st.Alerts) != len(got) {
		t.Fatalf("the state file holds %d alerts (%v), want %d", len(st.Alerts), err, len(got))
	}
}
