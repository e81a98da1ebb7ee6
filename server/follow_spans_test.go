package server

import (
	"reflect"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
)

// spanDocs are submitted events of the shapes the one-pass path takes
// (the benchmark's, the demo's, escapes, several categories, missing
// fields), besides the overview's own extraction seeds.
var spanDocs = append([]string{
	`{"@timestamp":"2026-11-25T12:00:01.000001Z","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":1834000,"id":"0193a1b2-c3d4-7e5f-RRRRRRRR000000000001","dataset":"trailguard.access"},"http":{"request":{"id":"req-00000001","method":"GET"},"response":{"status_code":200,"body":{"bytes":512}}},"url":{"path":"/api/orders/1","query":"page=2"},"source":{"ip":"10.1.1.1","port":51234},"user":{"name":"user001"},"user_agent":{"original":"Mozilla/5.0 (X11; Linux x86_64)"},"service":{"name":"orders-api"}}`,
	`{"@timestamp":"2026-11-30T01:50:48.375678833Z","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":3194508,"id":"01a22a25-c637-7695-b6ac-566a9bee6245","dataset":"trailguard.access"},"http":{"request":{"id":"01a22a25-c633-7e08-80f9-4a52f653f0e9","method":"POST","body":{"bytes":50,"content":"{\"password\":\"[REDACTED]\",\"username\":\"bob\"}"}},"response":{"status_code":200,"body":{"bytes":45}}},"url":{"path":"/api/login"},"source":{"ip":"127.0.0.1","port":11806},"client":{"ip":"198.18.132.230"},"user":{"id":"u2","name":"bob","roles":["viewer"]},"user_agent":{"original":"Mozilla/5.0"},"service":{"name":"demo-shop"},"host":{"name":"vm"},"trailguard":{"http":{"request":{"headers":{"content-type":"application/json"}}}}}`,
	`{"event.action":"caf\u00e9 \"x\"","user":{"name":"\u00e9l\u00e8ve","id":"a\\b"},"source.ip":"2001:db8::1","event.category":["authentication","web"],"event.outcome":"failure","service.name":"s\u2028"}`,
	`{"event":{"kind":"alert","outcome":"","category":"authentication","type":[]},"labels":{"b":"2"},"http.response.status_code":0}`,
	`{}`,
}, extractSeeds...)

func fixedSpanID(b []byte) []byte { return append(b, "0193a1b2-0000-7000-8000-000000000001"...) }

// checkOverviewSpans: for a record ingest wrote, the overview reads the
// same fields from its spans as from its bytes. It reports whether the
// one-pass path took doc.
func checkOverviewSpans(t *testing.T, doc []byte) bool {
	t.Helper()
	var sp event.Spans
	rec, _, ok := event.AppendNormalizedSpans(nil, doc, time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC), fixedSpanID, &sp)
	if !ok || !sp.OK() {
		return false
	}
	var parsed, fromSpans overviewFields
	parsed.extract(rec)
	fromSpans.extractSpans(rec, &sp)
	parsed.path, fromSpans.path = nil, nil
	// The same instant, parsed from the record or carried in the spans.
	appended := time.Unix(1, 0)
	if a, b := parsed.time(appended), fromSpans.time(appended); !a.Equal(b) || a.Location() != b.Location() {
		t.Fatalf("%s: @timestamp parsed %v, from spans %v", rec, a, b)
	}
	fromSpans.tsNanos, fromSpans.hasTS = 0, false
	if len(parsed.category) == 0 && len(fromSpans.category) == 0 {
		parsed.category, fromSpans.category = nil, nil
	}
	if !reflect.DeepEqual(parsed, fromSpans) {
		t.Fatalf("%s:\n parsed     %+v\n from spans %+v", rec, parsed, fromSpans)
	}
	return true
}

func TestOverviewSpans(t *testing.T) {
	took := 0
	for _, d := range spanDocs {
		if checkOverviewSpans(t, []byte(d)) {
			took++
		}
	}
	if took < 6 {
		t.Fatalf("the one-pass path took %d documents, want at least 6", took)
	}
}

func FuzzOverviewSpans(f *testing.F) {
	for _, d := range spanDocs {
		f.Add([]byte(d))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		checkOverviewSpans(t, doc)
	})
}
