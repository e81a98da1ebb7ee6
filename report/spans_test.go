package report

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
)

var reportSpanDocs = []string{
	`{"@timestamp":"2026-11-25T12:00:01.000001Z","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":1834000,"id":"0193a1b2-c3d4-7e5f-RRRRRRRR000000000001","dataset":"trailguard.access"},"http":{"request":{"id":"req-00000001","method":"GET"},"response":{"status_code":200,"body":{"bytes":512}}},"url":{"path":"/api/orders/1","query":"page=2"},"source":{"ip":"10.1.1.1","port":51234},"user":{"name":"user001"},"user_agent":{"original":"Mozilla/5.0 (X11; Linux x86_64)"},"service":{"name":"orders-api"}}`,
	`{"@timestamp":"2026-11-30T01:50:48.375678833Z","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","id":"01a22a25-c637-7695-b6ac-566a9bee6245","dataset":"trailguard.access"},"http":{"request":{"method":"POST","body":{"bytes":50,"content":"{\"password\":\"[REDACTED]\"}"}},"response":{"status_code":200}},"url":{"path":"/api/login"},"source":{"ip":"127.0.0.1"},"client":{"ip":"198.18.132.230"},"user":{"id":"u2","name":"bob","roles":["viewer","admin"],"target":{"id":"7","name":"eve"}},"service":{"name":"demo-shop"},"host":{"name":"vm"},"log":{"level":"warn"},"trailguard":{"http":{"request":{"headers":{"accept":"*/*"}}}}}`,
	`{"event.action":"caf\u00e9 \"x\"","user":{"name":"\u00e9l\u00e8ve","id":"a\\b"},"source.ip":"2001:db8::1","event.category":["authentication","web"],"event.type":"start","event.outcome":"failure","service.name":"s\u2028","event.ingested":"2020-01-01T00:00:00Z"}`,
	`{"event":{"kind":"alert","dataset":"trailguard.alert","outcome":"","category":"authentication","type":[]},"labels":{"b":"2"},"http.response.status_code":0}`,
	`{}`,
}

// TestReportSpans: a report reads the same fields from the spans ingest
// located as from the record's bytes.
func TestReportSpans(t *testing.T) {
	for i := range 20 {
		reportSpanDocs = append(reportSpanDocs, fmt.Sprintf(`{"event":{"category":["authentication"],"action":"authn_login_fail","outcome":"failure"},"http.response.status_code":%d,"user.name":"user%d","source.ip":"203.0.113.%d"}`, 400+i, i, i))
	}
	took := 0
	for _, d := range reportSpanDocs {
		if checkReportSpans(t, []byte(d)) {
			took++
		}
	}
	if took < 20 {
		t.Fatalf("the one-pass path took %d documents", took)
	}
}

func checkReportSpans(t *testing.T, doc []byte) bool {
	t.Helper()
	var sp event.Spans
	rec, _, ok := event.AppendNormalizedSpans(nil, doc, time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC), event.AppendID, &sp)
	if !ok || !sp.OK() {
		return false
	}
	var parsed, fromSpans fields
	if err := parsed.parse(rec); err != nil {
		t.Fatalf("%s: %v", rec, err)
	}
	fromSpans.fromSpans(rec, &sp)
	fromSpans.detail()
	// The parse's path stack and the owners of decoded strings (parse
	// decodes skipped strings too) are its own.
	parsed.stack, parsed.escaped, fromSpans.escaped = [6]string{}, nil, nil
	if !reflect.DeepEqual(parsed, fromSpans) {
		t.Fatalf("%s:\n parsed     %+v\n from spans %+v", rec, parsed, fromSpans)
	}
	return true
}

func FuzzReportSpans(f *testing.F) {
	for _, d := range reportSpanDocs {
		f.Add([]byte(d))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		checkReportSpans(t, doc)
	})
}
