package detect

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
)

// memoTraffic is a stream for TestMemosKeepResults: ordinary traffic
// (field values that repeat, and paths with ids that change every event),
// the span traffic, and events whose event.category changes every event,
// in every form the field takes (same length, a string, escaped, two
// values, in an array of objects, empty, null, a number, absent).
func memoTraffic() (recs [][]byte, spans []*event.Spans) {
	cats := []string{`["web"]`, `["iam"]`, `"web"`, `"we\u0062"`, `["web","authentication"]`, `["authentication"]`,
		`["authentication"]`, `[]`, `null`, `5`, `["web"]`, `"iam"`, `["\u0077eb"]`}
	add := func(b []byte, sp *event.Spans) { recs, spans = append(recs, b), append(spans, sp) }
	for i, ev := range mixedEvents(6000, 3) {
		add(ev, nil)
		if i%3 == 0 {
			c := cats[i/3%len(cats)]
			add([]byte(fmt.Sprintf(`{"event":{"category":%s,"action":"authn_login_fail","outcome":"failure"},"http":{"request":{"method":"POST"},"response":{"status_code":404}},"url":{"path":"/x/%d.php"},"source":{"ip":"203.0.113.9"},"user":{"name":"u%d"}}`, c, i%7, i%5)), nil)
		}
		if i%50 == 0 {
			add([]byte(`{"event":[{"category":"web"},{"category":"authentication"}],"http":{"response":{"status_code":404}},"url":{"path":"/x"}}`), nil)
			add([]byte(`{"http":{"response":{"status_code":404}},"url":{"path":"/x"}}`), nil)
		}
	}
	now := time.Date(2026, 11, 30, 1, 0, 5, 0, time.UTC)
	for i, doc := range spanTraffic() {
		sp := new(event.Spans)
		rec, _, ok := event.AppendNormalizedSpans(nil, []byte(doc), now, event.AppendID, sp)
		if !ok {
			panic(doc)
		}
		if i%2 == 0 {
			sp = nil // parsed: the same values from the other path
		}
		add(rec, sp)
	}
	return recs, spans
}

// TestMemosKeepResults: what the engine remembers from event to event
// (each field program's results for its last value, remembered only now
// and then after a run of misses; the logsource bits of the last
// event.category) changes no result: an engine that forgets before every
// event gives the same alerts and the same matches, event by event.
func TestMemosKeepResults(t *testing.T) {
	t.Parallel()
	gen := ParseRules("generated.yml", []byte(generatedRules(100)), "custom")
	gen.Rules = append(gen.Rules, ParseRules("x.yml", []byte("title: any 404\nlogsource:\n    category: webserver\ndetection:\n    sel:\n        sc-status: 404\n    condition: sel\n"), "custom").Rules...)
	gen.Rules = append(gen.Rules, ParseRules("y.yml", []byte("title: failed login\nlogsource:\n    category: authentication\ndetection:\n    sel:\n        event.outcome: failure\n    condition: sel\n"), "custom").Rules...)
	recs, spans := memoTraffic()
	for _, c := range []struct {
		name  string
		rules *RuleSet
	}{{"builtin", Builtin()}, {"generated", gen}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			keeps, errs := NewEngine(c.rules, Options{})
			if len(errs) > 0 {
				t.Fatal(errs[0])
			}
			forgets, _ := NewEngine(c.rules, Options{})
			at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
			alerts, hits := 0, 0
			for i, rec := range recs {
				forgets.ctx.forget()
				var a, b []string
				r := Record{Index: uint64(i), Time: at.Add(time.Duration(i) * time.Millisecond), Data: rec, Spans: spans[i]}
				keeps.Process(r, func(al *Alert) { a = append(a, alertKey(al)) })
				forgets.Process(r, func(al *Alert) { b = append(b, alertKey(al)) })
				if !reflect.DeepEqual(a, b) || keeps.Stats() != forgets.Stats() {
					t.Fatalf("record %d %s:\n alerts %v, stats %+v\n forgetting: %v, %+v", i, rec, a, keeps.Stats(), b, forgets.Stats())
				}
				alerts += len(a)
				for _, m := range keeps.ctx.memo {
					if m.ok {
						hits++
					}
				}
			}
			if alerts < 10 || keeps.Stats().Matches < 1000 || hits == 0 {
				t.Fatalf("%d alerts, %d matches, %d memos: the test exercises too little", alerts, keeps.Stats().Matches, hits)
			}
		})
	}
}

// forget drops what runProg and logsource remember from earlier events.
func (x *evalCtx) forget() {
	clear(x.memo)
	x.cat, x.catLS = nil, 0
}
