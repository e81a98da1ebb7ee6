package server

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/internal/stalltest"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/report"
)

// TestReportAPI: GET /v1/reports through a real collector: the standards
// on offer, a signed JSON report that verifies and recomputes, HTML with
// its CSP, PDF; the read role is needed; each report is a recorded read.
func TestReportAPI(t *testing.T) {
	t.Parallel()
	ts := startServer(t, t.TempDir(), nil)
	body := strings.Repeat(ev("authn_login_fail", "failure", "alice", "203.0.113.7", 0)+"\n", 12)
	if code, b := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(body)); code != 200 {
		t.Fatalf("ingest: %d %s", code, b)
	}
	code, b := ts.do(t, "GET", "/v1/reports", ts.read, nil)
	if code != 200 || !strings.Contains(string(b), `"pci-dss"`) {
		t.Fatalf("probe: %d %s", code, b)
	}
	if code, _ := ts.do(t, "GET", "/v1/reports?standard=pci-dss", ts.ingest, nil); code != http.StatusForbidden {
		t.Fatalf("ingest token: %d", code)
	}
	for q, want := range map[string]string{"standard=pcidss": "standard", "standard=soc2&format=doc": "format", "standard=soc2&from=tomorrow": "from"} {
		code, b := ts.do(t, "GET", "/v1/reports?"+q, ts.read, nil)
		var e struct{ Parameter string }
		json.Unmarshal(b, &e)
		if code != 400 || e.Parameter != want {
			t.Errorf("%s: %d %s", q, code, b)
		}
	}
	rep, keys := ts.signedReport(t, "standard=pci-dss&from=1h")
	// Everything stored before the request is covered: the collector
	// made a checkpoint first.
	if rep.Figures.AuthFailures.Total != 12 || rep.Checkpoint.TreeSize < 12 {
		t.Fatalf("figures: failed logins %d, tree size %d, reads %d", rep.Figures.AuthFailures.Total, rep.Checkpoint.TreeSize, rep.Figures.Reads.Total)
	}
	rc, err := report.Recompute(context.Background(), ts.ledger, rep, keys)
	if err != nil || !rc.CheckpointOK || len(rc.Differences) != 0 {
		t.Fatalf("recompute: %v %+v", err, rc)
	}
	req, _ := http.NewRequest("GET", ts.url+"/v1/reports?standard=soc2&format=html&from=1h", nil)
	req.Header.Set("Authorization", "Bearer "+ts.read)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	// Read the answer to its end, as a client that saves the report does:
	// the token's report turn (one at a time, 5d4edb5) is given back
	// before the answer's last bytes leave; a body closed unread leaves the
	// handler writing, and the PDF request below would get 429.
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") != report.HTMLContentSecurityPolicy ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || resp.Header.Get("X-Trailguard-Report-Sha256") == "" {
		t.Fatalf("html: %d %v", resp.StatusCode, resp.Header)
	}
	code, pdf := ts.do(t, "GET", "/v1/reports?standard=hipaa&format=pdf&from=1h", ts.read, nil)
	if code != 200 || !strings.HasPrefix(string(pdf), "%PDF-") {
		t.Fatalf("pdf: %d", code)
	}
	// Later reports count the earlier ones as reads of the trail (their
	// audit events are written asynchronously: ask until they are in).
	deadline := time.Now().Add(60 * time.Second)
	for {
		rep2, _ := ts.signedReport(t, "standard=pci-dss&from=1h")
		if rep2.Figures.Reads.Total >= rep.Figures.Reads.Total+3 && rep2.Figures.Reads.ByReader[0].Value == "analyst" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reads %d after %d and three more reports", rep2.Figures.Reads.Total, rep.Figures.Reads.Total)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signedReport asks the collector for a JSON report (query: GET
// /v1/reports' parameters) with the read token and opens it with the
// collector's verifier keys, failing t unless it is served and its
// signature verifies; it returns the report and the keys.
func (ts *testServer) signedReport(t *testing.T, query string) (*report.Report, []note.Verifier) {
	t.Helper()
	code, file := ts.do(t, "GET", "/v1/reports?"+query, ts.read, nil)
	if code != 200 {
		t.Fatalf("report: %d %s", code, file)
	}
	keys, err := ledger.LoadVerifiers(ts.VerifierKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	rep, _, err := report.Open(file, keys)
	if err != nil {
		t.Fatal(err)
	}
	return rep, keys
}

// TestReportWarmer: the collector keeps the figures of each whole chunk of
// the ledger in the background, as soon as a signed checkpoint covers the
// chunk (here the explicit one: the next timed one is an hour away), and a
// report then reads only the rest.
// Paced (Config.FollowerPace, the gateway's), the warmer looks at the
// ledger's size now and then instead of at every commit, and keeps the
// chunk all the same.
func TestReportWarmer(t *testing.T) {
	t.Parallel()
	for _, pace := range []time.Duration{0, 50 * time.Millisecond} {
		t.Run(fmt.Sprint("pace=", pace), func(t *testing.T) {
			t.Parallel()
			testReportWarmer(t, pace)
		})
	}
}

func testReportWarmer(t *testing.T, pace time.Duration) {
	// The stop at the end commits the indexer's last batches of the 32k
	// records (up to two of 5,000 rows: what it had read, shutdown.go),
	// which under -race on a loaded 2-core machine took up to 13.5 s, the
	// followers' share of the default 15 s, and was abandoned: a budget
	// for such a machine (the warmer itself stops at once; a hung step
	// still fails the stop).
	ts := startServer(t, t.TempDir(), func(c *Config) {
		c.CheckpointInterval = time.Hour
		c.FollowerPace = pace
		c.ShutdownTimeout = time.Minute
	})
	var recs [][]byte
	for range 1 << 15 {
		recs = append(recs, []byte(ev("authn_login_fail", "failure", "alice", "203.0.113.8", 0)))
	}
	if _, err := ts.ledger.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.ledger.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(120 * time.Second) // a loaded CI machine: the test ends as soon as the chunk is kept
	for {
		files, _ := filepath.Glob(filepath.Join(ts.dir, "report-cache", "*.chunk"))
		if len(files) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no chunk kept in report-cache")
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, file := ts.do(t, "GET", "/v1/reports?standard=pci-dss&from=1h", ts.read, nil)
	if code != 200 {
		t.Fatalf("report: %d %s", code, file)
	}
	rep, err := report.Unverified(file)
	if err != nil {
		t.Fatal(err)
	}
	if rep.State.Integrity.SummarisedEarlier != 1<<15 || rep.Figures.AuthFailures.Total != 1<<15 {
		t.Fatalf("summarised earlier %d, failed logins %d", rep.State.Integrity.SummarisedEarlier, rep.Figures.AuthFailures.Total)
	}
}

// TestReportWarmerStops: a stop that comes while the warmer has a whole
// chunk covered by a signed checkpoint still to summarise ends the warmer
// at once. Warm gives up on the cancelled context, and the waits before it
// return without looking at the context while the chunk is there, so the
// warmer went round again and again (re-reading the checkpoint history)
// until shutdown abandoned the step: 54 s of a minute's budget.
func TestReportWarmerStops(t *testing.T) {
	t.Parallel()
	ts := startServer(t, t.TempDir(), func(c *Config) {
		c.CheckpointInterval = time.Hour
		c.ShutdownTimeout = 2 * time.Minute // the indexer's last batches under -race (testReportWarmer)
	})
	var recs [][]byte
	for range 2 << 15 {
		recs = append(recs, []byte(ev("authn_login_fail", "failure", "alice", "203.0.113.8", 0)))
	}
	if _, err := ts.ledger.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.ledger.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		// The first chunk kept: the warmer is on the second.
		if files, _ := filepath.Glob(filepath.Join(ts.dir, "report-cache", "*.chunk")); len(files) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no chunk kept in report-cache")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	ts.stop(t)
	if d := time.Since(start); d > 90*time.Second {
		t.Fatalf("the stop took %v", d)
	}
}

// TestReportOnePerToken: a read token (stolen, or a script in a loop)
// holds at most one report in progress or waiting; its next ones are
// refused at once with 429, so it cannot fill the wait and starve another
// token's report. Not parallel: it holds the process-wide report slot.
func TestReportOnePerToken(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	_, other, err := ts.Tokens().Create("auditor", access.RoleRead)
	if err != nil {
		t.Fatal(err)
	}
	reportSlot <- struct{}{} // a long report in progress
	held := true
	defer func() {
		if held {
			<-reportSlot
		}
	}()
	get := func(token string) (int, http.Header) {
		req, _ := http.NewRequest("GET", ts.url+"/v1/reports?standard=soc2&from=1h", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		c := &http.Client{Timeout: 8 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil // timed out waiting
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	queued := make(chan int, 2)
	go func() { code, _ := get(ts.read); queued <- code }()
	// The first waits for the slot; once it does, the same token's next
	// ones are refused at once.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ts.reports.mu.Lock()
		n := ts.reports.inUse
		ts.reports.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first report never queued")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// At once: within 5 s, or as late as a stall of this process made it
	// (a loaded machine stops it for seconds); one that waits for the
	// slot is not done after 5 s.
	watch := stalltest.Start(t)
	for range 3 {
		var code int
		var h http.Header
		took, stalled, ok := stalltest.Run(func() { code, h = get(ts.read) }, watch, 5*time.Second)
		if !ok {
			t.Fatalf("same token's second report: no answer after %v (stalled up to %v), want 429 at once", took, stalled)
		}
		if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" || took > 5*time.Second+stalled {
			t.Fatalf("same token's second report: %d (Retry-After %q) after %v (stalled up to %v), want 429 at once", code, h.Get("Retry-After"), took, stalled)
		}
	}
	// Another token still queues, and both run once the slot frees.
	go func() { code, _ := get(other); queued <- code }()
	for {
		ts.reports.mu.Lock()
		n := ts.reports.inUse
		ts.reports.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the other token's report was not queued")
		}
		time.Sleep(5 * time.Millisecond)
	}
	<-reportSlot
	held = false
	for range 2 {
		if code := <-queued; code != http.StatusOK {
			t.Fatalf("queued report: %d", code)
		}
	}
	if code, _ := get(ts.read); code != http.StatusOK {
		t.Fatalf("the token's next report, after its first ended: %d", code)
	}
}
