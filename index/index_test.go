package index

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
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
	return openIndexOn(t, path, nil)
}

// openIndexOn opens an index whose queries read records from recs.
func openIndexOn(t testing.TB, path string, recs Records) *Index {
	t.Helper()
	ix, err := Open(path, Options{Ledger: recs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

// indexingIdle is how long waitIndexing waits for the index to advance.
const indexingIdle = 30 * time.Second

// waitIndexing waits until ix has indexed n records while it makes
// progress: it fails (an error saying where it stopped) only when Indexed
// did not advance for indexingIdle. A fixed deadline for all of them is
// a rate, which a loaded machine does not keep: at load ~14 on two cores
// TestRunRunsMatchRebuild's writer with batches of one record (a commit
// each) indexed 1,630 of 3,828 records in 60 s, advancing all the while.
func waitIndexing(ix *Index, n uint64) error {
	for {
		at := ix.Indexed()
		ctx, cancel := context.WithTimeout(context.Background(), indexingIdle)
		// Wait for the next record, or all of them (WaitIndexed returns
		// at the first value past at+1 too).
		err := ix.WaitIndexed(ctx, min(n, at+1))
		cancel()
		switch {
		case ix.Indexed() >= n:
			return nil
		case errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("indexed %d of %d records, none more in %v: %w", ix.Indexed(), n, indexingIdle, err)
		case err != nil:
			return fmt.Errorf("indexed %d of %d records: %w", ix.Indexed(), n, err)
		}
	}
}

// runUntil runs ix.Run on src in the background until Indexed reaches n.
func runUntil(t testing.TB, ix *Index, src Source, n uint64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ix.Run(ctx, src) }()
	waited := waitIndexing(ix, n)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if waited != nil {
		t.Fatal(waited)
	}
	if got := ix.Indexed(); got != n {
		t.Fatalf("Indexed() = %d, want %d", got, n)
	}
}

// count is the number of records the index holds rows for, and the
// first and last of their ledger indexes (-1 if none).
func count(t testing.TB, ix *Index) (rows, lo, hi int64) {
	t.Helper()
	ctx := context.Background()
	tx, err := ix.readTx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	metas, err := blockMetas(ctx, tx, math.MinInt64, math.MaxInt64, 0)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi = -1, -1
	for _, b := range metas {
		if err := b.load(ctx, tx, allNeeded); err != nil {
			t.Fatal(err)
		}
		for i := range b.n {
			if !b.present(i) {
				continue
			}
			rows++
			if lo < 0 {
				lo = int64(b.idx(i))
			}
			hi = int64(b.idx(i))
		}
	}
	return rows, lo, hi
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
		// Whether they are picked up, not how soon: a loaded machine
		// stalls the test process for seconds.
		if time.Since(start) > 30*time.Second {
			t.Fatalf("Indexed() = %d after 30s", ix.Indexed())
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

// oddRecords are records whose fields the columns cannot all represent,
// and others that look odd but are not: each must be found exactly when
// query.Match says so.
var oddRecords = []string{
	`not json at all`,
	`[1,2]`,
	`{"@timestamp":"bad","user":{"name":7},"url":{"path":"/x"}}`,
	`{"@timestamp":"2026-11-25T17:00:01Z","user.name":"alice","event":{"action":"authz_fail"}}`,
	`{"@timestamp":"2026-11-25T17:00:02Z","user":{"name":"alice"},"user":{"name":"bob"}}`,
	`{"@timestamp":"2026-11-25T17:00:03Z","user":{"name":"alice"},"user.name":"bob"}`,
	`{"@timestamp":"2026-11-25T17:00:04Z","user":{"name":["alice","bob"]},"event":{"outcome":"failure"}}`,
	`{"@timestamp":"2026-11-25T17:00:05Z","user":[{"name":"carol"}],"http":{"response":{"status_code":"401"}}}`,
	`{"@timestamp":"2026-11-25T17:00:06Z","http":{"response":{"status_code":401.0}},"user":{"name":"dave"}}`,
	`{"@timestamp":"2026-11-25T17:00:07Z","source":{"ip":"not-an-ip"},"client":{"ip":"::ffff:203.0.113.9"}}`,
	`{"@timestamp":"2026-11-25T17:00:08Z","User":{"Name":"alice"},"user":{"name":{"first":"x"}}}`,
	`{"event":{"action":"authz_fail"},"user":{"name":"alice"}}`,
	`{"@timestamp":"3000-01-01T00:00:00Z","user":{"name":"future"}}`,
	`{"@timestamp":"2026-11-25T17:00:09Z","event":{"category":"web","id":5}}`,
	`{"@timestamp":"2026-11-25T17:00:10Z","event":{"category":["a,b","web"]}}`,
	`{"@timestamp":"2026-11-25T17:00:11Z","us\u0065r":{"name":"esc\u00e9"},"url":{"path":"/\u2028x"}}`,
	"{\"@timestamp\":\"2026-11-25T17:00:12Z\",\"user\":{\"name\":\"bad\xffutf8\"}}",
	`{"@timestamp":"2026-11-25T17:00:13Z","http":{"request":{"id":"shared"}},"event":{"id":"dup-id"}}`,
	`{"@timestamp":"2026-11-25T17:00:14Z","http.request":{"id":"shared","method":"GET"},"event":{"id":"dup-id"}}`,
	`{"@timestamp":"2026-11-25T17:00:15Z","user":{"name":null},"event":{"category":[]}}`,
	`{"@timestamp":"2026-11-25T17:00:16Z","user":{"name":""},"a":` + strings.Repeat(`[`, 40) + strings.Repeat(`]`, 40) + `}`,
	`{"@timestamp":"2026-11-25T17:00:17Z","http":{"response":{"status_code":123456789012345678901}}}`,
	`  {"@timestamp":"2026-11-25T17:00:18Z","user":{"name":"spaced"}}  `,
}

func TestNonJSONRecords(t *testing.T) {
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	recs := [][]byte{[]byte(`not json at all`), []byte(`[1,2]`), []byte(`{"@timestamp":"bad","user":{"name":7},"url":{"path":"/x"}}`), genEvent(1, time.Second).AppendJSON(nil)}
	if _, err := l.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	ix := openIndexOn(t, filepath.Join(dir, "i.db"), l)
	runUntil(t, ix, l, 4)
	res, err := ix.Search(context.Background(), Request{})
	if err != nil || len(res.Hits) != 4 {
		t.Fatalf("Search = %v, %v", res, err)
	}
	for _, h := range res.Hits {
		if !bytes.Equal(h.Raw, recs[h.Index]) {
			t.Errorf("hit %d: %q, want the record as stored", h.Index, h.Raw)
		}
	}
	// A record that is not a JSON object matches no query.
	q, _ := query.Parse(`"json at"`)
	res, err = ix.Search(context.Background(), Request{Query: q})
	if err != nil || len(res.Hits) != 0 {
		t.Fatalf("free text on a non-JSON record = %v, %v", res, err)
	}
	q, _ = query.Parse(`url.path:/x`)
	res, err = ix.Search(context.Background(), Request{Query: q})
	if err != nil || len(res.Hits) != 1 || res.Hits[0].Index != 2 {
		t.Fatalf("url.path:/x = %v, %v", res, err)
	}
}

// fixture indexes n generated events plus hostile and odd ones and returns
// the index and every record flattened, by ledger index (nil for records
// that are not JSON objects).
func fixture(t *testing.T, n int) (*Index, []query.Doc) {
	t.Helper()
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	appendEvents(t, l.Ledger, 0, n, 7*time.Second)
	hostile := []string{`'; DROP TABLE events; --`, `%`, `_`, `a[b]c`, `x*y`, `"quoted"`, `back\slash`, `?`, `ünï`, "\u2028", `<script>&amp;`}
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
	for _, o := range oddRecords {
		recs = append(recs, []byte(o))
	}
	if _, err := l.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	total := uint64(n + len(recs))
	ix := openIndexOn(t, filepath.Join(dir, "index.db"), l)
	runUntil(t, ix, l, total)
	var docs []query.Doc
	for e, err := range l.Entries(0) {
		if err != nil {
			t.Fatal(err)
		}
		d, _ := query.Flatten(e.Data)
		docs = append(docs, d)
	}
	return ix, docs
}

// fixtureQueries cover every column kind, non-column fields, free text,
// hostile values and the odd records.
var fixtureQueries = []string{
	`user.name:alice`,
	`user.name:alice and event.outcome:failure`,
	`user.name:alice and event.outcome:failure and not source.ip:10.0.0.0/8`,
	`not user.name:alice`,
	`not user.name:*`,
	`user.name:*`,
	`user.name:""`,
	`not labels.tier:gold`,
	`labels.tier:gold`,
	`labels.tier:*`,
	`labels:*`,
	`not labels.tier:*`,
	`url.path:/api/*`,
	`url.path:/api/orders/?7`,
	`url.path:*s`,
	`http.response.status_code:401`,
	`not http.response.status_code:401`,
	`http.response.status_code >= 400`,
	`http.response.status_code >= 400 and http.response.status_code < 500`,
	`http.response.status_code:(401 or 403)`,
	`event.action:(authn_login_fail or authz_fail) and not user.name:mallory`,
	`source.ip:10.1.0.0/16`,
	`source.ip:10.2.3.4`,
	`source.ip:*`,
	`not source.ip:*`,
	`client.ip:2001:db8::/32`,
	`client.ip:203.0.113.0/28`,
	`client.ip:::ffff:203.0.113.0/124`,
	`client.ip:203.0.113.4*`,
	`destination.ip:192.168.2.0/24`,
	`destination.ip:*`,
	`destination.ip:192.168.1.1`,
	`event.category:authentication`,
	`event.category:web`,
	`event.category:(web and not authentication)`,
	`event.category:auth*`,
	`event.category:*`,
	`event.reason:"bad password"`,
	`event.reason:bad*`,
	`event.duration > 500000`,
	`event.duration:0`,
	`event.id:ev-00000042`,
	`event.id:tie-*`,
	`event.id:5`,
	`event.id:*`,
	`http.request.id:shared`,
	`http.request.id:req-00000021 or user.name:carol`,
	`@timestamp >= 2026-11-25T17:30:00Z and @timestamp < 2026-11-25T17:40:00.5Z`,
	`@timestamp:2026-11-25T17:00:35Z`,
	`@timestamp:*`,
	`not @timestamp:*`,
	`@timestamp < 2300-01-01`,
	`user.name >= carol`,
	`user.name < "c"`,
	`http.request.method > 1`,
	`http.request.method:GET`,
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
	`user.name:esc*`,
	`user.name:bad*`,
	`url.path:/h/%`,
	`%`,
	`_`,
	`"\\"`,
	`"'"`,
	`DROP`,
	`(user.name:bob or user.name:carol) and (event.action:authz_fail or http.response.status_code:500)`,
	`user.name:alice or not event.outcome:success`,
}

// want is the ledger indices of docs matching q, as query.Match says.
func want(q query.Expr, docs []query.Doc) []uint64 {
	var w []uint64
	for i, d := range docs {
		if q == nil || d != nil && q.Match(d) {
			w = append(w, uint64(i))
		}
	}
	return w
}

func TestSearchAgreesWithMatch(t *testing.T) {
	t.Parallel()
	// 120 generated events hold every kind of value the queries look for;
	// queries the columns cannot decide read every record, three times.
	ix, docs := fixture(t, 120)
	ctx := context.Background()
	// Every record's time and bytes, as Search gives them.
	times := make([]time.Time, len(docs))
	raws := make([][]byte, len(docs))
	for i := range docs {
		e, err := ix.opts.Ledger.Read(uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		var x extracted
		extract(e.Data, &x)
		times[i], raws[i] = time.Unix(0, x.columns(e.Time).ts), e.Data
	}
	// From far in the past to far in the future: every record but the
	// year-3000 one.
	from, to := time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	topFields := []string{"user.name", "event.category", "http.response.status_code", "client.ip", "labels.tier"}
	for qi, qs := range fixtureQueries {
		q, err := query.Parse(qs)
		if err != nil {
			t.Errorf("Parse(%q): %v", qs, err)
			continue
		}
		w := want(q, docs)
		res, err := ix.Search(ctx, Request{Query: q, Limit: MaxLimit})
		if err != nil {
			t.Errorf("Search(%q): %v", qs, err)
			continue
		}
		var got []uint64
		for _, h := range res.Hits {
			got = append(got, h.Index)
			if !bytes.Equal(h.Raw, raws[h.Index]) || !h.Time.Equal(times[h.Index]) {
				t.Errorf("Search(%q): hit %d is not the ledger's record", qs, h.Index)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, w) || res.Partial || res.Next != "" {
			t.Errorf("Search(%q): %d hits (partial %v), Match: %d\n got %v\nwant %v", qs, len(got), res.Partial, len(w), head(got), head(w))
		}
		if len(res.Mismatches)+len(res.Unreadable) > 0 {
			t.Errorf("Search(%q): mismatches %v, unreadable %v in an untouched index", qs, res.Mismatches, res.Unreadable)
		}
		var inRange []uint64
		for _, i := range w {
			if !times[i].Before(from) && times[i].Before(to) {
				inRange = append(inRange, i)
			}
		}
		// Stats count the same events.
		st, err := ix.Stats(ctx, StatsRequest{Query: q, From: from, To: to, Interval: AutoInterval(from, to, 100)})
		if err != nil {
			t.Errorf("Stats(%q): %v", qs, err)
			continue
		}
		var total int64
		for _, b := range st.Buckets {
			total += b.Count
		}
		if total != int64(len(inRange)) || st.Partial || len(st.Mismatches) > 0 {
			t.Errorf("Stats(%q): counted %d (partial %v, mismatches %v), want %d", qs, total, st.Partial, st.Mismatches, len(inRange))
		}
		// Top agrees with counting the values of the matching records (a
		// different field, and so column kind, for each query in turn).
		for _, field := range []string{topFields[qi%len(topFields)]} {
			wantTop := map[string]int64{}
			for _, i := range inRange {
				for _, v := range recordValues(field, raws[i]) {
					wantTop[v]++
				}
			}
			top, err := ix.Top(ctx, TopRequest{Query: q, From: from, To: to, Field: field, N: MaxTop})
			if err != nil {
				t.Errorf("Top(%q, %s): %v", qs, field, err)
				continue
			}
			gotTop := map[string]int64{}
			for i, v := range top.Values {
				gotTop[v.Value] = v.Count
				if i > 0 && (v.Count > top.Values[i-1].Count || v.Count == top.Values[i-1].Count && v.Value < top.Values[i-1].Value) {
					t.Errorf("Top(%q, %s) out of order: %+v", qs, field, top.Values)
				}
			}
			if !maps.Equal(gotTop, wantTop) || top.Partial || len(top.Mismatches) > 0 {
				t.Errorf("Top(%q, %s) = %v (mismatches %v), want %v", qs, field, gotTop, top.Mismatches, wantTop)
			}
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
		if w := want(q, docs); len(all) != len(w) {
			t.Fatalf("desc=%v: %d hits over all pages, want %d", desc, len(all), len(w))
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
					c = cmp.Compare(p.Index, h.Index)
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
	for _, bad := range []string{"x", "!!!!", encodeCursor(pos{1, 2})[:5]} {
		var re *RequestError
		if _, err := ix.Search(ctx, Request{Cursor: bad}); !errors.As(err, &re) || re.Param != "cursor" {
			t.Errorf("cursor %q: %v", bad, err)
		}
	}
	for _, bad := range []Request{{Limit: -1}, {Limit: MaxLimit + 1}, {From: to, To: from}} {
		var re *RequestError
		if _, err := ix.Search(ctx, bad); !errors.As(err, &re) {
			t.Errorf("Search(%+v) = %v, want a RequestError", bad, err)
		}
	}
}

func TestLookups(t *testing.T) {
	ix, _ := fixture(t, 200)
	ctx := context.Background()
	h, err := ix.ByEventID(ctx, "ev-00000042")
	if err != nil || h.Index != 42 || !bytes.Equal(h.Raw, genEvent(42, 7*time.Second).AppendJSON(nil)) {
		t.Fatalf("ByEventID = %+v, %v", h, err)
	}
	if _, err := ix.ByEventID(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ByEventID(nope) = %v", err)
	}
	// Two records share an id: the first in the ledger.
	h, err = ix.ByEventID(ctx, "dup-id")
	if err != nil || !strings.Contains(string(h.Raw), `"shared"`) || !strings.Contains(string(h.Raw), `"http":{`) {
		t.Fatalf("ByEventID(dup-id) = %s, %v", h.Raw, err)
	}
	hits, ch, err := ix.ByRequestID(ctx, "req-00000021")
	if err != nil || len(hits) != 2 || hits[0].Index != 42 || hits[1].Index != 43 || ch.Scanned != 2 {
		t.Fatalf("ByRequestID = %+v, %+v, %v", hits, ch, err)
	}
	// Dotted and nested forms of http.request.id are one field.
	if hits, _, err := ix.ByRequestID(ctx, "shared"); err != nil || len(hits) != 2 {
		t.Fatalf("ByRequestID(shared) = %d hits, %v", len(hits), err)
	}
	if hits, _, err := ix.ByRequestID(ctx, "' OR 1=1 --"); err != nil || len(hits) != 0 {
		t.Fatalf("ByRequestID(hostile) = %d hits, %v", len(hits), err)
	}
}

func TestStatsBuckets(t *testing.T) {
	ix, docs := fixture(t, 1000)
	ctx := context.Background()
	q, _ := query.Parse(`http.response.status_code:401`)
	// From and To off the minute: buckets still start on whole minutes.
	from := t0.Add(-30 * time.Second)
	to := t0.Add(2*time.Hour + 10*time.Second)
	st, err := ix.Stats(ctx, StatsRequest{Query: q, From: from, To: to, Interval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	first := t0.Add(-time.Minute)
	if len(st.Buckets) != 122 || !st.Buckets[0].Start.Equal(first) {
		t.Fatalf("%d buckets from %v", len(st.Buckets), st.Buckets[0].Start)
	}
	want := make([]int64, 122)
	for _, d := range docs {
		if d == nil || !q.Match(d) {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, d["@timestamp"].(string))
		if err != nil || ts.Before(from) || !ts.Before(to) {
			continue
		}
		want[int(ts.Sub(first)/time.Minute)]++
	}
	for i, b := range st.Buckets {
		if !b.Start.Equal(first.Add(time.Duration(i)*time.Minute)) || b.Count != want[i] || b.Start.Second() != 0 {
			t.Fatalf("bucket %d = %+v, want count %d", i, b, want[i])
		}
	}
	// Hours start at :00:00 and days at 00:00 UTC.
	for _, iv := range []time.Duration{time.Hour, 24 * time.Hour} {
		st, err := ix.Stats(ctx, StatsRequest{From: t0.Add(-100 * time.Hour).Add(17 * time.Minute), To: t0.Add(7 * time.Minute), Interval: iv})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range st.Buckets {
			if b.Start.Location() != time.UTC || b.Start.Truncate(iv) != b.Start || b.Start.Minute() != 0 {
				t.Fatalf("%v bucket starts at %v", iv, b.Start)
			}
		}
	}
	var re *RequestError
	for _, bad := range []StatsRequest{
		{From: from, To: to},
		{To: to, Interval: time.Minute},
		{From: from, Interval: time.Minute},
		{From: to, To: from, Interval: time.Minute},
		{From: from, To: from.Add(365 * 24 * time.Hour), Interval: time.Second},
	} {
		if _, err := ix.Stats(ctx, bad); !errors.As(err, &re) {
			t.Errorf("Stats(%+v) = %v, want a RequestError", bad, err)
		}
	}
	_, err = ix.Stats(ctx, StatsRequest{From: from, To: from.Add(8760 * time.Hour), Interval: time.Second})
	if !errors.As(err, &re) || re.Param != "interval" || !strings.Contains(err.Error(), "use interval=1h or more") {
		t.Fatalf("a year in seconds: %v", err)
	}
}

func TestAutoInterval(t *testing.T) {
	base := time.Date(2026, 11, 25, 17, 3, 9, 0, time.UTC)
	day := 24 * time.Hour
	for _, tt := range []struct {
		span time.Duration
		want time.Duration
	}{
		{time.Minute, time.Second},
		{15 * time.Minute, 5 * time.Second},
		{time.Hour, 30 * time.Second},
		{24 * time.Hour, 10 * time.Minute},
		{7 * day, time.Hour},
		{30 * day, 6 * time.Hour},
		{365 * day, 48 * time.Hour},
		{1000 * day, 7 * day},
		{6 * 365 * day, 0}, // whole days
		{100 * 365 * day, 0},
	} {
		got := AutoInterval(base, base.Add(tt.span), 200)
		if _, n := alignedBuckets(base, base.Add(tt.span), got); n > 200 {
			t.Errorf("AutoInterval(%v) = %v gives %d buckets", tt.span, got, n)
		}
		if tt.want != 0 && got != tt.want {
			t.Errorf("AutoInterval(%v, 200) = %v, want %v", tt.span, got, tt.want)
		}
		if tt.want == 0 {
			if got%day != 0 {
				t.Errorf("AutoInterval(%v) = %v, not whole days", tt.span, got)
			}
			if _, n := alignedBuckets(base, base.Add(tt.span), got-day); n <= 200 {
				t.Errorf("AutoInterval(%v) = %v, but a day less fits", tt.span, got)
			}
		}
	}
}

func TestTopFields(t *testing.T) {
	ix, _ := fixture(t, 300)
	ctx := context.Background()
	for _, f := range TopFields() {
		if _, err := ix.Top(ctx, TopRequest{Field: f}); err != nil {
			t.Errorf("Top(%s): %v", f, err)
		}
	}
	// The four status codes of the generated events, counted from the
	// index (one record read each to show the value), then the two odd
	// records' values, read from the ledger.
	top, err := ix.Top(ctx, TopRequest{Field: "http.response.status_code"})
	if err != nil || len(top.Values) != 6 || top.Scanned > len(oddRecords)+4 {
		t.Fatalf("Top(status) = %+v, %v", top, err)
	}
	for i, v := range []string{"200", "401", "403", "500", "123456789012345678901", "401.0"} {
		if top.Values[i].Value != v {
			t.Fatalf("Top(status) = %+v", top.Values)
		}
	}
	// A field without a column is counted from the records.
	top, err = ix.Top(ctx, TopRequest{Field: "labels.tier"})
	if err != nil || len(top.Values) != 1 || top.Values[0].Value != "gold" || top.Scanned < 300 {
		t.Fatalf("Top(labels.tier) = %+v, %v", top, err)
	}
	var re *RequestError
	for _, bad := range []TopRequest{{Field: ""}, {Field: "a b"}, {Field: "user.name", N: -1}, {Field: "user.name", N: MaxTop + 1}} {
		if _, err := ix.Top(ctx, bad); !errors.As(err, &re) {
			t.Errorf("Top(%+v) = %v, want a RequestError", bad, err)
		}
	}
}

// TestScanBudget: a query the columns cannot decide reads at most the
// budget of records per call, says it is partial, and its cursor goes on.
func TestScanBudget(t *testing.T) {
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	appendEvents(t, l.Ledger, 0, 1000, time.Second)
	ix, err := Open(filepath.Join(dir, "i.db"), Options{Ledger: l, ScanBudget: 150})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	runUntil(t, ix, l, 1000)
	ctx := context.Background()
	q, _ := query.Parse(`labels.tier:gold`) // one event in ten, no column
	req := Request{Query: q, Limit: 1000}
	var got []uint64
	partials := 0
	for range 100 {
		res, err := ix.Search(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if res.Scanned > 150 {
			t.Fatalf("scanned %d records, budget 150", res.Scanned)
		}
		for _, h := range res.Hits {
			got = append(got, h.Index)
		}
		if res.Partial {
			partials++
			if res.Next == "" {
				t.Fatal("partial without a cursor")
			}
		}
		if res.Next == "" {
			break
		}
		req.Cursor = res.Next
	}
	if len(got) != 100 || partials < 6 {
		t.Fatalf("%d hits over %d partial pages", len(got), partials)
	}
	for i, idx := range got {
		if idx != uint64(i*10+7) {
			t.Fatalf("hit %d is %d", i, idx)
		}
	}
	// Stats on it count the newest events and say from when.
	st, err := ix.Stats(ctx, StatsRequest{Query: q, From: t0, To: t0.Add(time.Hour), Interval: time.Minute})
	if err != nil || !st.Partial || st.Scanned != 150 {
		t.Fatalf("Stats: partial %v scanned %d, %v", st.Partial, st.Scanned, err)
	}
	var total int64
	for _, b := range st.Buckets {
		total += b.Count
	}
	// Records 999 down to 850 were read; 849 was next.
	if total != 15 || !st.CountedFrom.Equal(t0.Add(849*time.Second+time.Nanosecond)) {
		t.Fatalf("Stats counted %d from %v", total, st.CountedFrom)
	}
	// A query the columns decide is counted from them, whatever the budget.
	q, _ = query.Parse(`http.response.status_code:403`)
	st, err = ix.Stats(ctx, StatsRequest{Query: q, From: t0, To: t0.Add(time.Hour), Interval: time.Minute})
	if err != nil || st.Partial || st.Scanned != 0 {
		t.Fatalf("Stats(status): partial %v scanned %d, %v", st.Partial, st.Scanned, err)
	}
}

// TestScanTime: a query whose conditions the columns cannot decide stops
// checking records after Options.ScanTime, as after ScanBudget records (a
// partial page with a cursor that goes on; Stats say from when they
// counted). A read token's free-text search for 4,000 characters that
// almost occur checked each 200 KiB record for about a second (51 s over a
// hundred such records in a live collector), so that the budget of 50,000
// records bounded nothing.
func TestScanTime(t *testing.T) {
	t.Parallel()
	const n = 40
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	pad := strings.Repeat("a", 200<<10)
	var recs [][]byte
	for i := range n {
		ev := genEvent(i, time.Second)
		ev.Message = pad
		recs = append(recs, ev.AppendJSON(nil))
	}
	if _, err := l.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	ix, err := Open(filepath.Join(dir, "i.db"), Options{Ledger: l, ScanTime: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	runUntil(t, ix, l, n)
	ctx := context.Background()
	q, err := query.Parse(strings.Repeat("a", 4000) + "b")
	if err != nil {
		t.Fatal(err)
	}
	res, err := ix.Search(ctx, Request{Query: q, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Partial || res.Next == "" || res.Scanned == 0 || res.Scanned >= n {
		t.Fatalf("search: partial %v, next %q, scanned %d of %d", res.Partial, res.Next, res.Scanned, n)
	}
	next, err := ix.Search(ctx, Request{Query: q, Limit: 10, Cursor: res.Next})
	if err != nil || next.Scanned == 0 {
		t.Fatalf("the next page: scanned %d, %v", next.Scanned, err)
	}
	st, err := ix.Stats(ctx, StatsRequest{Query: q, From: t0, To: t0.Add(time.Hour), Interval: time.Minute})
	if err != nil || !st.Partial || st.Scanned >= n || st.CountedFrom.IsZero() {
		t.Fatalf("Stats: partial %v scanned %d counted from %v, %v", st.Partial, st.Scanned, st.CountedFrom, err)
	}
}

func TestRebuild(t *testing.T) {
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	appendEvents(t, l.Ledger, 0, 2500, time.Second)
	path := filepath.Join(dir, "index.db")
	// An old index, partly built, with a WAL, is replaced.
	ix := openIndexOn(t, path, l)
	runUntil(t, ix, l, 2500)
	// Not while it is open.
	if _, err := Rebuild(context.Background(), path, l); !errors.Is(err, ErrInUse) {
		t.Fatalf("Rebuild of an open index = %v", err)
	}
	ix.Close()
	appendEvents(t, l.Ledger, 2500, 100, time.Second)
	st, err := Rebuild(context.Background(), path, l)
	if err != nil {
		t.Fatal(err)
	}
	if st.First != 0 || st.Next != 2600 {
		t.Fatalf("Rebuild = %+v", st)
	}
	ix = openIndexOn(t, path, l)
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
	rows, err := ix.r.Query(`EXPLAIN QUERY PLAN SELECT max(h0) FROM idchunks WHERE run = ? AND h0 <= ?`, 1, 2)
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
	if !strings.Contains(plan, "autoindex_idchunks") {
		t.Fatalf("plan %q does not use the id chunks' key", plan)
	}
	if hits, _, err := ix.ByRequestID(context.Background(), "req-00001302"); err != nil || len(hits) != 2 {
		t.Fatalf("after rebuild: %d hits, %v", len(hits), err)
	}
	// An empty ledger gives an empty index.
	empty := openLedger(t, filepath.Join(dir, "empty"))
	st, err = Rebuild(context.Background(), filepath.Join(dir, "empty.db"), empty)
	if err != nil || st.Next != 0 {
		t.Fatalf("Rebuild(empty) = %+v, %v", st, err)
	}
}

// TestMain makes blocks small (and not a power of two), so that every
// test's queries merge, skip and prune across many blocks and read blocks
// again for more candidates; benchmarks
// measure the real size.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		blockSize = 97
		maxHeld = 7
	}
	os.Exit(m.Run())
}

// TestSearchOverlappingBlocks: when every block holds events of two eras a
// year apart (a backfill mixed with live events), so that every block's
// time range overlaps every other's, pages in both directions still give
// every event once in (time, index) order.
func TestSearchOverlappingBlocks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	const n = 1500
	var recs [][]byte
	var want []pos
	for i := range n {
		ev := genEvent(i, time.Second)
		if i%2 == 1 {
			ev.Timestamp = ev.Timestamp.Add(-365 * 24 * time.Hour)
		}
		if i%5 == 0 {
			ev.Timestamp = t0 // ties across blocks
		}
		recs = append(recs, ev.AppendJSON(nil))
		want = append(want, pos{ev.Timestamp.UnixNano(), uint64(i)})
	}
	if _, err := l.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	ix := openIndexOn(t, filepath.Join(dir, "index.db"), l)
	runUntil(t, ix, l, n)
	for _, desc := range []bool{false, true} {
		slices.SortFunc(want, func(a, b pos) int {
			if before(a, b, desc) {
				return -1
			}
			return 1
		})
		var got []pos
		cursor := ""
		for page := 0; ; page++ {
			res, err := ix.Search(context.Background(), Request{Desc: desc, Limit: 37, Cursor: cursor})
			if err != nil || page > n {
				t.Fatalf("page %d: %v", page, err)
			}
			for _, h := range res.Hits {
				got = append(got, pos{h.Time.UnixNano(), h.Index})
			}
			if cursor = res.Next; cursor == "" {
				break
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("desc=%v: %d events, want %d, in order", desc, len(got), len(want))
		}
	}
}
