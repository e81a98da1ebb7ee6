package detect

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
)

// spanTraffic is a brute force, a credential stuffing run, injection
// probes and ordinary traffic, as submitted to the collector: what the
// built-in rules fire on.
func spanTraffic() []string {
	var docs []string
	for i := range 400 {
		at := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC).Add(time.Duration(i) * 150 * time.Millisecond).Format(time.RFC3339Nano)
		switch {
		case i%4 == 0:
			docs = append(docs, fmt.Sprintf(`{"@timestamp":%q,"event":{"category":["authentication"],"type":["start"],"action":"authn_login_fail","outcome":"failure"},"http":{"request":{"method":"POST"},"response":{"status_code":401}},"url":{"path":"/login"},"source":{"ip":"203.0.113.9"},"user":{"name":"user%d"},"user_agent":{"original":"python-requests/2.32"}}`, at, i%60))
		case i%4 == 1:
			docs = append(docs, fmt.Sprintf(`{"@timestamp":%q,"event.category":["web"],"event.action":"http_request","event.outcome":"failure","http.response.status_code":404,"url.path":"/admin/%d","url.query":"id=1%%27%%20OR%%201=1--","source.ip":"198.51.100.%d","user_agent.original":"sqlmap/1.7"}`, at, i, i%3))
		case i%4 == 2:
			docs = append(docs, fmt.Sprintf(`{"@timestamp":%q,"event":{"kind":"event","category":["web"],"action":"http_request","outcome":"success"},"http.response.status_code":200,"url":{"path":"/api/orders/%d","original":"/api/orders/%d?x=\u00e9"},"source.ip":"10.0.0.%d","user.name":"b\"ob","labels":{"env":"prod"}}`, at, i, i, i%9))
		default:
			docs = append(docs, fmt.Sprintf(`{"@timestamp":%q,"event.category":"authentication","event.action":"authn_login_success","event.outcome":"success","source.ip":"203.0.113.9","user.name":"user%d","client.ip":"2001:db8::1"}`, at, i%60))
		}
	}
	return docs
}

// TestEngineFromSpans: the built-in rules read their fields from the spans
// ingest located, and give the same alerts, in the same order, as when
// they parse every record; a field no span gives makes the engine parse.
func TestEngineFromSpans(t *testing.T) {
	parsed, errs := NewEngine(Builtin(), Options{})
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	fromSpans, _ := NewEngine(Builtin(), Options{})
	if fromSpans.spanFields == nil {
		t.Fatalf("the built-in rules cannot be read from spans (paths %v)", fromSpans.x.paths)
	}
	now := time.Date(2026, 11, 30, 1, 0, 5, 0, time.UTC)
	var a, b []string
	took := 0
	for i, doc := range spanTraffic() {
		var sp event.Spans
		rec, _, ok := event.AppendNormalizedSpans(nil, []byte(doc), now, event.AppendID, &sp)
		if !ok {
			t.Fatalf("%s: not taken by the one-pass path", doc)
		}
		if sp.OK() {
			took++
		}
		var d1, d2 document
		if err := parsed.x.scan(&d1, rec); err != nil {
			t.Fatal(err)
		}
		fromSpans.x.fromSpans(&d2, rec, &sp, fromSpans.spanFields)
		if !reflect.DeepEqual(d1.spans, d2.spans) {
			t.Fatalf("%s:\n scanned    %v\n from spans %v\n paths %v", rec, d1.spans, d2.spans, parsed.x.paths)
		}
		at := now.Add(time.Duration(i) * time.Millisecond)
		parsed.Process(Record{Index: uint64(i), Time: at, Data: rec}, func(al *Alert) { a = append(a, alertKey(al)) })
		fromSpans.Process(Record{Index: uint64(i), Time: at, Data: rec, Spans: &sp}, func(al *Alert) { b = append(b, alertKey(al)) })
	}
	if took == 0 {
		t.Fatal("no record had spans")
	}
	if len(a) < 3 {
		t.Fatalf("the traffic raised %d alerts: the test exercises too little", len(a))
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("alerts differ:\n parsed     %v\n from spans %v", a, b)
	}
	if parsed.Stats() != fromSpans.Stats() {
		t.Fatalf("stats differ: %+v, %+v", parsed.Stats(), fromSpans.Stats())
	}
}

func alertKey(a *Alert) string {
	return fmt.Sprintf("%s %s %d %v %v %v", a.ID, a.Rule.Ref(), a.Count, a.Group, a.Fields, a.Evidence)
}

func TestSpanPlan(t *testing.T) {
	for _, c := range []struct {
		paths []string
		ok    bool
	}{
		{[]string{"user.name", "destination.ip", "event.category"}, true},
		{[]string{"user.name", "labels.env"}, false},
		{[]string{"http.request"}, false},
		{[]string{"trailguard.http.request.headers.x-api-key"}, false},
	} {
		x := newExtractor()
		for _, p := range c.paths {
			x.slot(p)
		}
		if got := x.spanPlan() != nil; got != c.ok {
			t.Errorf("%v: plan %v, want %v", c.paths, got, c.ok)
		}
	}
}
