package server

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
)

// testServer is a collector serving real HTTP on a loopback port.
type testServer struct {
	*Server
	url                 string
	ingest, read, admin string
	cancel              context.CancelFunc
	done                chan error
	dir                 string
}

func startServer(t *testing.T, dir string, mod func(*Config)) *testServer {
	t.Helper()
	return startServerWith(t, dir, mod, nil)
}

// startServerWith is startServer with tweak applied to the Server before
// it serves (internal knobs such as chunkEvents).
func startServerWith(t *testing.T, dir string, mod func(*Config), tweak func(*Server)) *testServer {
	t.Helper()
	return startServerOn(t, dir, nil, mod, tweak)
}

// startServerOn is startServerWith serving on ln (a testenv.Port's, for a
// test whose collector is down first), or on a new port if ln is nil.
func startServerOn(t *testing.T, dir string, ln net.Listener, mod func(*Config), tweak func(*Server)) *testServer {
	t.Helper()
	cfg := Defaults()
	cfg.DataDir = dir
	cfg.Origin = "test.example/trailguard"
	cfg.CheckpointInterval = 100 * time.Millisecond
	// Alerts and decisions are records too; tests that count records turn
	// detection on when they want it (detection_test.go).
	cfg.Detection.Disabled = true
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	if tweak != nil {
		tweak(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: srv, url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1), dir: dir}
	go func() { ts.done <- srv.Serve(ctx, ln) }()
	mk := func(name string, role access.Role) string {
		for _, tok := range srv.Tokens().List() {
			if tok.Name == name && tok.Revoked == nil {
				srv.Tokens().Revoke(name)
			}
		}
		_, secret, err := srv.Tokens().Create(name, role)
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	ts.ingest, ts.read, ts.admin = mk("shipper", access.RoleIngest), mk("analyst", access.RoleRead), mk("ops", access.RoleAdmin)
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

func (ts *testServer) stop(t *testing.T) {
	if ts.cancel == nil {
		return
	}
	ts.cancel()
	ts.cancel = nil
	if err := <-ts.done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func (ts *testServer) do(t *testing.T, method, path, token string, body io.Reader, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// waitIndexed waits until everything appended so far is indexed.
func (ts *testServer) waitIndexed(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if ts.index.Indexed() >= ts.ledger.Size() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("index lags: %d of %d", ts.index.Indexed(), ts.ledger.Size())
}

// waitAudited waits until every self-audit event queued so far (the
// access events of the requests answered, token failures, reads) is in
// the ledger.
func (ts *testServer) waitAudited(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := ts.audit.Stats()
		if st.Queued == 0 && st.Written+st.Dropped+st.Lost >= st.Enqueued {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("self-audit events not written in 30 s: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitCheckpoint waits until a signed checkpoint covers the first size
// records.
func (ts *testServer) waitCheckpoint(t *testing.T, size uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, cp := ts.ledger.LatestCheckpoint(); cp.Size >= size {
			return
		}
		if time.Now().After(deadline) {
			_, cp := ts.ledger.LatestCheckpoint()
			t.Fatalf("no checkpoint covers %d records in 30 s (latest: %d)", size, cp.Size)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ev(action, outcome, user, ip string, status int) string {
	e := &event.Event{Timestamp: time.Now().UTC(), Category: []string{event.CategoryAuthentication}, Action: action,
		Outcome: outcome, UserName: user, SourceIP: ip, ClientIP: ip, StatusCode: status, Path: "/login"}
	return string(e.AppendJSON(nil))
}

func TestIngestNDJSON(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	lines := []string{
		ev("authn_login_fail", "failure", "bob", "203.0.113.9", 401),
		"",
		`not json`,
		`{"event":{"outcome":"maybe"}}`,
		`{"http":{"response":{"status_code":"401"}}}`,
		`{"message":"card 4111 1111 1111 1111 and password=hunter2x","url":{"query":"token=abcdef123456&x=1"}}`,
		strings.Repeat("x", 300<<10),
		ev("authn_login_success", "success", "alice", "198.51.100.1", 200),
	}
	status, body := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(strings.Join(lines, "\n")))
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	var resp ingestResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Accepted != 3 || resp.Rejected != 4 {
		t.Fatalf("accepted %d rejected %d: %s", resp.Accepted, resp.Rejected, body)
	}
	wantErr := map[int]string{3: "invalid JSON", 4: `event.outcome "maybe"`, 5: "http.response.status_code", 7: "exceeds"}
	for _, e := range resp.Errors {
		if !strings.Contains(e.Error, wantErr[e.Line]) || wantErr[e.Line] == "" {
			t.Errorf("line %d: error %q, want it to mention %q", e.Line, e.Error, wantErr[e.Line])
		}
	}
	// The accepted events are durable in the ledger, scrubbed again, with
	// event.ingested stamped.
	first := *resp.FirstIndex
	var all bytes.Buffer
	for i := first; i < first+3; i++ {
		e, err := ts.ledger.Read(i)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(e.Data)
		got, err := event.Decode(e.Data)
		if err != nil {
			t.Fatal(err)
		}
		if got.Ingested.IsZero() || got.ID == "" || got.Timestamp.IsZero() {
			t.Errorf("record %d lacks ingested/id/timestamp: %s", i, e.Data)
		}
		if err := event.Validate(e.Data); err != nil {
			t.Errorf("record %d not ECS: %v", i, err)
		}
	}
	for _, secret := range []string{"4111 1111 1111", "hunter2x", "abcdef123456"} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("secret %q stored: %s", secret, all.String())
		}
	}
}

func TestIngestLimits(t *testing.T) {
	ts := startServer(t, t.TempDir(), func(c *Config) { c.MaxRequestBytes = 64 << 10; c.MaxLineBytes = 4096 })
	big := strings.Repeat(ev("log", "success", "u", "192.0.2.1", 200)+"\n", 400)
	status, body := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(big))
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "exceeds") {
		t.Fatalf("oversized request: %d %s", status, body)
	}
	// The same limit holds after decompression: a gzip bomb is refused.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(big))
	zw.Close()
	status, body = ts.do(t, "POST", "/v1/events", ts.ingest, &gz, "Content-Encoding", "gzip")
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized gzip body: %d %s", status, body)
	}
	// A small gzip body is accepted.
	gz.Reset()
	zw = gzip.NewWriter(&gz)
	zw.Write([]byte(ev("log", "success", "u", "192.0.2.1", 200)))
	zw.Close()
	status, body = ts.do(t, "POST", "/v1/events", ts.ingest, &gz, "Content-Encoding", "gzip")
	if status != 200 || !strings.Contains(string(body), `"accepted":1`) {
		t.Fatalf("gzip body: %d %s", status, body)
	}
	status, _ = ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader("\n\n"))
	if status != 400 {
		t.Fatalf("empty body: %d", status)
	}
}

func TestBulk(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	body := strings.Join([]string{
		`{"create":{"_index":"logs-app","_id":"abc"}}`,
		ev("authn_login_fail", "failure", "eve", "203.0.113.7", 401),
		`{"index":{}}`,
		`{"message":"plain","@timestamp":"2026-11-25T10:00:00Z"}`,
		`{"delete":{"_index":"logs-app","_id":"abc"}}`,
		`{"update":{"_id":"abc"}}`,
		`{"doc":{"message":"rewritten"}}`,
		`{"create":{}}`,
		`{"event":{"kind":"nonsense"}}`,
		`{"bogus":{}}`,
		`{"create":{}}`,
		ev("authz_fail", "failure", "eve", "203.0.113.7", 403),
	}, "\n") + "\n"
	status, out := ts.do(t, "POST", "/logs-default/_bulk", ts.ingest, strings.NewReader(body), "Content-Type", "application/x-ndjson")
	if status != 200 {
		t.Fatalf("status %d: %s", status, out)
	}
	var resp struct {
		Errors bool
		Items  []map[string]bulkAnswerItem
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		op     string
		status int
		index  string
	}{
		{"create", 201, "logs-app"}, {"index", 201, "logs-default"}, {"delete", 405, "logs-app"},
		{"update", 405, "logs-default"}, {"create", 400, "logs-default"}, {"index", 400, "logs-default"}, {"create", 201, "logs-default"},
	}
	if !resp.Errors || len(resp.Items) != len(want) {
		t.Fatalf("items: %s", out)
	}
	for i, w := range want {
		it, ok := resp.Items[i][w.op]
		if !ok || it.Status != w.status || it.Index != w.index {
			t.Errorf("item %d: %+v, want %s %d in %s", i, resp.Items[i], w.op, w.status, w.index)
		}
		if w.status == 201 && (it.SeqNo == nil || it.Result != "created") {
			t.Errorf("item %d: no seq_no/result: %+v", i, it)
		}
	}
	if id := resp.Items[0]["create"].ID; id != "abc" {
		t.Errorf("client _id not echoed: %q", id)
	}
	status, out = ts.do(t, "GET", "/", "", nil)
	if status != 200 || !strings.Contains(string(out), `"number":"8.`) {
		t.Fatalf("ES info: %d %s", status, out)
	}
}

// bulkAnswerItem is one item of a _bulk answer, as clients decode it.
type bulkAnswerItem struct {
	Index  string  `json:"_index"`
	ID     string  `json:"_id"`
	Result string  `json:"result"`
	Status int     `json:"status"`
	SeqNo  *uint64 `json:"_seq_no"`
	Error  *struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"error"`
}

// auditEvents returns the collector's own audit events from the ledger.
func auditEvents(t *testing.T, ts *testServer) []*event.Event {
	t.Helper()
	var out []*event.Event
	for e, err := range ts.ledger.Entries(0) {
		if err != nil {
			t.Fatal(err)
		}
		ev, err := event.Decode(e.Data)
		if err != nil {
			t.Fatal(err)
		}
		if ev.ServiceName == "trailguard-collector" {
			out = append(out, ev)
		}
	}
	return out
}

func TestAccessControl(t *testing.T) {
	ts := startServer(t, t.TempDir(), func(c *Config) { c.AuthFailBurst = 5 })
	tests := []struct {
		name, method, path, token string
		status                    int
	}{
		{"no token", "GET", "/v1/events", "", 401},
		{"malformed token", "GET", "/v1/events", "hello", 401},
		{"ingest cannot read", "GET", "/v1/events", ts.ingest, 403},
		{"read cannot ingest", "POST", "/v1/events", ts.read, 403},
		{"read cannot admin", "GET", "/v1/tokens", ts.read, 403},
		{"read reads", "GET", "/v1/events", ts.read, 200},
		{"admin reads", "GET", "/v1/stats", ts.admin, 200},
		{"admin lists tokens", "GET", "/v1/tokens", ts.admin, 200},
		{"metrics need read", "GET", "/metrics", "", 401},
		{"metrics with read", "GET", "/metrics", ts.read, 200},
		{"health is open", "GET", "/healthz", "", 200},
	}
	for _, tt := range tests {
		status, body := ts.do(t, tt.method, tt.path, tt.token, strings.NewReader(""))
		if status != tt.status {
			t.Errorf("%s: %s %s = %d, want %d (%s)", tt.name, tt.method, tt.path, status, tt.status, body)
		}
	}
	// A wrong token is told what to check.
	if status, body := ts.do(t, "GET", "/v1/events", ts.read+"x", nil); status != 401 || !strings.Contains(string(body), "trailguard token create with this collector") {
		t.Errorf("wrong token: %d %s", status, body)
	}
	// A revoked token stops working at once.
	status, body := ts.do(t, "POST", "/v1/tokens", ts.admin, strings.NewReader(`{"name":"temp","role":"read"}`))
	if status != 201 {
		t.Fatalf("create token: %d %s", status, body)
	}
	var created struct{ Token string }
	json.Unmarshal(body, &created)
	if status, _ := ts.do(t, "GET", "/v1/events", created.Token, nil); status != 200 {
		t.Fatalf("new token: %d", status)
	}
	if status, _ := ts.do(t, "DELETE", "/v1/tokens/temp", ts.admin, nil); status != 200 {
		t.Fatalf("revoke: %d", status)
	}
	if status, body := ts.do(t, "GET", "/v1/events", created.Token, nil); status != 401 || !strings.Contains(string(body), "revoked") {
		t.Fatalf("revoked token: %d %s", status, body)
	}
	// Failures from one address are rate-limited.
	var limited bool
	for range 10 {
		if status, _ := ts.do(t, "GET", "/v1/events", "tg_aaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", nil); status == 429 {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("repeated token failures were not rate-limited")
	}
	// A valid token from the same address is still accepted: only the
	// failures are limited (issue 7, item 8).
	if status, body := ts.do(t, "GET", "/v1/events", ts.read, nil); status != 200 {
		t.Fatalf("limited address with a valid token: %d %s", status, body)
	}
	ts.waitAudited(t)
	counts := map[string]int{}
	for _, e := range auditEvents(t, ts) {
		counts[e.Action+" "+e.Outcome]++
		if e.Action == event.ActionSensitiveRead && e.UserName == "" {
			t.Errorf("read recorded without the reader: %+v", e)
		}
	}
	for _, k := range []string{"authn_login_fail failure", "authz_fail failure", "sensitive_read success",
		"excess_rate_limit_exceeded failure", "authn_token_created success", "authn_token_revoked success", "sys_startup success"} {
		if counts[k] == 0 {
			t.Errorf("no %q event recorded (have %v)", k, counts)
		}
	}
	if counts["excess_rate_limit_exceeded failure"] > 1 {
		t.Errorf("rate-limit events not throttled: %d", counts["excess_rate_limit_exceeded failure"])
	}
}

func TestQueryAPI(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	var lines []string
	for i := range 30 {
		lines = append(lines, ev("authn_login_fail", "failure", fmt.Sprintf("user%02d", i%3), "203.0.113.66", 401))
	}
	for i := range 5 {
		lines = append(lines, ev("authn_login_success", "success", "alice", fmt.Sprintf("10.0.0.%d", i+1), 200))
	}
	if status, body := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(strings.Join(lines, "\n"))); status != 200 {
		t.Fatalf("ingest: %d %s", status, body)
	}
	ts.waitIndexed(t)

	search := func(q string, extra string) (int, []json.RawMessage, string) {
		status, body := ts.do(t, "GET", "/v1/events?q="+urlQuery(q)+extra, ts.read, nil)
		var out struct {
			Hits []struct {
				Event json.RawMessage
			}
			Next string
		}
		json.Unmarshal(body, &out)
		var evs []json.RawMessage
		for _, h := range out.Hits {
			evs = append(evs, h.Event)
		}
		return status, evs, out.Next
	}
	tests := []struct {
		q    string
		want int
	}{
		{"event.outcome:failure and http.response.status_code >= 400", 30},
		{"user.name:user01 and event.outcome:failure", 10},
		{"event.action:authn_login_success and not source.ip:10.0.0.0/30", 2},
		{"source.ip:10.0.0.0/8", 5},
		{"url.path:/log*", 35},
		{"user.name:(user00 or alice)", 15},
	}
	for _, tt := range tests {
		status, evs, _ := search(tt.q, "&limit=1000")
		if status != 200 || len(evs) != tt.want {
			t.Errorf("%q: status %d, %d hits, want %d", tt.q, status, len(evs), tt.want)
		}
	}
	// Cursor pagination visits every event once.
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; pages < 20; pages++ {
		status, evs, next := search("event.outcome:failure", "&limit=7&cursor="+cursor)
		if status != 200 {
			t.Fatalf("page: %d", status)
		}
		for _, e := range evs {
			d, _ := event.Decode(e)
			if seen[d.ID] {
				t.Fatalf("event %s on two pages", d.ID)
			}
			seen[d.ID] = true
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != 30 {
		t.Fatalf("pagination saw %d events, want 30", len(seen))
	}
	// A bad query is a 400 naming the position.
	status, body := ts.do(t, "GET", "/v1/events?q="+urlQuery("user.name:alice and and"), ts.read, nil)
	if status != 400 || !strings.Contains(string(body), `"position":`) {
		t.Fatalf("bad query: %d %s", status, body)
	}
	// Stats: buckets and top-N.
	status, body = ts.do(t, "GET", "/v1/stats?q="+urlQuery("http.response.status_code:401")+"&from=1h&interval=1m", ts.read, nil)
	var st struct{ Buckets []struct{ Count int64 } }
	json.Unmarshal(body, &st)
	var total int64
	for _, b := range st.Buckets {
		total += b.Count
	}
	if status != 200 || total != 30 {
		t.Fatalf("stats: %d, total %d: %s", status, total, body)
	}
	status, body = ts.do(t, "GET", "/v1/stats?top=user.name&n=2&q="+urlQuery("event.outcome:failure"), ts.read, nil)
	if status != 200 || !strings.Contains(string(body), `"count":10`) {
		t.Fatalf("top: %d %s", status, body)
	}
}

func urlQuery(q string) string {
	return strings.NewReplacer(" ", "%20", ":", "%3A", "/", "%2F", ">", "%3E", "=", "%3D", "(", "%28", ")", "%29", "*", "%2A").Replace(q)
}

// TestEventProof fetches one event with its inclusion proof and checks the
// proof with golang.org/x/mod/sumdb/tlog and note directly.
func TestEventProof(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	e := &event.Event{Timestamp: time.Now().UTC(), Action: event.ActionUserRoleChange, ID: "proof-me-1", UserName: "alice"}
	if status, body := ts.do(t, "POST", "/v1/events", ts.ingest, bytes.NewReader(e.AppendJSON(nil))); status != 200 {
		t.Fatalf("ingest: %d %s", status, body)
	}
	ts.waitIndexed(t)
	ts.waitCheckpoint(t, ts.ledger.Size())
	status, body := ts.do(t, "GET", "/v1/events/proof-me-1", ts.read, nil)
	if status != 200 {
		t.Fatalf("get event: %d %s", status, body)
	}
	var out struct {
		Index uint64                  `json:"ledger_index"`
		Event json.RawMessage         `json:"event"`
		Proof *ledger.InclusionBundle `json:"inclusion_proof"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Proof == nil {
		t.Fatalf("no proof: %v %s", err, body)
	}
	vkey, _ := os.ReadFile(ts.VerifierKeyPath)
	v, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open([]byte(out.Proof.Checkpoint), note.VerifierList(v))
	if err != nil {
		t.Fatalf("checkpoint signature: %v", err)
	}
	var size uint64
	var root tlog.Hash
	lines := strings.Split(n.Text, "\n")
	fmt.Sscan(lines[1], &size)
	rb, _ := decodeB64(lines[2])
	copy(root[:], rb)
	proof := make(tlog.RecordProof, len(out.Proof.Proof))
	for i, h := range out.Proof.Proof {
		proof[i] = h
	}
	if err := tlog.CheckRecord(proof, int64(size), root, int64(out.Index), tlog.RecordHash(out.Event)); err != nil {
		t.Fatalf("inclusion proof does not verify: %v", err)
	}
	if status, _ := ts.do(t, "GET", "/v1/events/nope", ts.read, nil); status != 404 {
		t.Fatalf("unknown id: %d", status)
	}
}

func TestTail(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	req, _ := http.NewRequest("GET", ts.url+"/v1/tail?q="+urlQuery("event.outcome:failure"), nil)
	req.Header.Set("Authorization", "Bearer "+ts.read)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	// The ingest runs beside the tail; its outcome comes back on a channel
	// (a goroutine must not call t.Fatal).
	posted := make(chan error, 1)
	go func() {
		body := ev("authn_login_success", "success", "ok-user", "192.0.2.1", 200) + "\n" + ev("authn_login_fail", "failure", "tail-me", "192.0.2.2", 401)
		req, _ := http.NewRequest("POST", ts.url+"/v1/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+ts.ingest)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("ingest: %s", resp.Status)
			}
		}
		posted <- err
	}()
	defer func() {
		if err := <-posted; err != nil {
			t.Error(err)
		}
	}()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			if strings.Contains(data, "ok-user") {
				t.Fatal("tail sent an event that does not match the filter")
			}
			if strings.Contains(data, "tail-me") {
				return
			}
		}
	}
	t.Fatalf("tail ended without the event: %v", sc.Err())
}

func TestRestartKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, nil)
	if status, _ := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(ev("authz_fail", "failure", "x", "192.0.2.3", 403))); status != 200 {
		t.Fatal("ingest")
	}
	ts.waitIndexed(t)
	size := ts.ledger.Size()
	ts.stop(t)
	// The clean shutdown recorded itself and left a final checkpoint
	// covering every record, those of the shutdown included: exactly the
	// ledger's size.
	signed, err := os.ReadFile(filepath.Join(dir, "ledger", "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := ledger.ParseCheckpoint(checkpointBody(signed))
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.OpenReadOnly(filepath.Join(dir, "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	final := l.Size()
	l.Close()
	if final <= size || cp.Size != final {
		t.Fatalf("final checkpoint covers %d records; the ledger holds %d after shutdown (%d before)", cp.Size, final, size)
	}
	ts2 := startServer(t, dir, nil)
	ts2.waitIndexed(t)
	status, body := ts2.do(t, "GET", "/v1/events?q="+urlQuery("event.action:authz_fail and user.name:x"), ts2.read, nil)
	if status != 200 || !strings.Contains(string(body), `"authz_fail"`) {
		t.Fatalf("after restart: %d %s", status, body)
	}
}

func checkpointBody(signed []byte) []byte {
	if i := bytes.Index(signed, []byte("\n\n")); i >= 0 {
		return signed[:i+1]
	}
	return signed
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tg.yaml")
	os.WriteFile(path, []byte("data_dir: /from/yaml\nlisten: 127.0.0.1:9000\nretention: hipaa\ncheckpoint_interval: 2s\nwitness: [/w1]\n"), 0o600)
	cfg, err := LoadConfig([]string{"--config", path, "--listen", "127.0.0.1:9100"}, []string{"TRAILGUARD_LISTEN=127.0.0.1:9050", "TRAILGUARD_RETENTION=pci-dss", "TRAILGUARD_LEGAL_HOLD=true"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/from/yaml" || cfg.Listen != "127.0.0.1:9100" || cfg.Retention != "pci-dss" || !cfg.LegalHold ||
		cfg.CheckpointInterval != 2*time.Second || len(cfg.Witness) != 1 || cfg.MaxLineBytes != Defaults().MaxLineBytes {
		t.Fatalf("precedence wrong: %+v", cfg)
	}
	os.WriteFile(path, []byte("data_dirr: typo\n"), 0o600)
	if _, err := LoadConfig([]string{"--config", path}, nil); err == nil {
		t.Fatal("unknown key accepted")
	}
	if _, err := LoadConfig([]string{"--max-line-bytes", "10"}, nil); err == nil {
		t.Fatal("tiny max_line_bytes accepted")
	}
	if _, err := LoadConfig(nil, []string{"TRAILGUARD_LEGAL_HOLD=perhaps"}); err == nil {
		t.Fatal("bad bool accepted")
	}
	// A value of the wrong type names the key as written and what it
	// takes, at its line (it said "Go struct field
	// Config.CheckpointInterval of type time.Duration", and for "5x" no
	// key or line at all).
	for yml, want := range map[string]string{
		"checkpoint_interval: 5\n":                                                  `[1:22] checkpoint_interval: want a duration such as 500ms, 30s, 5m or 2h, got "5"`,
		"retention: pci-dss\nshutdown_timeout: 5x\n":                                `[2:19] shutdown_timeout: want a duration such as 500ms, 30s, 5m or 2h, got "5x"`,
		"outputs:\n  - {name: vl, type: victorialogs, url: http://x, timeout: 3}\n": `outputs[0].timeout: want a duration`,
		"legal_hold: perhaps\n":                                                     `legal_hold: want true or false, got "perhaps"`,
		"decisions: {duration: 1 day}\n":                                            `decisions.duration: want a duration`,
	} {
		os.WriteFile(path, []byte(yml), 0o600)
		if _, err := LoadConfig([]string{"--config", path}, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: error %v, want one saying %q", yml, err, want)
		}
	}
}
