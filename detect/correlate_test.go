package detect

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// ev is an event at second s with the given fields (dotted name → value).
func ev(s float64, kv ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"@timestamp":%q`, ts(s))
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, `,%q:%q`, kv[i], kv[i+1])
	}
	b.WriteString("}")
	return b.String()
}

const baseRules = `title: A
name: a
detection:
    sel: {kind: a}
    condition: sel
---
title: B
name: b
detection:
    sel: {kind: b}
    condition: sel
---
`

func TestCorrelationSemantics(t *testing.T) {
	cases := []struct {
		name   string
		rule   string
		events []string
		want   []string // "rule:count:group" of each alert, in order
	}{
		{
			name: "event_count lt is judged when the window closes",
			rule: "title: quiet\nname: quiet\ncorrelation:\n    type: event_count\n    rules: [a]\n    group-by: [host]\n    timespan: 1m\n    condition: {lt: 3}\n",
			events: []string{ev(0, "kind", "a", "host", "h1"), ev(10, "kind", "a", "host", "h1"),
				ev(20, "kind", "a", "host", "h2"), ev(21, "kind", "a", "host", "h2"), ev(22, "kind", "a", "host", "h2"),
				ev(120, "kind", "x")},
			want: []string{"quiet:2:h1"},
		},
		{
			name:   "event_count eq, open windows judged by Flush",
			rule:   "title: three\nname: three\ncorrelation:\n    type: event_count\n    rules: [a]\n    group-by: [host]\n    timespan: 1m\n    condition: {eq: 3}\n",
			events: []string{ev(0, "kind", "a", "host", "h1"), ev(1, "kind", "a", "host", "h1"), ev(2, "kind", "a", "host", "h1"), ev(3, "kind", "a", "host", "h2")},
			want:   []string{"three:3:h1"},
		},
		{
			name:   "range condition gt and lte",
			rule:   "title: some\nname: some\ncorrelation:\n    type: event_count\n    rules: [a]\n    group-by: [host]\n    timespan: 1m\n    condition: {gt: 1, lte: 2}\n",
			events: []string{ev(0, "kind", "a", "host", "h1"), ev(1, "kind", "a", "host", "h1"), ev(2, "kind", "a", "host", "h2"), ev(3, "kind", "a", "host", "h2"), ev(4, "kind", "a", "host", "h2")},
			want:   []string{"some:2:h1"},
		},
		{
			name:   "value_count counts distinct values",
			rule:   "title: users\nname: users\ncorrelation:\n    type: value_count\n    rules: [a]\n    group-by: [host]\n    timespan: 1m\n    condition: {field: user, gte: 3}\n",
			events: []string{ev(0, "kind", "a", "host", "h", "user", "u1"), ev(1, "kind", "a", "host", "h", "user", "u1"), ev(2, "kind", "a", "host", "h", "user", "u2"), ev(3, "kind", "a", "host", "h", "user", "u3")},
			want:   []string{"users:3:h"},
		},
		{
			name:   "value_count window slides",
			rule:   "title: users\nname: users\ncorrelation:\n    type: value_count\n    rules: [a]\n    group-by: [host]\n    timespan: 1m\n    condition: {field: user, gte: 3}\n",
			events: []string{ev(0, "kind", "a", "host", "h", "user", "u1"), ev(50, "kind", "a", "host", "h", "user", "u2"), ev(70, "kind", "a", "host", "h", "user", "u3")},
			want:   nil,
		},
		{
			name:   "temporal in any order",
			rule:   "title: both\nname: both\ncorrelation:\n    type: temporal\n    rules: [a, b]\n    group-by: [user]\n    timespan: 1m\n",
			events: []string{ev(0, "kind", "b", "user", "u"), ev(5, "kind", "a", "user", "v"), ev(30, "kind", "a", "user", "u")},
			want:   []string{"both:2:u"},
		},
		{
			name:   "temporal outside the timespan",
			rule:   "title: both\nname: both\ncorrelation:\n    type: temporal\n    rules: [a, b]\n    group-by: [user]\n    timespan: 1m\n",
			events: []string{ev(0, "kind", "b", "user", "u"), ev(61, "kind", "a", "user", "u")},
			want:   nil,
		},
		{
			name:   "temporal_ordered wants the order",
			rule:   "title: seq\nname: seq\ncorrelation:\n    type: temporal_ordered\n    rules: [a, b]\n    group-by: [user]\n    timespan: 1m\n",
			events: []string{ev(0, "kind", "b", "user", "u"), ev(1, "kind", "a", "user", "u"), ev(2, "kind", "a", "user", "w"), ev(3, "kind", "b", "user", "w")},
			want:   []string{"seq:2:w"},
		},
		{
			name:   "one event is not two steps",
			rule:   "title: seq\nname: seq\ncorrelation:\n    type: temporal_ordered\n    rules: [a, ab]\n    group-by: [user]\n    timespan: 1m\n---\ntitle: AB\nname: ab\ndetection:\n    sel: {kind: a}\n    condition: sel\n",
			events: []string{ev(0, "kind", "a", "user", "u"), ev(1, "kind", "a", "user", "u")},
			want:   []string{"seq:2:u"},
		},
		{
			name: "aliases group different fields",
			rule: "title: pair\nname: pair\ncorrelation:\n    type: temporal\n    rules: [a, b]\n    group-by: [ip]\n    timespan: 1m\n    aliases:\n        ip:\n            a: src\n            b: dst\n",
			events: []string{ev(0, "kind", "a", "src", "10.0.0.1", "dst", "x"), ev(1, "kind", "b", "dst", "10.0.0.2"),
				ev(2, "kind", "b", "dst", "10.0.0.1", "src", "y")},
			want: []string{"pair:2:10.0.0.1"},
		},
		{
			name:   "generate keeps the correlated rules' own alerts",
			rule:   "title: many\nname: many\ncorrelation:\n    type: event_count\n    rules: [a]\n    group-by: [host]\n    timespan: 1m\n    condition: {gte: 2}\n    generate: true\n",
			events: []string{ev(0, "kind", "a", "host", "h"), ev(1, "kind", "a", "host", "h")},
			want:   []string{"a:1:", "a:1:", "many:2:h"},
		},
		{
			name:   "events without the group-by field are not counted",
			rule:   "title: many\nname: many\ncorrelation:\n    type: event_count\n    rules: [a]\n    group-by: [host]\n    timespan: 1m\n    condition: {gte: 2}\n",
			events: []string{ev(0, "kind", "a"), ev(1, "kind", "a"), ev(2, "kind", "a", "host", "")},
			want:   nil,
		},
		{
			name:   "no group-by: one group",
			rule:   "title: many\nname: many\ncorrelation:\n    type: event_count\n    rules: [a]\n    timespan: 1m\n    condition: {gte: 2}\n",
			events: []string{ev(0, "kind", "a", "host", "x"), ev(1, "kind", "a", "host", "y")},
			want:   []string{"many:2:"},
		},
		{
			name:   "late events inside the window count",
			rule:   "title: many\nname: many\ncorrelation:\n    type: event_count\n    rules: [a]\n    group-by: [host]\n    timespan: 1m\n    condition: {gte: 3}\n",
			events: []string{ev(30, "kind", "a", "host", "h"), ev(10, "kind", "a", "host", "h"), ev(20, "kind", "a", "host", "h")},
			want:   []string{"many:3:h"},
		},
		{
			name: "chained correlation",
			rule: "title: burst\nname: burst\ncorrelation:\n    type: event_count\n    rules: [a]\n    group-by: [user]\n    timespan: 1m\n    condition: {gte: 3}\n---\n" +
				"title: burst then b\nname: then\ncorrelation:\n    type: temporal_ordered\n    rules: [burst, b]\n    group-by: [user]\n    timespan: 5m\n",
			events: []string{ev(0, "kind", "a", "user", "u"), ev(1, "kind", "a", "user", "u"), ev(2, "kind", "b", "user", "u"), ev(3, "kind", "a", "user", "u"), ev(4, "kind", "b", "user", "u")},
			want:   []string{"then:2:u"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := engineFor(t, baseRules+c.rule)
			got := alertKeys(runEvents(e, c.events...))
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("alerts %v, want %v", got, c.want)
			}
		})
	}
}

func TestRuleErrors(t *testing.T) {
	cases := []struct {
		doc, want string
		line      int
	}{
		{"title: x\ndetection:\n    sel: {a: 1}\n", "condition is missing", 2},
		{"title: x\ndetection:\n    sel: {a: 1}\n    condition: sel and other\n", `"other" at offset 8 names no search identifier`, 4},
		{"title: x\ndetection:\n    sel:\n        a|contains|startswith: 1\n    condition: sel\n", "exclude each other", 4},
		{"title: x\ndetection:\n    sel:\n        a|base65: 1\n    condition: sel\n", `unknown modifier "base65"`, 4},
		{"title: x\ndetection:\n    sel:\n        a|re: '(?<=x)'\n    condition: sel\n", "RE2", 4},
		{"title: x\ndetection:\n    sel:\n        a|cidr: 10.0.0.0/33\n    condition: sel\n", "cidr wants a network", 4},
		{"title: x\ndetection:\n    sel:\n        a|gt: ten\n    condition: sel\n", "gt wants a number", 4},
		{"title: x\ndetection:\n    sel:\n        a|exists: yes please\n    condition: sel\n", "exists wants true or false", 4},
		{"title: x\ndetection:\n    sel:\n        a: [1, null]\n    condition: sel\n", "null cannot be one value", 4},
		{"title: x\ndetection:\n    sel:\n        a|windash: '-a -b -c -d -e'\n    condition: sel\n", "windash", 4},
		{"title: x\ndetection:\n    sel: {a: 1}\n    condition: sel | count() > 5\n", "correlation rule", 4},
		{"title: x\nlogsource:\n    category: process_creation\ndetection:\n    sel: {a: 1}\n    condition: sel\n", "process_creation", 1},
		{"title: x\ncorrelation:\n    type: event_count\n    rules: [nope]\n    timespan: 5m\n    condition: {gte: 2}\n", `"nope" names no loaded rule`, 1},
		{"title: x\ncorrelation:\n    type: event_count\n    rules: [a]\n    timespan: 5 minutes\n    condition: {gte: 2}\n", "timespan", 5},
		{"title: x\ncorrelation:\n    type: event_count\n    rules: [a]\n    timespan: 5m\n", "needs a condition", 2},
		{"title: x\ncorrelation:\n    type: value_count\n    rules: [a]\n    timespan: 5m\n    condition: {gte: 2}\n", "field", 2},
		{"title: x\ncorrelation:\n    type: value_sum\n    rules: [a]\n    timespan: 5m\n    condition: {gte: 2}\n", "not supported", 3},
		{"title: x\ncorrelation:\n    type: rate_of_rise\n    rules: [a]\n    timespan: 1m\n    condition: {factor: 3}\n", "baseline", 2},
		{"title: x\ncorrelation:\n    type: temporal_ordered\n    rules: [a, b]\n    timespan: 1m\n    condition: {gte: 1}\n", "takes no condition", 6},
		{"title: x\nname: c1\ncorrelation:\n    type: event_count\n    rules: [c2]\n    timespan: 1m\n    condition: {gte: 1}\n---\ntitle: y\nname: c2\ncorrelation:\n    type: event_count\n    rules: [c1]\n    timespan: 1m\n    condition: {gte: 1}\n", "cycle", 1},
		{"title: x\nname: w\ncorrelation:\n    type: event_count\n    rules: [a]\n    timespan: 1m\n    condition: {lt: 2}\n---\ntitle: y\ncorrelation:\n    type: temporal\n    rules: [w, b]\n    timespan: 1m\n", "window closes", 9},
		{"title: x\ndetection:\n    sel: {a: 1}\n    sel: {b: 1}\n    condition: sel\n", "already defined", 4},
		{"detection:\n    sel: {a: 1}\n    condition: sel\n", "needs a title", 1},
		{"title: x\nlevel: severe\ndetection:\n    sel: {a: 1}\n    condition: sel\n", "level", 2},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			// The rule under test comes after the base rules, so its lines
			// are offset by theirs.
			text := baseRules + c.doc
			offset := strings.Count(baseRules, "\n")
			rs := ParseRules("r.yml", []byte(text), "custom")
			errs := rs.Errors
			if len(errs) == 0 {
				_, errs = NewEngine(rs, Options{})
			}
			if len(errs) == 0 {
				t.Fatal("no error")
			}
			e := errs[len(errs)-1]
			for _, x := range errs {
				if strings.Contains(x.Reason, c.want) {
					e = x
				}
			}
			if !strings.Contains(e.Reason, c.want) {
				t.Errorf("errors %v lack %q", errs, c.want)
			}
			if e.Line != offset+c.line || e.File != "r.yml" {
				t.Errorf("error at %s:%d, want r.yml:%d (%v)", e.File, e.Line, offset+c.line, e)
			}
			// The base rules still load.
			if e, _ := NewEngine(rs, Options{}); len(e.Rules()) < 2 {
				t.Errorf("only %d rules loaded", len(e.Rules()))
			}
		})
	}
}

func TestGroupLimit(t *testing.T) {
	rs := ParseRules("r.yml", []byte(baseRules+"title: many\nname: many\ncorrelation:\n    type: event_count\n    rules: [a]\n    group-by: [ip]\n    timespan: 1h\n    condition: {gte: 2}\n"), "custom")
	e, errs := NewEngine(rs, Options{MaxGroups: 100})
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	for i := range 1000 {
		e.Process(Record{Index: uint64(i), Data: []byte(ev(float64(i), "kind", "a", "ip", fmt.Sprint("10.0.", i/250, ".", i%250)))}, nil)
	}
	st := e.Stats()
	if st.Groups > 200 || st.Evicted < 700 {
		t.Errorf("groups %d, evicted %d: want at most 200 kept", st.Groups, st.Evicted)
	}
	// A group seen again while kept still counts.
	var got int
	e.Process(Record{Index: 1000, Data: []byte(ev(1001, "kind", "a", "ip", "10.0.3.249"))}, func(*Alert) { got++ })
	if got != 1 {
		t.Errorf("%d alerts for a repeated recent group", got)
	}
}

func TestForgedFutureTimestamp(t *testing.T) {
	e := engineFor(t, baseRules+"title: many\nname: many\ncorrelation:\n    type: event_count\n    rules: [a]\n    group-by: [ip]\n    timespan: 5m\n    condition: {gte: 10}\n")
	stored := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	n := 0
	emit := func(*Alert) { n++ }
	for i := range 9 {
		e.Process(Record{Index: uint64(i), Time: stored, Data: []byte(ev(float64(i), "kind", "a", "ip", "203.0.113.5"))}, emit)
	}
	// An attacker with an ingest token sends an event from 2099: if the
	// engine believed it, every window would expire at once.
	e.Process(Record{Index: 9, Time: stored, Data: []byte(`{"@timestamp":"2099-01-01T00:00:00Z","kind":"x"}`)}, emit)
	e.Process(Record{Index: 10, Time: stored, Data: []byte(ev(10, "kind", "a", "ip", "203.0.113.5"))}, emit)
	if n != 1 {
		t.Errorf("%d alerts, want 1: a future timestamp moved the clock", n)
	}
}

// TestImpossibleDate: an event whose @timestamp names no real instant —
// a day its month lacks, second 60, a lowercase "t" — is untimed, as
// time.Parse and ingest hold it, not moved to the day time.Date makes of
// it: five forged "2026-02-31" events must not complete a burst of ten
// on March 3. Replayed from a file, such an event takes the engine's
// clock (here February 27).
func TestImpossibleDate(t *testing.T) {
	cases := []struct{ forged, lands string }{
		{"2026-02-31T10:00:0%dZ", "2026-03-03T10:00:00Z"},
		{"2026-02-29T10:00:0%dZ", "2026-03-01T10:00:00Z"},
		{"2026-04-31T10:00:0%d.5Z", "2026-05-01T10:00:00Z"},
		{"2026-03-02T23:59:60.00000000%dZ", "2026-03-03T00:00:00Z"},
		{"2026-03-03t10:00:0%dZ", "2026-03-03T10:00:00Z"},
		{"2026-03-03T10:00:0%dz", "2026-03-03T10:00:00Z"},
		{"2026-03-03T10:00:0%dZ ", "2026-03-03T10:00:00Z"},
	}
	for _, c := range cases {
		t.Run(c.forged, func(t *testing.T) {
			e := engineFor(t, baseRules+"title: many\nname: many\ncorrelation:\n    type: event_count\n    rules: [a]\n    group-by: [ip]\n    timespan: 5m\n    condition: {gte: 10}\n")
			var alerts []*Alert
			emit := func(a *Alert) { alerts = append(alerts, a) }
			e.Process(Record{Index: 0, Data: []byte(`{"@timestamp":"2026-02-27T12:00:00Z","kind":"b"}`)}, emit)
			lands, err := time.Parse(time.RFC3339, c.lands)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				e.Process(Record{Index: uint64(1 + i), Data: []byte(fmt.Sprintf(`{"@timestamp":%q,"kind":"a","ip":"203.0.113.5"}`, fmt.Sprintf(c.forged, i)))}, emit)
			}
			for i := range 5 {
				at := lands.Add(time.Duration(5+i) * time.Second).Format(time.RFC3339Nano)
				e.Process(Record{Index: uint64(6 + i), Data: []byte(fmt.Sprintf(`{"@timestamp":%q,"kind":"a","ip":"203.0.113.5"}`, at))}, emit)
			}
			e.Flush(emit)
			for _, a := range alerts {
				if a.Rule.Ref() == "many" {
					t.Errorf("burst alert %s..%s of %d events: the forged dates counted on %s", a.First.UTC().Format(time.RFC3339), a.Last.UTC().Format(time.RFC3339), a.Count, lands.Format(time.DateOnly))
				}
			}
			// Untimed is not dropped: every event still reached the rules.
			if st := e.Stats(); st.Events != 11 || st.Malformed != 0 || st.Matches != 11 {
				t.Errorf("stats %+v: want 11 events, all matched, none malformed", st)
			}
		})
	}
}
