package detect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/trailguard/trailguard/internal/stalltest"
	"github.com/trailguard/trailguard/query"
)

// FuzzParseRules: any rule file parses, compiles and runs without
// panicking, in bounded time; what fails is reported as errors that name
// a line of the file; every condition read has a canonical form that
// parses back to itself over the rule's searches; and a comment line put
// in front moves every rule and error one line down and changes nothing
// else (so the lines named are the file's own).
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
	f.Add([]byte("title: a\ndetection:\n    s: {f: 1}\n    t: [x]\n    condition: [s or not t, (s or t) and 1 of them]\n---\ntitle: b\ndetection:\n    condition: s\n"))
	events := [][]byte{
		[]byte(`{"@timestamp":"2026-01-01T00:00:00Z","event":{"category":["web","authentication"],"outcome":"failure"},"url":{"path":"/a","query":"b=c"},"client":{"ip":"192.0.2.1"},"user":{"name":"u"},"http":{"response":{"status_code":401}}}`),
		[]byte(`{"a":"1","kind":"a","f":"YWJj","g":"-a"}`),
	}
	// The bound on an input's time allows a stall of the process meanwhile:
	// a stall on a loaded machine would otherwise write a "failing input"
	// that fails nothing. The inputs of a process run one at a time.
	watch := stalltest.Start(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		watch.Reset()
		start := time.Now()
		rs := ParseRules("fuzz.yml", data, "custom")
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, e := range rs.Errors {
			if e.Reason == "" || strings.ContainsAny(e.Error(), "\n") && !strings.Contains(string(data), "\n") {
				t.Fatalf("unhelpful error %q", e)
			}
			if e.File != "fuzz.yml" || len(data) <= MaxRuleFileBytes && (e.Line < 1 || e.Line > lines || e.Col < 0) {
				t.Fatalf("error %q names no line of the file (%d lines)", e, lines)
			}
		}
		for _, r := range rs.Rules {
			if r.Source.File != "fuzz.yml" || r.Source.Line < 1 || r.Source.Line > lines {
				t.Fatalf("rule %q read from %v, not a line of the file (%d lines)", r.Ref(), r.Source, lines)
			}
			checkCanonical(t, r)
		}
		if len(data)+2 <= MaxRuleFileBytes && !bytes.HasPrefix(data, []byte("\ufeff")) {
			shifted := ParseRules("fuzz.yml", append([]byte("#\n"), data...), "custom")
			if a, b := summary(rs, 1), summary(shifted, 0); a != b {
				t.Fatalf("a comment line in front changed more than the lines:\n%s\nthen\n%s", a, b)
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
		if d, stalled := time.Since(start), watch.Worst(); d > 5*time.Second+stalled {
			t.Fatalf("took %v (stalls %v)", d, stalled)
		}
	})
}

// checkCanonical fails unless each condition of r's detection (the
// members of the or that joins a list of them, or the one) has a
// canonical form that parses over r's searches to the same condition.
func checkCanonical(t *testing.T, r *Rule) {
	t.Helper()
	d := r.Detection
	if d == nil {
		return
	}
	names := make([]string, len(d.Searches))
	for i, s := range d.Searches {
		names[i] = s.Name
	}
	xs := []Expr{d.Condition}
	if or, ok := d.Condition.(*OrExpr); ok {
		xs = or.X
	}
	for _, x := range xs {
		c := x.String()
		e, err := ParseCondition(c, names)
		if err != nil {
			t.Fatalf("rule %q, condition %q: canonical form %q does not parse: %v", r.Ref(), d.ConditionText, c, err)
		}
		// The same tree, not only the same text: a canonical form that
		// lost parentheses can read back as itself and mean otherwise.
		var want, got strings.Builder
		dump(&want, reflect.ValueOf(x))
		dump(&got, reflect.ValueOf(e))
		if e.String() != c || got.String() != want.String() {
			t.Fatalf("rule %q, condition %q: canonical form %q reads back as %q, %s, not %s", r.Ref(), d.ConditionText, c, e.String(), &got, &want)
		}
	}
}

// summary writes out a rule set, every exported field followed through
// pointers, with each line number plus shift, so that two parses can be
// compared.
func summary(rs *RuleSet, shift int) string {
	var b strings.Builder
	for _, r := range rs.Rules {
		c := *r
		c.Source.Line += shift
		dump(&b, reflect.ValueOf(c))
		if c.Detection != nil {
			b.WriteString(" condition " + c.Detection.Condition.String())
		}
		b.WriteByte('\n')
	}
	for _, e := range rs.Errors {
		c := *e
		if c.Line > 0 {
			c.Line += shift
		}
		// A message may name a second place (a key defined twice).
		c.Reason = atLine.ReplaceAllStringFunc(c.Reason, func(s string) string {
			n, _ := strconv.Atoi(s[len(" at line "):])
			return " at line " + strconv.Itoa(n+shift)
		})
		b.WriteString(c.Error() + "\n")
	}
	return b.String()
}

var atLine = regexp.MustCompile(` at line [0-9]+`)

func dump(b *strings.Builder, v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		dump(b, v.Elem())
	case reflect.Struct:
		b.WriteString(v.Type().Name() + "{")
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				b.WriteString(v.Type().Field(i).Name + ":")
				dump(b, v.Field(i))
				b.WriteString(" ")
			}
		}
		b.WriteString("}")
	case reflect.Slice:
		b.WriteString("[")
		for i := range v.Len() {
			dump(b, v.Index(i))
			b.WriteString(" ")
		}
		b.WriteString("]")
	case reflect.Map:
		keys := v.MapKeys()
		slices.SortFunc(keys, func(x, y reflect.Value) int { return strings.Compare(fmt.Sprint(x), fmt.Sprint(y)) })
		b.WriteString("map[")
		for _, k := range keys {
			fmt.Fprintf(b, "%q:", k)
			dump(b, v.MapIndex(k))
			b.WriteString(" ")
		}
		b.WriteString("]")
	case reflect.String:
		fmt.Fprintf(b, "%q", v.String())
	default:
		fmt.Fprint(b, v)
	}
}

// FuzzCondition: conditions parse or fail cleanly, and String is
// canonical: it reads back as the same condition.
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
		var a, b strings.Builder
		dump(&a, reflect.ValueOf(e))
		dump(&b, reflect.ValueOf(e2))
		if a.String() != b.String() {
			t.Fatalf("%q: canonical form %q reads back as %s, not %s", s, e.String(), &b, &a)
		}
	})
}

// FuzzExtract: the field extractor agrees with encoding/json on every
// valid document, and never fails on one; each wanted field has the
// values query.Flatten gives it (nulls aside), in the same order, arrays
// of objects and nested arrays included, up to maxFieldValues.
func FuzzExtract(f *testing.F) {
	f.Add([]byte(`{"user":{"name":"a\"b\u00e9\ud83d\ude00"},"event.action":"x","n":[1,"2",{"a":3}],"url":{"path":"/p"}}`))
	f.Add([]byte(`{"user.name":"x","user":{"name":"y"}}`))
	f.Add([]byte(`{"a":{"b":{"c":{"d":[[[[]]]]}}},"user":{"name":""}} `))
	f.Add([]byte(`[1,2]`))
	f.Add([]byte(`{"user":{"name":"\ud800"}}`))
	f.Add([]byte(`{"c":[{"f":"a"},{"g":1},[{"f":["b",2]}],{"f":{"h":3}}],"n":["a",{"x":true},[{"x":"y"}]],"c.f":"z"}`))
	f.Add([]byte(`{"c.f":"z","c":[{"f":null},{"f":"a","g.f":"b"}],"a":[{"b":[{"c":"d"}]}]}`))
	paths := []string{"user.name", "event.action", "url.path", "n", "a.b.c", "n.x", "c.f"}
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
		if ferr != nil || duplicateKeys(data) {
			// Of an object's duplicate keys encoding/json keeps the
			// last; in an array of objects the extractor keeps both.
			return
		}
		for i, p := range paths {
			if directRoutes(v, strings.Split(p, ".")) > 1 {
				// The field given twice outside arrays, nested and
				// dotted ({"user.name":"x","user":{"name":"y"}}): the
				// extractor keeps the last, Flatten both. Ingest
				// writes each field once.
				continue
			}
			var want []string
			vs, isList := doc[p].([]any)
			if !isList {
				vs = []any{doc[p]}
			}
			for _, w := range vs {
				if w != nil && len(want) < maxFieldValues {
					want = append(want, fmt.Sprint(w))
				}
			}
			if got := d.appendEach(nil, int32(i)); !slices.Equal(got, want) {
				t.Fatalf("%s: got %q, query.Flatten %q in %q", p, got, want, data)
			}
		}
	})
}

// directRoutes counts the routes to the dotted path segs in the decoded
// document v (nested objects or dotted keys) that go through no array.
func directRoutes(v any, segs []string) int {
	if len(segs) == 0 {
		return 1
	}
	m, ok := v.(map[string]any)
	if !ok {
		return 0
	}
	n := 0
	for j := 1; j <= len(segs); j++ {
		if x, ok := m[strings.Join(segs[:j], ".")]; ok {
			n += directRoutes(x, segs[j:])
		}
	}
	return n
}

// duplicateKeys reports whether some object of the valid JSON data has a
// key twice (as decoded).
func duplicateKeys(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	type level struct {
		keys  map[string]bool
		isObj bool
		key   bool // the next string token is a key
	}
	var stack []level
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			if s, isStr := tok.(string); isStr && top.isObj && top.key {
				if top.keys[s] {
					return true
				}
				top.keys[s] = true
				top.key = false
				continue
			}
			if top.isObj {
				top.key = true // after this value, a key
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, level{keys: map[string]bool{}, isObj: true, key: true})
		case json.Delim('['):
			stack = append(stack, level{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

// TestAppendEachNested: an array's values include those of the arrays
// nested in it, at any depth scan allows, in order, as query.Flatten
// gives them; objects in it are skipped.
func TestAppendEachNested(t *testing.T) {
	x := newExtractor()
	x.slot("n")
	for _, tc := range []struct {
		doc  string
		want []string
	}{
		{`{"n":"a"}`, []string{"a"}},
		{`{"n":[["s"]]}`, []string{"s"}},
		// An element two levels deep used to end the list there.
		{`{"n":["a",[[1]],"b"]}`, []string{"a", "1", "b"}},
		{`{"n":["a",{"x":"y"},[["c",[]]],true,null,"\u00e9"]}`, []string{"a", "c", "true", "é"}},
		{`{"n":` + strings.Repeat("[", maxDocDepth-1) + `"deep"` + strings.Repeat("]", maxDocDepth-1) + `}`, []string{"deep"}},
	} {
		var d document
		if err := x.scan(&d, []byte(tc.doc)); err != nil {
			t.Fatalf("%s: %v", tc.doc, err)
		}
		if got := d.appendEach(nil, 0); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.doc, got, tc.want)
		}
		doc, err := query.Flatten([]byte(tc.doc))
		if err != nil {
			t.Fatal(err)
		}
		var flat []string
		vs, isList := doc["n"].([]any)
		if !isList {
			vs = []any{doc["n"]}
		}
		for _, v := range vs {
			if v != nil {
				flat = append(flat, fmt.Sprint(v))
			}
		}
		if !slices.Equal(flat, tc.want) {
			t.Errorf("%s: query.Flatten gives %q, want %q", tc.doc, flat, tc.want)
		}
	}
}
