package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/stalltest"
	"github.com/trailguard/trailguard/query"
)

// TestTailCheckBudget: a live tail whose query costs much per record (a
// long pattern over large events, here from since=0 over the ledger) stops
// once it spent its budget checking them, with an event that says why and
// where to go on; a tail of a plain query meanwhile goes on. Before, the
// tail checked every record for as long as it ran, a core held per stream
// (a search stops after index.Options.ScanTime).
func TestTailCheckBudget(t *testing.T) {
	t.Parallel()
	// The costly query is some 300 patterns, each a pass over a record's
	// 100 KiB: checking one record costs ~90 ms without -race (2 cores,
	// 2026-12-04), so the tail stops within a few records on a machine
	// many times faster, while a plain query's check of a small event
	// (tens of microseconds) stays far under the burst even when a loaded
	// machine holds the tail's thread off the CPU for a while. A single
	// cheap pattern ("*a?a?…b", ~0.9 ms a record) spent the burst or not
	// depending on how fast the ledger fed the records (a quarter of each
	// wait comes back), and a 10 ms burst ended the plain tail under load.
	const budget = 100 * time.Millisecond
	ts := startServerWith(t, t.TempDir(), nil, func(s *Server) { s.tailBudget = budget })
	pad := strings.Repeat("a", 100<<10)
	var body strings.Builder
	for i := range 50 {
		e := &event.Event{Timestamp: time.Now().UTC(), Kind: event.KindEvent, Action: "page_view", Outcome: "success", Message: pad, Path: fmt.Sprintf("/p/%d", i)}
		body.Write(e.AppendJSON(nil))
		body.WriteByte('\n')
	}
	if code, b := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(body.String())); code != 200 {
		t.Fatalf("ingest: %d %.200s", code, b)
	}
	tail := func(ctx context.Context, q, since string) (*bufio.Scanner, func()) {
		t.Helper()
		v := url.Values{"q": {q}}
		if since != "" {
			v.Set("since", since)
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.url+"/v1/tail?"+v.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+ts.read)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("tail: %v %v", resp, err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 4<<20)
		return sc, func() { resp.Body.Close() }
	}
	var clauses []string
	for i := 0; len(clauses)*12 < query.MaxLen-100; i++ {
		clauses = append(clauses, fmt.Sprintf("*a?b%d*", i))
	}
	costly := strings.Join(clauses, " OR ")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plain, closePlain := tail(ctx, "event.outcome:failure", "")
	defer closePlain()

	slow, closeSlow := tail(ctx, costly, "0")
	defer closeSlow()
	start := time.Now()
	var stopped string
	for slow.Scan() && stopped == "" {
		if line := slow.Text(); line == "event: stopped" && slow.Scan() {
			stopped, _ = strings.CutPrefix(slow.Text(), "data: ")
		}
	}
	if stopped == "" {
		t.Fatalf("the costly tail did not stop in %v: %v", time.Since(start).Round(time.Millisecond), slow.Err())
	}
	var msg struct {
		Error string
		Next  uint64
	}
	if err := json.Unmarshal([]byte(stopped), &msg); err != nil || !strings.Contains(msg.Error, "live tail stopped") || msg.Next == 0 {
		t.Errorf("stop event %q: %v", stopped, err)
	}
	if slow.Scan() {
		t.Errorf("the stream went on after the stop event: %q", slow.Text())
	}
	t.Logf("stopped after %v at ledger index %d", time.Since(start).Round(time.Millisecond), msg.Next)

	if code, b := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(ev("authn_login_fail", "failure", "tail-me", "192.0.2.2", 401))); code != 200 {
		t.Fatalf("ingest: %d %s", code, b)
	}
	for plain.Scan() {
		if strings.Contains(plain.Text(), "tail-me") {
			return
		}
	}
	t.Fatalf("the plain tail ended without the event: %v", plain.Err())
}

// TestSearchWildcardSegment: a read token's free-text query whose pattern
// holds ? between stars ("*a?a?…b", 1,000 pairs) over events of 100 KiB
// is answered in full at a cost of CPU time that does not grow with the
// pattern's length times the value's. Before, each record's check took
// 1.6 s (the pattern tried at each character of the value), so the search
// ran out of its 10 s after a few records and answered a partial page, a
// core held throughout; the live tail spent as long per record.
//
// The cost is the CPU time the process used until every record was
// checked, following the cursor of partial pages, not the wall clock of
// one page: a search stops after 10 s of the wall clock (index.ScanTime),
// and at load ~17 on two cores the 20 checks, ~1 s of CPU under -race,
// took 11-15 s and the page came back partial (10 of 10 runs failed).
// Not parallel, so that the process's CPU time is the search's.
func TestSearchWildcardSegment(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	pad := strings.Repeat("a", 100<<10)
	var body strings.Builder
	const n = 20
	for i := range n {
		e := &event.Event{Timestamp: time.Now().UTC(), Kind: event.KindEvent, Action: "page_view", Outcome: "success", Message: pad, Path: fmt.Sprintf("/p/%d", i)}
		body.Write(e.AppendJSON(nil))
		body.WriteByte('\n')
	}
	if code, b := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(body.String())); code != 200 {
		t.Fatalf("ingest: %d %.200s", code, b)
	}
	// Checking the 20 records costs ~1 s of CPU under -race (2 cores,
	// 2026-12-04); before, 1.6 s each without it.
	const cpuBound = 8 * time.Second
	start, cpu0 := time.Now(), stalltest.ProcessCPU()
	v := url.Values{"q": {"*" + strings.Repeat("a?", 1000) + "b"}, "wait_for": {"ledger"}, "limit": {"10"}}
	pages, scanned := 0, 0
	for {
		code, b := ts.do(t, "GET", "/v1/events?"+v.Encode(), ts.read, nil)
		var res struct {
			Hits    []json.RawMessage
			Partial bool
			Next    string
			Scanned int
		}
		if err := json.Unmarshal(b, &res); code != 200 || err != nil {
			t.Fatalf("search: %d %.300s %v", code, b, err)
		}
		pages++
		scanned += res.Scanned
		if len(res.Hits) != 0 {
			t.Fatalf("search: %d hits, want none matching", len(res.Hits))
		}
		cpu := stalltest.ProcessCPU() - cpu0
		if !res.Partial {
			break
		}
		if cpu > cpuBound || res.Next == "" {
			t.Fatalf("search still partial after %d pages (%d records checked, next %q): %v of CPU time (bound %v) in %v",
				pages, scanned, res.Next, cpu.Round(time.Millisecond), cpuBound, time.Since(start).Round(time.Millisecond))
		}
		v.Set("cursor", res.Next)
	}
	cpu := stalltest.ProcessCPU() - cpu0
	t.Logf("answered in %d pages (%d records checked): %v of CPU time in %v", pages, scanned, cpu.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if scanned < n || cpu > cpuBound {
		t.Errorf("search: %d records checked with %v of CPU time, want every one of the %d and at most %v", scanned, cpu.Round(time.Millisecond), n, cpuBound)
	}
}

// TestTailMeter: the meter's arithmetic on a made-up clock — a burst of
// budget, then a quarter of the wall-clock time since the last check (the
// check's own time included: a check may take a third of the wait before
// it), never more than the burst saved up.
func TestTailMeter(t *testing.T) {
	const budget = 100 * time.Millisecond
	t0 := time.Unix(1_700_000_000, 0)
	type check struct{ wait, cost time.Duration }
	tests := []struct {
		name   string
		checks []check
		want   []bool
	}{
		{"within the burst", []check{{0, 60 * time.Millisecond}, {0, 39 * time.Millisecond}}, []bool{true, true}},
		{"burst spent", []check{{0, 60 * time.Millisecond}, {0, 60 * time.Millisecond}}, []bool{true, false}},
		{"a quarter of the time since comes back", []check{{0, 100 * time.Millisecond}, {150 * time.Millisecond, 50 * time.Millisecond}}, []bool{true, true}},
		{"not more than a quarter", []check{{0, 100 * time.Millisecond}, {150 * time.Millisecond, 51 * time.Millisecond}}, []bool{true, false}},
		{"a long wait saves up no more than the burst", []check{{time.Hour, 100 * time.Millisecond}, {0, 1 * time.Millisecond}}, []bool{true, false}},
		{"a quarter of a core goes on for ever", []check{{0, 100 * time.Millisecond}, {30 * time.Millisecond, 10 * time.Millisecond}, {30 * time.Millisecond, 10 * time.Millisecond}, {30 * time.Millisecond, 10 * time.Millisecond}}, []bool{true, true, true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tailMeter{budget: budget, left: budget, last: t0}
			now := t0
			for i, c := range tt.checks {
				start := now.Add(c.wait)
				now = start.Add(c.cost)
				if got := m.spend(start, now); got != tt.want[i] {
					t.Errorf("check %d (after %v, costing %v): may go on = %v, want %v (left %v)", i, c.wait, c.cost, got, tt.want[i], m.left)
				}
			}
		})
	}
}
