package event

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// normalizedByDecode is the path AppendNormalized must match: Decode,
// CheckECS, the categorisation check, the collector's defaults,
// AppendJSON. ok is false when that path rejects the document.
func normalizedByDecode(doc []byte, now time.Time, newID func([]byte) []byte) (out []byte, id string, ok bool) {
	ev, err := Decode(doc)
	if err != nil || ev.CheckECS() != nil {
		return nil, "", false
	}
	allowed := func(field string, emptyIsAbsent bool, vals ...string) bool {
		for _, v := range vals {
			if (v != "" || !emptyIsAbsent) && !slices.Contains(ECSAllowed(field), v) {
				return false
			}
		}
		return true
	}
	if !allowed("event.kind", true, ev.Kind) || !allowed("event.category", false, ev.Category...) ||
		!allowed("event.type", false, ev.Type...) || !allowed("event.outcome", true, ev.Outcome) {
		return nil, "", false
	}
	id = ev.ID
	if ev.Timestamp.IsZero() {
		ev.Timestamp = now
	}
	if ev.Kind == "" {
		ev.Kind = KindEvent
	}
	if ev.ID == "" {
		ev.ID = string(newID(nil))
	}
	ev.Ingested = now
	return ev.AppendJSON(nil), id, true
}

func fixedID(b []byte) []byte { return append(b, "0193a1b2-0000-7000-8000-000000000001"...) }

// checkNormalized compares the two paths on doc and reports whether the
// one-pass path took it.
func checkNormalized(t *testing.T, doc []byte) bool {
	t.Helper()
	now := time.Date(2026, 11, 30, 1, 2, 3, 456789000, time.UTC)
	prefix := []byte("prefix:")
	got, id, ok := AppendNormalized(prefix, doc, now, fixedID)
	if !ok {
		if !bytes.Equal(got, prefix) {
			t.Fatalf("%s: declined, but changed dst to %q", doc, got)
		}
		return false
	}
	want, wantID, wantOK := normalizedByDecode(doc, now, fixedID)
	if !wantOK {
		t.Fatalf("%s: taken by AppendNormalized, rejected by Decode and the checks", doc)
	}
	if !bytes.Equal(got[len(prefix):], want) || !bytes.HasPrefix(got, prefix) {
		t.Fatalf("%s:\n one pass: %s\n decoded:  %s", doc, got[len(prefix):], want)
	}
	if string(id) != wantID {
		t.Fatalf("%s: id %q, want %q", doc, id, wantID)
	}
	return true
}

// normalizedSeeds are documents of every shape the one-pass path takes or
// must leave to Decode.
var normalizedSeeds = []string{
	// The benchmark loader's event (bench/cmd/ingestload).
	`{"@timestamp":"2026-11-25T12:00:01.000001Z","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":1834000,"id":"0193a1b2-c3d4-7e5f-RRRRRRRR000000000001","dataset":"trailguard.access"},"http":{"request":{"id":"req-00000001","method":"GET"},"response":{"status_code":200,"body":{"bytes":512}}},"url":{"path":"/api/orders/1","query":"page=2"},"source":{"ip":"10.1.1.1","port":51234},"user":{"name":"user001"},"user_agent":{"original":"Mozilla/5.0 (X11; Linux x86_64)"},"service":{"name":"orders-api"}}`,
	// The demo's traffic: headers, escaped bodies, roles, client.ip.
	`{"@timestamp":"2026-11-30T01:50:48.375678833Z","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":3194508,"id":"01a22a25-c637-7695-b6ac-566a9bee6245","dataset":"trailguard.access"},"http":{"request":{"id":"01a22a25-c633-7e08-80f9-4a52f653f0e9","method":"POST","body":{"bytes":50,"content":"{\"password\":\"[REDACTED]\",\"username\":\"bob\"}"}},"response":{"status_code":200,"body":{"bytes":45}}},"url":{"path":"/api/login"},"source":{"ip":"127.0.0.1","port":11806},"client":{"ip":"198.18.132.230"},"user":{"id":"u2","name":"bob","roles":["viewer"]},"user_agent":{"original":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"},"service":{"name":"demo-shop"},"host":{"name":"vm"},"trailguard":{"http":{"request":{"headers":{"content-type":"application/json","accept":"*/*"}}}}}`,
	// Dotted and mixed names, whitespace, nulls, defaults to fill in.
	`{ "event.action" : "authn_login_fail", "event.outcome":"failure", "user":{"name":"alice"}, "http.request": {"method":"POST"}, "x": null, "event": null }`,
	`{"@timestamp":"2026-11-25T12:00:00+02:00","event":{"kind":"","outcome":"","category":"authentication","type":[]},"labels":{"b":"2","a":"1"},"user.roles":""}`,
	`{"event":{"id":""},"message":"caf\u00e9 \"quoted\" tab\t","error.message":"é ü \u2028 \u0085","url.original":"/a%20b?x=\u007f"}`,
	`{"log.level":"warn","event.severity":-3,"event.reason":"","trace.id":"abc","span.id":"def","user.target.id":"7","user.target.name":"bob","http.request.referrer":"https://x/","event.ingested":"2020-01-01T00:00:00Z"}`,
	`{"source":{"ip":"2001:db8::1","port":0},"client.ip":"::ffff:10.0.0.1","http.response.status_code":0,"labels":{}}`,
	`{}`,
	" \t{\"event.action\":\"x\"}\n ",
	// Left to Decode.
	`{"event.action":"a","event":{"action":"b"}}`, // repeated
	`{"event.action":"a","custom":{"field":1}}`,   // Extra
	`{"labels.env":"prod"}`,                       // dotted label
	`{"http.response.status_code":2e2}`,           // exponent
	`{"http.response.status_code":200.0}`,         // fraction
	`{"event.duration":1234567890123456789}`,      // 19 digits
	`{"ev\u0065nt.action":"x"}`,                   // escaped key
	`{"labels":{"k\u0065y":"v"}}`,                 // escaped label key
	`{"labels":{"a":"1","a":"2"}}`,                // repeated label
	`{"trailguard.audit.resource":"user/1"}`,      // audit
	`{"trailguard":{"attrs":{"a":1}}}`,            // attrs
	// Rejected by Decode or the checks.
	`{"event.kind":"nonsense"}`, `{"event.category":["web",""]}`, `{"event.type":"nope"}`, `{"event.outcome":"maybe"}`,
	`{"source.ip":"999.1.1.1"}`, `{"http.response.status_code":42}`, `{"source.port":70000}`, `{"event.duration":-1}`,
	`{"@timestamp":"1969-12-31T23:59:59Z"}`, `{"@timestamp":"0001-01-01T00:00:00Z"}`, `{"@timestamp":"yesterday"}`,
	`{"event.ingested":"never"}`, `{"event":{"ingested":"9999-12-31T23:00:00-01:00"},"message":"x"}`, `{"@timestamp":"0000-01-01T00:00:00+01:00"}`,
	`{"user.name":5}`, `{"user.roles":[1]}`, `{"event":"x"}`, `{"event":{"action":{"a":1}}}`,
	`{"a":1`, `{"a":1}x`, `[]`, `null`, `"x"`, `{"":1}`, `{"":null}`, `{"event":{"":null}}`, `{"user.name":"a\u0000b"}`, "{\"user.name\":\"a\x01\"}",
	"{\"user.name\":\"\xff\xfe\"}", `{"labels":{"a":1}}`, `{"labels":"x"}`,
	// Documents emit copies in runs, or in part: a stored record sent
	// again (event.ingested replaced), arrays with space, an escaped
	// value, an empty array and members out of order amid written ones.
	`{"@timestamp":"2026-11-25T12:00:01.000001000Z","event":{"kind":"event","category":["web","authentication"],"type":["access"],"action":"http_request","outcome":"success","duration":1834000,"id":"x","dataset":"trailguard.access","ingested":"2026-11-25T12:00:02.000000000Z"},"message":"m","http":{"request":{"id":"r","method":"GET","body":{"bytes":5}},"response":{"status_code":200}},"user":{"name":"u","roles":["a","b"]},"labels":{"a":"1","b":"2"}}`,
	`{"@timestamp":"2026-11-25T12:00:01Z","event":{"kind":"event","category":["web" ,"iam"],"type":[ "access"],"action":"x"},"user":{"name":"u","roles":["a", "b"]}}`,
	`{"@timestamp":"2026-11-25T12:00:01Z","event":{"kind":"event","action":"a\u0062c","outcome":"success","severity":-5,"duration":7}}`,
	`{"event":{"kind":"event","category":[ ],"type":[],"action":"x","outcome":""},"message":"m"}`,
	`{"event":{"action":"x","kind":"event","id":"i"},"message":"m","host":{"name":"h"},"log":{"level":"info"}}`,
	`{"event":{"kind":"event","id":"","dataset":"d"},"url":{"path":"/p"}}`,
}

func TestNormalizedMatchesDecode(t *testing.T) {
	took := 0
	for _, doc := range normalizedSeeds {
		if checkNormalized(t, []byte(doc)) {
			took++
		}
	}
	// The common shapes must take the one-pass path (else it is dead
	// weight): the first nine seeds.
	for _, doc := range normalizedSeeds[:9] {
		if _, _, ok := AppendNormalized(nil, []byte(doc), time.Now(), fixedID); !ok {
			t.Errorf("one-pass path declined %s", doc)
		}
	}
	if took < 9 {
		t.Errorf("one-pass path took %d seeds, want at least 9", took)
	}
}

// TestNormalizedAllowsNoAllocations: the point of the one-pass path.
// checkRecordAgain normalises the record doc gives once more: a record
// is what emit copies in runs (all of it but event.ingested).
func checkRecordAgain(t *testing.T, doc []byte) {
	t.Helper()
	rec, _, ok := AppendNormalized(nil, doc, time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC), fixedID)
	if !ok {
		return
	}
	if !checkNormalized(t, rec) {
		t.Fatalf("%s: its record %s is declined", doc, rec)
	}
	checkSpans(t, rec)
}

func TestNormalizedRecordAgain(t *testing.T) {
	for _, doc := range normalizedSeeds {
		checkRecordAgain(t, []byte(doc))
	}
}

func TestNormalizedAllocations(t *testing.T) {
	doc := []byte(normalizedSeeds[0])
	dst := make([]byte, 0, 4096)
	now := time.Now()
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, ok := AppendNormalized(dst[:0], doc, now, fixedID); !ok {
			t.Fatal("declined")
		}
	})
	if allocs > 0 {
		t.Fatalf("%.1f allocations per event, want 0", allocs)
	}
}

func FuzzNormalized(f *testing.F) {
	for _, doc := range normalizedSeeds {
		f.Add([]byte(doc))
	}
	pass := NewScrubPass(keepAll{})
	f.Fuzz(func(t *testing.T, doc []byte) {
		checkNormalized(t, doc)
		checkSpans(t, doc)
		checkPass(t, pass, doc)
		checkRecordAgain(t, doc)
	})
}

// keepAll is a Scrubber that changes nothing: with it a ScrubPass's pass
// must write what the pass without one writes.
type keepAll struct{}

func (keepAll) MaxDepth() int              { return 1 << 20 }
func (keepAll) Unchanged([]byte, int) bool { return true }
func (keepAll) UnchangedText([]byte) bool  { return true }
func (keepAll) Sensitive(_, _ []byte) bool { return false }

// checkPass compares the pass with p (whose predictions earlier documents
// made) with the pass without one. Documents of different lengths are
// ingested at different instants (p writes the last one it wrote again).
func checkPass(t *testing.T, p *ScrubPass, doc []byte) {
	t.Helper()
	now := time.Date(2026, 11, 30, 1, 2, 3, 4, time.UTC).Add(time.Duration(len(doc)) * time.Millisecond)
	var sp1, sp2 Spans
	want, wantID, wantOK := AppendNormalizedSpans([]byte("x"), doc, now, fixedID, &sp1)
	got, id, ok := AppendNormalizedScrubbed([]byte("x"), doc, now, fixedID, &sp2, p)
	if ok != wantOK || !bytes.Equal(got, want) || !bytes.Equal(id, wantID) || sp1 != sp2 {
		t.Fatalf("%s:\n with a pass: %s (id %q, ok %v)\n without:     %s (id %q, ok %v); spans equal %v", doc, got, id, ok, want, wantID, wantOK, sp1 == sp2)
	}
}

// TestScrubPassPredictions: one pass reading documents whose members come
// in different orders and forms (dotted, nested, repeated, unknown)
// writes what the pass without predictions writes, whatever it predicted
// from the documents before.
func TestScrubPassPredictions(t *testing.T) {
	p := NewScrubPass(keepAll{})
	docs := append([]string{}, normalizedSeeds...)
	docs = append(docs,
		`{"event":{"id":"a","kind":"event"},"user":{"name":"u"}}`, `{"event":{"kind":"event","id":"a"},"user":{"name":"u"}}`,
		`{"event":{"kind":"event","idx":"a"}}`, `{"event":{"kind":"event","i":"a"}}`, `{"event":{"kind":"event","id"`,
		`{"event":{"kind":"event","id":"a","id":"b"}}`, `{"event":{"kind":"event","id.x":"a"}}`, `{"user":{"name":"u","name":"v"}}`,
		`{"user":{"name":null,"id":"1"}}`, `{"user":{"id":"1","name":"n"}}`, `{"user":{"id":"1","roles":["a"]}}`,
		`{"user":{"id":"1","target":{"id":"2"}}}`, `{"user":{"id":"1","target.id":"2"}}`, `{"user.id":"1","user":{"name":"n"}}`,
		`{"event.id":"a"}`, `{"id":"a"}`, `{"event.id":"a","name":"b"}`, `{"event":{"id":"a"},"name":"b"}`,
		// Names that differ from the predicted one past its first eight
		// bytes (predicted compares two words).
		`{"event":{"kind":"event","category":["web"]},"http":{"response":{"status_code":200}},"user_agent":{"original":"a"}}`,
		`{"event":{"kind":"event","categoryx":["web"]},"http":{"response":{"status_codes":200}},"user_agent":{"originals":"a"}}`,
		`{"event":{"kind":"event","category":["web"]},"http":{"response":{"status_code":200}},"user_agent":{"original":"a"}}`,
		`{"event":{"kind":"event","categor":["web"]},"http":{"response":{"status_cod":200}},"user_agent":{"origina":"a"}}`,
		`{"event":{"kind":"event","category":["web"]},"http":{"response":{"status_codf":200}},"user_agenx":{"original":"a"}}`,
	)
	for round := range 3 {
		for i := range docs {
			doc := docs[i]
			if round == 1 {
				doc = docs[len(docs)-1-i]
			}
			checkPass(t, p, []byte(doc))
		}
	}
}

func BenchmarkNormalize(b *testing.B) {
	doc := []byte(normalizedSeeds[0])
	now := time.Now()
	for _, path := range []string{"OnePass", "Decode"} {
		b.Run(path, func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			var dst []byte
			for b.Loop() {
				var ok bool
				if path == "OnePass" {
					dst, _, ok = AppendNormalized(dst[:0], doc, now, AppendID)
				} else {
					dst, _, ok = normalizedByDecode(doc, now, AppendID)
				}
				if !ok || len(dst) < len(doc) {
					b.Fatal(fmt.Sprintf("not normalized: %s", dst))
				}
			}
		})
	}
}

// templateDoc is bench/cmd/ingestload's event: the layout a ScrubPass
// keeps as its template once it took one.
const templateDoc = `{"@timestamp":"2026-11-25T12:00:01.000002Z","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":1834000,"id":"0193a1b2-c3d4-7e5f-8a9b-000000000001","dataset":"trailguard.access"},"http":{"request":{"id":"req-00000001","method":"GET"},"response":{"status_code":200,"body":{"bytes":512}}},"url":{"path":"/api/orders/1","query":"page=2"},"source":{"ip":"10.1.0.1","port":51234},"labels":{"env":"prod"},"user":{"name":"user001","roles":["a","b"]},"user_agent":{"original":"Mozilla/5.0 (X11; Linux x86_64)"},"service":{"name":"orders-api"}}`

// TestDocTemplate: a pass that took templateDoc reads the next document
// along it; whatever that document changes (each byte replaced, removed or
// followed by another, in the gaps and in the values), the pass writes
// what the pass without a template writes (record, id, spans, ok).
func TestDocTemplate(t *testing.T) {
	p := NewScrubPass(keepAll{})
	prime := func() {
		t.Helper()
		checkPass(t, p, []byte(templateDoc))
		if !p.tmpl.ok {
			t.Fatal("the pass kept no template after a document it took")
		}
		p.tmpl.score = 0 // the next document is read along it
	}
	// The same layout with other values follows the template.
	prime()
	other := strings.NewReplacer("01.000002Z", "59.999999Z", "000000000001", "000000000777", "req-00000001", "req-12345678",
		"orders/1", "orders/98765", "10.1.0.1", "192.168.77.254", "user001", "user999", "200", "404").Replace(templateDoc)
	checkPass(t, p, []byte(other))
	if p.tmpl.misses != 0 {
		t.Fatalf("a document in the template's layout did not follow it (%d misses)", p.tmpl.misses)
	}
	// One document in another layout keeps the template; the second in a
	// row replaces it.
	for i, want := range []int{1, 0, 1, 2, 0} {
		doc := []string{`{"event":{"kind":"event"}}`, other, `{"event":{"kind":"event"}}`, `{"user":{"name":"x"}}`, `{"user":{"name":"y"}}`}[i]
		p.tmpl.score = 0
		checkPass(t, p, []byte(doc))
		if p.tmpl.misses != want {
			t.Fatalf("%s: %d misses, want %d", doc, p.tmpl.misses, want)
		}
	}
	// Documents that mostly do not follow it are mostly read the long
	// way: one in missEvery is read along it.
	prime()
	before := p.tmpl.tries
	const n = 20 * missEvery
	for range n / 2 {
		checkPass(t, p, []byte(`{"user":{"name":"x"},"event":{"kind":"event"}}`))
		checkPass(t, p, []byte(templateDoc))
	}
	if tried := p.tmpl.tries - before; tried < n/missEvery/2 || tried > n/4 {
		t.Fatalf("alternating layouts: %d of %d documents read along the template", tried, n)
	}
	doc := []byte(templateDoc)
	for i := range doc {
		for _, c := range []byte{' ', '"', ',', '}', ']', '\\', '0', '9', '-', 'x', '.', 0} {
			for _, v := range [][]byte{
				append(append(append([]byte{}, doc[:i]...), c), doc[i+1:]...),   // replaced
				append(append(append([]byte{}, doc[:i+1]...), c), doc[i+1:]...), // followed by c
			} {
				prime()
				checkPass(t, p, v)
			}
		}
		prime()
		checkPass(t, p, append(append([]byte{}, doc[:i]...), doc[i+1:]...)) // removed
	}
}

// FuzzNormalizedAfter: a pass that took a document reads the next along
// it; the second must be written as the pass without a template writes it.
func FuzzNormalizedAfter(f *testing.F) {
	f.Add([]byte(templateDoc), []byte(strings.Replace(templateDoc, "user001", "user002", 1)))
	f.Add([]byte(templateDoc), []byte(strings.Replace(templateDoc, "51234", "512345", 1)))
	f.Add([]byte(templateDoc), []byte(strings.Replace(templateDoc, `"GET"`, `"GET" `, 1)))
	f.Add([]byte(normalizedSeeds[0]), []byte(normalizedSeeds[0]))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		p := NewScrubPass(keepAll{})
		checkPass(t, p, a)
		checkPass(t, p, b)
		checkPass(t, p, a)
	})
}
