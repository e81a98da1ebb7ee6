package server

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
)

// idLine is a valid event with event.id prefix-i.
func idLine(prefix string, i int) string {
	return fmt.Sprintf(`{"event":{"id":"%s-%d","action":"log"},"message":"m%d"}`, prefix, i, i)
}

// storedIDs returns the event.ids in the ledger that start with prefix.
func storedIDs(t *testing.T, ts *testServer, prefix string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for e, err := range ts.ledger.Entries(0) {
		if err != nil {
			t.Fatal(err)
		}
		if id, ok := event.PeekID(e.Data); ok && strings.HasPrefix(id, prefix+"-") {
			out[id]++
		}
	}
	return out
}

func decodeIngest(t *testing.T, body []byte) ingestResponse {
	t.Helper()
	var r ingestResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("answer is not JSON: %v: %.300s", err, body)
	}
	return r
}

// smallChunks makes ingest append every 64 events, so tests need few.
func smallChunks(s *Server) { s.chunkEvents = 64 }

// TestIngestStreamsInChunks: a request larger than a chunk is appended
// in several chunks, and the answer still names exactly the lines that
// were not stored.
func TestIngestStreamsInChunks(t *testing.T) {
	t.Parallel()
	ts := startServerWith(t, t.TempDir(), nil, smallChunks)
	var lines []string
	bad := map[int]bool{10: true, 250: true, 500: true}
	for i := 1; i <= 500; i++ {
		if bad[i] {
			lines = append(lines, `{"http":{"response":{"status_code":"x"}}}`)
		} else {
			lines = append(lines, idLine("s", i))
		}
	}
	status, body := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(strings.Join(lines, "\n")))
	r := decodeIngest(t, body)
	if status != 200 || r.Accepted != 497 || r.Rejected != 3 || len(r.Stored) < 3 {
		t.Fatalf("%d: accepted %d rejected %d stored %v", status, r.Accepted, r.Rejected, r.Stored)
	}
	sum := 0
	for _, sr := range r.Stored {
		sum += sr.Count
		for i := sr.First; i < sr.First+uint64(sr.Count); i++ {
			e, err := ts.ledger.Read(i)
			if err != nil {
				t.Fatal(err)
			}
			if id, _ := event.PeekID(e.Data); !strings.HasPrefix(id, "s-") {
				t.Fatalf("stored range %v holds record %d of another writer: %.100s", sr, i, e.Data)
			}
		}
	}
	if sum != 497 {
		t.Fatalf("stored ranges hold %d events", sum)
	}
	for _, e := range r.Errors {
		if !bad[e.Line] || !strings.Contains(e.Error, "http.response.status_code") {
			t.Errorf("error for line %d: %s", e.Line, e.Error)
		}
	}
	if got := storedIDs(t, ts, "s"); len(got) != 497 {
		t.Fatalf("%d distinct events stored, want 497", len(got))
	}
}

// TestIngestTooManyEvents: past max_request_events the request stops; the
// answer says which line to resume from, and resending is exact.
func TestIngestTooManyEvents(t *testing.T) {
	t.Parallel()
	ts := startServerWith(t, t.TempDir(), func(c *Config) { c.MaxRequestEvents = 300 }, smallChunks)
	var lines []string
	for i := 1; i <= 500; i++ {
		lines = append(lines, idLine("m", i))
	}
	status, body := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(strings.Join(lines, "\n")))
	r := decodeIngest(t, body)
	if status != 413 || r.ResumeLine != 301 || r.Accepted != 300 || r.Outcome != "not_stored" ||
		!strings.Contains(r.Error, "max_request_events") {
		t.Fatalf("%d: %.400s", status, body)
	}
	got := storedIDs(t, ts, "m")
	if len(got) != 300 || got["m-300"] != 1 || got["m-301"] != 0 {
		t.Fatalf("stored %d events (m-300: %d, m-301: %d)", len(got), got["m-300"], got["m-301"])
	}
	// The rest, from resume_line on.
	status, body = ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(strings.Join(lines[r.ResumeLine-1:], "\n")))
	if r := decodeIngest(t, body); status != 200 || r.Accepted != 200 {
		t.Fatalf("rest: %d %.300s", status, body)
	}
	if got := storedIDs(t, ts, "m"); len(got) != 500 {
		t.Fatalf("%d events after the resend", len(got))
	}
	// _bulk: the same limit counts actions.
	var bulk strings.Builder
	for i := 1; i <= 302; i++ {
		fmt.Fprintf(&bulk, "{\"create\":{}}\n%s\n", idLine("b", i))
	}
	status, body = ts.do(t, "POST", "/_bulk", ts.ingest, strings.NewReader(bulk.String()))
	var br struct {
		ResumeLine int           `json:"resume_line"`
		Stored     []storedRange `json:"stored"`
		Error      struct{ Reason string }
	}
	json.Unmarshal(body, &br)
	if status != 413 || br.ResumeLine != 601 || !strings.Contains(br.Error.Reason, "max_request_events") {
		t.Fatalf("bulk over the limit: %d %.300s", status, body)
	}
	if got := storedIDs(t, ts, "b"); len(got) != 300 {
		t.Fatalf("bulk stored %d events, want 300", len(got))
	}
}

// TestIngestLedgerFailsMidRequest: when the ledger refuses a chunk after
// earlier chunks of the same request were stored, the answer says which
// were (stored, resume_line) and that the rest were not, with Retry-After.
func TestIngestLedgerFailsMidRequest(t *testing.T) {
	t.Parallel()
	ts := startServerWith(t, t.TempDir(), nil, smallChunks)
	const chunk = 64
	pr, pw := io.Pipe()
	go func() {
		for i := 1; i <= chunk; i++ {
			fmt.Fprintln(pw, idLine("f", i))
		}
		deadline := time.Now().Add(30 * time.Second)
		for ts.ledger.Size() < chunk && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		ts.ledger.Close() // as if the disk failed for good
		for i := chunk + 1; i <= 300; i++ {
			fmt.Fprintln(pw, idLine("f", i))
		}
		pw.Close()
	}()
	status, hdr, body := doReq(t, ts.url, "POST", "/v1/events", ts.ingest, pr)
	r := decodeIngest(t, body)
	if status != 503 || hdr.Get("Retry-After") == "" || r.Outcome != "not_stored" || r.ResumeLine != chunk+1 ||
		r.Accepted != chunk || len(r.Stored) != 1 || r.Stored[0].Count != chunk {
		t.Fatalf("%d Retry-After %q: %.500s", status, hdr.Get("Retry-After"), body)
	}
	if strings.Contains(string(body), ts.dir) {
		t.Errorf("answer exposes the data directory: %s", body)
	}
	// The collector cannot close cleanly now; stop it without checking.
	ts.cancel()
	<-ts.done
	ts.cancel = nil
}

// doReq is testServer.do that also returns the headers.
func doReq(t *testing.T, base, method, path, token string, body io.Reader, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// TestIngestClientMistakes: every mistake in a request is a 4xx saying
// what to change (issue 7, item 15).
func TestIngestClientMistakes(t *testing.T) {
	t.Parallel()
	ts := startServer(t, t.TempDir(), func(c *Config) { c.MaxRequestBytes = 64 << 10; c.MaxLineBytes = 4096 })
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	good := []byte(idLine("c", 1) + "\n")
	bomb := gz(bytes.Repeat([]byte("a"), 1<<20)) // one endless line
	corrupt := gz(good)
	corrupt[len(corrupt)-6] ^= 0xff // CRC
	tests := []struct {
		name   string
		path   string
		body   []byte
		hdr    []string
		status int
		want   string
	}{
		{"gzip bomb", "/v1/events", bomb, []string{"Content-Encoding", "gzip"}, 413, "exceeds 65536 bytes (max_request_bytes)"},
		{"gzip bomb, bulk", "/_bulk", bomb, []string{"Content-Encoding", "gzip"}, 413, "exceeds 65536 bytes (max_request_bytes)"},
		{"body too large", "/v1/events", bytes.Repeat(good, 2000), nil, 413, "exceeds 65536 bytes (max_request_bytes); nothing was stored"},
		{"unsupported encoding", "/v1/events", good, []string{"Content-Encoding", "br"}, 415, "Content-Encoding"},
		{"corrupt gzip", "/v1/events", corrupt, []string{"Content-Encoding", "gzip"}, 400, "gzip"},
		{"not gzip", "/v1/events", good, []string{"Content-Encoding", "gzip"}, 400, "gzip"},
		{"empty", "/v1/events", nil, nil, 400, "no events"},
		{"empty bulk", "/_bulk", nil, nil, 400, "no requests added"},
		{"line too long", "/v1/events", []byte(strings.Repeat("x", 5000)), nil, 400, "max_line_bytes"},
	}
	for _, tt := range tests {
		status, _, body := doReq(t, ts.url, "POST", tt.path, ts.ingest, bytes.NewReader(tt.body), tt.hdr...)
		if status != tt.status || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s: %d %.300s; want %d mentioning %q", tt.name, status, body, tt.status, tt.want)
		}
	}
}

// TestBulkDuplicatesCounted is issue 7's item 13: a _bulk item answered
// 409 because its event.id was stored recently is a duplicate, not a
// rejected event.
func TestBulkDuplicatesCounted(t *testing.T) {
	t.Parallel()
	ts := startServer(t, t.TempDir(), func(c *Config) { c.MetricsPublic = true })
	var bulk strings.Builder
	for i := range 3 {
		fmt.Fprintf(&bulk, "{\"create\":{}}\n%s\n", idLine("d", i))
	}
	fmt.Fprintf(&bulk, "{\"create\":{}}\n{\"event\":{\"outcome\":\"maybe\"}}\n")
	metric := func(name string) int {
		_, body := ts.do(t, "GET", "/metrics", "", nil)
		for line := range strings.SplitSeq(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
		t.Fatalf("no %s", name)
		return 0
	}
	for range 2 {
		if status, body := ts.do(t, "POST", "/_bulk", ts.ingest, strings.NewReader(bulk.String())); status != 200 {
			t.Fatalf("%d %s", status, body)
		}
	}
	if got := metric("trailguard_events_rejected_total"); got != 2 {
		t.Errorf("rejected_total %d, want 2 (the invalid item, twice)", got)
	}
	if got := metric("trailguard_events_duplicate_total"); got != 3 {
		t.Errorf("duplicate_total %d, want 3", got)
	}
}

// TestStoreFailureCounted: events the ledger refuses are counted in
// trailguard_events_failed_total, as many as were refused, whichever way
// they came in (POST /v1/events, /_bulk, OTLP /v1/logs).
func TestStoreFailureCounted(t *testing.T) {
	t.Parallel()
	ts := startServer(t, t.TempDir(), func(c *Config) { c.MetricsPublic = true })
	failed := func() int {
		_, body := ts.do(t, "GET", "/metrics", "", nil)
		for line := range strings.SplitSeq(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, "trailguard_events_failed_total "); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
		t.Fatal("no trailguard_events_failed_total")
		return 0
	}
	ts.ledger.Close() // as if the disk failed for good
	otlp := `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1795946400000000000","body":{"stringValue":"a"}},` +
		`{"timeUnixNano":"1795946400000000000","body":{"stringValue":"b"}}]}]}]}`
	for _, tc := range []struct {
		path, body string
		want       int // failed_total after
	}{
		{"/v1/events", idLine("sf", 1) + "\n" + idLine("sf", 2) + "\n" + idLine("sf", 3) + "\n", 3},
		{"/_bulk", "{\"create\":{}}\n" + idLine("sf", 4) + "\n{\"index\":{}}\n" + idLine("sf", 5) + "\n", 5},
		{"/v1/logs", otlp, 7},
	} {
		status, body := ts.do(t, "POST", tc.path, ts.ingest, strings.NewReader(tc.body), "Content-Type", "application/json")
		if status != http.StatusServiceUnavailable {
			t.Fatalf("%s: %d %s", tc.path, status, body)
		}
		if got := failed(); got != tc.want {
			t.Errorf("after %s: failed_total %d, want %d", tc.path, got, tc.want)
		}
	}
	// The collector cannot close cleanly now; stop it without checking.
	ts.cancel()
	<-ts.done
	ts.cancel = nil
}
