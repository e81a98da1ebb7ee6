package detect

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Rule tests are YAML files next to the rules they test (x.test.yml tests
// x.yml). Each case feeds events, in order, through an engine holding
// every rule of the set, and compares the alerts of the rules under test
// (by default, those defined in x.yml) with what it expects; alerts of
// other rules are ignored. A case that expects nothing is a benign case:
// the rules under test must stay quiet.
//
//	cases:
//	  - name: ten failed logins from one address
//	    events:
//	      - repeat: 10          # this event ten times…
//	        every: 5s           # …five seconds apart (default 1s)
//	        event:              # an ECS event; {i} is the repetition (0-based),
//	          event: {category: [authentication], outcome: failure}   # {i%N}, {i/N} also work
//	          client: {ip: 203.0.113.5}
//	          user: {name: 'user{i%3}'}
//	      - after: 2m           # gap from the previous event (default 1s)
//	        event: {…}
//	    expect:
//	      - rule: trailguard_brute_force_source   # name or id
//	        count: 1                              # alerts of that rule (default 1)
//	        group: {client.ip: 203.0.113.5}       # every such alert has these group values
//
// Event times start at 2026-01-01T00:00:00Z; an event's own @timestamp
// is replaced. "at: 90s" places an event at an offset from the start.

// TestFile is a parsed rule test file.
type TestFile struct {
	File string
	// Rules are the rules under test (names or ids); empty means the rules
	// of the sibling rule file.
	Rules []string
	Cases []TestCase
}

// TestCase is one case of a TestFile.
type TestCase struct {
	Name   string
	Events []TestEvent
	Expect []TestExpect
	line   int
}

// TestEvent is one event, possibly repeated.
type TestEvent struct {
	At, After, Every time.Duration
	HasAt            bool
	Repeat           int
	Event            map[string]any
}

// TestExpect is the alerts one rule must raise in a case.
type TestExpect struct {
	Rule  string
	Count int
	Group map[string]string
}

// TestResult is the outcome of one case.
type TestResult struct {
	File, Case string
	Line       int
	// Failures are what went wrong; none means the case passed.
	Failures []string
	Events   int
}

const maxTestEvents = 1_000_000

// ParseTestFile reads a test file.
func ParseTestFile(file string, data []byte) (*TestFile, error) {
	n, err := parseYAML(data)
	if err != nil {
		return nil, locate(file, err)
	}
	if n.kind != yMap {
		return nil, fmt.Errorf("%s: a test file is a map with cases", file)
	}
	tf := &TestFile{File: file}
	if r := n.get("rules"); r != nil {
		if tf.Rules, err = scalarList(r, "rules"); err != nil {
			return nil, locate(file, err)
		}
	}
	cases := n.get("cases")
	if cases == nil || cases.kind != ySeq {
		return nil, locate(file, errAt(n, "cases: want a list"))
	}
	total := 0
	for _, c := range cases.items {
		tc, err := parseCase(c)
		if err != nil {
			return nil, locate(file, err)
		}
		for _, ev := range tc.Events {
			total += ev.Repeat
		}
		if total > maxTestEvents {
			return nil, fmt.Errorf("%s: more than %d events", file, maxTestEvents)
		}
		tf.Cases = append(tf.Cases, tc)
	}
	return tf, nil
}

func locate(file string, err error) error {
	if pe, ok := err.(*posError); ok && pe.line > 0 {
		return fmt.Errorf("%s:%d: %s", file, pe.line, pe.Error())
	}
	return fmt.Errorf("%s: %w", file, err)
}

func parseCase(c *ynode) (TestCase, error) {
	tc := TestCase{line: c.line}
	if c.kind != yMap {
		return tc, errAt(c, "a case is a map with name, events and expect")
	}
	if v := c.get("name"); v != nil && v.kind == yScalar {
		tc.Name = v.str
	}
	evs := c.get("events")
	if evs == nil || evs.kind != ySeq {
		return tc, errAt(c, "case %q: events: want a list", tc.Name)
	}
	for _, e := range evs.items {
		te := TestEvent{Repeat: 1, Every: time.Second, After: time.Second}
		if e.kind != yMap {
			return tc, errAt(e, "an event entry is a map with event (and repeat, every, at, after)")
		}
		for i, k := range e.keys {
			v := e.vals[i]
			var err error
			switch k {
			case "event":
				m, ok := yamlToAny(v).(map[string]any)
				if !ok {
					return tc, errAt(v, "event: want a map (an ECS event)")
				}
				te.Event = m
			case "repeat":
				te.Repeat, err = strconv.Atoi(v.str)
				if err == nil && (te.Repeat < 1 || te.Repeat > maxTestEvents) {
					err = fmt.Errorf("repeat: want 1 to %d", maxTestEvents)
				}
			case "every":
				te.Every, err = parseTimespan(v.str)
			case "after":
				te.After, err = parseTestDuration(v.str)
			case "at":
				te.At, err = parseTestDuration(v.str)
				te.HasAt = true
			default:
				return tc, errAt(e.keyNodes[i], "unknown key %q (want event, repeat, every, at, after)", k)
			}
			if err != nil {
				return tc, errAt(v, "%s: %v", k, err)
			}
		}
		if te.Event == nil {
			return tc, errAt(e, "event is missing")
		}
		tc.Events = append(tc.Events, te)
	}
	exp := c.get("expect")
	if exp == nil {
		return tc, errAt(c, "case %q: expect is missing (use [] for none)", tc.Name)
	}
	if exp.kind != ySeq {
		return tc, errAt(exp, "expect: want a list")
	}
	for _, x := range exp.items {
		te := TestExpect{Count: 1}
		if x.kind != yMap || x.get("rule") == nil {
			return tc, errAt(x, "an expectation is a map with rule (and count, group)")
		}
		for i, k := range x.keys {
			v := x.vals[i]
			switch k {
			case "rule":
				te.Rule = v.str
			case "count":
				n, err := strconv.Atoi(v.str)
				if err != nil || n < 0 {
					return tc, errAt(v, "count: want a number")
				}
				te.Count = n
			case "group":
				if v.kind != yMap {
					return tc, errAt(v, "group: want a map of field: value")
				}
				te.Group = map[string]string{}
				for j, gk := range v.keys {
					te.Group[gk] = v.vals[j].str
				}
			default:
				return tc, errAt(x.keyNodes[i], "unknown key %q (want rule, count, group)", k)
			}
		}
		tc.Expect = append(tc.Expect, te)
	}
	return tc, nil
}

// parseTestDuration accepts 0 as well as timespans.
func parseTestDuration(s string) (time.Duration, error) {
	if s == "0" || s == "0s" {
		return 0, nil
	}
	return parseTimespan(s)
}

func yamlToAny(n *ynode) any {
	switch n.kind {
	case yMap:
		m := make(map[string]any, len(n.keys))
		for i, k := range n.keys {
			m[k] = yamlToAny(n.vals[i])
		}
		return m
	case ySeq:
		l := make([]any, len(n.items))
		for i, it := range n.items {
			l[i] = yamlToAny(it)
		}
		return l
	case yScalar:
		switch n.stype {
		case sInt:
			if v, err := strconv.ParseInt(n.str, 10, 64); err == nil {
				return v
			}
		case sFloat:
			if v, err := strconv.ParseFloat(n.str, 64); err == nil {
				return v
			}
		case sBool:
			return n.str == "true"
		}
		return n.str
	}
	return nil
}

// TestStart is the time test events start at.
var TestStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var reTemplate = regexp.MustCompile(`\{i(?:([%/])([0-9]+))?\}`)

// expand substitutes {i}, {i%N} and {i/N} in every string of v.
func expand(v any, i int) any {
	switch v := v.(type) {
	case string:
		if !strings.Contains(v, "{i") {
			return v
		}
		return reTemplate.ReplaceAllStringFunc(v, func(m string) string {
			sm := reTemplate.FindStringSubmatch(m)
			if sm[1] == "" {
				return strconv.Itoa(i)
			}
			n, _ := strconv.Atoi(sm[2])
			if n == 0 {
				return m
			}
			if sm[1] == "%" {
				return strconv.Itoa(i % n)
			}
			return strconv.Itoa(i / n)
		})
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[expand(k, i).(string)] = expand(x, i)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for k, x := range v {
			out[k] = expand(x, i)
		}
		return out
	}
	return v
}

// Records turns a case's events into records, one second apart unless
// said otherwise.
func (tc *TestCase) Records() ([]Record, error) {
	var out []Record
	t := TestStart.Add(-time.Second)
	first := true
	for _, te := range tc.Events {
		for i := 0; i < te.Repeat; i++ {
			switch {
			case i > 0:
				t = t.Add(te.Every)
			case te.HasAt:
				t = TestStart.Add(te.At)
			case first:
				t = TestStart
			default:
				t = t.Add(te.After)
			}
			first = false
			ev := expand(te.Event, i).(map[string]any)
			ev["@timestamp"] = t.Format(time.RFC3339Nano)
			if _, ok := ev["event"]; !ok {
				ev["event"] = map[string]any{}
			}
			if m, ok := ev["event"].(map[string]any); ok {
				if _, ok := m["id"]; !ok {
					m["id"] = fmt.Sprintf("test-%d", len(out))
				}
			}
			data, err := json.Marshal(ev)
			if err != nil {
				return nil, err
			}
			out = append(out, Record{Index: uint64(len(out)), Time: t, Data: data})
		}
	}
	return out, nil
}

// RunTests runs the test files in fsys (every *.test.yml, recursively)
// against rs. display prefixes file names in results.
func RunTests(rs *RuleSet, fsys fs.FS, display string) ([]TestResult, error) {
	var files []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, TestSuffix) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []TestResult
	for _, f := range files {
		name := display + "/" + f
		data, err := readLimited(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		tf, err := ParseTestFile(name, data)
		if err != nil {
			return nil, err
		}
		if len(tf.Rules) == 0 {
			// The rules of the sibling file, by its name.
			sib := strings.TrimSuffix(f, TestSuffix) + ".yml"
			for _, r := range rs.Rules {
				if strings.HasSuffix(filepath2slash(r.Source.File), "/"+sib) || filepath2slash(r.Source.File) == sib {
					tf.Rules = append(tf.Rules, r.Ref())
				}
			}
			if len(tf.Rules) == 0 {
				return nil, fmt.Errorf("%s: no rules in %s to test (name them with rules:)", name, sib)
			}
		}
		res, err := tf.Run(rs)
		if err != nil {
			return nil, err
		}
		out = append(out, res...)
	}
	return out, nil
}

func filepath2slash(p string) string { return strings.ReplaceAll(p, "\\", "/") }

// Run runs every case of the file on a fresh engine compiled from rs.
func (tf *TestFile) Run(rs *RuleSet) ([]TestResult, error) {
	var out []TestResult
	for _, tc := range tf.Cases {
		e, errs := NewEngine(rs, Options{})
		under := map[*Rule]string{}
		for _, ref := range tf.Rules {
			found := false
			for _, r := range e.Rules() {
				if r.ID == ref || r.Name == ref {
					under[r] = ref
					found = true
				}
			}
			if !found {
				msg := fmt.Sprintf("%s: rule %q under test is not loaded", tf.File, ref)
				for _, err := range errs {
					if err.Rule == ref {
						msg += ": " + err.Reason
					}
				}
				return nil, fmt.Errorf("%s", msg)
			}
		}
		recs, err := tc.Records()
		if err != nil {
			return nil, fmt.Errorf("%s: case %q: %w", tf.File, tc.Name, err)
		}
		got := map[string][]*Alert{}
		emit := func(a *Alert) {
			if ref, ok := under[a.Rule]; ok {
				got[ref] = append(got[ref], a)
			}
		}
		for _, r := range recs {
			e.Process(r, emit)
		}
		e.Flush(emit)
		res := TestResult{File: tf.File, Case: tc.Name, Line: tc.line, Events: len(recs)}
		expected := map[string]bool{}
		for _, x := range tc.Expect {
			ref := x.Rule
			for r, name := range under {
				if r.ID == x.Rule || r.Name == x.Rule {
					ref = name
				}
			}
			if _, ok := under2(under, ref); !ok {
				res.Failures = append(res.Failures, fmt.Sprintf("expects rule %q, which is not under test", x.Rule))
				continue
			}
			expected[ref] = true
			as := got[ref]
			if len(as) != x.Count {
				res.Failures = append(res.Failures, fmt.Sprintf("%s: %d alerts, want %d%s", x.Rule, len(as), x.Count, describe(as)))
			}
			for _, a := range as {
				for k, v := range x.Group {
					ok := false
					for _, g := range a.Group {
						if (g.Name == k || g.ECS == k) && g.Value == v {
							ok = true
						}
					}
					if !ok {
						res.Failures = append(res.Failures, fmt.Sprintf("%s: alert lacks group %s=%s%s", x.Rule, k, v, describe([]*Alert{a})))
					}
				}
			}
		}
		refs := make([]string, 0, len(got))
		for ref := range got {
			refs = append(refs, ref)
		}
		sort.Strings(refs)
		for _, ref := range refs {
			if !expected[ref] {
				res.Failures = append(res.Failures, fmt.Sprintf("%s: %d unexpected alerts%s", ref, len(got[ref]), describe(got[ref])))
			}
		}
		out = append(out, res)
	}
	return out, nil
}

func under2(under map[*Rule]string, ref string) (*Rule, bool) {
	for r, name := range under {
		if name == ref {
			return r, true
		}
	}
	return nil, false
}

func describe(as []*Alert) string {
	if len(as) == 0 {
		return ""
	}
	var parts []string
	for i, a := range as {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("… %d more", len(as)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("[%s at %s: %s]", a.Rule.Ref(), a.Time.Sub(TestStart), a.Message()))
	}
	return " " + strings.Join(parts, " ")
}
