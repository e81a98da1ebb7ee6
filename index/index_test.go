package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/query"
)

const testOrigin = "test.example/trailguard"

var t0 = time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC)

// genEvent is the i-th synthetic event: a mix of access events, failed
// logins from an attacker's addresses, and admin actions, with time
// advancing step per event.
func genEvent(i int, step time.Duration) *event.Event {
	users := []string{"alice", "bob", "carol", "dave", "mallory"}
	paths := []string{"/api/login", "/api/orders", "/api/orders/17", "/api/users/3/role", "/health"}
	ev := &event.Event{
		Timestamp:   t0.Add(time.Duration(i) * step),
		Kind:        event.KindEvent,
		Category:    []string{event.CategoryWeb},
		Action:      event.ActionHTTPRequest,
		Outcome:     event.OutcomeSuccess,
		ID:          fmt.Sprintf("ev-%08d", i),
		Dataset:     event.DatasetAccess,
		RequestID:   fmt.Sprintf("req-%08d", i/2),
		Method:      "GET",
		Path:        paths[i%len(paths)],
		StatusCode:  200,
		SourceIP:    fmt.Sprintf("10.%d.%d.%d", i%3, i%7, i%250),
		ClientIP:    fmt.Sprintf("203.0.113.%d", i%50),
		UserName:    users[i%len(users)],
		UserID:      fmt.Sprintf("u%d", i%len(users)),
		UserAgent:   "Mozilla/5.0",
		ServiceName: "shop",
		HostName:    "vm1",
		Duration:    time.Duration(i%1000) * time.Microsecond,
	}
	switch {
	case i%10 == 3:
		ev.Category = []string{event.CategoryAuthentication, event.CategoryWeb}
		ev.Action, ev.Outcome, ev.Reason, ev.StatusCode, ev.Method = event.ActionLoginFail, event.OutcomeFailure, "bad password", 401, "POST"
		ev.ClientIP = fmt.Sprintf("2001:db8::%x", i%16)
	case i%10 == 7:
		ev.Action, ev.StatusCode = event.ActionAuthzFail, 403
		ev.Labels = map[string]string{"tier": "gold"}
	case i%17 == 0:
		ev.StatusCode = 500
		ev.Extra = map[string]json.RawMessage{"destination.ip": json.RawMessage(fmt.Sprintf("%q", fmt.Sprintf("192.168.%d.1", i%4)))}
	}
	return ev
}

type testLedger struct {
	*ledger.Ledger
	signerKey string
}

func openLedger(t testing.TB, dir string) *testLedger {
	t.Helper()
	skey, _, err := ledger.GenerateKey(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	return openLedgerKey(t, dir, skey)
}

func openLedgerKey(t testing.TB, dir, skey string) *testLedger {
	t.Helper()
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(dir, ledger.Options{Origin: testOrigin, Signer: signer, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &testLedger{l, skey}
}

func appendEvents(t testing.TB, l *ledger.Ledger, from, n int, step time.Duration) {
	t.Helper()
	const chunk = 1000
	for i := from; i < from+n; i += chunk {
		var recs [][]byte
		for j := i; j < from+n && j < i+chunk; j++ {
			recs = append(recs, genEvent(j, step).AppendJSON(nil))
		}
		if _, err := l.Append(context.Background(), recs...); err != nil {
			t.Fatal(err)
		}
	}
}

func openIndex(t testing.TB, path string) *Index {
	t.Helper()
	ix, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

// runUntil runs ix.Run on src in the background until Indexed reaches n.
func runUntil(t testing.TB, ix *Index, src Source, n uint64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ix.Run(ctx, src) }()
	deadline := time.Now().Add(60 * time.Second)
	for ix.Indexed() < n && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if got := ix.Indexed(); got != n {
		t.Fatalf("Indexed() = %d, want %d", got, n)
	}
}

func count(t testing.TB, ix *Index) (rows, min, max int64) {
	t.Helper()
	if err := ix.r.QueryRow(`SELECT count(*), coalesce(min(idx),-1), coalesce(max(idx),-1) FROM events`).Scan(&rows, &min, &max); err != nil {
		t.Fatal(err)
	}
	return
}

func TestRunFollowsAndResumes(t *testing.T) {
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	appendEvents(t, l.Ledger, 0, 1234, time.Second)
	path := filepath.Join(dir, "index.db")
	ix := openIndex(t, path)
	runUntil(t, ix, l, 1234)

	// Appends while following are picked up within the batch delay.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ix.Run(ctx, l) }()
	for !ix.running.Load() {
		time.Sleep(time.Millisecond)
	}
	if err := ix.Run(ctx, l); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run = %v", err)
	}
	appendEvents(t, l.Ledger, 1234, 10, time.Second)
	start := time.Now()
	for ix.Indexed() < 1244 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("Indexed() = %d after 10s", ix.Indexed())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	ix.Close()

	// Reopened, it resumes from meta.
	ix = openIndex(t, path)
	if ix.Indexed() != 1244 {
		t.Fatalf("reopened Indexed() = %d", ix.Indexed())
	}
	appendEvents(t, l.Ledger, 1244, 56, time.Second)
	runUntil(t, ix, l, 1300)
	if n, lo, hi := count(t, ix); n != 1300 || lo != 0 || hi != 1299 {
		t.Fatalf("rows %d [%d,%d], want 1300 [0,1299]", n, lo, hi)
	}
	// The ledger closing ends Run with ErrClosed.
	done2 := make(chan error, 1)
	go func() { done2 <- ix.Run(context.Background(), l) }()
	for !ix.running.Load() {
		time.Sleep(time.Millisecond)
	}
	l.Close()
	if err := <-done2; !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("Run after ledger Close = %v", err)
	}
}

func TestNonJSONRecords(t *testing.T) {
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	recs := [][]byte{[]byte(`not json at all`), []byte(`[1,2]`), []byte(`{"@timestamp":"bad","user":{"name":7},"url":{"path":"/x"}}`), genEvent(1, time.Second).AppendJSON(nil)}
	if _, err := l.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	ix := openIndex(t, filepath.Join(dir, "i.db"))
	runUntil(t, ix, l, 4)
	res, err := ix.Search(context.Background(), Request{})
	if err != nil || len(res.Hits) != 4 {
		t.Fatalf("Search = %v, %v", res, err)
	}
	for _, h := range res.Hits {
		if !json.Valid(h.Raw) {
			t.Errorf("hit %d: invalid JSON %s", h.Index, h.Raw)
		}
	}
	q, _ := query.Parse(`"json at"`)
	res, err = ix.Search(context.Background(), Request{Query: q})
	if err != nil || len(res.Hits) != 1 || res.Hits[0].Index != 0 {
		t.Fatalf("free text on a non-JSON record = %v, %v", res, err)
	}
	q, _ = query.Parse(`url.path:/x`)
	res, err = ix.Search(context.Background(), Request{Query: q})
	if err != nil || len(res.Hits) != 1 || res.Hits[0].Index != 2 {
		t.Fatalf("url.path:/x = %v, %v", res, err)
	}
}

// fixture indexes n generated events plus hostile ones and returns the
// index and every event flattened, by ledger index.
func fixture(t *testing.T, n int) (*Index, []query.Doc) {
	t.Helper()
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	appendEvents(t, l.Ledger, 0, n, 7*time.Second)
	hostile := []string{`'; DROP TABLE events; --`, `%`, `_`, `a[b]c`, `x*y`, `"quoted"`, `back\slash`, `?`, `ünï`, "\u2028"}
	var recs [][]byte
	for i, h := range hostile {
		ev := genEvent(n+i, 7*time.Second)
		ev.UserName, ev.Path, ev.Reason = h, "/h/"+h, h
		recs = append(recs, ev.AppendJSON(nil))
	}
	// Two events at the same instant: pagination must keep both.
	for i := range 3 {
		ev := genEvent(5, 7*time.Second)
		ev.ID = fmt.Sprintf("tie-%d", i)
		recs = append(recs, ev.AppendJSON(nil))
	}
	if _, err := l.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	total := uint64(n + len(recs))
	ix := openIndex(t, filepath.Join(dir, "index.db"))
	runUntil(t, ix, l, total)
	var docs []query.Doc
	for e, err := range l.Entries(0) {
		if err != nil {
			t.Fatal(err)
		}
		d, err := query.Flatten(e.Data)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	return ix, docs
}

func TestSearchAgreesWithMatch(t *testing.T) {
	ix, docs := fixture(t, 600)
	queries := []string{
		`user.name:alice`,
		`user.name:alice and event.outcome:failure`,
		`user.name:alice and event.outcome:failure and not source.ip:10.0.0.0/8`,
		`not user.name:alice`,
		`not labels.tier:gold`,
		`labels.tier:gold`,
		`labels.tier:*`,
		`labels:*`,
		`not labels.tier:*`,
		`url.path:/api/*`,
		`url.path:/api/orders/?7`,
		`url.path:*s`,
		`http.response.status_code:401`,
		`http.response.status_code >= 400`,
		`http.response.status_code >= 400 and http.response.status_code < 500`,
		`http.response.status_code:(401 or 403)`,
		`event.action:(authn_login_fail or authz_fail) and not user.name:mallory`,
		`source.ip:10.1.0.0/16`,
		`source.ip:10.2.3.4`,
		`client.ip:2001:db8::/32`,
		`client.ip:203.0.113.0/28`,
		`client.ip:::ffff:203.0.113.0/124`,
		`client.ip:203.0.113.4*`,
		`destination.ip:192.168.2.0/24`,
		`destination.ip:*`,
		`destination.ip:192.168.1.1`,
		`event.category:authentication`,
		`event.category:(web and not authentication)`,
		`event.category:auth*`,
		`event.reason:"bad password"`,
		`event.reason:bad*`,
		`event.duration > 500000`,
		`event.duration:0`,
		`@timestamp >= 2026-11-25T17:30:00Z and @timestamp < 2026-11-25T17:40:00.5Z`,
		`@timestamp:2026-11-25T17:00:35Z`,
		`user.name >= carol`,
		`user.name < "c"`,
		`http.request.method > 1`,
		`event.ingested:*`,
		`missing.field:*`,
		`not missing.field:x`,
		`alice`,
		`ALICE`,
		`PASSWORD`,
		`"bad password"`,
		`401`,
		`mozilla*5`,
		`20?1`,
		`user.name:"'; DROP TABLE events; --"`,
		`user.name:%`,
		`user.name:_`,
		`user.name:a[b]c`,
		`user.name:x*y`,
		`user.name:x\*y`,
		`user.name:a[*`,
		`user.name:"\"quoted\""`,
		`user.name:"back\\slash"`,
		`user.name:\?`,
		`user.name:?`,
		`user.name:ünï`,
		`url.path:/h/%`,
		`%`,
		`_`,
		`"\\"`,
		`"'"`,
		`DROP`,
		`event.id:tie-*`,
		`(user.name:bob or user.name:carol) and (event.action:authz_fail or http.response.status_code:500)`,
	}
	ctx := context.Background()
	for _, qs := range queries {
		q, err := query.Parse(qs)
		if err != nil {
			t.Errorf("Parse(%q): %v", qs, err)
			continue
		}
		var want []uint64
		for i, d := range docs {
			if q.Match(d) {
				want = append(want, uint64(i))
			}
		}
		res, err := ix.Search(ctx, Request{Query: q, Limit: MaxLimit})
		if err != nil {
			t.Errorf("Search(%q): %v", qs, err)
			continue
		}
		var got []uint64
		for _, h := range res.Hits {
			got = append(got, h.Index)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("Search(%q): %d hits, Match: %d\n got %v\nwant %v", qs, len(got), len(want), head(got), head(want))
		}
	}
	// The hostile values did no harm.
	if n, _, _ := count(t, ix); n != int64(len(docs)) {
		t.Fatalf("rows = %d after hostile queries", n)
	}
}

func head(s []uint64) []uint64 {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func TestSearchPagination(t *testing.T) {
	ix, docs := fixture(t, 300)
	ctx := context.Background()
	q, _ := query.Parse(`not user.name:bob`)
	for _, desc := range []bool{false, true} {
		var all []Hit
		req := Request{Query: q, Desc: desc, Limit: 7}
		for pages := 0; ; pages++ {
			if pages > 1000 {
				t.Fatal("pagination does not end")
			}
			res, err := ix.Search(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Hits) > 7 {
				t.Fatalf("page of %d", len(res.Hits))
			}
			all = append(all, res.Hits...)
			if res.Next == "" {
				break
			}
			req.Cursor = res.Next
		}
		var want int
		for _, d := range docs {
			if q.Match(d) {
				want++
			}
		}
		if len(all) != want {
			t.Fatalf("desc=%v: %d hits over all pages, want %d", desc, len(all), want)
		}
		seen := map[uint64]bool{}
		for i, h := range all {
			if seen[h.Index] {
				t.Fatalf("hit %d twice", h.Index)
			}
			seen[h.Index] = true
			if i > 0 {
				p := all[i-1]
				c := p.Time.Compare(h.Time)
				if c == 0 {
					c = cmpU(p.Index, h.Index)
				}
				if desc {
					c = -c
				}
				if c >= 0 {
					t.Fatalf("desc=%v: hits out of order at %d: %v/%d then %v/%d", desc, i, p.Time, p.Index, h.Time, h.Index)
				}
			}
		}
	}
	// Bounded by time: From is inclusive, To exclusive, so [event 100's
	// time, event 110's time) holds events 100..109 and nothing else (the
	// ties sit at event 5's time, the hostile events after event 299).
	from, to := t0.Add(100*7*time.Second), t0.Add(110*7*time.Second)
	res, err := ix.Search(ctx, Request{From: from, To: to, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, h := range res.Hits {
		got = append(got, h.Index)
	}
	if want := []uint64{100, 101, 102, 103, 104, 105, 106, 107, 108, 109}; !slices.Equal(got, want) {
		t.Fatalf("time range: hits %v, want %v", got, want)
	}
	for _, bad := range []string{"x", "!!!!", encodeCursor(1, 2)[:5]} {
		if _, err := ix.Search(ctx, Request{Cursor: bad}); err == nil {
			t.Errorf("cursor %q accepted", bad)
		}
	}
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestLookups(t *testing.T) {
	ix, _ := fixture(t, 200)
	ctx := context.Background()
	h, err := ix.ByEventID(ctx, "ev-00000042")
	if err != nil || h.Index != 42 || !strings.Contains(string(h.Raw), `"ev-00000042"`) {
		t.Fatalf("ByEventID = %+v, %v", h, err)
	}
	if _, err := ix.ByEventID(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ByEventID(nope) = %v", err)
	}
	hits, err := ix.ByRequestID(ctx, "req-00000021")
	if err != nil || len(hits) != 2 || hits[0].Index != 42 || hits[1].Index != 43 {
		t.Fatalf("ByRequestID = %+v, %v", hits, err)
	}
	if hits, err := ix.ByRequestID(ctx, "' OR 1=1 --"); err != nil || len(hits) != 0 {
		t.Fatalf("ByRequestID(hostile) = %d hits, %v", len(hits), err)
	}
}

func TestStatsAndTop(t *testing.T) {
	ix, docs := fixture(t, 1000)
	ctx := context.Background()
	q, _ := query.Parse(`http.response.status_code:401`)
	from := t0.Add(-30 * time.Second)
	to := t0.Add(2 * time.Hour)
	buckets, err := ix.Stats(ctx, StatsRequest{Query: q, From: from, To: to, Interval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(buckets) != 121 {
		t.Fatalf("%d buckets", len(buckets))
	}
	want := make([]int64, 121)
	for _, d := range docs {
		if !q.Match(d) {
			continue
		}
		ts, _ := time.Parse(time.RFC3339Nano, d["@timestamp"].(string))
		want[int(ts.Sub(from)/time.Minute)]++
	}
	for i, b := range buckets {
		if !b.Start.Equal(from.Add(time.Duration(i)*time.Minute)) || b.Count != want[i] {
			t.Fatalf("bucket %d = %+v, want count %d", i, b, want[i])
		}
	}
	for _, bad := range []StatsRequest{{From: from, To: to}, {To: to, Interval: time.Minute}, {From: from, To: from.Add(365 * 24 * time.Hour), Interval: time.Second}} {
		if _, err := ix.Stats(ctx, bad); err == nil {
			t.Errorf("Stats(%+v) accepted", bad)
		}
	}

	top, err := ix.Top(ctx, TopRequest{Field: "user.name", N: 3, Query: q})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, d := range docs {
		if q.Match(d) {
			counts[d["user.name"].(string)]++
		}
	}
	if len(top) == 0 || len(top) > 3 || top[0].Count != slices.Max(mapValues(counts)) {
		t.Fatalf("Top = %+v, counts %v", top, counts)
	}
	for i := 1; i < len(top); i++ {
		if top[i].Count > top[i-1].Count {
			t.Fatalf("Top not sorted: %+v", top)
		}
	}
	top, err = ix.Top(ctx, TopRequest{Field: "http.response.status_code"})
	if err != nil || len(top) != 4 {
		t.Fatalf("Top(status) = %+v, %v", top, err)
	}
	if _, err := ix.Top(ctx, TopRequest{Field: "labels.tier"}); err == nil || !strings.Contains(err.Error(), "not an indexed field") {
		t.Fatalf("Top(labels.tier) = %v", err)
	}
}

func mapValues(m map[string]int64) []int64 {
	var v []int64
	for _, x := range m {
		v = append(v, x)
	}
	return v
}

func TestRebuild(t *testing.T) {
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	appendEvents(t, l.Ledger, 0, 2500, time.Second)
	path := filepath.Join(dir, "index.db")
	// An old index, partly built, with a WAL, is replaced.
	ix := openIndex(t, path)
	runUntil(t, ix, l, 2500)
	ix.Close()
	appendEvents(t, l.Ledger, 2500, 100, time.Second)
	st, err := Rebuild(context.Background(), path, l)
	if err != nil {
		t.Fatal(err)
	}
	if st.First != 0 || st.Next != 2600 {
		t.Fatalf("Rebuild = %+v", st)
	}
	ix = openIndex(t, path)
	if ix.Indexed() != 2600 {
		t.Fatalf("Indexed() = %d", ix.Indexed())
	}
	if n, lo, hi := count(t, ix); n != 2600 || lo != 0 || hi != 2599 {
		t.Fatalf("rows %d [%d,%d]", n, lo, hi)
	}
	// It goes on following from there, with its indexes in place.
	appendEvents(t, l.Ledger, 2600, 10, time.Second)
	runUntil(t, ix, l, 2610)
	var plan string
	rows, err := ix.r.Query(`EXPLAIN QUERY PLAN SELECT idx FROM events WHERE request_id = ?`, "x")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a, b, c int
		var d string
		rows.Scan(&a, &b, &c, &d)
		plan += d
	}
	rows.Close()
	if !strings.Contains(plan, "events_request") {
		t.Fatalf("plan %q does not use events_request", plan)
	}
	// An empty ledger gives an empty index.
	empty := openLedger(t, filepath.Join(dir, "empty"))
	st, err = Rebuild(context.Background(), filepath.Join(dir, "empty.db"), empty)
	if err != nil || st.Next != 0 {
		t.Fatalf("Rebuild(empty) = %+v, %v", st, err)
	}
}
