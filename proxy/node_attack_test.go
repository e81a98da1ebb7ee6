package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
)

// TestSingleNodeHostileRequests: requests carrying secrets and awkward text
// in every place the gateway records (path, query, headers, user agent,
// request id) reach the single node's ledger scrubbed, and the spans the
// followers read instead of the record (index, detection, overview, lane)
// agree with the stored record: every field a span locates decodes to the
// record's own value, and no span locates a field the record lacks.
func TestSingleNodeHostileRequests(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	g, gw, _ := serveGateway(t, Config{DataDir: t.TempDir(), Routes: []Route{{Upstream: up.URL}},
		Headers: []string{"Authorization", "X-Api-Key", "Cookie", "X-Note"}})
	const jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	secrets := []string{jwt, "4111111111111111", "4111 1111 1111 1111", "hunter2", "AKIAIOSFODNN7EXAMPLE", "s3cr3tcookie"}
	paths := []string{
		"/orders/4111111111111111?password=hunter2&token=" + jwt,
		"/caf%C3%A9/%E2%80%A8/%22quoted%22/%5Cback?q=%00%1f%7f&api_key=hunter2",
		"/" + strings.Repeat("a", 70000) + "?x=4111111111111111", // a record longer than spans describe
		"/plain",
	}
	for _, p := range paths {
		get(t, gw+p, "Authorization", "Bearer "+jwt, "X-Api-Key", "hunter2", "Cookie", "session=s3cr3tcookie",
			"X-Note", "card 4111 1111 1111 1111 \u2028 \"q\"", "User-Agent", "curl AKIAIOSFODNN7EXAMPLE", "X-Request-ID", jwt)
	}
	// The records must come, however late: 0.5 s alone, past 10 s once in
	// a loaded full -race run. A deadline is there only so that records
	// that never come fail.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seen, described := 0, 0
	for e, err := range g.Collector().Ledger().FollowAppended(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if bytes.Contains(e.Data, []byte(s)) {
				t.Errorf("record %d holds %q unscrubbed: %.300s", e.Index, s, e.Data)
			}
		}
		var doc map[string]any
		dec := json.NewDecoder(bytes.NewReader(e.Data))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("record %d is not JSON: %v", e.Index, err)
		}
		flat := map[string]any{}
		flatten("", doc, flat)
		sps, _ := e.Aux.([]event.Spans)
		if e.AuxPos < len(sps) && sps[e.AuxPos].OK() {
			sp := &sps[e.AuxPos]
			described++
			located := map[int]bool{}
			for name, want := range flat {
				f := event.SpanField(name)
				if f < 0 {
					continue
				}
				located[f] = true
				tok := sp.Token(e.Data, f)
				if tok == nil {
					t.Errorf("record %d: %s holds %v but its span is empty", e.Index, name, want)
					continue
				}
				var got any
				d := json.NewDecoder(bytes.NewReader(tok))
				d.UseNumber()
				if err := d.Decode(&got); err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("record %d: %s span %q, record holds %v (%v)", e.Index, name, tok, want, err)
				}
			}
			for f := range event.SpanFields {
				if tok := sp.Token(e.Data, f); tok != nil && !located[f] {
					t.Errorf("record %d: span %d locates %q, a field the record does not hold", e.Index, f, tok)
				}
			}
		}
		if ev, err := event.Decode(e.Data); err == nil && ev.Action == event.ActionHTTPRequest {
			if !bytes.Contains(e.Data, []byte(`"x-note":"card `)) {
				t.Errorf("record %d does not hold the X-Note header: %.500s", e.Index, e.Data)
			}
			if seen++; seen == len(paths) {
				if described < len(paths)-1 {
					t.Fatalf("%d records had spans, want the %d access events short enough to have them", described, len(paths)-1)
				}
				return
			}
		}
	}
	t.Fatalf("%d of %d access events reached the ledger", seen, len(paths))
}

// flatten notes each leaf of v under its dotted name (arrays as leaves).
func flatten(prefix string, v any, out map[string]any) {
	m, ok := v.(map[string]any)
	if !ok {
		out[prefix] = v
		return
	}
	for k, x := range m {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		flatten(name, x, out)
	}
}
