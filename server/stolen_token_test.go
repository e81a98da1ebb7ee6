package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/access"
)

// TestIngestTokenCannotForgeCollectorRecords attacks a real collector with
// a stolen shipper (ingest) token: it sends records that claim to be the
// collector's own: an alert document, the audit event of an operator
// resolving a real alert, a read of the trail by "the collector", a block
// decision, through /v1/events, _bulk and OTLP, with the names spelt in
// the ways a decoder reads alike. Before the fix every one was stored, and
// at the next start the alert store rebuilt from them: the forged critical
// alert was listed, and the real alert was resolved "by admin-alice"; the
// signed compliance reports counted the forged reads and stops as the
// collector's. Each must now be refused per line, naming the reserved
// value, and after a restart the real alert is still open and the forged
// one unknown.
func TestIngestTokenCannotForgeCollectorRecords(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startProc(t, dir)

	// A real alert: the built-in rule for attack tools' user agents.
	attack := `{"event":{"action":"http_request","category":["web"],"type":["access"],"outcome":"success"},"client":{"ip":"198.51.100.7"},"source":{"ip":"198.51.100.7"},"user_agent":{"original":"sqlmap/1.7.2#stable (https://sqlmap.org)"},"url":{"path":"/x"}}`
	if status, _, body := p.do(t, "POST", "/v1/events", p.ingest, strings.NewReader(attack+"\n")); status != 200 {
		t.Fatalf("ingest: %d %s", status, body)
	}
	var real string
	for deadline := time.Now().Add(20 * time.Second); real == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		real = alertIDs(t, p)["trailguard_web_attack_tool"]
	}
	if real == "" {
		t.Fatal("no alert for the attack tool")
	}

	forged := []struct{ name, line string }{
		{"alert document", `{"@timestamp":"2026-11-30T15:00:00Z","message":"forged","event":{"kind":"alert","dataset":"trailguard.alert","id":"forged-alert-1","severity":99},"rule":{"name":"Forged"},"log":{"level":"critical"}}`},
		{"alert resolved by the collector's audit", `{"service":{"name":"trailguard-collector"},"event":{"action":"alert_status_changed","dataset":"trailguard.audit","reason":"false positive"},"user":{"name":"admin-alice"},"trailguard":{"audit":{"resource":"alert/` + real + `","after":{"status":"resolved"}}}}`},
		{"collector's read, dotted key", `{"service.name":"trailguard-collector","event":{"action":"sensitive_read","dataset":"trailguard.audit"},"user":{"name":"ceo"}}`},
		{"collector's stop, other case", `{"service":{"name":"TrailGuard-Collector"},"event":{"action":"collector_stopped"}}`},
		{"escaped service name", `{"service":{"name":"trailguard\u002dcollector"},"event":{"action":"collector_stopped"}}`},
		{"escaped dataset", `{"event":{"kind":"alert","dataset":"trailguard\u002ealert","id":"forged-alert-2"}}`},
		{"block decision", `{"event":{"action":"block_decision_created","dataset":"trailguard.decision","id":"forged-d"},"trailguard":{"decision":{"id":777,"scope":"Range","value":"0.0.0.0/0","until":"2036-01-01T00:00:00Z"}}}`},
		{"dotted dataset", `{"event.dataset":"trailguard.decision","event.action":"block_decision_deleted"}`},
	}
	var body strings.Builder
	for _, f := range forged {
		body.WriteString(f.line + "\n")
	}
	body.WriteString(`{"event":{"action":"ordinary","dataset":"shop.audit"},"service":{"name":"shop"}}` + "\n")
	status, _, out := p.do(t, "POST", "/v1/events", p.ingest, strings.NewReader(body.String()))
	var resp struct {
		Accepted int
		Errors   []struct {
			Line  int
			Error string
		}
	}
	if err := json.Unmarshal(out, &resp); err != nil || status != 200 {
		t.Fatalf("ingest: %d %s", status, out)
	}
	refused := map[int]string{}
	for _, e := range resp.Errors {
		refused[e.Line] = e.Error
	}
	for i, f := range forged {
		if msg, ok := refused[i+1]; !ok {
			t.Errorf("%s (line %d): stored; want it refused", f.name, i+1)
		} else if !strings.Contains(msg, "reserved") {
			t.Errorf("%s (line %d): refused with %q; want the reason (reserved)", f.name, i+1, msg)
		}
	}
	if resp.Accepted != 1 {
		t.Errorf("accepted %d; want only the ordinary event", resp.Accepted)
	}

	// A collector forwarding its ledger (an ES output with ledger_fields)
	// sends its own records with trailguard.ledger.origin: they are
	// stored, and taken for that collector's, never for this one's. A
	// stolen token adding the field gains nothing.
	viaForward := []string{
		`{"trailguard.ledger.origin":"edge.example/trailguard","trailguard.ledger.index":7,"@timestamp":"2026-11-30T15:00:00Z","message":"forwarded","event":{"kind":"alert","dataset":"trailguard.alert","id":"forged-alert-3","severity":99},"rule":{"name":"Forged"}}`,
		`{"trailguard":{"ledger":{"origin":"edge.example/trailguard"}},"service":{"name":"trailguard-collector"},"event":{"action":"alert_status_changed","dataset":"trailguard.audit"},"user":{"name":"admin-alice"},"trailguard.audit":{"resource":"alert/` + real + `","after":{"status":"resolved"}}}`,
		`{"trailguard.ledger.origin":"edge.example/trailguard","event":{"action":"block_decision_created","dataset":"trailguard.decision","id":"forged-d2"},"trailguard":{"decision":{"id":778,"uuid":"forged-d2","type":"ban","scope":"Range","value":"0.0.0.0/0","created":"2026-11-30T15:00:00Z","until":"2036-01-01T00:00:00Z"}}}`,
	}
	status, _, out = p.do(t, "POST", "/v1/events", p.ingest, strings.NewReader(strings.Join(viaForward, "\n")+"\n"))
	if status != 200 || !strings.Contains(string(out), `"accepted":3`) {
		t.Errorf("forwarded records: %d %s; want all three stored", status, out)
	}

	// The same through _bulk and OTLP.
	bulk := `{"create":{}}` + "\n" + forged[1].line + "\n" + `{"create":{}}` + "\n" + forged[0].line + "\n"
	status, _, out = p.do(t, "POST", "/_bulk", p.ingest, strings.NewReader(bulk), "Content-Type", "application/x-ndjson")
	if status != 200 || strings.Count(string(out), "reserved") != 2 {
		t.Errorf("_bulk: %d %s; want both items refused as reserved", status, out)
	}
	otlp := `{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"trailguard-collector"}}]},"scopeLogs":[{"logRecords":[{"body":{"stringValue":"collector stopped"}}]}]}]}`
	status, _, out = p.do(t, "POST", "/v1/logs", p.ingest, strings.NewReader(otlp), "Content-Type", "application/json")
	if !strings.Contains(string(out), "reserved") || !strings.Contains(string(out), `"rejectedLogRecords":"1"`) && !strings.Contains(string(out), `"rejectedLogRecords":1`) {
		t.Errorf("OTLP: %d %s; want the record rejected as reserved", status, out)
	}

	// What the alert store rebuilds at the next start.
	if code, _ := p.stop(t, 20*time.Second); code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, p.output())
	}
	p = startProc(t, dir)
	ids := alertIDs(t, p)
	if _, ok := ids["forged"]; ok {
		t.Errorf("the forged alert is listed after a restart: %v", ids)
	}
	if _, ok := ids["forwarded"]; ok {
		t.Errorf("a forwarded alert is listed as this collector's: %v", ids)
	}
	status, _, out = p.do(t, "GET", "/v1/decisions", p.read, nil)
	if status != 200 || strings.Contains(string(out), "0.0.0.0/0") {
		t.Errorf("decisions after a restart: %d %s; want no forged ban", status, out)
	}
	status, _, out = p.do(t, "GET", "/v1/alerts/"+real, p.read, nil)
	var got struct {
		Alert struct{ Status, UpdatedBy string }
	}
	if json.Unmarshal(out, &got); status != 200 || got.Alert.Status != "open" {
		t.Errorf("the real alert after a restart: %d %s; want it still open", status, out)
	}
}

// alertIDs lists the collector's alerts: rule name (or message, for one
// without a rule) to id.
func alertIDs(t *testing.T, p *proc) map[string]string {
	t.Helper()
	status, _, out := p.do(t, "GET", "/v1/alerts", p.read, nil)
	if status != http.StatusOK {
		t.Fatalf("alerts: %d %s", status, out)
	}
	var list struct {
		Alerts []struct {
			ID       string `json:"id"`
			RuleName string `json:"rule_name"`
			Message  string `json:"message"`
		} `json:"alerts"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("alerts: %v: %s", err, out)
	}
	m := map[string]string{}
	for _, a := range list.Alerts {
		k := a.RuleName
		if k == "" {
			k = a.Message
		}
		m[k] = a.ID
	}
	return m
}

// TestReadTokenConcurrencyBounded: one read token (a stolen one, or a
// script gone wrong) opens live tails until the collector's CPU goes to
// them: each matches every record appended, and nothing bounded how many
// one token could hold. Before the fix all 40 tails were served; now a
// token holds max_reads_per_token (32) reads at once, the others get 429
// with Retry-After, another token still reads, and closing the tails
// gives the slots back.
func TestReadTokenConcurrencyBounded(t *testing.T) {
	t.Parallel()
	p := startProc(t, t.TempDir())
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	var bodies []io.Closer
	defer func() {
		for _, b := range bodies {
			b.Close()
		}
	}()
	statuses := map[int]int{}
	retryAfter := true
	for range 40 {
		req, _ := http.NewRequest("GET", p.url+"/v1/tail?q=event.action:nothing", nil)
		req.Header.Set("Authorization", "Bearer "+p.read)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		statuses[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests {
			retryAfter = retryAfter && resp.Header.Get("Retry-After") != ""
			resp.Body.Close()
			continue
		}
		bodies = append(bodies, resp.Body) // the tail stays open
	}
	if statuses[200] != 32 || statuses[429] != 8 || !retryAfter {
		t.Errorf("40 tails of one token: %v (Retry-After on every 429: %v); want 32 served and 8 answered 429", statuses, retryAfter)
	}
	if status, _, out := p.do(t, "GET", "/v1/events?limit=1", p.admin, nil); status != 200 {
		t.Errorf("another token's search while the first holds its reads: %d %s", status, out)
	}
	if status, _, _ := p.do(t, "GET", "/metrics", p.read, nil); status != 200 {
		t.Errorf("/metrics with the busy token: %d; want it always readable", status)
	}
	for _, b := range bodies {
		b.Close()
	}
	bodies = nil
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, _, out := p.do(t, "GET", "/v1/events?limit=1", p.read, nil)
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the token's slots did not come back after its tails closed: %d %s", status, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRevocationSticks: a token revoked with `trailguard token revoke`
// next to a running collector stays revoked, and a token the command
// creates stays valid, whatever the collector's own API changes in the
// second before it looks at the file again. Before the fix the collector
// wrote its stale copy of the store over the command's change: a token
// created through the API within a second of a revocation brought the
// revoked token back (and lost the one the command had just created).
func TestRevocationSticks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startProc(t, dir)
	if status, _, out := p.do(t, "GET", "/v1/tokens", p.admin, nil); status != 200 {
		t.Fatalf("tokens: %d %s", status, out)
	}
	// What the token command does, from another process's view: open the
	// file, change it, save it.
	cli, err := access.Open(filepath.Join(dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke("analyst"); err != nil {
		t.Fatal(err)
	}
	_, made, err := cli.Create("made-by-cli", access.RoleRead)
	if err != nil {
		t.Fatal(err)
	}
	status, _, out := p.do(t, "POST", "/v1/tokens", p.admin, strings.NewReader(`{"name":"made-by-api","role":"read"}`))
	if status != http.StatusCreated {
		t.Fatalf("create through the API: %d %s", status, out)
	}
	var api struct{ Token string }
	json.Unmarshal(out, &api)
	time.Sleep(1500 * time.Millisecond) // the collector looks at the file again at most a second later
	for _, c := range []struct {
		name, token string
		want        int
	}{{"the revoked token", p.read, 401}, {"the command's new token", made, 200}, {"the API's new token", api.Token, 200}} {
		if status, _, out := p.do(t, "GET", "/v1/checkpoint", c.token, nil); status != c.want {
			t.Errorf("%s: %d %s; want %d", c.name, status, out, c.want)
		}
	}
}

// TestRoleMatrix sends every endpoint of `trailguard serve` with no token
// and with a token of each role, to a real process: a role that may not
// act is refused (401 without a token, 403 with one) and one that may is
// not. The table is the list of endpoints and the role each needs
// (access.Role.Allows: admin may do anything, read also what a bouncer
// does). The web UI's API takes a session cookie only: a token in the
// Authorization header does not open it.
func TestRoleMatrix(t *testing.T) {
	t.Parallel()
	p := startProc(t, t.TempDir(), "--auth-fail-burst=100000")
	status, _, out := p.do(t, "POST", "/v1/tokens", p.admin, strings.NewReader(`{"name":"bouncer-1","role":"bouncer"}`))
	var created struct{ Token string }
	if json.Unmarshal(out, &created); status != http.StatusCreated {
		t.Fatalf("bouncer token: %d %s", status, out)
	}
	tokens := []struct {
		role  access.Role
		token string
	}{{"", ""}, {access.RoleIngest, p.ingest}, {access.RoleRead, p.read}, {access.RoleBouncer, created.Token}, {access.RoleAdmin, p.admin}}
	const none, ui = access.Role(""), access.Role("ui-session")
	endpoints := []struct {
		method, path string
		need         access.Role
		body         string
	}{
		{"GET", "/healthz", none, ""},
		{"GET", "/readyz", none, ""},
		{"GET", "/", none, ""},
		{"HEAD", "/", none, ""},
		{"GET", "/metrics", access.RoleRead, ""},
		{"POST", "/v1/events", access.RoleIngest, "{}\n"},
		{"POST", "/v1/logs", access.RoleIngest, "{}"},
		{"POST", "/_bulk", access.RoleIngest, "{\"create\":{}}\n{}\n"},
		{"PUT", "/_bulk", access.RoleIngest, "{\"create\":{}}\n{}\n"},
		{"POST", "/logs-x/_bulk", access.RoleIngest, "{\"create\":{}}\n{}\n"},
		{"GET", "/_license", access.RoleIngest, ""},
		{"GET", "/_xpack", access.RoleIngest, ""},
		{"GET", "/_cluster/health", access.RoleIngest, ""},
		{"GET", "/_cluster/health/logs-x", access.RoleIngest, ""},
		{"GET", "/_cat/health", access.RoleIngest, ""},
		{"HEAD", "/_cat/health", access.RoleIngest, ""},
		{"GET", "/_nodes", access.RoleIngest, ""},
		{"GET", "/_nodes/_local/http", access.RoleIngest, ""},
		{"GET", "/_index_template", access.RoleIngest, ""},
		{"GET", "/_index_template/x", access.RoleIngest, ""},
		{"PUT", "/_index_template/x", access.RoleIngest, "{}"},
		{"PUT", "/_ilm/policy/x", access.RoleIngest, "{}"},
		{"GET", "/_ilm/status", access.RoleIngest, ""},
		{"GET", "/v1/events", access.RoleRead, ""},
		{"GET", "/v1/events/no-such-id", access.RoleRead, ""},
		{"GET", "/v1/stats", access.RoleRead, ""},
		{"GET", "/v1/checkpoint", access.RoleRead, ""},
		{"GET", "/v1/ledger/checkpoint", access.RoleRead, ""},
		{"GET", "/v1/outputs", access.RoleRead, ""},
		{"GET", "/v1/alerts", access.RoleRead, ""},
		{"GET", "/v1/alerts/no-such-alert", access.RoleRead, ""},
		{"PATCH", "/v1/alerts/no-such-alert", access.RoleAdmin, `{"status":"resolved"}`},
		{"GET", "/v1/rules", access.RoleRead, ""},
		{"GET", "/v1/decisions/stream?startup=true", access.RoleBouncer, ""},
		{"GET", "/v1/decisions", access.RoleBouncer, ""},
		{"POST", "/v1/decisions", access.RoleAdmin, `{"scope":"Ip"}`},
		{"DELETE", "/v1/decisions/999999", access.RoleAdmin, ""},
		{"GET", "/v1/reports", access.RoleRead, ""},
		{"GET", "/v1/overview", access.RoleRead, ""},
		{"GET", "/v1/integrity", access.RoleRead, ""},
		{"POST", "/v1/integrity/verify", access.RoleAdmin, ""},
		{"GET", "/v1/tokens", access.RoleAdmin, ""},
		{"POST", "/v1/tokens", access.RoleAdmin, `{"name":"bad name!","role":"read"}`},
		{"DELETE", "/v1/tokens/no-such-token", access.RoleAdmin, ""},
		{"GET", "/ui/api/v1/events", ui, ""},
		{"POST", "/ui/api/v1/decisions", ui, `{"scope":"Ip"}`},
	}
	for _, e := range endpoints {
		for _, tk := range tokens {
			status, _, out := p.do(t, e.method, e.path, tk.token, strings.NewReader(e.body))
			allowed := e.need == none || e.need != ui && tk.role != "" && tk.role.Allows(e.need)
			refused := status == http.StatusUnauthorized || status == http.StatusForbidden
			switch {
			case allowed && refused:
				t.Errorf("%s %s as %q: %d %s; the role may do it", e.method, e.path, tk.role, status, out)
			case !allowed && !refused:
				t.Errorf("%s %s as %q: %d %.200s; want it refused (needs %s)", e.method, e.path, tk.role, status, out, e.need)
			case !allowed && tk.role != "" && e.need != ui && status != http.StatusForbidden:
				t.Errorf("%s %s as %q: %d; want 403 for a valid token of another role", e.method, e.path, tk.role, status)
			}
		}
	}
	// A live tail, as each role (its answer streams: the status is enough).
	for _, tk := range tokens {
		req, _ := http.NewRequest("GET", p.url+"/v1/tail", nil)
		if tk.token != "" {
			req.Header.Set("Authorization", "Bearer "+tk.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if allowed := tk.role != "" && tk.role.Allows(access.RoleRead); allowed != (resp.StatusCode == 200) {
			t.Errorf("GET /v1/tail as %q: %d", tk.role, resp.StatusCode)
		}
	}
}

// TestReadOnRecordBeforeAnswer kills a real collector with SIGKILL as
// soon as a search is answered, and looks for the search's sensitive_read
// in the ledger: a read of the trail is on record before it is answered
// (PCI DSS 10.2.1.3), so a crash then cannot leave a reader without a
// trace. Before the fix the event was only queued when the answer left:
// 4 of 8 such reads were never recorded.
func TestReadOnRecordBeforeAnswer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var lost []int
	for round := range 8 {
		p := startProc(t, dir)
		probe := fmt.Sprintf("probe-%d", round)
		status, _, out := p.do(t, "GET", "/v1/events?q=user.name:"+probe, p.read, nil)
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		if status != 200 {
			t.Fatalf("search: %d %s", status, out)
		}
		found := false
		for _, rec := range readLedger(t, dir) {
			found = found || bytes.Contains(rec, []byte(`"sensitive_read"`)) && bytes.Contains(rec, []byte(probe))
		}
		if !found {
			lost = append(lost, round)
		}
	}
	if len(lost) > 0 {
		t.Errorf("searches answered and then lost to a crash, unrecorded: rounds %v of 8", lost)
	}
}

// TestStolenBouncerKeyCannotHideBans: a gateway polls the decision stream
// with its bouncer key; someone else polls with the same key (a stolen
// one; the same would happen to a second gateway sharing it), from
// another address but saying it is the same program. Before the fix the
// stream's cursor belonged to the token: the other poller took every new
// ban before the gateway asked, the gateway heard "nothing new" and never
// blocked the attacker. Now each client has its own cursor, and the
// number the collector remembers is bounded.
func TestStolenBouncerKeyCannotHideBans(t *testing.T) {
	t.Parallel()
	p := startProc(t, t.TempDir())
	status, _, out := p.do(t, "POST", "/v1/tokens", p.admin, strings.NewReader(`{"name":"gateway-1","role":"bouncer"}`))
	var bouncer struct{ Token string }
	if json.Unmarshal(out, &bouncer); status != http.StatusCreated {
		t.Fatalf("bouncer token: %d %s", status, out)
	}
	from := func(addr string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}}
		return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	gateway, thief := from("127.0.0.1"), from("127.0.0.2")
	poll := func(c *http.Client, startup bool) string {
		t.Helper()
		u := p.url + "/v1/decisions/stream"
		if startup {
			u += "?startup=true"
		}
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("X-Api-Key", bouncer.Token)
		req.Header.Set("User-Agent", "trailguard-proxy")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("stream: %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	poll(gateway, true)
	poll(thief, true)
	status, _, out = p.do(t, "POST", "/v1/decisions", p.admin, strings.NewReader(`{"scope":"Ip","value":"203.0.113.9","duration":"1h","reason":"test"}`))
	if status != http.StatusCreated {
		t.Fatalf("ban: %d %s", status, out)
	}
	if got := poll(thief, false); !strings.Contains(got, "203.0.113.9") {
		t.Fatalf("the other poller's stream: %s", got)
	}
	if got := poll(gateway, false); !strings.Contains(got, "203.0.113.9") {
		t.Errorf("the gateway's next poll: %s; want the new ban (another client polling with its key took it)", got)
	}
}

// TestPastedTokenNotKept: an operator pastes a token where it does not
// belong: as an event id, in a search, as a User-Agent, in a refused
// request. The collector's own records of those requests must not keep it:
// the ledger keeps what it holds for good, and every read token could read
// it (a pasted admin token is an escalation for any reader). Before the
// fix the secret was stored as sent in url.path, the sensitive_read's
// query and user_agent.original.
func TestPastedTokenNotKept(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startProc(t, dir)
	secret := p.admin[strings.LastIndexByte(p.admin, '_')+1:]
	p.do(t, "GET", "/v1/events/"+p.admin, p.read, nil)
	p.do(t, "GET", "/v1/events?q=message:"+p.admin, p.read, nil)
	p.do(t, "GET", "/v1/stats?top=user.name&q=user.name:"+p.admin, p.read, nil)
	p.do(t, "GET", "/healthz", "", nil, "User-Agent", p.admin)
	p.do(t, "GET", "/v1/events/"+p.admin, "", nil)
	p.settle(t)
	if code, _ := p.stop(t, 20*time.Second); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}
	kept := 0
	for _, rec := range readLedger(t, dir) {
		if bytes.Contains(rec, []byte(secret)) {
			kept++
			t.Logf("kept: %.300s", rec)
		}
	}
	if kept > 0 {
		t.Errorf("%d records of the collector hold the pasted token's secret", kept)
	}
}

// TestUserNameBanStaysAUserName: docs/detection.md offers rules that block
// user.name (lock an account under attack). The attacker chooses the user
// name at the login form: before the fix a name that reads as a network
// or an address became a Range or Ip ban ("::/0" banned every IPv6
// client at every gateway; "203.0.113.77" the operator's own address).
// It must stay a Username ban, which address bouncers never see.
func TestUserNameBanStaysAUserName(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "rules"), 0o700)
	os.WriteFile(filepath.Join(dir, "rules", "lock.yml"), []byte(`title: Lock an account at its first failed login
id: 5f0c2b7e-8c1e-4d43-9d55-3f3a4b1f0a01
name: test_lock_account
logsource:
    category: authentication
detection:
    selection:
        event.outcome: failure
    condition: selection
response:
    block: user.name
    duration: 1h
level: high
`), 0o600)
	p := startProc(t, dir)
	var body strings.Builder
	for i, name := range []string{"::/0", "0.0.0.0/1", "203.0.113.77"} {
		fmt.Fprintf(&body, `{"event":{"action":"authn_login_fail","category":["authentication"],"outcome":"failure"},"user":{"name":%q},"client":{"ip":"198.51.100.%d"}}`+"\n", name, i+1)
	}
	if status, _, out := p.do(t, "POST", "/v1/events", p.ingest, strings.NewReader(body.String())); status != 200 {
		t.Fatalf("ingest: %d %s", status, out)
	}
	var ds []struct{ Scope, Value string }
	for deadline := time.Now().Add(20 * time.Second); len(ds) < 3 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_, _, out := p.do(t, "GET", "/v1/decisions", p.read, nil)
		ds = nil
		json.Unmarshal(out, &ds)
	}
	if len(ds) != 3 {
		t.Fatalf("decisions: %+v; want three", ds)
	}
	for _, d := range ds {
		if d.Scope != "Username" {
			t.Errorf("user name %q banned as %s %s; want a Username ban", d.Value, d.Scope, d.Value)
		}
	}
}
