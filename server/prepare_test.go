package server

import (
	"bytes"
	"strings"
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
	for _, line := range secretLines() {
		f.Add([]byte(line))
	}
	var passes []*event.ScrubPass
	for _, r := range sequenceRedactors {
		passes = append(passes, event.NewScrubPass(r.NewTokens()))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkPrepare(t, line)
		for i, r := range sequenceRedactors {
			checkOnePass(t, r, passes[i], line)
		}
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

// onePassRedactors are the scrubbing configurations the one-pass prepare
// is held to: the default, every mode, configured keys that make modelled
// fields sensitive (user.name through its parent, labels, headers), allowed
// keys, e-mails on, a detector off, and nesting limits that the documents
// reach.
var onePassRedactors = func() []*redact.Redactor {
	var rs []*redact.Redactor
	for _, cfg := range []redact.Config{
		{},
		{Mode: redact.Mask, Emails: true},
		{Mode: redact.HMAC, Secret: []byte("0123456789abcdef0123")},
		{Keys: []string{"username", "*agent*", "query"}},
		{Keys: []string{"requestid", "httprequest", "eventid"}},
		{Keys: []string{"httprequestid", "eventid"}},
		{Keys: []string{"env", "content*"}, Headers: []string{"x-custom"}, AllowKeys: []string{"cookie", "session"}},
		{Disable: []redact.Kind{redact.KindCard}},
		{MaxDepth: 2},
		{MaxDepth: 3},
	} {
		r, err := redact.New(cfg)
		if err != nil {
			panic(err)
		}
		rs = append(rs, r)
	}
	return rs
}()

// secretLines are events with something to scrub in each place the
// one-pass path reads: string values, keys, integers, labels and headers,
// escaped text, JSON inside a string.
func secretLines() []string {
	secrets := []string{
		"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
		"card 4111 1111 1111 1111", "AKIAIOSFODNN7EXAMPLE", "Bearer abcdef123456", "bob@example.com",
		"123-45-6789", "password=hunter2&a=1", `-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----`,
		`{\"password\":\"x\"}`, `\u0034111111111111111`, "plain text", "", "4111111111111111",
	}
	places := []string{
		`{"message":%q}`, `{"user":{"name":%q}}`, `{"user.name":%q}`, `{"url":{"query":%q,"path":"/a"}}`,
		`{"user_agent":{"original":%q}}`, `{"http":{"request":{"body":{"content":%q}}}}`,
		`{"labels":{"env":%q}}`, `{"trailguard":{"http":{"request":{"headers":{"x-custom":%q,"accept":"*/*"}}}}}`,
		`{"event":{"reason":%q},"error":{"message":"x"}}`, `{"http.request.referrer":%q}`, `{"event":{"id":%q}}`,
	}
	var lines []string
	for _, p := range places {
		for _, s := range secrets {
			// %q would escape the backslashes the secrets hold on purpose.
			lines = append(lines, strings.Replace(p, "%q", `"`+s+`"`, 1))
		}
	}
	lines = append(lines,
		`{"event":{"duration":4111111111111111}}`, `{"http":{"response":{"body":{"bytes":4111111111111111}}}}`,
		`{"source":{"port":4111111111111111}}`, `{"event.severity":5500000000000004}`,
		`{"labels":{"api_key":"v"}}`, `{"labels":{"password":"v","env":"prod"}}`, `{"labels":{"token":null}}`,
		`{"trailguard.http.request.headers":{"authorization":"Basic dXNlcjpwYXNz"}}`,
		`{"trailguard":{"http":{"request":{"headers":{"cookie":"a=b","set-cookie":"c=d"}}}}}`,
		`{"password":null,"message":"x"}`, `{"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c":null}`,
		`{"session":null,"user":{"roles":["admin","4111 1111 1111 1111"]}}`, `{"event":{"category":["web"],"type":"access"}}`,
		`{"user":{"name":"a\nb"}}`, `{"user":{"name":"caf\u00e9"}}`, "{\"user\":{\"name\":\"caf\xc3\xa9 \xff\"}}",
		` { "message" : "spaced" , "user" : { "name" : "x" } } `, `{"http":{"response":{"status_code":200}},"labels":{}}`,
		// One name written in each form: a verdict kept for one form must
		// not answer for another.
		`{"http":{"request":{"id":"a"}}}`, `{"http":{"request.id":"a"}}`, `{"http.request":{"id":"a"}}`, `{"http.request.id":"a"}`,
		`{"event":{"id":"a"}}`, `{"event.id":"a"}`, `{"user":{"name":"a"}}`, `{"url":{"query":"a=1"}}`, `{"url.query":"a=1"}`,
	)
	return lines
}

// TestPrepareOnePassMatchesTwo: scrubbing while normalising (one pass)
// stores exactly what scrubbing and then normalising (two passes) stores,
// for the seeds, the scrubber's fuzz seeds and events with a secret in
// each place, under every configuration; the one pass takes a line only
// when scrubbing leaves it as it is, and it does take the clean ones.
func TestPrepareOnePassMatchesTwo(t *testing.T) {
	lines := append(append([]string{}, prepareSeeds...), secretLines()...)
	lines = append(lines, redactJSONSeeds...)
	for ri, r := range sequenceRedactors {
		took, kept := 0, 0
		// One pass for all the lines, as a request's: the verdicts it
		// keeps on modelled names must hold for every later line.
		p := event.NewScrubPass(r.NewTokens())
		for _, line := range lines {
			if checkOnePass(t, r, p, []byte(line)) {
				took++
			}
			if out, err := r.JSON(nil, []byte(line)); err == nil && string(out) == line {
				if _, _, ok := event.AppendNormalized(nil, out, time.Now(), event.AppendID); ok {
					kept++
				}
			}
		}
		// Every line the one pass could take (nothing to scrub, and the
		// normaliser's fast path takes it) it does take.
		if took != kept {
			t.Errorf("redactor %d: the one pass took %d lines, want the %d that scrubbing leaves as they are", ri, took, kept)
		}
		if ri == 0 && took < 20 {
			t.Errorf("the one pass took only %d lines under the default redactor", took)
		}
	}
}

// redactJSONSeeds are redact's FuzzJSON seeds (objects are the ones the
// normaliser reads).
var redactJSONSeeds = []string{
	`{}`, `[]`, `null`, `"x"`, `0`, `{"a":1,"b":[true,false,null],"c":{"d":"e"}}`,
	`{"password":"hunter2","user":"bob"}`, `{"pass\u0077ord":{"a":[1,2]},"x":"\u0034111111111111111"}`,
	`{"note":"card 4111 1111 1111 1111","n":4111111111111111}`,
	`{"body":"{\"secret\":\"s\",\"a\":[1,{\"token\":2}]}"}`, `{"a":1,}`, `{"a"`, `"\u12`, `[1 2]`, `01`,
	"{\"a\":\"\xff\xfe\",\"\u2028\":\"\\ud800\\udc00\\ud800\"}",
}

// checkOnePass compares the one pass with the two on line under r and
// reports whether the one pass took it.
func checkOnePass(t *testing.T, r *redact.Redactor, p *event.ScrubPass, line []byte) bool {
	t.Helper()
	now := time.Date(2026, 11, 30, 1, 2, 3, 4, time.UTC)
	newID := func(b []byte) []byte { return append(b, "collector-assigned"...) }
	var sp1, sp2 event.Spans
	one, id1, ok := event.AppendNormalizedScrubbed([]byte("x"), line, now, newID, &sp1, p)
	if !ok {
		return false
	}
	scrubbed, err := r.JSON(nil, line)
	if err != nil {
		t.Fatalf("%s: taken by the one pass, rejected by the scrubber: %v", line, err)
	}
	if !bytes.Equal(scrubbed, line) {
		t.Fatalf("taken by the one pass, but scrubbing changes it:\n line:     %s\n scrubbed: %s", line, scrubbed)
	}
	two, id2, ok := event.AppendNormalizedSpans([]byte("x"), scrubbed, now, newID, &sp2)
	if !ok || !bytes.Equal(one, two) || !bytes.Equal(id1, id2) || sp1 != sp2 {
		t.Fatalf("%s:\n one pass:   %s (id %q)\n two passes: %s (id %q, ok %v), spans equal %v", line, one, id1, two, id2, ok, sp1 == sp2)
	}
	return true
}
