package server

import (
	"bytes"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/redact"
)

// prepareSeeds are scrubbed lines of the shapes ingest sees: the
// benchmark's and the demo's events, shippers' dotted names, every kind of
// mistake the full path names.
var prepareSeeds = []string{
	`{"@timestamp":"2026-11-25T12:00:01.000001Z","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":1834000,"id":"0193a1b2-c3d4-7e5f-RRRRRRRR000000000001","dataset":"trailguard.access"},"http":{"request":{"id":"req-00000001","method":"GET"},"response":{"status_code":200,"body":{"bytes":512}}},"url":{"path":"/api/orders/1","query":"page=2"},"source":{"ip":"10.1.1.1","port":51234},"user":{"name":"user001"},"user_agent":{"original":"Mozilla/5.0 (X11; Linux x86_64)"},"service":{"name":"orders-api"}}`,
	`{"@timestamp":"2026-11-30T01:50:48.375678833Z","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":3194508,"id":"01a22a25-c637-7695-b6ac-566a9bee6245","dataset":"trailguard.access"},"http":{"request":{"id":"01a22a25-c633-7e08-80f9-4a52f653f0e9","method":"POST","body":{"bytes":50,"content":"{\"password\":\"[REDACTED]\",\"username\":\"bob\"}"}},"response":{"status_code":200,"body":{"bytes":45}}},"url":{"path":"/api/login"},"source":{"ip":"127.0.0.1","port":11806},"client":{"ip":"198.18.132.230"},"user":{"id":"u2","name":"bob","roles":["viewer"]},"user_agent":{"original":"Mozilla/5.0"},"service":{"name":"demo-shop"},"host":{"name":"vm"},"trailguard":{"http":{"request":{"headers":{"content-type":"application/json"}}}}}`,
	`{"event.action":"authn_login_fail","event.outcome":"failure","user.name":"alice","source.ip":"203.0.113.7","labels":{"env":"prod"}}`,
	`{"event":{"kind":"","outcome":"","category":"authentication","type":[]},"user.roles":"","message":"caf\u00e9 \u2028"}`,
	`{"event.kind":"nonsense"}`, `{"event.category":["web",""]}`, `{"event.type":"nope"}`, `{"event.outcome":"maybe"}`,
	`{"source.ip":"999.1.1.1"}`, `{"http.response.status_code":42}`, `{"@timestamp":"1969-12-31T23:59:59Z"}`,
	`{"custom":{"field":1},"event.action":"x"}`, `{"http.response.status_code":2e2}`, `{"user":{"name":{"first":"a"}}}`,
}

// TestPrepareFastMatchesDecoded: for every line the one-pass path takes,
// the collector stores exactly what its full path (Decode, the
// categorisation and ECS checks, defaults, AppendJSON) would have stored;
// the full path is what names errors, so the one pass must take no line it
// rejects.
func TestPrepareFastMatchesDecoded(t *testing.T) {
	took := 0
	for _, line := range prepareSeeds {
		if checkPrepare(t, []byte(line)) {
			took++
		}
	}
	if took < 4 {
		t.Fatalf("the one-pass path took %d of the seeds, want the first 4", took)
	}
}

func FuzzPrepare(f *testing.F) {
	for _, line := range prepareSeeds {
		f.Add([]byte(line))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkPrepare(t, line)
	})
}

var prepareRedactor = func() *redact.Redactor {
	r, err := redact.New(redact.Config{})
	if err != nil {
		panic(err)
	}
	return r
}()

// checkPrepare compares the two paths on line, scrubbed as ingest scrubs
// it, and reports whether the one-pass path took it.
func checkPrepare(t *testing.T, line []byte) bool {
	t.Helper()
	scrubbed, err := prepareRedactor.JSON(nil, line)
	if err != nil {
		return false
	}
	now := time.Date(2026, 11, 30, 1, 2, 3, 4, time.UTC)
	newID := func(b []byte) []byte { return append(b, "collector-assigned"...) }
	fast, id, ok := event.AppendNormalized([]byte("x"), scrubbed, now, newID)
	if !ok {
		return false
	}
	full, wantID, err := prepareDecoded([]byte("x"), scrubbed, now, newID)
	if err != nil {
		t.Fatalf("%s: taken by the one-pass path, rejected by the full path: %v", scrubbed, err)
	}
	if !bytes.Equal(fast, full) || string(id) != wantID {
		t.Fatalf("%s:\n one pass: %s (id %q)\n full:     %s (id %q)", scrubbed, fast, id, full, wantID)
	}
	return true
}
