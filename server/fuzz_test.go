package server

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/event"
)

// The fuzz collector's limits: small, so that the fuzzer reaches them.
const (
	fuzzMaxLine    = 1024
	fuzzMaxRequest = 8 << 10
)

// fuzzServer is a real collector (ledger, index, tokens in a temporary
// directory) shared by every input of one fuzz target, and an ingest token.
func fuzzServer(f *testing.F) (*Server, string) {
	f.Helper()
	cfg := Defaults()
	cfg.DataDir = f.TempDir()
	cfg.Origin = "fuzz.example/trailguard"
	cfg.MaxLineBytes, cfg.MaxRequestBytes = fuzzMaxLine, fuzzMaxRequest
	srv, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	_, tok, err := srv.tokens.Create("fuzz", access.RoleIngest)
	if err != nil {
		f.Fatal(err)
	}
	return srv, tok
}

// post sends body to path as the ingest token would, gzip-compressed when
// enc is "gzip" (or declared so without compressing when enc is "gzip-raw").
func post(t *testing.T, srv *Server, tok, path string, body []byte, enc string) *httptest.ResponseRecorder {
	payload := body
	if enc == "gzip" {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(body)
		zw.Close()
		payload = b.Bytes()
	}
	req := httptest.NewRequest("POST", path, bytes.NewReader(payload))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/x-ndjson")
	if enc != "" {
		req.Header.Set("Content-Encoding", "gzip")
	}
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, req)
	return w
}

// segment is one input line as the collector must see it.
type segment struct {
	n       int // line number, from 1
	tooLong bool
	blank   bool
}

// segments splits an NDJSON body the way the ingest APIs must: lines end
// at \n, a line longer than fuzzMaxLine is too long whatever it holds, and
// whitespace-only lines are skipped.
func segments(body []byte) []segment {
	var out []segment
	parts := bytes.Split(body, []byte("\n"))
	if len(parts) > 0 && len(parts[len(parts)-1]) == 0 {
		parts = parts[:len(parts)-1]
	}
	for i, p := range parts {
		s := segment{n: i + 1, tooLong: len(p) > fuzzMaxLine}
		s.blank = !s.tooLong && len(bytes.TrimSpace(p)) == 0
		out = append(out, s)
	}
	return out
}

// ingestChecksECSTypes: ingest refuses an ECS field of the wrong type
// (issue 7 item 14; {"source":{"ip":"0"}} used to be stored as sent).
const ingestChecksECSTypes = true

// checkStored checks a record the collector acknowledged: one line, ECS-
// valid, and already scrubbed (scrubbing it again changes nothing: no
// secret the scrubber knows is left in it).
func checkStored(t *testing.T, srv *Server, i uint64) {
	t.Helper()
	e, err := srv.ledger.Read(i)
	if err != nil {
		t.Fatalf("acknowledged record %d: %v", i, err)
	}
	if bytes.ContainsAny(e.Data, "\r\n") {
		t.Fatalf("record %d spans lines: %q", i, e.Data)
	}
	// Fields outside ECS are the client's own and kept; but every ECS
	// field must have its ECS type and allowed values, and the fields
	// the collector stamps must be there.
	if err := event.Validate(e.Data); err != nil {
		for _, err := range err.(interface{ Unwrap() []error }).Unwrap() {
			typeErr := strings.Contains(err.Error(), "(ECS ")
			if !strings.Contains(err.Error(), "is not in ECS") && (ingestChecksECSTypes || !typeErr) {
				t.Fatalf("record %d stored but not ECS-valid: %v\n%s", i, err, e.Data)
			}
		}
	}
	ev, err := event.Decode(e.Data)
	if err != nil || ev.Timestamp.IsZero() || ev.Ingested.IsZero() || ev.ID == "" || ev.Kind == "" {
		t.Fatalf("record %d lacks what the collector stamps (%v): %s", i, err, e.Data)
	}
	again, err := srv.red.JSON(nil, e.Data)
	if err != nil || !bytes.Equal(again, e.Data) {
		t.Fatalf("record %d is not fully scrubbed (%v):\nstored   %s\nscrubbed %s", i, err, e.Data, again)
	}
}

// FuzzIngestNDJSON posts arbitrary bodies to POST /v1/events, plain,
// gzip-compressed, or declared gzip but not: the answer accounts for every
// line, a line over max_line_bytes is never stored, a body over
// max_request_bytes (before or after decompression) is a 413, nothing is
// a 5xx, and every acknowledged event is stored one line, ECS-valid and
// scrubbed.
func FuzzIngestNDJSON(f *testing.F) {
	valid := ev("authn_login_fail", "failure", "bob", "203.0.113.9", 401)
	for _, s := range []string{
		valid,
		valid + "\n\n" + `{"message":"password=hunter2 card 4111 1111 1111 1111","url":{"query":"token=abc123456789"}}` + "\n",
		`{"@timestamp":"2026-11-25T12:00:00Z","event":{"id":"dup-1","outcome":"success"}}` + "\n" + `{"event":{"id":"dup-1"}}`,
		"not json\n{\"event\":{\"outcome\":\"maybe\"}}\r\n{}\n",
		strings.Repeat("x", fuzzMaxLine+1) + "\n" + valid,
		strings.Repeat(" ", fuzzMaxLine+5) + "\n",
		`{"user":{"name":"a\u2028b"},"message":"line\nbreak"}`,
		"\n\n \t\n",
		strings.Repeat(valid+"\n", fuzzMaxRequest/len(valid)+1),
	} {
		for _, enc := range []uint8{0, 1, 2} {
			f.Add([]byte(s), enc)
		}
	}
	srv, tok := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte, encSel uint8) {
		enc := [...]string{"", "gzip", "gzip-raw"}[encSel%3]
		w := post(t, srv, tok, "/v1/events", body, enc)
		resp := w.Body.Bytes()
		if w.Code >= 500 {
			t.Fatalf("%d %s", w.Code, resp)
		}
		if enc == "gzip-raw" {
			// Whatever the bytes, a client error or events accounted
			// for; the invariants below need the decompressed body.
			if w.Code != 200 && w.Code != 400 && w.Code != 413 {
				t.Fatalf("gzip-declared garbage: %d %s", w.Code, resp)
			}
			return
		}
		if len(body) > fuzzMaxRequest {
			if w.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("%d-byte body (limit %d): %d %s", len(body), fuzzMaxRequest, w.Code, resp)
			}
			return
		}
		if w.Code == http.StatusRequestEntityTooLarge {
			if enc == "gzip" {
				return // the compressed stream itself may exceed the limit
			}
			t.Fatalf("%d-byte body refused as too large: %s", len(body), resp)
		}
		segs := segments(body)
		counted := 0
		for _, s := range segs {
			if !s.blank {
				counted++
			}
		}
		if counted == 0 {
			if w.Code != 400 || !strings.Contains(string(resp), "no events") {
				t.Fatalf("body without events: %d %s", w.Code, resp)
			}
			return
		}
		var r ingestResponse
		if err := json.Unmarshal(resp, &r); err != nil {
			t.Fatalf("%d %s: %v", w.Code, resp, err)
		}
		if r.Accepted+r.Rejected+r.Duplicates != counted || r.Rejected != len(r.Errors) {
			t.Fatalf("%d non-blank lines, answer %s", counted, resp)
		}
		// 200 unless no line was a valid event (stored, or a duplicate of
		// one stored).
		if want := r.Accepted > 0 || r.Duplicates > 0; (w.Code == 200) != want {
			t.Fatalf("status %d for %s", w.Code, resp)
		}
		errAt := map[int]string{}
		for _, e := range r.Errors {
			errAt[e.Line] = e.Error
		}
		for _, s := range segs {
			msg, rejected := errAt[s.n]
			switch {
			case s.tooLong && (!rejected || !strings.Contains(msg, "exceeds")):
				t.Fatalf("line %d is over %d bytes but not refused as such (%q): %s", s.n, fuzzMaxLine, msg, resp)
			case s.blank && rejected:
				t.Fatalf("blank line %d reported: %s", s.n, resp)
			}
			delete(errAt, s.n)
		}
		if len(errAt) > 0 {
			t.Fatalf("errors for lines that do not exist: %v", errAt)
		}
		// An answer never grows faster than the body: each error names its
		// line and says what is wrong in bounded words (a value quoted from
		// the line is at most the line).
		if max := 2*len(body) + 256*(len(segs)+1); len(resp) > max {
			t.Fatalf("answer of %d bytes to a %d-byte body", len(resp), len(body))
		}
		stored := 0
		for _, sr := range r.Stored {
			stored += sr.Count
			for i := sr.First; i < sr.First+uint64(sr.Count); i++ {
				checkStored(t, srv, i)
			}
		}
		if stored != r.Accepted {
			t.Fatalf("stored ranges hold %d events, accepted %d: %s", stored, r.Accepted, resp)
		}
	})
}

// FuzzBulk posts arbitrary bodies to the Elasticsearch-compatible _bulk:
// never a 5xx; one item per action in order, each reported under its
// action with a status; errors is true exactly when an item failed; only
// create and index store anything, each stored record one line, ECS-valid
// and scrubbed, at consecutive sequence numbers; the answer's size is
// bounded by the body's.
func FuzzBulk(f *testing.F) {
	valid := ev("authn_login_fail", "failure", "eve", "203.0.113.7", 401)
	for _, s := range []string{
		`{"create":{"_index":"logs","_id":"abc"}}` + "\n" + valid + "\n",
		`{"index":{}}` + "\n" + `{"message":"password=hunter2","@timestamp":"2026-11-25T10:00:00Z"}` + "\n",
		`{"delete":{"_id":"x"}}` + "\n" + `{"update":{"_id":"y"}}` + "\n" + `{"doc":{}}` + "\n",
		`{"create":{}}` + "\n" + `{"event":{"kind":"nonsense"}}` + "\n" + `{"bogus":{}}` + "\n",
		`{"create":{}}`,
		`{"create":{},"index":{}}` + "\n" + valid,
		`[1,2]` + "\n" + `{"create":5}` + "\n",
		`{"create":{"_id":"` + strings.Repeat("i", fuzzMaxLine) + `"}}` + "\n" + valid,
		`{"index":{}}` + "\n" + strings.Repeat("d", fuzzMaxLine+1) + "\n",
		`{"create":{"_id":"dup"}}` + "\n" + `{"event":{"id":"same-1"}}` + "\n" + `{"create":{}}` + "\n" + `{"event":{"id":"same-1"}}`,
	} {
		f.Add([]byte(s))
	}
	srv, tok := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		w := post(t, srv, tok, "/_bulk", body, "")
		resp := w.Body.Bytes()
		if len(body) > fuzzMaxRequest {
			if w.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("%d-byte body (limit %d): %d %s", len(body), fuzzMaxRequest, w.Code, resp)
			}
			return
		}
		segs := segments(body)
		nonBlank := 0
		for _, s := range segs {
			if !s.blank {
				nonBlank++
			}
		}
		if nonBlank == 0 {
			// As Elasticsearch: a bulk request without actions is a 400.
			if w.Code != 400 || !strings.Contains(string(resp), "no requests added") {
				t.Fatalf("body without actions: %d %s", w.Code, resp)
			}
			return
		}
		if w.Code != 200 {
			t.Fatalf("%d %s", w.Code, resp)
		}
		var out struct {
			Errors bool
			Items  []map[string]bulkAnswerItem
		}
		if err := json.Unmarshal(resp, &out); err != nil {
			t.Fatalf("%s: %v", resp, err)
		}
		// Every action takes one line and at most one document line.
		if len(out.Items) > nonBlank || len(out.Items) < (nonBlank+1)/2 {
			t.Fatalf("%d items for %d non-blank lines: %s", len(out.Items), nonBlank, resp)
		}
		anyErr := false
		var seqs []uint64
		for i, m := range out.Items {
			if len(m) != 1 {
				t.Fatalf("item %d has %d actions: %s", i, len(m), resp)
			}
			for op, it := range m {
				created := it.Status == http.StatusCreated
				if created != (it.Result == "created") || created != (it.SeqNo != nil) || created == (it.Error != nil) {
					t.Fatalf("item %d (%s): inconsistent %+v", i, op, it)
				}
				if created && op != "create" && op != "index" {
					t.Fatalf("item %d: %s stored a document", i, op)
				}
				if !created && it.Status < 400 {
					t.Fatalf("item %d: failed with status %d", i, it.Status)
				}
				if created {
					seqs = append(seqs, *it.SeqNo)
				}
				anyErr = anyErr || it.Error != nil
			}
		}
		if anyErr != out.Errors {
			t.Fatalf("errors=%v but an item failed=%v: %s", out.Errors, anyErr, resp)
		}
		for i, seq := range seqs {
			if seq != seqs[0]+uint64(i) {
				t.Fatalf("stored items at %v: not consecutive", seqs)
			}
			checkStored(t, srv, seq)
		}
		if max := 2*len(body) + 512*(len(out.Items)+1); len(resp) > max {
			t.Fatalf("answer of %d bytes to a %d-byte body", len(resp), len(body))
		}
	})
}
