package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/alerting"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/ledger"
)

// failedLogins are n failed logins from ip, as httpaudit writes them.
func failedLogins(n int, ip, user string) *bytes.Buffer {
	var b bytes.Buffer
	for i := range n {
		e := &event.Event{Timestamp: time.Now().UTC(), Kind: event.KindEvent, Category: []string{event.CategoryAuthentication},
			Action: event.ActionLoginFail, Outcome: event.OutcomeFailure, Reason: "bad password", UserName: user,
			SourceIP: ip, ClientIP: ip, Path: "/api/login", Method: "POST", ServiceName: "shop", ID: fmt.Sprintf("%s-%s-%d-%d", ip, user, i, time.Now().UnixNano())}
		b.Write(e.AppendJSON(nil))
		b.WriteByte('\n')
	}
	return &b
}

func detectionOn(c *Config) { c.Detection.Disabled = false }

func (ts *testServer) token(t *testing.T, name string, role access.Role) string {
	t.Helper()
	_, secret, err := ts.Tokens().Create(name, role)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type streamAnswer struct {
	New, Deleted []wireDecision
}

func (ts *testServer) stream(t *testing.T, key string, startup bool) streamAnswer {
	t.Helper()
	path := "/v1/decisions/stream"
	if startup {
		path += "?startup=true"
	}
	code, body := ts.do(t, "GET", path, "", nil, "X-Api-Key", key)
	if code != 200 {
		t.Fatalf("stream: %d %s", code, body)
	}
	var a streamAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("stream answer %s: %v", body, err)
	}
	return a
}

func has(ds []wireDecision, value string) bool {
	for _, d := range ds {
		if d.Value == value {
			return true
		}
	}
	return false
}

// TestIPv6ClientRotatingAddresses: a client that sends each failed login
// from another address of its IPv6 /64 (any host given a /64 can) is
// counted as one client and banned by the /64, on the bouncers' stream and
// in live mode for an address it has not used yet. Before, each address
// was a client of its own with one failure: no alert and no ban, however
// many logins it tried.
func TestIPv6ClientRotatingAddresses(t *testing.T) {
	t.Parallel()
	ts := startServer(t, t.TempDir(), detectionOn)
	bouncer := ts.token(t, "nginx-bouncer", access.RoleBouncer)
	var logins bytes.Buffer
	for i := range 12 {
		logins.Write(failedLogins(1, fmt.Sprintf("2001:db8:5:6::%x", i+1), fmt.Sprintf("user%d", i)).Bytes())
	}
	if code, body := ts.do(t, "POST", "/v1/events", ts.ingest, &logins); code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	const host = "2001:db8:5:6::/64"
	var got streamAnswer
	waitUntil(t, "the /64's ban on the stream", 30*time.Second, func() bool {
		got = ts.stream(t, bouncer, false)
		return has(got.New, host)
	})
	for _, d := range got.New {
		if d.Value == host && (d.Scope != "Range" || d.Scenario != "trailguard_brute_force_source") {
			t.Errorf("decision %+v", d)
		}
	}
	code, body := ts.do(t, "GET", "/v1/decisions?ip=2001:db8:5:6:ab::99", "", nil, "X-Api-Key", bouncer)
	if code != 200 || !strings.Contains(string(body), `"value":"`+host+`"`) {
		t.Errorf("live mode, the /64's next address: %d %s", code, body)
	}
	if code, body := ts.do(t, "GET", "/v1/decisions?ip=2001:db8:5:7::1", "", nil, "X-Api-Key", bouncer); code != 200 || strings.TrimSpace(string(body)) != "null" {
		t.Errorf("live mode, another /64: %d %s", code, body)
	}
	// The alert names an address of the host in client.ip (an ECS ip
	// field, which Elasticsearch refuses a network in), not the /64.
	code, body = ts.do(t, "GET", "/v1/events?q=event.kind:alert&wait_for=ledger", ts.read, nil)
	var found struct {
		Hits []struct{ Event json.RawMessage }
	}
	if err := json.Unmarshal(body, &found); code != 200 || err != nil || len(found.Hits) == 0 {
		t.Fatalf("alerts: %d %s", code, body)
	}
	for _, h := range found.Hits {
		if err := event.Validate(h.Event); err != nil || !bytes.Contains(h.Event, []byte(`"client":{"ip":"2001:db8:5:6::`)) {
			t.Errorf("alert %s: %v", h.Event, err)
		}
	}
}

// TestDetectionEndToEnd: failed logins posted to the collector become a
// stored alert and a block decision served on the CrowdSec stream; the
// alert's lifecycle and the decision's deletion are audited; everything
// survives a restart.
func TestDetectionEndToEnd(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, detectionOn)
	bouncer := ts.token(t, "nginx-bouncer", access.RoleBouncer)

	// Roles: a bouncer reads decisions and nothing else; ingest cannot
	// read them; nobody without a key.
	if code, _ := ts.do(t, "GET", "/v1/events", bouncer, nil); code != 403 {
		t.Errorf("bouncer reading events: %d", code)
	}
	if code, _ := ts.do(t, "GET", "/v1/decisions/stream", ts.ingest, nil); code != 403 {
		t.Errorf("ingest reading decisions: %d", code)
	}
	if code, body := ts.do(t, "GET", "/v1/decisions/stream", "", nil, "X-Api-Key", "tg_nope_nope"); code != 401 || !strings.Contains(string(body), `"message":"invalid token: not a token of this collector`) {
		t.Errorf("bad key: %d %s (CrowdSec clients read message)", code, body)
	}
	if a := ts.stream(t, bouncer, true); len(a.New) != 0 {
		t.Fatalf("decisions before any attack: %+v", a.New)
	}

	posted := time.Now()
	if code, body := ts.do(t, "POST", "/v1/events", ts.ingest, failedLogins(12, "203.0.113.5", "alice")); code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	var got streamAnswer
	waitUntil(t, "the block decision on the stream", 30*time.Second, func() bool {
		got = ts.stream(t, bouncer, false)
		return has(got.New, "203.0.113.5")
	})
	t.Logf("from the ingest answer to the decision on the stream: %v", time.Since(posted).Round(time.Millisecond))
	d := got.New[0]
	if d.Type != "ban" || d.Scope != "Ip" || d.Origin != "trailguard" || d.Scenario != "trailguard_brute_force_source" || d.AlertID == "" {
		t.Errorf("decision %+v", d)
	}
	if dur, err := time.ParseDuration(d.Duration); err != nil || dur <= 59*time.Minute || dur > time.Hour {
		t.Errorf("duration %q", d.Duration)
	}
	// Live mode.
	code, body := ts.do(t, "GET", "/v1/decisions?ip=203.0.113.5", "", nil, "X-Api-Key", bouncer)
	if code != 200 || !strings.Contains(string(body), `"value":"203.0.113.5"`) {
		t.Errorf("live mode: %d %s", code, body)
	}
	if code, body := ts.do(t, "GET", "/v1/decisions?ip=198.51.100.1", "", nil, "X-Api-Key", bouncer); code != 200 || strings.TrimSpace(string(body)) != "null" {
		t.Errorf("live mode, not banned: %d %s", code, body)
	}

	// The alert.
	var list struct{ Alerts []alerting.Alert }
	code, body = ts.do(t, "GET", "/v1/alerts?status=open", ts.read, nil)
	json.Unmarshal(body, &list)
	var bf *alerting.Alert
	for i, a := range list.Alerts {
		if a.RuleName == "trailguard_brute_force_source" {
			bf = &list.Alerts[i]
		}
	}
	if code != 200 || bf == nil || bf.Group["client.ip"] != "203.0.113.5" || bf.ID != d.AlertID {
		t.Fatalf("alerts: %d %s", code, body)
	}
	code, body = ts.do(t, "GET", "/v1/alerts/"+bf.ID, ts.read, nil)
	if code != 200 || !strings.Contains(string(body), `"kind":"alert"`) || !strings.Contains(string(body), `"event_id":["203.0.113.5-alice-0-`) {
		t.Errorf("alert with its document: %d %s", code, body)
	}
	// Lifecycle: read may not change it, admin may, and it is audited.
	patch := func(tok, status string) (int, []byte) {
		return ts.do(t, "PATCH", "/v1/alerts/"+bf.ID, tok, strings.NewReader(`{"status":"`+status+`","note":"looking into it"}`))
	}
	if code, _ := patch(ts.read, "acknowledged"); code != 403 {
		t.Errorf("read acknowledging: %d", code)
	}
	if code, body := patch(ts.admin, "closed"); code != 400 {
		t.Errorf("bad status: %d %s", code, body)
	}
	if code, body := patch(ts.admin, "acknowledged"); code != 200 || !strings.Contains(string(body), `"status":"acknowledged"`) {
		t.Fatalf("acknowledge: %d %s", code, body)
	}
	waitUntil(t, "the status change in the trail", 30*time.Second, func() bool {
		for e, err := range ts.ledger.Entries(0) {
			if err == nil && bytes.Contains(e.Data, []byte(`"resource":"alert/`+bf.ID+`"`)) && bytes.Contains(e.Data, []byte(ActionAlertStatus)) &&
				bytes.Contains(e.Data, []byte(`"name":"ops"`)) {
				return true
			}
		}
		return false
	})

	// An operator unbans; bouncers hear it.
	if code, _ := ts.do(t, "DELETE", fmt.Sprintf("/v1/decisions/%d", d.ID), ts.read, nil); code != 403 {
		t.Errorf("read deleting: %d", code)
	}
	if code, body := ts.do(t, "DELETE", fmt.Sprintf("/v1/decisions/%d", d.ID), ts.admin, nil); code != 200 {
		t.Fatalf("delete: %d %s", code, body)
	}
	if a := ts.stream(t, bouncer, false); !has(a.Deleted, "203.0.113.5") {
		t.Errorf("after delete: %+v", a)
	}
	// A manual ban.
	code, body = ts.do(t, "POST", "/v1/decisions", ts.admin, strings.NewReader(`{"scope":"Range","value":"198.51.100.0/24","duration":"2h","reason":"scanner"}`))
	if code != 201 {
		t.Fatalf("manual ban: %d %s", code, body)
	}
	if a := ts.stream(t, bouncer, false); !has(a.New, "198.51.100.0/24") {
		t.Errorf("manual ban not streamed: %+v", a)
	}
	code, body = ts.do(t, "GET", "/v1/rules", ts.read, nil)
	if code != 200 || !strings.Contains(string(body), `"errors":[]`) || !strings.Contains(string(body), "trailguard_web_sqli") {
		t.Errorf("rules: %d %.300s", code, body)
	}
	code, body = ts.do(t, "GET", "/metrics", ts.read, nil)
	for _, m := range []string{"trailguard_alerts_raised_total ", "trailguard_decisions_active 1", "trailguard_detect_lag_records "} {
		if !strings.Contains(string(body), m) {
			t.Errorf("metrics lack %q", m)
		}
	}

	// Restart: alerts, their status and decisions persist; nothing is
	// raised or stored twice.
	alertDocs := func() int {
		n := 0
		for e, err := range ts.ledger.Entries(0) {
			if err == nil && bytes.Contains(e.Data, []byte(`"kind":"alert"`)) {
				n++
			}
		}
		return n
	}
	before := alertDocs()
	ts.stop(t)
	ts = startServer(t, dir, detectionOn)
	a, ok := ts.Alerts().Get(bf.ID)
	if !ok || a.Status != alerting.StatusAcknowledged {
		t.Errorf("after restart: %+v %v", a, ok)
	}
	if len(ts.Decisions().Covering("198.51.100.7")) != 1 || len(ts.Decisions().Covering("203.0.113.5")) != 0 {
		t.Errorf("decisions after restart: %+v", ts.Decisions().Active())
	}
	waitUntil(t, "detection caught up", 30*time.Second, func() bool { return ts.DetectionNext() >= ts.ledger.Size()-5 })
	if n := alertDocs(); n != before {
		t.Errorf("%d alert documents after the restart, %d before", n, before)
	}
}

// TestCrowdSecBouncer: Debian's crowdsec-custom-bouncer, pointed at the
// collector, runs its script for each ban and unban: the attacker's
// address after a brute force, its removal after a DELETE, and a ban that
// runs out.
func TestCrowdSecBouncer(t *testing.T) {
	bin := testenv.Tool(t, "crowdsec-custom-bouncer", "apt-get install crowdsec-custom-bouncer")
	dir := t.TempDir()
	ts := startServer(t, filepath.Join(dir, "data"), detectionOn)
	key := ts.token(t, "custom-bouncer", access.RoleBouncer)
	log := filepath.Join(dir, "actions.log")
	script := filepath.Join(dir, "record.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 $2 $3\" >> "+log+"\n"), 0o755)
	cfg := filepath.Join(dir, "bouncer.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`bin_path: %s
feed_via_stdin: false
total_retries: 0
scenarios_containing: []
scenarios_not_containing: []
origins: []
piddir: %s
update_frequency: 200ms
cache_retention_duration: 10s
daemonize: false
log_mode: stdout
log_level: info
api_url: %s/
api_key: %s
prometheus:
  enabled: false
`, script, dir, ts.url, key)), 0o600)
	cmd := exec.Command(bin, "-c", cfg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := testenv.StartChild(t, cmd); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("bouncer output:\n%s", out.String())
		}
	}()
	actions := func() string { b, _ := os.ReadFile(log); return string(b) }
	waitAction := func(what string) {
		t.Helper()
		waitUntil(t, "the bouncer to run: "+what, 20*time.Second, func() bool { return strings.Contains(actions(), what) })
	}

	if code, body := ts.do(t, "POST", "/v1/events", ts.ingest, failedLogins(12, "203.0.113.66", "alice")); code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	waitAction("add 203.0.113.66 ")
	dec := ts.Decisions().Covering("203.0.113.66")
	if len(dec) != 1 {
		t.Fatalf("decisions %+v", dec)
	}
	if code, body := ts.do(t, "DELETE", fmt.Sprintf("/v1/decisions/%d", dec[0].ID), ts.admin, nil); code != 200 {
		t.Fatalf("delete: %d %s", code, body)
	}
	waitAction("del 203.0.113.66 ")
	// A ban that runs out by itself.
	if code, body := ts.do(t, "POST", "/v1/decisions", ts.admin, strings.NewReader(`{"scope":"Ip","value":"198.51.100.77","duration":"2s","reason":"test"}`)); code != 201 {
		t.Fatalf("manual ban: %d %s", code, body)
	}
	waitAction("add 198.51.100.77 ")
	waitAction("del 198.51.100.77 ")
	if n := strings.Count(actions(), "add 203.0.113.66"); n != 1 {
		t.Errorf("the attacker was added %d times:\n%s", n, actions())
	}
}

// TestMayBeCollectors: the shortcut by which detection's follower shows
// the alert store only records that may be the collector's own says no
// only when the record's spans settle that its service.name is not the
// collector's; a record the store acts on (the collector's audit of an
// alert's status change) is always shown.
func TestMayBeCollectors(t *testing.T) {
	now := time.Now()
	entry := func(doc string, withSpans bool) ledger.Entry {
		t.Helper()
		if !withSpans {
			// As the collector appends its own records.
			return ledger.Entry{Index: 7, Data: []byte(doc)}
		}
		var sp event.Spans
		rec, _, ok := event.AppendNormalizedSpans(nil, []byte(doc), now, event.AppendID, &sp)
		if !ok {
			t.Fatalf("normalise %s", doc)
		}
		if !sp.OK() {
			t.Fatalf("no spans for %s", rec)
		}
		return ledger.Entry{Index: 7, Data: rec, Aux: []event.Spans{{}, sp}, AuxPos: 1}
	}
	// The collector's own records never come with spans (the fast
	// normaliser leaves service.name trailguard-collector and
	// trailguard.audit to the full path, which ingest refuses or parses).
	own := `{"@timestamp":"2026-11-30T12:00:00Z","event":{"kind":"event","action":"alert_status_changed"},"user":{"name":"alert/abc"},"service":{"name":"trailguard-collector"}}`
	for _, c := range []struct {
		name      string
		doc       string
		withSpans bool
		want      bool
	}{
		{"ingested, another service", `{"@timestamp":"2026-11-30T12:00:00Z","event":{"kind":"event","action":"login"},"service":{"name":"orders-api"},"user":{"name":"alert/abc"}}`, true, false},
		{"ingested, no service", `{"@timestamp":"2026-11-30T12:00:00Z","event":{"kind":"event","action":"login"},"url":{"path":"/alert/abc"}}`, true, false},
		{"the collector's own, without spans", own, false, true},
		{"another service, without spans", `{"@timestamp":"2026-11-30T12:00:00Z","event":{"kind":"event","action":"login"},"service":{"name":"orders-api"}}`, false, true},
		{"a service name with escapes", `{"@timestamp":"2026-11-30T12:00:00Z","event":{"kind":"event","action":"login"},"service":{"name":"trailguard-collectör"}}`, true, true},
	} {
		if got := mayBeCollectors(entry(c.doc, c.withSpans)); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// Spans that belong to no record (Aux of another kind, a position
	// past them): the store decides.
	e := entry(`{"@timestamp":"2026-11-30T12:00:00Z","service":{"name":"orders-api"}}`, true)
	e.AuxPos = 5
	if !mayBeCollectors(e) {
		t.Error("position past the spans: skipped")
	}
	e.Aux = "something else"
	if !mayBeCollectors(e) {
		t.Error("other Aux: skipped")
	}
}

// TestBanFloodFromOneNetwork: an attacker holding an IPv6 /48 brute-forces
// from more of its /64s than decisions.max_active allows. Its /64s' bans
// are widened into a ban of the /48, so the table never fills: its next /64
// is blocked before it tries anything, and an unrelated brute-forcer after
// the flood is still banned. Before, each /64 was a ban of its own, those
// past max_active were refused, and both walked in.
func TestBanFloodFromOneNetwork(t *testing.T) {
	t.Parallel()
	const maxActive = 40
	ts := startServer(t, t.TempDir(), func(c *Config) {
		c.Detection.Disabled = false
		c.Decisions.MaxActive = maxActive
	})
	bouncer := ts.token(t, "nginx-bouncer", access.RoleBouncer)
	var logins bytes.Buffer
	for h := range maxActive + 20 {
		logins.Write(failedLogins(10, fmt.Sprintf("2001:db8:77:%x::1", h), "root").Bytes())
	}
	if code, body := ts.do(t, "POST", "/v1/events", ts.ingest, &logins); code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	// An unrelated brute-forcer after the flood.
	if code, body := ts.do(t, "POST", "/v1/events", ts.ingest, failedLogins(12, "198.51.100.7", "alice")); code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	blocked := func(addr string) bool {
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, body := ts.do(t, "GET", "/v1/decisions?ip="+addr, "", nil, "X-Api-Key", bouncer)
			if code == 200 && strings.TrimSpace(string(body)) != "null" {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Detection takes the records in order: once the unrelated one is
	// decided, so is the flood.
	if !blocked("198.51.100.7") {
		t.Errorf("the unrelated brute-forcer after the flood is not blocked")
	}
	for _, a := range []string{"2001:db8:77:0::1", "2001:db8:77:27::1", "2001:db8:77:3b::1", "2001:db8:77:ffff::5"} {
		if !blocked(a) {
			t.Errorf("%s of the flood's /48 is not blocked", a)
		}
	}
	if got := ts.stream(t, bouncer, true).New; len(got) > 3 {
		t.Errorf("%d decisions in force, want the /48's, the unrelated one's and maybe one /64 decided meanwhile", len(got))
	}
	_, body := ts.do(t, "GET", "/metrics", ts.read, nil)
	if !strings.Contains(string(body), "trailguard_decisions_refused_total 0\n") {
		t.Errorf("decisions refused (trailguard_decisions_refused_total not 0)")
	}
}
