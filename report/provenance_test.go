package report

import (
	"context"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/event"
)

// TestOnlyTheCollectorsOwnRecords: the figures a report takes from the
// collector's own records (reads of the trail, alerts and what became of
// them, blocks) count no record of an application that uses the same
// actions, and none another collector forwarded (trailguard.ledger.origin).
// Before, an application's (or a stolen shipper token's)
// alert_status_changed naming alert/A1 resolved A1 in the signed report,
// its block_decision_created counted as a block, and a forwarded
// collector's reads and alerts counted as this one's.
func TestOnlyTheCollectorsOwnRecords(t *testing.T) {
	t.Parallel()
	w := newWriter(t, t.TempDir(), t0.Add(-10*time.Minute))
	defer w.l.Close()
	w.append(ev(t0.Add(-time.Minute), event.Event{Action: event.ActionHTTPRequest, Outcome: "success", ServiceName: "shop"}))
	w.at(t0.Add(-30 * time.Second))
	w.checkpoint()
	w.at(at(1, 0))
	forwarded := func(rec []byte) []byte {
		return append([]byte(`{"trailguard.ledger.origin":"edge.example/trailguard",`), rec[1:]...)
	}
	read := ev(at(0, 10), event.Event{Action: event.ActionSensitiveRead, Outcome: "success", ServiceName: collectorService,
		UserName: "auditor", UserRoles: []string{"read"}, Audit: &event.Audit{Resource: "audit-trail"}})
	w.append(
		alertDoc(at(0, 1), at(0, 1), "A1", "bf", "Brute force", "medium", "203.0.113.66"),
		read,
		// An application's audit events with the collector's actions.
		ev(at(0, 20), event.Event{Action: "alert_status_changed", Outcome: "success", ServiceName: "shop", UserName: "mallory",
			Audit: &event.Audit{Resource: "alert/A1", After: []byte(`{"status":"resolved"}`)}}),
		ev(at(0, 21), event.Event{Category: []string{"intrusion_detection"}, Action: "block_decision_created", Outcome: "success", ServiceName: "shop", ClientIP: "198.51.100.1"}),
		// Another collector's records, forwarded.
		forwarded(alertDoc(at(0, 30), at(0, 30), "E1", "bf", "Brute force", "high", "203.0.113.67")),
		forwarded(read),
		forwarded(ev(at(0, 31), event.Event{Action: "alert_status_changed", Outcome: "success", ServiceName: collectorService, UserName: "edge-admin",
			Audit: &event.Audit{Resource: "alert/A1", After: []byte(`{"status":"acknowledged"}`)}})),
	)
	w.at(at(59, 0))
	w.checkpoint()
	rep, err := Compute(context.Background(), w.l, Options{Standard: SOC2, From: t0, To: t0.Add(time.Hour), Verifiers: []note.Verifier{w.verif},
		Now: t0.Add(2 * time.Hour), Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	f := rep.Figures
	if f.Reads.Total != 1 {
		t.Errorf("reads %+v; want the collector's one", f.Reads)
	}
	if f.AlertDocs != 1 || f.Alerts.Raised != 1 {
		t.Errorf("alert documents %d, raised %d; want 1 (this collector's)", f.AlertDocs, f.Alerts.Raised)
	}
	if f.Alerts.Open != 1 || f.Alerts.Resolved != 0 || f.Alerts.Acknowledged != 0 {
		t.Errorf("alerts %+v; want A1 still open", f.Alerts)
	}
	if f.Blocks.Created != 0 {
		t.Errorf("blocks %+v; want none", f.Blocks)
	}
}
