package server

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
)

// get is a GET with URL-encoded parameters, as curl -G --data-urlencode.
func (ts *testServer) get(t *testing.T, path string, kv ...string) (int, []byte) {
	t.Helper()
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	return ts.do(t, "GET", path, ts.read, nil)
}

// post ingests NDJSON lines and returns the ledger index after the last
// stored event (the last stored range's end): what after_index waits for.
func (ts *testServer) post(t *testing.T, lines ...string) uint64 {
	t.Helper()
	status, body := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(strings.Join(lines, "\n")))
	var resp ingestResponse
	if err := json.Unmarshal(body, &resp); status != 200 || err != nil || len(resp.Stored) == 0 || resp.Rejected > 0 {
		t.Fatalf("ingest: %d %s", status, body)
	}
	last := resp.Stored[len(resp.Stored)-1]
	return last.First + uint64(last.Count)
}

type searchAnswer struct {
	Hits []struct {
		Index uint64          `json:"ledger_index"`
		Event json.RawMessage `json:"event"`
	}
	Next       string
	Partial    bool
	Scanned    int
	Mismatches []uint64 `json:"index_mismatches"`
}

func decodeSearch(t *testing.T, body []byte) searchAnswer {
	t.Helper()
	var a searchAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return a
}

// TestEventIsTheLedgerRecord: an event fetched by id is the stored record
// byte for byte (HTML characters included), so that its RFC 6962 leaf hash
// is the one the inclusion proof proves against the signed checkpoint,
// checked here with golang.org/x/mod/sumdb/tlog and note alone. Search
// hits are the records too.
func TestEventIsTheLedgerRecord(t *testing.T) {
	t.Parallel()
	ts := startServer(t, t.TempDir(), nil)
	e := &event.Event{Timestamp: time.Now().UTC(), Action: event.ActionUserRoleChange, ID: "html-1", UserName: "<b>alice</b>",
		Path: "/a?b=<script>&c=d", UserAgent: `Mozilla/5.0 (X11; <Linux> & "friends")`, Reason: "\u2028 & <"}
	next := ts.post(t, string(e.AppendJSON(nil)))
	stored, err := ts.ledger.Read(next - 1)
	if err != nil {
		t.Fatal(err)
	}
	// A checkpoint covers it within the checkpoint interval (100 ms here).
	// The index is waited for with after_index; its default 5 s ran out
	// under heavy load (a 503), so the wait is as long as a read may ask
	// (it ends as soon as the record is indexed).
	var out struct {
		Index uint64                  `json:"ledger_index"`
		Event json.RawMessage         `json:"event"`
		Proof *ledger.InclusionBundle `json:"inclusion_proof"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, body := ts.get(t, "/v1/events/html-1", "after_index", strconv.FormatUint(next, 10), "timeout", maxWait.String())
		if status != 200 {
			t.Fatalf("get event: %d %s", status, body)
		}
		if !bytes.Contains(body, []byte("<b>alice</b>")) || bytes.Contains(body, []byte(`\u003c`)) {
			t.Fatalf("event escaped: %s", body)
		}
		out.Proof = nil
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
		if out.Proof != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no proof: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out.Index != next-1 || !bytes.Equal(out.Event, stored.Data) {
		t.Fatalf("event %d\n%s\nis not the stored record %d\n%s", out.Index, out.Event, next-1, stored.Data)
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
	lines := strings.Split(n.Text, "\n")
	size, _ := strconv.ParseInt(lines[1], 10, 64)
	rb, _ := decodeB64(lines[2])
	var root tlog.Hash
	copy(root[:], rb)
	proof := make(tlog.RecordProof, len(out.Proof.Proof))
	for i, h := range out.Proof.Proof {
		proof[i] = h
	}
	if err := tlog.CheckRecord(proof, size, root, int64(out.Index), tlog.RecordHash(out.Event)); err != nil {
		t.Fatalf("the event does not hash to the proven leaf: %v", err)
	}
	// Search hits and stats values are the stored bytes too.
	status, body := ts.get(t, "/v1/events", "q", "event.id:html-1")
	a := decodeSearch(t, body)
	if status != 200 || len(a.Hits) != 1 || !bytes.Equal(a.Hits[0].Event, stored.Data) {
		t.Fatalf("search: %d %s", status, body)
	}
	status, body = ts.get(t, "/v1/stats", "top", "user.name", "q", "event.id:html-1")
	if status != 200 || !bytes.Contains(body, []byte(`"value":"<b>alice</b>"`)) {
		t.Fatalf("top: %d %s", status, body)
	}
}

// TestTamperedIndexCollector edits index rows with the SQLite driver in a
// real data directory while the collector is down, then queries it: no
// answer carries altered content, and the altered rows are reported.
func TestTamperedIndexCollector(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ts := startServer(t, dir, nil)
	var lines []string
	for i := range 40 {
		user, outcome := "alice", "success"
		if i%4 == 0 {
			user, outcome = "mallory", "failure"
		}
		e := &event.Event{Timestamp: time.Now().UTC(), Action: event.ActionLoginFail, Outcome: outcome, UserName: user,
			ID: fmt.Sprintf("t-%02d", i), SourceIP: "203.0.113.7", StatusCode: 401}
		lines = append(lines, string(e.AppendJSON(nil)))
	}
	next := ts.post(t, lines...)
	first := next - 40
	if status, body := ts.get(t, "/v1/events", "q", "user.name:mallory", "after_index", strconv.FormatUint(next, 10)); status != 200 || len(decodeSearch(t, body).Hits) != 10 {
		t.Fatalf("before: %d %s", status, body)
	}
	ts.stop(t)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	// The index keeps its columns and ids compressed (index/block.go,
	// index/ids.go; the index package's own tests alter them row by row):
	// here the dictionary, which plain SQL reaches.
	for _, s := range []string{
		// "alice" reads "mallory2" in the dictionary.
		`UPDATE terms SET v='mallory2' WHERE v='alice'`,
	} {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	db.Close()

	ts = startServer(t, dir, nil)
	check := func(body []byte) searchAnswer {
		t.Helper()
		a := decodeSearch(t, body)
		for _, h := range a.Hits {
			rec, err := ts.ledger.Read(h.Index)
			if err != nil || !bytes.Equal(rec.Data, h.Event) {
				t.Fatalf("hit %d is not the ledger's record: %s", h.Index, h.Event)
			}
		}
		return a
	}
	_, body := ts.get(t, "/v1/events", "q", "user.name:mallory", "wait_for", "ledger")
	a := check(body)
	if len(a.Hits) != 10 || len(a.Mismatches) != 0 {
		t.Fatalf("user.name:mallory: %d hits, mismatches %v", len(a.Hits), a.Mismatches)
	}
	_, body = ts.get(t, "/v1/events", "q", "user.name:mallory2")
	if a := check(body); len(a.Hits) != 0 || len(a.Mismatches) != 30 {
		t.Fatalf("user.name:mallory2: %d hits, %d mismatches", len(a.Hits), len(a.Mismatches))
	}
	// t-00 is still found, as itself, and a search for it returns it alone.
	_, body = ts.get(t, "/v1/events", "q", "event.id:t-00")
	if a := check(body); len(a.Hits) != 1 || a.Hits[0].Index != first {
		t.Fatalf("event.id:t-00: %s", body)
	}
	status, body := ts.get(t, "/v1/events/t-00")
	if status != 200 || !bytes.Contains(body, []byte(`"id":"t-00"`)) || bytes.Contains(body, []byte(`"t-02"`)) {
		t.Fatalf("t-00: %d %s", status, body)
	}
	status, body = ts.get(t, "/v1/stats", "top", "user.name", "q", "event.action:authn_login_fail")
	if status != 200 || bytes.Contains(body, []byte("mallory2")) || !bytes.Contains(body, []byte(`"index_mismatches"`)) {
		t.Fatalf("top: %d %s", status, body)
	}
}

// TestReadYourWrites: a count right after an acknowledged ingest sees
// every event when it waits for the ingest answer's index.
func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	ts := startServer(t, t.TempDir(), nil)
	var total int
	for round := range 5 {
		var lines []string
		for i := range 500 {
			lines = append(lines, ev("authn_login_fail", "failure", fmt.Sprintf("ryw-%d", i%7), "198.51.100.4", 401))
		}
		next := ts.post(t, lines...)
		total += len(lines)
		// The timeout only bounds the wait on a loaded machine.
		for _, wait := range [][]string{{"after_index", strconv.FormatUint(next, 10)}, {"wait_for", "ledger"}} {
			status, body := ts.get(t, "/v1/stats", append([]string{"q", "user.name:ryw-*", "from", "1h", "timeout", "60s"}, wait...)...)
			var st struct{ Buckets []struct{ Count int } }
			json.Unmarshal(body, &st)
			n := 0
			for _, b := range st.Buckets {
				n += b.Count
			}
			if status != 200 || n != total {
				t.Fatalf("round %d, %s: counted %d of %d (%d)", round, wait[0], n, total, status)
			}
		}
	}
	// An index that does not catch up in time is a 503 that says so.
	ts.indexCancel()
	err := <-ts.indexDone
	ts.indexDone <- err
	next := ts.post(t, ev("authz_fail", "failure", "late", "198.51.100.4", 403))
	status, body := ts.get(t, "/v1/events", "after_index", strconv.FormatUint(next, 10), "timeout", "100ms")
	if status != 503 || !strings.Contains(string(body), "retry") {
		t.Fatalf("stalled index: %d %s", status, body)
	}
	status, body = ts.get(t, "/v1/events")
	if status != 200 || ts.lastHeader(t, "/v1/events", "X-Trailguard-Indexed") == "" {
		t.Fatalf("without waiting: %d %s", status, body)
	}
}

func (ts *testServer) lastHeader(t *testing.T, path, name string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", ts.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+ts.read)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get(name)
}

// TestStatsAPI: buckets on interval boundaries, a default interval from
// the range, top on any field, and every client mistake a 400 naming the
// parameter to change.
func TestStatsAPI(t *testing.T) {
	t.Parallel()
	ts := startServer(t, t.TempDir(), nil)
	var lines []string
	for i := range 30 {
		e := &event.Event{Timestamp: time.Now().UTC(), Action: event.ActionLoginFail, Outcome: event.OutcomeFailure,
			UserName: fmt.Sprintf("u%d", i%3), StatusCode: 401, Labels: map[string]string{"tier": []string{"gold", "silver"}[i%2]}}
		lines = append(lines, string(e.AppendJSON(nil)))
	}
	next := strconv.FormatUint(ts.post(t, lines...), 10)

	var st struct {
		Interval string
		Buckets  []struct {
			Start time.Time
			Count int
		}
	}
	status, body := ts.get(t, "/v1/stats", "q", "http.response.status_code:401", "from", "90m", "interval", "1m", "after_index", next)
	if err := json.Unmarshal(body, &st); err != nil || status != 200 {
		t.Fatalf("stats: %d %s", status, body)
	}
	total := 0
	for _, b := range st.Buckets {
		total += b.Count
		if b.Start.Second() != 0 || b.Start.Nanosecond() != 0 {
			t.Fatalf("minute bucket starts at %v", b.Start)
		}
	}
	if total != 30 || len(st.Buckets) < 90 || len(st.Buckets) > 92 {
		t.Fatalf("%d buckets, %d counted", len(st.Buckets), total)
	}
	// Default: 24 h in 10-minute buckets.
	status, body = ts.get(t, "/v1/stats")
	json.Unmarshal(body, &st)
	if status != 200 || st.Interval != "10m" || len(st.Buckets) < 144 || len(st.Buckets) > 146 || st.Buckets[0].Start.Minute()%10 != 0 {
		t.Fatalf("default stats: %d, interval %s, %d buckets", status, st.Interval, len(st.Buckets))
	}
	// top on an indexed field and on one that is not.
	for _, tt := range []struct{ field, want string }{
		{"user.name", `"top":[{"value":"u0","count":10},{"value":"u1","count":10},{"value":"u2","count":10}]`},
		{"labels.tier", `"top":[{"value":"gold","count":15},{"value":"silver","count":15}]`},
	} {
		status, body := ts.get(t, "/v1/stats", "top", tt.field, "q", "event.action:authn_login_fail")
		if status != 200 || !strings.Contains(string(body), tt.want) {
			t.Errorf("top=%s: %d %s", tt.field, status, body)
		}
	}

	for _, tt := range []struct {
		path  string
		kv    []string
		param string
		say   string
	}{
		{"/v1/stats", []string{"interval", "1s", "from", "8760h"}, "interval", "interval=1h or more"},
		{"/v1/stats", []string{"interval", "10ms"}, "interval", "at least 1s"},
		{"/v1/stats", []string{"interval", "soon"}, "interval", "at least 1s"},
		{"/v1/stats", []string{"top", "user.name", "interval", "1m"}, "interval", "not both"},
		{"/v1/stats", []string{"top", "user.name", "n", "0"}, "n", "1 to 1000"},
		{"/v1/stats", []string{"top", "user name"}, "top", "not a field name"},
		{"/v1/stats", []string{"n", "3"}, "n", "top"},
		{"/v1/stats", []string{"from", "yesterday"}, "from", "RFC 3339"},
		{"/v1/stats", []string{"from", "-5m"}, "from", "positive"},
		{"/v1/stats", []string{"from", "1h", "to", "2h"}, "to", "not after"},
		{"/v1/stats", []string{"intervall", "1m"}, "intervall", "unknown parameter"},
		{"/v1/stats", []string{"q", "user.name:(a"}, "q", "position"},
		{"/v1/events", []string{"limit", "0"}, "limit", "1 to 10000"},
		{"/v1/events", []string{"limit", "10001"}, "limit", "1 to 10000"},
		{"/v1/events", []string{"sort", "up"}, "sort", "asc or desc"},
		{"/v1/events", []string{"cursor", "!!"}, "cursor", "next"},
		{"/v1/events", []string{"after_index", "999999999"}, "after_index", "beyond"},
		{"/v1/events", []string{"after_index", "x"}, "after_index", "first_index"},
		{"/v1/events", []string{"wait_for", "index"}, "wait_for", "ledger"},
		{"/v1/events", []string{"timeout", "2h", "wait_for", "ledger"}, "timeout", "up to 1m0s"},
		{"/v1/events", []string{"interval", "1m"}, "interval", "unknown parameter"},
		{"/v1/events/x", []string{"q", "a"}, "q", "unknown parameter"},
		{"/v1/events/" + strings.Repeat("x", 1025), nil, "event.id", "longer than 1024"},
		{"/v1/tail", []string{"since", "x"}, "since", "ledger index"},
		{"/v1/tail", []string{"from", "1h"}, "from", "unknown parameter"},
	} {
		status, body := ts.get(t, tt.path, tt.kv...)
		var e struct{ Error, Parameter string }
		json.Unmarshal(body, &e)
		if status != 400 || e.Parameter != tt.param || !strings.Contains(e.Error, tt.say) {
			t.Errorf("%s %v: %d %s; want 400 naming %s and saying %q", tt.path, tt.kv, status, body, tt.param, tt.say)
		}
	}
	// A parameter given twice.
	status, body = ts.do(t, "GET", "/v1/events?limit=1&limit=2", ts.read, nil)
	if status != 400 || !strings.Contains(string(body), `"parameter":"limit"`) {
		t.Errorf("limit twice: %d %s", status, body)
	}
}
