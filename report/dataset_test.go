package report

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
)

// writer builds a ledger on a controlled clock: records and checkpoints
// carry the times the test chooses, and checkpoints are made only when
// asked (the ledger's own cadence is set far out of the way).
type writer struct {
	t      testing.TB
	dir    string
	origin string
	signer note.Signer
	verif  note.Verifier
	vkey   string
	mu     sync.Mutex
	now    time.Time
	l      *ledger.Ledger
	// tailBytes is ledger.Options.TailBytes (set before open).
	tailBytes int
}

func newWriter(t testing.TB, dir string, start time.Time) *writer {
	return newWriterWith(t, dir, start, 0)
}

// newWriterWith is newWriter with the ledger keeping tailBytes of the
// records it appended (ledger.Options.TailBytes), as the collector's does.
func newWriterWith(t testing.TB, dir string, start time.Time, tailBytes int) *writer {
	skey, vkey, err := ledger.GenerateKey("test.trailguard/report")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	w := &writer{t: t, dir: filepath.Join(dir, "ledger"), origin: "test.trailguard/report", signer: s, verif: v, vkey: vkey, now: start, tailBytes: tailBytes}
	w.open()
	return w
}

func (w *writer) clock() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

func (w *writer) at(t time.Time) {
	w.mu.Lock()
	w.now = t
	w.mu.Unlock()
}

func (w *writer) open() {
	l, err := ledger.Open(w.dir, ledger.Options{Origin: w.origin, Signer: w.signer, Now: w.clock,
		CheckpointEvery: 1 << 30, CheckpointInterval: 10000 * time.Hour, IdleInterval: 10000 * time.Hour, PruneInterval: 10000 * time.Hour,
		TailBytes: w.tailBytes})
	if err != nil {
		w.t.Fatal(err)
	}
	w.l = l
}

func (w *writer) append(recs ...[]byte) {
	if _, err := w.l.Append(context.Background(), recs...); err != nil {
		w.t.Fatal(err)
	}
}

func (w *writer) checkpoint() {
	if _, err := w.l.Checkpoint(context.Background()); err != nil {
		w.t.Fatal(err)
	}
}

// restart closes the ledger (a shutdown checkpoint at the current time)
// and opens it again at t.
func (w *writer) restart(t time.Time) {
	if err := w.l.Close(); err != nil {
		w.t.Fatal(err)
	}
	w.at(t)
	w.open()
}

// ev encodes an event at t.
func ev(t time.Time, e event.Event) []byte {
	e.Timestamp = t
	if e.Kind == "" {
		e.Kind = event.KindEvent
	}
	return e.AppendJSON(nil)
}

func alertDoc(t, end time.Time, id, ruleID, title, level, client string) []byte {
	return fmt.Appendf(nil, `{"@timestamp":%q,"event":{"kind":"alert","category":["intrusion_detection"],"type":["info"],"id":%q,"dataset":"trailguard.alert","action":"x","end":%q},"rule":{"id":%q,"name":%q},"log":{"level":%q},"client":{"ip":%q}}`,
		t.UTC().Format(event.TimeFormat), id, end.UTC().Format(event.TimeFormat), ruleID, title, level, client)
}

// dataset is the generated trail of TestComputeExact, and the figures it
// must give.
type dataset struct {
	w        *writer
	from, to time.Time
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// at returns t0 plus minutes and seconds.
func at(min, sec int) time.Time {
	return t0.Add(time.Duration(min)*time.Minute + time.Duration(sec)*time.Second)
}

// buildDataset writes a ledger with known content (see the comments for
// each figure) over the period [t0, t0+1h).
func buildDataset(t testing.TB, dir string) *dataset {
	w := newWriter(t, dir, t0.Add(-10*time.Minute))
	svc := "shop"
	// Before the period: 10 events, then the checkpoint that opens it
	// (signed at 23:55, before the start).
	for i := range 10 {
		w.append(ev(t0.Add(-10*time.Minute+time.Duration(i)*time.Second), event.Event{Action: event.ActionHTTPRequest, Outcome: "success", ServiceName: svc, ClientIP: "198.51.100.9", Path: "/"}))
	}
	w.at(t0.Add(-5 * time.Minute))
	w.checkpoint() // size 10: the period starts here
	// Checkpoints every 30 s from 00:00:30, appending as we go.
	cp := func(m, s int) { w.at(at(m, s)); w.checkpoint() }
	w.at(at(0, 1))
	// The collector starts (lifecycle 1).
	w.append(ev(at(0, 1), event.Event{Action: event.ActionSysStartup, Outcome: "success", ServiceName: collectorService, HostName: "h1"}))
	// 100 requests of carol (clerk), complete but not auditable.
	var recs [][]byte
	for i := range 100 {
		recs = append(recs, ev(at(0, 2).Add(time.Duration(i)*time.Millisecond), event.Event{Action: event.ActionHTTPRequest, Outcome: "success",
			ServiceName: svc, ClientIP: "198.51.100.11", UserName: "carol", UserRoles: []string{"clerk"}, Path: "/api/orders", StatusCode: 200}))
	}
	w.append(recs...)
	cp(0, 30)
	// Brute force: 40 failed logins for alice from 203.0.113.66 between
	// 00:01:00 and 00:01:39 (chart: minute 1 at 1 m interval), each with
	// its 401 access event.
	recs = nil
	for i := range 40 {
		tm := at(1, i)
		recs = append(recs,
			ev(tm, event.Event{Category: []string{"authentication"}, Action: event.ActionLoginFail, Outcome: "failure", Reason: "bad password",
				ServiceName: svc, ClientIP: "203.0.113.66", SourceIP: "127.0.0.1", UserName: "alice", UserID: "u1", Path: "/api/login"}),
			ev(tm, event.Event{Action: event.ActionHTTPRequest, Outcome: "failure", ServiceName: svc, ClientIP: "203.0.113.66", Path: "/api/login", StatusCode: 401}))
	}
	w.at(at(1, 40))
	w.append(recs...)
	cp(1, 40)
	// Credential stuffing: 15 users from 198.18.0.5 at 00:02:xx.
	recs = nil
	for i := range 15 {
		recs = append(recs, ev(at(2, i), event.Event{Category: []string{"authentication"}, Action: event.ActionLoginFail, Outcome: "failure", Reason: "unknown user",
			ServiceName: svc, ClientIP: "198.18.0.5", UserName: fmt.Sprintf("user%02d@example.com", i), Path: "/api/login"}))
	}
	w.at(at(2, 20))
	w.append(recs...)
	// An alert for each, raised 50 ms after the event that completed it.
	w.append(alertDoc(at(1, 9).Add(50*time.Millisecond), at(1, 9), "A1", "bf", "Brute force from one address", "medium", "203.0.113.66"),
		alertDoc(at(2, 14).Add(50*time.Millisecond), at(2, 14), "A2", "cs", "Credential stuffing from one address", "high", "198.18.0.5"))
	w.append(ev(at(2, 15), event.Event{Category: []string{"intrusion_detection"}, Action: "block_decision_created", Outcome: "success", ClientIP: "198.18.0.5",
		ServiceName: collectorService}))
	cp(2, 30)
	// alice (admin) logs in 5 times, reads users (sensitive_read: CHD and
	// admin), changes dave's role twice.
	recs = nil
	for i := range 5 {
		recs = append(recs, ev(at(3, i), event.Event{Category: []string{"authentication"}, Action: event.ActionLoginSuccess, Outcome: "success",
			ServiceName: svc, ClientIP: "198.51.100.10", UserName: "alice", UserRoles: []string{"admin"}, Path: "/api/login"}))
	}
	recs = append(recs,
		ev(at(3, 10), event.Event{Action: event.ActionSensitiveRead, Outcome: "success", ServiceName: svc, ClientIP: "198.51.100.10", UserName: "alice", UserRoles: []string{"admin"}, Audit: &event.Audit{Resource: "users"}}),
		ev(at(3, 11), event.Event{Action: event.ActionUserRoleChange, Outcome: "success", ServiceName: svc, ClientIP: "198.51.100.10", UserName: "alice", UserRoles: []string{"admin"}, Audit: &event.Audit{Resource: "user/dave"}}),
		// Incomplete: no outcome.
		ev(at(3, 12), event.Event{Action: event.ActionUserRoleChange, ServiceName: svc, ClientIP: "198.51.100.10", UserName: "alice", UserRoles: []string{"admin"}, Audit: &event.Audit{Resource: "user/dave"}}),
	)
	// carol creates 4 orders (CHD).
	for i := range 4 {
		recs = append(recs, ev(at(3, 20+i), event.Event{Action: event.ActionSensitiveCreate, Outcome: "success", ServiceName: svc, ClientIP: "198.51.100.11", UserName: "carol", UserRoles: []string{"clerk"}, Audit: &event.Audit{Resource: fmt.Sprintf("order/%d", i)}}))
	}
	// bob: 3 authorization failures, one of them without user or origin.
	for i := range 2 {
		recs = append(recs, ev(at(3, 30+i), event.Event{Action: event.ActionAuthzFail, Outcome: "failure", ServiceName: svc, ClientIP: "198.51.100.13", UserName: "bob", Path: "/api/users"}))
	}
	recs = append(recs, ev(at(3, 32), event.Event{Action: event.ActionAuthzFail, Outcome: "failure", ServiceName: "legacy", Path: "/admin"}))
	w.at(at(3, 40))
	w.append(recs...)
	cp(4, 0)
	// The auditor reads the trail 3 times through the collector.
	for i := range 3 {
		w.append(ev(at(4, 10+i), event.Event{Action: event.ActionSensitiveRead, Outcome: "success", ServiceName: collectorService, SourceIP: "10.0.0.5",
			UserName: "auditor", UserRoles: []string{"read"}, Audit: &event.Audit{Resource: "audit-trail"}}))
	}
	// A source whose clock is a minute ahead (event.ingested), and one
	// event delivered 10 minutes late.
	w.at(at(4, 20))
	w.append(ev(at(5, 20), event.Event{Action: event.ActionHTTPRequest, Outcome: "success", ServiceName: "clocky", ClientIP: "192.0.2.1", Ingested: at(4, 20)}))
	w.append(ev(at(0, 0).Add(-6*time.Minute+20*time.Second), event.Event{Action: event.ActionHTTPRequest, Outcome: "success", ServiceName: "late", ClientIP: "192.0.2.2", Ingested: at(4, 20)}))
	w.append(ev(at(4, 21), event.Event{Action: "audit_events_unrecorded", Outcome: "unknown", ServiceName: collectorService, Attrs: []byte(`{"unrecorded":7,"addresses":2}`)}))
	cp(4, 30)
	// Nothing for 5 minutes (an unexplained gap), then the alert A1 is
	// acknowledged 10 minutes after it was raised.
	w.at(at(11, 9).Add(50 * time.Millisecond))
	w.append(ev(at(11, 9).Add(50*time.Millisecond), event.Event{Action: "alert_status_changed", Outcome: "success", ServiceName: collectorService,
		UserName: "admin-1", UserRoles: []string{"admin"}, SourceIP: "10.0.0.6", Audit: &event.Audit{Resource: "alert/A1", After: []byte(`{"status":"acknowledged"}`)}}))
	cp(11, 10)
	// A planned stop: shutdown at 00:12:00, started again at 00:16:00.
	w.at(at(12, 0))
	w.append(ev(at(12, 0), event.Event{Action: event.ActionSysShutdown, Outcome: "success", ServiceName: collectorService, HostName: "h1"}))
	w.restart(at(16, 0))
	w.append(ev(at(16, 0), event.Event{Action: event.ActionSysStartup, Outcome: "success", ServiceName: collectorService, HostName: "h1"}))
	// And a crash: started again without a stop.
	w.append(ev(at(16, 1), event.Event{Action: event.ActionSysStartup, Outcome: "success", ServiceName: collectorService, HostName: "h1"}))
	for m := 16; m < 60; m++ {
		cp(m, 30)
		cp(m+1, 0)
	}
	// After the period: 5 events and their checkpoint (left out).
	for i := range 5 {
		w.at(at(60, 10+i))
		w.append(ev(at(60, 10+i), event.Event{Category: []string{"authentication"}, Action: event.ActionLoginFail, Outcome: "failure", ServiceName: svc, ClientIP: "203.0.113.99", UserName: "x"}))
	}
	cp(60, 30)
	return &dataset{w: w, from: t0, to: t0.Add(time.Hour)}
}
