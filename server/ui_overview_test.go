package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// overviewEvent makes a varied event: nested or dotted keys, categories as
// arrays or strings, escapes, missing fields.
func overviewEvent(rng *rand.Rand, at time.Time, i int) string {
	services := []string{"shop", "auth", `pay"ments`, "édge"}
	m := map[string]any{"@timestamp": at.UTC().Format(time.RFC3339Nano), "event": map[string]any{"id": fmt.Sprintf("ov-%d", i)}}
	ev := m["event"].(map[string]any)
	switch rng.IntN(6) {
	case 0:
		ev["category"], ev["action"], ev["outcome"] = []string{"authentication"}, "authn_login_fail", "failure"
		m["user"] = map[string]any{"name": []string{"alice", "bob", `c"arol`, "d\\ave", "émile"}[rng.IntN(5)]}
	case 1:
		ev["category"], ev["action"], ev["outcome"] = "authentication", "authn_login_success", "success"
	case 2:
		ev["category"], ev["action"], ev["outcome"] = []string{"web"}, "http_request", "failure"
		m["http"] = map[string]any{"response": map[string]any{"status_code": 401}}
	case 3:
		ev["category"], ev["action"], ev["outcome"] = []string{"iam"}, "authz_fail", "failure"
	case 4:
		ev["category"], ev["action"] = []string{"web", "authentication"}, "http_request"
		m["http"] = map[string]any{"response": map[string]any{"status_code": 200 + 201*rng.IntN(2)}}
		ev["outcome"] = "success"
	default:
		delete(m, "event")
		m["event.category"], m["event.action"], m["event.outcome"] = []string{"web"}, "http_request", "failure"
		m["http.response.status_code"] = 401
	}
	if rng.IntN(5) > 0 {
		m["service"] = map[string]any{"name": services[rng.IntN(len(services))]}
	}
	if rng.IntN(4) > 0 {
		m["source"] = map[string]any{"ip": fmt.Sprintf("192.0.2.%d", rng.IntN(30))}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// TestOverviewMatchesStats: every series of /v1/overview equals the count
// /v1/stats gives for the same query, range and interval, in all and per
// service, and the top lists equal /v1/stats top over their whole hours.
func TestOverviewMatchesStats(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	rng := rand.New(rand.NewPCG(7, 8))
	now := time.Now()
	var body strings.Builder
	for i := range 3000 {
		at := now.Add(-3*time.Hour + time.Duration(rng.Int64N(int64(3*time.Hour))))
		body.WriteString(overviewEvent(rng, at, i))
		body.WriteByte('\n')
	}
	if code, b := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(body.String())); code != 200 {
		t.Fatalf("ingest: %d %s", code, b)
	}
	ts.waitIndexed(t)
	deadline := time.Now().Add(30 * time.Second)
	for ts.ui.overview.caughtUp() < ts.ledger.Size() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	// A fixed range that ends before now: the collector's own audit events
	// keep arriving.
	to := now.Add(-time.Minute).Truncate(time.Minute)
	from := to.Add(-2 * time.Hour)
	f, tt := from.Format(time.RFC3339), to.Format(time.RFC3339)
	for _, iv := range []string{"1m", "10m"} {
		for _, svc := range []string{"", "shop", `pay"ments`, "édge", "nosuch"} {
			q := "/v1/overview?from=" + f + "&to=" + tt + "&interval=" + iv + "&warm=30m&service=" + url.QueryEscape(svc)
			code, b := ts.do(t, "GET", q, ts.read, nil)
			if code != 200 {
				t.Fatalf("%s: %d %s", q, code, b)
			}
			var ov struct {
				Covered bool
				Series  map[string]overviewSeries
			}
			json.Unmarshal(b, &ov)
			if !ov.Covered {
				t.Fatalf("%s: not covered: %s", q, b)
			}
			for si, name := range seriesNames {
				sq := seriesQueries[si]
				if svc != "" {
					sq = strings.TrimPrefix(sq+` and service.name:"`+strings.ReplaceAll(svc, `"`, `\"`)+`"`, " and ")
				}
				sf := from
				if si == ser401 || si == serAuthzFail {
					sf = from.Add(-30 * time.Minute)
				}
				sc, sb := ts.do(t, "GET", "/v1/stats?interval="+iv+"&from="+sf.Format(time.RFC3339)+"&to="+tt+"&q="+url.QueryEscape(sq), ts.read, nil)
				if sc != 200 {
					t.Fatalf("stats %q: %d %s", sq, sc, sb)
				}
				var st struct {
					Buckets []struct {
						Start time.Time
						Count int64
					}
				}
				json.Unmarshal(sb, &st)
				want := map[int64]int64{}
				for _, bk := range st.Buckets {
					want[bk.Start.Unix()] = bk.Count
				}
				s := ov.Series[name]
				step, _ := time.ParseDuration(iv)
				var total int64
				for k, c := range s.Counts {
					at := s.Start.Add(time.Duration(k) * step).Unix()
					if int64(c) != want[at] {
						t.Fatalf("%s service %q interval %s: bucket %s has %d, /v1/stats says %d", name, svc, iv, time.Unix(at, 0).UTC(), c, want[at])
					}
					total += int64(c)
					delete(want, at)
				}
				for at, c := range want {
					if c != 0 {
						t.Fatalf("%s service %q: /v1/stats bucket %s (%d) missing from the overview", name, svc, time.Unix(at, 0).UTC(), c)
					}
				}
				if name == "events" && svc == "" && total < 2000 {
					t.Fatalf("only %d events counted", total)
				}
			}
		}
	}
	// Top lists over their whole hours.
	code, b := ts.do(t, "GET", "/v1/overview?n=50&from="+f+"&to="+tt, ts.read, nil)
	if code != 200 {
		t.Fatal(code)
	}
	var ov struct {
		Tops struct {
			From, To     time.Time
			Complete     bool
			SourceIP     []overviewTop `json:"source_ip"`
			FailingUsers []overviewTop `json:"failing_users"`
		}
	}
	json.Unmarshal(b, &ov)
	for _, c := range []struct {
		top  string
		q    string
		list []overviewTop
	}{{"source.ip", "", ov.Tops.SourceIP}, {"user.name", seriesQueries[serAuthFail], ov.Tops.FailingUsers}} {
		_, sb := ts.do(t, "GET", "/v1/stats?n=50&top="+c.top+"&from="+ov.Tops.From.Format(time.RFC3339)+"&to="+ov.Tops.To.Format(time.RFC3339)+"&q="+url.QueryEscape(c.q), ts.read, nil)
		var st struct{ Top []overviewTop }
		json.Unmarshal(sb, &st)
		// The collector's own events (127.0.0.1: this test's requests) go on
		// arriving between the two calls.
		own := func(e overviewTop) bool { return e.Value == "127.0.0.1" }
		c.list, st.Top = slices.DeleteFunc(c.list, own), slices.DeleteFunc(st.Top, own)
		if len(c.list) == 0 || !slices.Equal(c.list, st.Top) {
			t.Fatalf("top %s: overview %v, /v1/stats %v", c.top, c.list, st.Top)
		}
	}
	// Outside what is kept: not covered, so the UI asks /v1/stats.
	old := now.Add(-40 * 24 * time.Hour).Format(time.RFC3339)
	_, b = ts.do(t, "GET", "/v1/overview?from="+old+"&to="+tt, ts.read, nil)
	if !strings.Contains(string(b), `"covered":false`) {
		t.Fatalf("a range beyond %d days: %s", overviewDays, b)
	}
	_, b = ts.do(t, "GET", "/v1/overview?from=1h", ts.read, nil)
	if !strings.Contains(string(b), `"covered":true`) {
		t.Fatalf("from=1h (to the end of this minute): %s", b)
	}
	if code, _ := ts.do(t, "GET", "/v1/overview?interval=30s", ts.read, nil); code != 400 {
		t.Fatalf("interval 30s: %d, want 400", code)
	}
}

// refExtract is the reference: encoding/json, every dotted path with all
// its occurrences (paths seen twice are not compared).
func refExtract(data []byte) (map[string][]any, bool) {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err == nil {
		return nil, false // trailing data
	}
	root, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	out := map[string][]any{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, x := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			if sub, ok := x.(map[string]any); ok && wantedPrefix([]byte(p)) {
				walk(p, sub)
				continue
			}
			out[p] = append(out[p], x)
		}
	}
	walk("", root)
	return out, true
}

func checkExtract(t *testing.T, data []byte) {
	var x overviewFields
	x.extract(data)
	ref, ok := refExtract(data)
	if !ok || hasDuplicateKeys(data) {
		return
	}
	str := func(name string, got []byte) {
		vs := ref[name]
		if len(vs) != 1 {
			return
		}
		want, isStr := vs[0].(string)
		if isStr != (got != nil) || isStr && want != string(got) {
			t.Fatalf("%s: got %q (%v), want %#v\n%s", name, got, got != nil, vs[0], data)
		}
	}
	str("@timestamp", x.ts)
	str("event.action", x.action)
	str("event.outcome", x.outcome)
	str("service.name", x.service)
	str("source.ip", x.sourceIP)
	str("user.name", x.userName)
	if vs := ref["http.response.status_code"]; len(vs) == 1 {
		want := int64(-1)
		if n, ok := vs[0].(json.Number); ok {
			if v, err := strconv.ParseInt(string(n), 10, 64); err == nil {
				want = v
			}
		}
		if x.status != want {
			t.Fatalf("status: got %d, want %v\n%s", x.status, vs[0], data)
		}
	}
	if vs := ref["event.category"]; len(vs) == 1 {
		var want []string
		switch c := vs[0].(type) {
		case string:
			want = []string{c}
		case []any:
			for _, e := range c {
				if s, ok := e.(string); ok {
					want = append(want, s)
				}
			}
		}
		var got []string
		for _, c := range x.category {
			got = append(got, string(c))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("category: got %q, want %q\n%s", got, want, data)
		}
	}
}

// hasDuplicateKeys reports whether any object repeats a key (the reference
// keeps the last, the extractor the first).
func hasDuplicateKeys(data []byte) bool {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	type frame struct {
		obj  bool
		keys map[string]bool
		key  bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if len(stack) > 0 {
			top := stack[len(stack)-1]
			if top.obj && top.key {
				if s, ok := tok.(string); ok {
					if top.keys[s] {
						return true
					}
					top.keys[s] = true
					top.key = false
					continue
				}
			}
			if top.obj && !top.key {
				if _, isDelim := tok.(json.Delim); !isDelim || tok == json.Delim('{') || tok == json.Delim('[') {
					top.key = true
				}
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, keys: map[string]bool{}, key: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && stack[len(stack)-1].obj {
				stack[len(stack)-1].key = true
			}
		}
	}
}

var extractSeeds = []string{
	`{"@timestamp":"2026-11-30T00:00:00Z","event":{"category":["web"],"action":"http_request","outcome":"failure"},"http":{"response":{"status_code":401}},"service":{"name":"shop"},"source":{"ip":"192.0.2.1"},"user":{"name":"alice"}}`,
	`{"event.category":"authentication","event.outcome":"success","user.name":"b\"ob","service":{"name":"\u00e9dge"}}`,
	`{"event":{"category":["web","authentication"],"x":{"y":[1,{"z":"\\"}]}},"http.response.status_code":-3,"source.ip":"::1"}`,
	`{"user":{"name":"\ud83d\ude00 \ud800 x"},"http":{"response":{"status_code":4.5}}}`,
	`{"event":{"category":[1,"web",null,{"a":"b"}]},"message":"a\nb"}`,
	`{"a":1,"a":2}`, `[]`, `{`, `{"event":}`, `{"event":{"action":"x"}}trailing`,
}

func TestOverviewExtract(t *testing.T) {
	for _, s := range extractSeeds {
		checkExtract(t, []byte(s))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		checkExtract(t, []byte(overviewEvent(rng, time.Now(), i)))
	}
}

// FuzzOverviewExtract: the overview's JSON reader never panics, and on
// valid JSON agrees with encoding/json on every field it reads.
func FuzzOverviewExtract(f *testing.F) {
	for _, s := range extractSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkExtract(t, data)
	})
}

// BenchmarkOverviewExtract: the follower's cost per record (extraction and
// counting), against decoding the same record with encoding/json.
func BenchmarkOverviewExtract(b *testing.B) {
	rec := []byte(`{"@timestamp":"2026-11-30T01:02:03.123456789Z","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"failure","id":"01a2079a-c08f-76ea-b475-c28e7254353d","duration":1500000},"http":{"request":{"id":"01a2079a-c08f-76ea-b475-c28e7254353e","method":"POST"},"response":{"status_code":401}},"url":{"path":"/api/login"},"source":{"ip":"203.0.113.66"},"client":{"ip":"203.0.113.66"},"user":{"name":"alice"},"user_agent":{"original":"python-requests/2.32.3"},"service":{"name":"shop-api"},"host":{"name":"web-1"}}`)
	b.Run("rollup", func(b *testing.B) {
		o := newOverviewRollup("")
		var x overviewFields
		now := time.Now()
		for b.Loop() {
			x.extract(rec)
			o.add(&x, now, now)
		}
		if o.minutes[now.Unix()/60] == nil && len(o.minutes) != 1 {
			b.Fatal("nothing counted")
		}
		b.SetBytes(int64(len(rec)))
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var m map[string]any
			if err := json.Unmarshal(rec, &m); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(rec)))
	})
}

// TestOverviewSurvivesRestart: the counts are saved, and a restart reads
// only the records appended after them, with the same answers.
func TestOverviewSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, nil)
	rng := rand.New(rand.NewPCG(3, 4))
	now := time.Now()
	ingest := func(ts *testServer, n, seed int) {
		var body strings.Builder
		for i := range n {
			body.WriteString(overviewEvent(rng, now.Add(-90*time.Minute+time.Duration(rng.Int64N(int64(80*time.Minute)))), seed+i))
			body.WriteByte('\n')
		}
		if code, b := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(body.String())); code != 200 {
			t.Fatalf("ingest: %d %s", code, b)
		}
		deadline := time.Now().Add(30 * time.Second)
		for ts.ui.overview.caughtUp() < ts.ledger.Size() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	ingest(ts, 500, 0)
	from, to := now.Add(-100*time.Minute).Truncate(time.Minute), now.Add(-5*time.Minute).Truncate(time.Minute)
	q := "/v1/overview?interval=5m&from=" + from.Format(time.RFC3339) + "&to=" + to.Format(time.RFC3339)
	_, before := ts.do(t, "GET", q, ts.read, nil)
	if err := ts.ui.overview.save(); err != nil {
		t.Fatal(err)
	}
	saved := ts.ui.overview.caughtUp()
	ts.stop(t)

	ts2 := startServer(t, dir, nil)
	// Close saves again (with the collector's last events of its own). The
	// follower loads them in its own goroutine.
	for deadline := time.Now().Add(30 * time.Second); ts2.ui.overview.loadedUpTo() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if got := ts2.ui.overview.loadedUpTo(); got < saved || saved == 0 {
		t.Fatalf("restart loaded counts up to %d, saved %d before the stop", got, saved)
	}
	deadline := time.Now().Add(30 * time.Second)
	for ts2.ui.overview.caughtUp() < ts2.ledger.Size() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	_, after := ts2.do(t, "GET", q, ts2.read, nil)
	var a, b struct{ Series map[string]overviewSeries }
	json.Unmarshal(before, &a)
	json.Unmarshal(after, &b)
	// The events between the save and the stop (the collector's own) fall
	// in the current minutes, outside the range compared.
	for _, name := range seriesNames {
		if !slices.Equal(a.Series[name].Counts, b.Series[name].Counts) || len(a.Series[name].Counts) == 0 {
			t.Fatalf("%s after a restart: %v, before %v", name, b.Series[name].Counts, a.Series[name].Counts)
		}
	}
	// New events after the restart are counted on top.
	ingest(ts2, 300, 1000)
	_, more := ts2.do(t, "GET", q, ts2.read, nil)
	var c struct{ Series map[string]overviewSeries }
	json.Unmarshal(more, &c)
	sum := func(s overviewSeries) (n int) {
		for _, v := range s.Counts {
			n += int(v)
		}
		return
	}
	if sum(c.Series["events"]) <= sum(b.Series["events"]) {
		t.Fatalf("events ingested after the restart not counted: %d then %d", sum(b.Series["events"]), sum(c.Series["events"]))
	}
}

// BenchmarkOverviewMemory fills the overview's counts with a day of events
// (TRAILGUARD_OVERVIEW_N, default 1,000,000; 20,000 addresses, 2,000 users, 4
// services) and reports the heap they hold.
func BenchmarkOverviewMemory(b *testing.B) {
	n := testenv.Count(b, "TRAILGUARD_OVERVIEW_N", 1000000)
	for b.Loop() {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		o := newOverviewRollup("")
		now := time.Now()
		o.now = func() time.Time { return now }
		var x overviewFields
		step := 24 * time.Hour / time.Duration(n)
		for i := range n {
			rec := fmt.Appendf(nil, `{"@timestamp":%q,"event":{"category":["authentication"],"outcome":"failure"},"service":{"name":"svc-%d"},"source":{"ip":"198.51.%d.%d"},"user":{"name":"user-%d"}}`,
				now.Add(-24*time.Hour+time.Duration(i)*step).Format(time.RFC3339Nano), i%4, (i/7)%80, (i*13)%250, (i*7919)%2000)
			x.extract(rec)
			o.add(&x, now, now)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/1e6, "heap-MB")
		b.ReportMetric(float64(len(o.minutes)), "minutes")
		runtime.KeepAlive(o)
	}
}

// TestOverviewPaced: with Config.FollowerPace (the gateway's), the
// overview's follower, once caught up, does not wake at the next commits
// until the pace has passed, then counts every record they brought, and
// the counts it saves at the stop end where it had got to.
func TestOverviewPaced(t *testing.T) {
	t.Parallel()
	const pace = 500 * time.Millisecond
	dir := t.TempDir()
	ts := startServer(t, dir, func(c *Config) { c.FollowerPace = pace })
	waitCaughtUp := func(within time.Duration) bool {
		for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if ts.ui.overview.caughtUp() >= ts.ledger.Size() {
				return true
			}
		}
		return false
	}
	if !waitCaughtUp(30 * time.Second) {
		t.Fatalf("overview at %d, ledger at %d", ts.ui.overview.caughtUp(), ts.ledger.Size())
	}
	rng := rand.New(rand.NewPCG(5, 6))
	// One record, followed: the follower's pause starts once it has
	// counted it, so after the last time it was seen behind (behind),
	// and it must not follow the twenty commits after it before
	// behind+pace. Appends are durable and may take most of the pace on a
	// loaded machine: a round in which they left no time to look is done
	// again.
	looked := 0
	for round := 0; round < 5 && looked == 0; round++ {
		behind := time.Now()
		if _, err := ts.ledger.Append(context.Background(), []byte(overviewEvent(rng, time.Now(), 100))); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			at := time.Now()
			if ts.ui.overview.caughtUp() >= ts.ledger.Size() {
				break
			}
			behind = at
			if at.After(deadline) {
				t.Fatalf("overview at %d, ledger at %d", ts.ui.overview.caughtUp(), ts.ledger.Size())
			}
		}
		// Twenty appends at once (one or a few commits).
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for i := range 20 {
			rec := []byte(overviewEvent(rng, time.Now(), i))
			wg.Go(func() {
				if _, err := ts.ledger.Append(context.Background(), rec); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for ; time.Since(behind) < pace; time.Sleep(5 * time.Millisecond) {
			if ts.ui.overview.caughtUp() >= ts.ledger.Size() {
				t.Fatalf("the overview followed the commits %v after it was last seen behind the record that started its pause, before its pace of %v", time.Since(behind), pace)
			}
			looked++
		}
		if !waitCaughtUp(30 * time.Second) {
			t.Fatalf("overview at %d, ledger at %d after its pace", ts.ui.overview.caughtUp(), ts.ledger.Size())
		}
	}
	if looked == 0 {
		t.Fatalf("in 5 rounds, 21 appends always took longer than the pace (%v): nothing checked", pace)
	}
	ts.stop(t)
	var f overviewFile
	b, err := os.ReadFile(filepath.Join(dir, "ui-overview.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if f.Next == 0 || f.Next > ts.ledger.Size() {
		t.Fatalf("saved counts end at %d, ledger size %d", f.Next, ts.ledger.Size())
	}
}

// TestOverviewOnDemand: with Config.OverviewOnDemand (the gateway's
// without --api) the overview does not follow the ledger until it is
// asked for, and its saved counts wait where they ended; the first request
// starts it, and it catches up from there.
func TestOverviewOnDemand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	onDemand := func(c *Config) { c.OverviewOnDemand = true }
	rng := rand.New(rand.NewPCG(7, 8))
	appendSome := func(ts *testServer, n int) {
		for i := range n {
			if _, err := ts.ledger.Append(context.Background(), []byte(overviewEvent(rng, time.Now(), i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	savedNext := func() uint64 {
		b, err := os.ReadFile(filepath.Join(dir, "ui-overview.json"))
		if errors.Is(err, os.ErrNotExist) {
			return 0
		} else if err != nil {
			t.Fatal(err)
		}
		var f overviewFile
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		return f.Next
	}

	ts := startServer(t, dir, onDemand)
	appendSome(ts, 30)
	time.Sleep(100 * time.Millisecond) // time enough for a follower to have started
	if got := ts.ui.overview.caughtUp(); got != 0 {
		t.Fatalf("the overview followed the ledger (up to %d) before anyone asked for it", got)
	}
	// The first request starts it (answered "not covered" while it catches up).
	if code, b := ts.do(t, "GET", "/v1/overview?from=1h", ts.read, nil); code != 200 {
		t.Fatalf("overview: %d %s", code, b)
	}
	for deadline := time.Now().Add(30 * time.Second); ts.ui.overview.caughtUp() < ts.ledger.Size(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("overview at %d, ledger at %d after the request", ts.ui.overview.caughtUp(), ts.ledger.Size())
		}
	}
	ts.stop(t)
	saved := savedNext()
	if saved == 0 {
		t.Fatal("the overview's counts were not saved at the stop")
	}

	// Restarted and never asked: nothing follows, the saved counts stay.
	ts2 := startServer(t, dir, onDemand)
	appendSome(ts2, 30)
	time.Sleep(100 * time.Millisecond)
	if got := ts2.ui.overview.caughtUp(); got != 0 {
		t.Fatalf("the overview followed the ledger (up to %d) before anyone asked for it", got)
	}
	ts2.stop(t)
	if got := savedNext(); got != saved {
		t.Fatalf("saved counts end at %d after a start without requests, %d before", got, saved)
	}

	// StartOverview (the gateway's --api) resumes from them.
	ts3 := startServer(t, dir, onDemand)
	ts3.StartOverview()
	for deadline := time.Now().Add(30 * time.Second); ts3.ui.overview.loadedUpTo() != saved || ts3.ui.overview.caughtUp() < ts3.ledger.Size(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("overview loaded up to %d (saved %d), at %d, ledger at %d", ts3.ui.overview.loadedUpTo(), saved, ts3.ui.overview.caughtUp(), ts3.ledger.Size())
		}
	}
}

// TestOverviewAddKeepsNothing: what add remembers from record to record
// (the last minute, hour and service counted) changes no count: a rollup
// that forgets it before every record counts the same, over runs of one
// service and minute broken by other services, records without one, other
// minutes (later and earlier), more services than it keeps, and trims.
func TestOverviewAddKeepsNothing(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	now := time.Now()
	keeps, forgets := newOverviewRollup(""), newOverviewRollup("")
	var x overviewFields
	at := now.Add(-2 * time.Hour)
	svc := "shop"
	for i := range 20000 {
		switch r := rng.IntN(100); {
		case r < 3:
			at = at.Add(time.Duration(rng.IntN(90)) * time.Second)
		case r < 4:
			at = at.Add(-time.Duration(rng.IntN(30)) * time.Minute)
		case r < 10:
			svc = []string{"shop", "auth", "pay", "", "shopx", "sho"}[rng.IntN(6)]
		case r < 16:
			svc = fmt.Sprintf("svc-%d", rng.IntN(2*overviewMaxServices))
		}
		rec := fmt.Sprintf(`{"@timestamp":%q,"event":{"category":["web"],"outcome":"failure"},"http":{"response":{"status_code":%d}}`,
			at.UTC().Format(time.RFC3339Nano), []int{200, 401}[rng.IntN(2)])
		if svc != "" {
			rec += fmt.Sprintf(`,"service":{"name":%q}`, svc)
		}
		rec += `,"source":{"ip":"192.0.2.` + strconv.Itoa(rng.IntN(9)) + `"}}`
		x.extract([]byte(rec))
		keeps.add(&x, now, now)
		forgets.lastM, forgets.lastH, forgets.lastSvcM, forgets.lastSvc = nil, nil, nil, nil
		forgets.add(&x, now, now)
		if rng.IntN(500) == 0 {
			// A trim at a clock that drops the oldest minutes counted.
			tnow := at.Add(overviewDays*24*time.Hour - time.Duration(rng.IntN(60))*time.Minute)
			keeps.trim(tnow)
			forgets.trim(tnow)
		}
		if i%997 == 0 || i == 19999 {
			if !reflect.DeepEqual(keeps.minutes, forgets.minutes) || !reflect.DeepEqual(keeps.hours, forgets.hours) {
				t.Fatalf("record %d (%s): the counts differ from a rollup that forgets", i, rec)
			}
		}
	}
	if len(keeps.names) < overviewMaxServices || len(keeps.minutes) < 50 {
		t.Fatalf("%d services, %d minutes: the test exercises too little", len(keeps.names), len(keeps.minutes))
	}
}
