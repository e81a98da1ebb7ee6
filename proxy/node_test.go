package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trailguard/trailguard/detect"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
	"golang.org/x/mod/sumdb/note"
)

// TestSingleNodeRecordsCarrySpans: the single node's records reach the
// ledger's followers (index, detection, overview, report cache) with
// event.Spans that locate their fields, so that none of them parses the
// record again, and each stored record is the event the gateway recorded
// (normalised as ingest normalises: event.ingested added).
func TestSingleNodeRecordsCarrySpans(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	dir := t.TempDir()
	g, gw, _ := serveGateway(t, Config{DataDir: dir, Routes: []Route{{Upstream: up.URL}}})
	resp, err := http.Get(gw + "/spans/here?q=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pathField := event.SpanField("url.path")
	for e, err := range g.Collector().Ledger().FollowAppended(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		ev, err := event.Decode(e.Data)
		if err != nil {
			t.Fatalf("record %d: %v", e.Index, err)
		}
		if ev.Action != event.ActionHTTPRequest || ev.Path != "/spans/here" {
			continue
		}
		sps, ok := e.Aux.([]event.Spans)
		if !ok || e.AuxPos >= len(sps) || !sps[e.AuxPos].OK() {
			t.Fatalf("the access event reaches the ledger's followers without spans (Aux %T)", e.Aux)
		}
		sp := &sps[e.AuxPos]
		if tok := sp.Token(e.Data, pathField); string(tok) != `"/spans/here"` {
			t.Errorf("url.path token %q, want %q", tok, `"/spans/here"`)
		}
		if ts, ok := sp.Timestamp(); !ok || ts != ev.Timestamp.UnixNano() {
			t.Errorf("spans' @timestamp %d, record's %d", ts, ev.Timestamp.UnixNano())
		}
		if ev.Ingested.IsZero() {
			t.Error("stored access event has no event.ingested")
		}
		return
	}
	t.Fatal("access event never reached the ledger")
}

// TestNodeSinkKeepsWhatItCannotNormalise: a record the normaliser does not
// take (a field the event model lacks) is stored exactly as it came,
// without spans, next to records that get them; and the lane is handed
// the batch as the writer gave it, for its retry check.
func TestNodeSinkKeepsWhatItCannotNormalise(t *testing.T) {
	t.Parallel()
	l := testLedger(t)
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	eng, _ := detect.NewEngine(detect.Builtin(), detect.Options{})
	lane := newRequestLane(eng.Rules(), func(*detect.Alert) (string, string, bool) { return "", "", false })
	s := &nodeSink{l: l, lane: lane, now: func() time.Time { return now }}
	odd := []byte(`{"@timestamp":"2026-11-30T08:59:59Z","event":{"kind":"event","action":"x","id":"a"},"not_modelled":{"k":1}}`)
	plain := []byte(`{"@timestamp":"2026-11-30T08:59:59Z","event":{"kind":"event","action":"y","id":"b"}}`)
	for range 2 { // the second batch reuses the sink's buffers
		if err := s.Write(context.Background(), [][]byte{plain, odd}); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Second) // a retry is normalised again, later
	}
	// The writer hands a batch the sink failed to store over again: the
	// lane counts it once although its normalised form differs.
	if n := lane.seen.Load(); n != 2 {
		t.Errorf("the lane counted %d records of a batch written twice, want 2", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	for e, err := range l.FollowAppended(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		sps, _ := e.Aux.([]event.Spans)
		if e.AuxPos >= len(sps) {
			t.Fatalf("record %d reaches the followers without the batch's spans (Aux %T)", e.Index, e.Aux)
		}
		sp := &sps[e.AuxPos]
		switch e.AuxPos {
		case 1:
			if !bytes.Equal(e.Data, odd) || sp.OK() {
				t.Errorf("record %d = %s (spans %v), want the record as it came, without spans", e.Index, e.Data, sp.OK())
			}
		case 0:
			// Each batch is stamped when it is stored.
			want := fmt.Sprintf(`{"@timestamp":"2026-11-30T08:59:59.000000000Z","event":{"kind":"event","action":"y","id":"b","ingested":"2026-11-30T09:00:0%d.000000000Z"}}`, n/2)
			if string(e.Data) != want || !sp.OK() {
				t.Errorf("record %d = %s (spans %v), want %s with spans", e.Index, e.Data, sp.OK(), want)
			}
		}
		if n++; n == 4 {
			return
		}
	}
}

// TestNodeSinkSpacesSmallCommits: after committing a small batch the
// single node's sink waits out the rest of commitGap (the next commit then
// carries what arrived meanwhile), and it does not wait after a batch that
// says the writer is busy, nor after a failed commit (the writer retries).
func TestNodeSinkSpacesSmallCommits(t *testing.T) {
	t.Parallel()
	l := testLedger(t)
	var waits []time.Duration
	s := &nodeSink{l: l, now: time.Now, gap: time.Hour, sleep: func(d time.Duration, _ <-chan struct{}) { waits = append(waits, d) }}
	rec := []byte(`{"@timestamp":"2026-11-30T08:59:59Z","event":{"kind":"event","action":"y","id":"b"}}`)
	batch := func(n int) [][]byte {
		b := make([][]byte, n)
		for i := range b {
			b[i] = rec
		}
		return b
	}
	for _, c := range []struct {
		n    int
		wait bool
	}{{1, true}, {lingerBelow - 1, true}, {lingerBelow, false}, {512, false}} {
		waits = waits[:0]
		if err := s.Write(context.Background(), batch(c.n)); err != nil {
			t.Fatal(err)
		}
		switch {
		case c.wait && (len(waits) != 1 || waits[0] <= time.Hour-time.Minute || waits[0] > time.Hour):
			t.Errorf("batch of %d: waits %v, want the rest of the gap once", c.n, waits)
		case !c.wait && len(waits) != 0:
			t.Errorf("batch of %d (the writer is busy): waits %v, want none", c.n, waits)
		}
	}
	l.Close()
	waits = waits[:0]
	if err := s.Write(context.Background(), batch(1)); err == nil || len(waits) != 0 {
		t.Errorf("commit to a closed ledger: err %v, waits %v; want an error and no wait", err, waits)
	}
}

// testLedger is a ledger in a temporary directory that keeps its recent
// records (and their spans) for followers, as the single node's does.
func testLedger(t *testing.T) *ledger.Ledger {
	t.Helper()
	skey, _, err := ledger.GenerateKey("test.example/node")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.TempDir(), ledger.Options{Origin: "test.example/node", Signer: signer, TailBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestFailedLoginEndsTheCommitWait: while the event writer waits to gather
// a bigger commit, a client's failed authentication being queued ends the
// wait, so that the lane (which the gate makes that client's answers wait
// for) sees it at once instead of after the commit gap.
func TestFailedLoginEndsTheCommitWait(t *testing.T) {
	t.Parallel()
	l := testLedger(t)
	s := &nodeSink{l: l, now: time.Now, gap: time.Hour, hurry: make(chan struct{}, 1), sleep: sleepOrHurry}
	var queued atomic.Uint64
	g := newAnswerGate(queued.Load, func() uint64 { return 0 })
	g.hurry = s.hurry
	rec := []byte(`{"@timestamp":"2026-11-30T08:59:59Z","event":{"kind":"event","action":"y","id":"b"}}`)
	done := make(chan error, 1)
	go func() { done <- s.Write(context.Background(), [][]byte{rec}) }()
	select {
	case err := <-done:
		t.Fatalf("Write returned (%v) before the commit gap or a failed login", err)
	case <-time.After(50 * time.Millisecond):
	}
	client := netip.MustParseAddr("192.0.2.7")
	_, begun := g.pass(client, http.StatusUnauthorized, func() bool { return false })
	if begun == nil {
		t.Fatal("the gate did not track the failed login")
	}
	queued.Add(1)
	g.end(begun) // the failure's events are queued
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a failed login did not end the writer's wait for a bigger commit")
	}
}

// TestSingleNodeOverviewOnlyWithAPI: the UI overview, read only through
// --api, is counted only when the gateway serves the API: without it its
// follower never runs (no ui-overview.json is written; the counts of a
// run with --api stay where they ended), with it the overview counts from
// the start and saves its counts at the stop.
func TestSingleNodeOverviewOnlyWithAPI(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	for _, withAPI := range []bool{false, true} {
		t.Run(fmt.Sprint("api=", withAPI), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			g, err := Open(Config{DataDir: dir, Routes: []Route{{Upstream: up.URL}}}, quiet)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var api net.Listener
			if withAPI {
				if api, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- g.Serve(ctx, ln, api) }()
			for range 5 {
				resp, err := http.Get("http://" + ln.Addr().String() + "/x")
				if err != nil {
					cancel()
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			cancel()
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "ui-overview.json"))
			switch {
			case !withAPI && !errors.Is(err, os.ErrNotExist):
				t.Fatalf("without --api the overview was counted and saved (%v): %.200s", err, b)
			case withAPI && err != nil:
				t.Fatalf("with --api the overview's counts were not saved: %v", err)
			case withAPI && !bytes.Contains(b, []byte(`"next":`)):
				t.Fatalf("saved overview: %.200s", b)
			}
		})
	}
}

// TestSingleNodeStoresEncodedAsIngestWould: the single node stores the
// access events httpaudit's writer encodes from the writer's notes of
// where each field is (event.AppendEncoded) instead of parsing them again,
// and what it stores, and the spans its followers get, are exactly what
// the normaliser makes of the record: requests with escapes and bytes
// outside ASCII in the path, scrubbed secrets, recorded headers (one cut
// at the field cap), quotes in the user agent, an upstream error.
func TestSingleNodeStoresEncodedAsIngestWould(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/teapot" {
			w.WriteHeader(http.StatusTeapot)
		}
		w.Write([]byte("ok"))
	})
	dir := t.TempDir()
	g, gw, stop := serveGateway(t, Config{DataDir: dir, Routes: []Route{{Upstream: up.URL}},
		Headers: []string{"X-Tenant", "Authorization", "X-Big"}})
	reqs := []struct {
		path string
		hdr  []string
	}{
		{"/plain?q=1", nil},
		{"/esc/%E2%80%A8%C3%A9/x?token=abcdefghijklmnop1234", nil},
		{"/bad%FFutf8", nil},
		{"/teapot", []string{"X-Tenant", `t"1\`, "Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"}},
		{"/big", []string{"X-Big", strings.Repeat("é", 3000), "User-Agent", `ua "quoted" \ back`}},
		{"/card?n=4111111111111111", []string{"User-Agent", "curl/8.5.0"}},
		// Paths the gateway normalises (SetPath: url.path the route's,
		// url.original as sent), control characters (CWE-117) and a
		// secret in the part url.path drops.
		{"/login;jsessionid=ABC123", []string{"User-Agent", "tab	here"}},
		{"/a/..//login/%2e%2e/x%2F..%2fy", nil},
		{"/ctl%01%0A%1B[31m%7F/x", []string{"X-Tenant", `\u0000 \n "\"`}},
		{"/p;token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl/x", nil},
	}
	for _, r := range reqs {
		req, err := http.NewRequest(http.MethodGet, gw+r.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(r.hdr); i += 2 {
			req.Header.Set(r.hdr[i], r.hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	access := 0
	for e, err := range g.Collector().Ledger().FollowAppended(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		isAccess := bytes.Contains(e.Data, []byte(`"action":"http_request"`))
		sps, _ := e.Aux.([]event.Spans)
		if e.AuxPos >= len(sps) || !sps[e.AuxPos].OK() {
			if isAccess {
				t.Fatalf("record %d stored without spans: %s", e.Index, e.Data)
			}
			continue // the collector's own events
		}
		sp := sps[e.AuxPos]
		// The record as the writer encoded it: without event.ingested.
		vs, ve := sp.Span(event.SpanField("event.ingested"))
		ms := vs - len(`,"ingested":`)
		rec := append(append([]byte(nil), e.Data[:ms]...), e.Data[ve:]...)
		ns, _ := sp.Ingested()
		var want event.Spans
		norm, _, ok := event.AppendNormalizedSpans(nil, rec, time.Unix(0, ns).UTC(), event.AppendID, &want)
		if !ok || !bytes.Equal(norm, e.Data) || want != sp {
			t.Errorf("record %d stored as\n%s\nthe normaliser makes\n%s\n(spans equal: %v)", e.Index, e.Data, norm, want == sp)
		}
		if isAccess {
			access++
			// Nothing the writer encoded is missing (the check above
			// compares the stored record with itself re-normalised).
			for _, m := range []string{`"url":{"path":`, `"user_agent":{"original":`, `"client":{"ip":`, `"status_code":`, `"service":{"name":`} {
				if !bytes.Contains(e.Data, []byte(m)) {
					t.Errorf("record %d has no %s: %s", e.Index, m, e.Data)
				}
			}
		}
		if access == len(reqs) {
			break
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// All but the path with a byte that is not UTF-8 (the normaliser
	// writes its "\ufffd" as the character itself, so it parses that one).
	if n := g.node.encoded; n < uint64(len(reqs)-1) {
		t.Errorf("%d of %d access events stored from the writer's notes, want at least %d", n, len(reqs), len(reqs)-1)
	}
}
