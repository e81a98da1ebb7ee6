package detect

import (
	"encoding/json"
	"io/fs"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/trailguard/trailguard/query"
)

// FuzzParseRules: any rule file parses, compiles and runs without
// panicking, in bounded time; what fails is reported as errors.
func FuzzParseRules(f *testing.F) {
	fs.WalkDir(BuiltinFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := fs.ReadFile(BuiltinFS(), p)
			f.Add(data)
		}
		return nil
	})
	f.Add([]byte(baseRules + "title: x\ncorrelation:\n    type: temporal\n    rules: [a, b]\n    group-by: [u]\n    timespan: 1m\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("title: t\ndetection:\n    s:\n        f|base64offset|contains: 'abc'\n        g|windash: '-a /b'\n        h|re|i|m|s: '^x'\n    condition: s\n"))
	f.Add([]byte("--- \n...\n---\ntitle: [\n"))
	events := [][]byte{
		[]byte(`{"@timestamp":"2026-01-01T00:00:00Z","event":{"category":["web","authentication"],"outcome":"failure"},"url":{"path":"/a","query":"b=c"},"client":{"ip":"192.0.2.1"},"user":{"name":"u"},"http":{"response":{"status_code":401}}}`),
		[]byte(`{"a":"1","kind":"a","f":"YWJj","g":"-a"}`),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		rs := ParseRules("fuzz.yml", data, "custom")
		for _, e := range rs.Errors {
			if e.Reason == "" || strings.ContainsAny(e.Error(), "\n") && !strings.Contains(string(data), "\n") {
				t.Fatalf("unhelpful error %q", e)
			}
		}
		e, _ := NewEngine(rs, Options{})
		for i, ev := range events {
			e.Process(Record{Index: uint64(i), Data: ev}, func(a *Alert) {
				if !json.Valid(a.AppendJSON(nil)) {
					t.Fatal("alert is not JSON")
				}
			})
		}
		e.Flush(nil)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %v", d)
		}
	})
}

// FuzzCondition: conditions parse or fail cleanly, and String is
// canonical.
func FuzzCondition(f *testing.F) {
	for _, s := range []string{"sel", "sel and not filter", "1 of sel* and not 1 of filter*", "all of them", "(sel or (filter and sel_2))",
		"not not sel", "sel | count() > 5", "1 of", "((((", "sel and", "ALL OF sel_*"} {
		f.Add(s)
	}
	names := []string{"sel", "sel_2", "filter", "_hidden"}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseCondition(s, names)
		if err != nil {
			return
		}
		e2, err := ParseCondition(e.String(), names)
		if err != nil {
			t.Fatalf("%q: canonical form %q does not parse: %v", s, e.String(), err)
		}
		if e2.String() != e.String() {
			t.Fatalf("%q: %q then %q", s, e.String(), e2.String())
		}
	})
}

// FuzzExtract: the field extractor agrees with encoding/json on every
// valid document, and never fails on one.
func FuzzExtract(f *testing.F) {
	f.Add([]byte(`{"user":{"name":"a\"b\u00e9\ud83d\ude00"},"event.action":"x","n":[1,"2",{"a":3}],"url":{"path":"/p"}}`))
	f.Add([]byte(`{"user.name":"x","user":{"name":"y"}}`))
	f.Add([]byte(`{"a":{"b":{"c":{"d":[[[[]]]]}}},"user":{"name":""}} `))
	f.Add([]byte(`[1,2]`))
	f.Add([]byte(`{"user":{"name":"\ud800"}}`))
	paths := []string{"user.name", "event.action", "url.path", "n", "a.b.c"}
	x := newExtractor()
	for _, p := range paths {
		x.slot(p)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var d document
		err := x.scan(&d, data)
		var v any
		if json.Unmarshal(data, &v) != nil {
			return // invalid JSON: the extractor may accept or refuse it
		}
		if _, isObj := v.(map[string]any); !isObj {
			if err == nil {
				t.Fatalf("accepted a non-object: %q", data)
			}
			return
		}
		if !utf8.Valid(data) {
			return // encoding/json replaces invalid bytes; the engine compares bytes
		}
		doc, ferr := query.Flatten(data)
		if err != nil {
			if ferr == nil {
				t.Fatalf("refused a valid object: %q: %v", data, err)
			}
			return
		}
		if ferr != nil {
			return
		}
		for i, p := range paths {
			want, ok := doc[p].(string)
			if !ok {
				continue // absent, a list (duplicates, arrays) or not a string
			}
			got := d.appendEach(nil, int32(i))
			if len(got) != 1 || got[0] != want {
				t.Fatalf("%s: got %q, encoding/json %q in %q", p, got, want, data)
			}
		}
	})
}
