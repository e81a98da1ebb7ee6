package detect

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/query"
)

// flatValues is what query.Flatten gives the field: its scalar values in
// order, null left out (detect tests null apart: exists, null).
func flatValues(t testing.TB, data []byte, path string) []string {
	t.Helper()
	doc, err := query.Flatten(data)
	if err != nil {
		t.Fatalf("query.Flatten(%s): %v", data, err)
	}
	v, ok := doc[path]
	if !ok {
		return nil
	}
	vs, isList := v.([]any)
	if !isList {
		vs = []any{v}
	}
	var out []string
	for _, x := range vs {
		if x != nil {
			out = append(out, fmt.Sprint(x))
		}
	}
	return out
}

// TestArrayOfObjectsLikeQuery: a field inside an array of objects has
// every value the array gives it, in the event's order, as query.Flatten
// (and Elasticsearch) flatten it: {"custom":[{"f":"a"},{"f":"b"}]} gives
// custom.f a and b. The extractor used to skip arrays of objects, so a
// rule on custom.f saw nothing while a query for custom.f:b found the
// event.
func TestArrayOfObjectsLikeQuery(t *testing.T) {
	for _, tc := range []struct {
		doc, path string
		want      []string
	}{
		{`{"custom":[{"f":"a"},{"f":"b"}]}`, "custom.f", []string{"a", "b"}},
		{`{"custom":{"items":[{"f":"a"},{"g":"x"},{"f":"b"}]},"other":1}`, "custom.items.f", []string{"a", "b"}},
		{`{"custom":[[{"f":"a"}],[{"f":"b"},[{"f":"c"}]]]}`, "custom.f", []string{"a", "b", "c"}},
		{`{"custom":[{"f":["a",["b"]]},{"f":"c"}]}`, "custom.f", []string{"a", "b", "c"}},
		{`{"custom":[{"g":[{"f":"a"},{"f":"b"}]},{"g":{"f":"c"}}]}`, "custom.g.f", []string{"a", "b", "c"}},
		{`{"custom":[{"g.f":"a"},{"g":{"f":"b"}}]}`, "custom.g.f", []string{"a", "b"}},
		{`{"custom":[{"f":1},{"f":null},{"f":true},{"f":"\u00e9\"x"}]}`, "custom.f", []string{"1", "true", "é\"x"}},
		{`{"custom":[{},[],{"f":"a"}, "s", 2]}`, "custom.f", []string{"a"}},
		// A field wanted both itself and below: the array's own scalar
		// elements are its values, the objects' fields those of n.x.
		{`{"n":["a",{"x":"b"},"c",[{"x":"d"}]]}`, "n", []string{"a", "c"}},
		{`{"n":["a",{"x":"b"},"c",[{"x":"d"}]]}`, "n.x", []string{"b", "d"}},
		// Values from inside and outside arrays add up, in order.
		{`{"custom":[{"f":"a"}],"custom.f":"b"}`, "custom.f", []string{"a", "b"}},
		{`{"custom.f":"b","custom":[{"f":"a"},{"f":"c"}]}`, "custom.f", []string{"b", "a", "c"}},
		{`{"custom":[{"f":"a"}, {"f":"b"}] , "custom.g" : [ { "h" : "c" } ] }`, "custom.g.h", []string{"c"}},
		// Objects under an array, nested as deep as scan allows.
		{`{"custom":` + strings.Repeat(`[{"g":`, 15) + `{"f":"deep"}` + strings.Repeat(`}]`, 15) + `}`,
			"custom" + strings.Repeat(".g", 15) + ".f", []string{"deep"}},
	} {
		x := newExtractor()
		x.slot("n")
		slot := x.slot(tc.path)
		x.slot("custom.other")
		var d document
		if err := x.scan(&d, []byte(tc.doc)); err != nil {
			t.Fatalf("%s: %v", tc.doc, err)
		}
		if got := d.appendEach(nil, slot); !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: got %q, want %q", tc.doc, tc.path, got, tc.want)
		}
		if flat := flatValues(t, []byte(tc.doc), tc.path); !slices.Equal(flat, tc.want) {
			t.Errorf("%s %s: query.Flatten gives %q, want %q", tc.doc, tc.path, flat, tc.want)
		}
	}
}

// TestArrayOfObjectsRules: conditions see every value of a field inside
// an array of objects; a group-by or value_count field that has several
// values takes its first, as for an array of scalars.
func TestArrayOfObjectsRules(t *testing.T) {
	docs := map[string]string{
		"array of objects": `{"@timestamp":%q,"kind":"a","custom":[{"f":"Alpha"},{"f":"beta","n":7},{"f":null}]}`,
		"array of scalars": `{"@timestamp":%q,"kind":"a","custom":{"f":["Alpha","beta",null],"n":7}}`,
	}
	for _, tc := range []struct {
		name, detection string
		want            bool
	}{
		{"equals the second value", `sel: {custom.f: beta}`, true},
		{"equals the first, folded", `sel: {custom.f: alpha}`, true},
		{"cased", `sel: {custom.f|cased: alpha}`, false},
		{"contains", `sel: {custom.f|contains: et}`, true},
		{"startswith list", `sel: {custom.f|startswith: [x, be]}`, true},
		{"all of the values", `sel: {custom.f|all: [alpha, beta]}`, true},
		{"no such value", `sel: {custom.f: gamma}`, false},
		{"re", `sel: {custom.f|re: '^b.t'}`, true},
		{"number", `sel: {custom.n|gte: 7}`, true},
		{"exists", `sel: {custom.f|exists: true}`, true},
		{"not null: it has values", `sel: {custom.f: null}`, false},
		{"any value", `sel: {custom.f: '*'}`, true},
		{"not", "sel: {custom.f: beta}\n    filter: {custom.f: alpha}\n    condition: sel and not filter\n", false},
	} {
		for kind, doc := range docs {
			det := tc.detection
			if !strings.Contains(det, "condition") {
				det += "\n    condition: sel\n"
			}
			e := engineFor(t, "title: t\ndetection:\n    "+det)
			got := len(runEvents(e, fmt.Sprintf(doc, ts(0)))) > 0
			if got != tc.want {
				t.Errorf("%s, %s: matched %v, want %v", tc.name, kind, got, tc.want)
			}
		}
	}
	// A field is null when it has no value but nulls, as query finds
	// none in it.
	for doc, want := range map[string]bool{
		`{"custom":[{"f":null},{"f":null}]}`: true,
		`{"custom":[{"f":null},{"g":1}]}`:    true,
		`{"custom":{"f":[null,[null]]}}`:     true,
		`{"custom":{"f":[]}}`:                true,
		`{"custom":[{"f":null},{"f":[]}]}`:   true,
		`{"custom":[{"f":null},{"f":[0]}]}`:  false,
		`{"custom":[{"f":""}]}`:              false,
		`{"custom":{"f":{"g":1}}}`:           false,
	} {
		e := engineFor(t, "title: t\ndetection:\n    sel: {custom.f: null}\n    condition: sel\n")
		if got := len(runEvents(e, doc)) == 1; got != want {
			t.Errorf("custom.f: null on %s: matched %v, want %v", doc, got, want)
		}
	}

	// Group-by and value_count take the field's first value, whether it
	// is the first of an array of scalars or the first object's.
	for _, tc := range []struct {
		name, rule string
		events     []string
		want       []string // rule:count:group
	}{
		{"event_count grouped by the first value",
			"title: c\nname: c\ncorrelation:\n    type: event_count\n    rules: [a]\n    group-by: [custom.f]\n    timespan: 1m\n    condition: {gte: 2}\n",
			[]string{
				`{"@timestamp":"` + ts(0) + `","kind":"a","custom":[{"f":"u1"},{"f":"u2"}]}`,
				`{"@timestamp":"` + ts(1) + `","kind":"a","custom":{"f":["u1","u3"]}}`,
				`{"@timestamp":"` + ts(2) + `","kind":"a","custom":[{"g":"x"},{"f":"u2"}]}`,
			},
			[]string{"c:2:u1"}},
		{"value_count of the first value",
			"title: v\nname: v\ncorrelation:\n    type: value_count\n    rules: [a]\n    group-by: [host]\n    timespan: 1m\n    condition: {field: custom.f, gte: 3}\n",
			[]string{
				`{"@timestamp":"` + ts(0) + `","kind":"a","host":"h","custom":[{"f":"v1"},{"f":"v9"}]}`,
				`{"@timestamp":"` + ts(1) + `","kind":"a","host":"h","custom":{"f":["v2","v9"]}}`,
				`{"@timestamp":"` + ts(2) + `","kind":"a","host":"h","custom":[{"f":"v3"}]}`,
			},
			[]string{"v:3:h"}},
	} {
		e := engineFor(t, baseRules+tc.rule)
		got := alertKeys(runEvents(e, tc.events...))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: alerts %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestArrayOfObjectsBound: a hostile event with a huge array of objects
// costs bounded work and memory. A field keeps its first maxFieldValues
// values (later ones are not seen: the documented bound), the document's
// list of them stays that long, and the next event reuses it without
// allocating; nesting past maxDocDepth is refused, as query refuses it.
func TestArrayOfObjectsBound(t *testing.T) {
	const n = 200_000 // 2.6 MB, past any max_line_bytes a collector is given
	var b strings.Builder
	b.WriteString(`{"custom":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"f":"v%d","g":[%d,%d]}`, i, i, -i)
	}
	b.WriteString(`]}`)
	data := []byte(b.String())

	x := newExtractor()
	f, g := x.slot("custom.f"), x.slot("custom.g")
	var d document
	if err := x.scan(&d, data); err != nil {
		t.Fatal(err)
	}
	vals := d.appendEach(nil, f)
	if len(vals) != maxFieldValues || vals[0] != "v0" || vals[maxFieldValues-1] != fmt.Sprintf("v%d", maxFieldValues-1) {
		t.Fatalf("custom.f: %d values (%q ... %q), want the first %d", len(vals), vals[0], vals[len(vals)-1], maxFieldValues)
	}
	if gv := d.appendEach(nil, g); len(gv) != maxFieldValues || gv[1] != "0" || gv[2] != "1" {
		t.Fatalf("custom.g: %d values, want the first %d", len(gv), maxFieldValues)
	}
	if len(d.more) > 2*(maxFieldValues-1) || cap(d.more) > 4*maxFieldValues {
		t.Fatalf("the document holds %d extra values (capacity %d) for 2 fields: not bounded by %d per field", len(d.more), cap(d.more), maxFieldValues)
	}
	buf := make([]string, 0, 2*maxFieldValues)
	if allocs := testing.AllocsPerRun(3, func() {
		if x.scan(&d, data) != nil {
			t.Fatal("scan failed")
		}
		buf = d.appendEach(d.appendEach(buf[:0], f), g)
	}); allocs != 0 {
		t.Errorf("a second scan of the event allocated %v times", allocs)
	}

	// Through the engine: an early value is seen, one past the bound not.
	rules := "title: early\ndetection:\n    sel: {custom.f: v5}\n    condition: sel\n---\n" +
		"title: late\ndetection:\n    sel: {custom.f: v150000}\n    condition: sel\n"
	var titles []string
	for _, a := range runEvents(engineFor(t, rules), string(data)) {
		titles = append(titles, a.Rule.Title)
	}
	if !slices.Equal(titles, []string{"early"}) {
		t.Errorf("alerts %q, want only early", titles)
	}

	// Depth: arrays and objects in them count towards maxDocDepth like
	// any nesting (query counts the scalar too: it refuses one level
	// sooner, and scan must accept whatever query accepts).
	for _, tc := range []struct {
		levels         int
		scanOK, flatOK bool
	}{{maxDocDepth/2 - 1, true, true}, {maxDocDepth / 2, true, false}, {maxDocDepth/2 + 1, false, false}} {
		doc := []byte(`{"custom":` + strings.Repeat(`[{"g":`, tc.levels-1) + `[{"f":"x"}]` + strings.Repeat(`}]`, tc.levels-1) + `}`)
		err := x.scan(&d, doc)
		_, ferr := query.Flatten(doc)
		if (err == nil) != tc.scanOK || (ferr == nil) != tc.flatOK {
			t.Errorf("%d levels of arrays of objects: scan error %v, query.Flatten error %v, want accepted %v, %v", tc.levels, err, ferr, tc.scanOK, tc.flatOK)
		}
	}
}
