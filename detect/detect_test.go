package detect

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
)

// engineFor compiles rules from YAML text, failing the test on any error.
func engineFor(t testing.TB, rules string) *Engine {
	t.Helper()
	rs := ParseRules("test.yml", []byte(rules), "custom")
	for _, err := range rs.Errors {
		t.Fatalf("parse: %v", err)
	}
	e, errs := NewEngine(rs, Options{})
	for _, err := range errs {
		t.Fatalf("compile: %v", err)
	}
	return e
}

// runEvents runs events (JSON objects) through e, one second apart unless they
// carry @timestamp, and returns the alerts, Flush included.
func runEvents(e *Engine, events ...string) []*Alert {
	var out []*Alert
	emit := func(a *Alert) { out = append(out, a) }
	for i, ev := range events {
		e.Process(Record{Index: uint64(i), Data: []byte(ev)}, emit)
	}
	e.Flush(emit)
	return out
}

// alertKeys names each alert by rule, count and group values
// ("ref:count:v1,v2"), the form table tests compare.
func alertKeys(alerts []*Alert) []string {
	var keys []string
	for _, a := range alerts {
		var g []string
		for _, f := range a.Group {
			g = append(g, f.Value)
		}
		keys = append(keys, fmt.Sprintf("%s:%d:%s", a.Rule.Ref(), a.Count, strings.Join(g, ",")))
	}
	return keys
}

// ts is a @timestamp s seconds after a fixed base.
func ts(s float64) string {
	return time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC).Add(time.Duration(s * float64(time.Second))).Format(time.RFC3339Nano)
}

func TestDetectionMatching(t *testing.T) {
	web := `{"event":{"category":["web"],"action":"http_request"},"http":{"request":{"method":"GET"},"response":{"status_code":404}},` +
		`"url":{"path":"/files/../../etc/passwd","query":"q=%27%20OR%201=1--&x=Hello","original":"/files/%2e%2e/%2E%2e/etc/passwd?q=%27%20OR%201=1--&x=Hello"},` +
		`"client":{"ip":"203.0.113.7"},"source":{"ip":"10.0.0.1"},"user_agent":{"original":"sqlmap/1.8.4#stable (https://sqlmap.org)"},"user":{"name":"Alice"},"labels":{"tag":"a\"b\\c","city":"Zürich"}}`
	cases := []struct {
		name, detection string
		logsource       string
		want            bool
	}{
		{"equals is case-insensitive", `sel: {user.name: alice}`, "application", true},
		{"cased equals", `sel: {user.name|cased: alice}`, "application", false},
		{"number equals", `sel: {http.response.status_code: 404}`, "application", true},
		{"number list", `sel: {http.response.status_code: [401, 403]}`, "application", false},
		{"web taxonomy status", `sel: {sc-status: 404}`, "webserver", true},
		{"web taxonomy not mapped outside web", `sel: {sc-status: 404}`, "application", false},
		{"c-uri keeps the client's encoding", `sel: {c-uri|contains: '%2e%2e/'}`, "webserver", true},
		{"c-uri contains is case-insensitive", `sel: {c-uri|contains: '/%2E%2E/'}`, "webserver", true},
		{"decoded path is url.path", `sel: {url.path|contains: '../../etc'}`, "webserver", true},
		{"cs-uri-stem stops at the query", `sel: {cs-uri-stem|endswith: '/passwd'}`, "webserver", true},
		{"cs-uri-query", `sel: {cs-uri-query|startswith: 'q=%27'}`, "webserver", true},
		{"c-ip prefers client.ip", `sel: {c-ip: 203.0.113.7}`, "webserver", true},
		{"cidr", `sel: {client.ip|cidr: 203.0.113.0/24}`, "application", true},
		{"cidr outside", `sel: {client.ip|cidr: 198.51.100.0/24}`, "application", false},
		{"user agent contains", `sel: {c-useragent|contains: sqlmap}`, "webserver", true},
		{"startswith list", `sel: {c-useragent|startswith: [curl/, SQLMAP/]}`, "webserver", true},
		{"all of list", `sel: {c-useragent|contains|all: [sqlmap, stable]}`, "webserver", true},
		{"all of list fails", `sel: {c-useragent|contains|all: [sqlmap, nmap]}`, "webserver", false},
		{"wildcard glob", `sel: {c-useragent: 'sqlmap/*#stable*'}`, "webserver", true},
		{"question mark", `sel: {c-useragent: 'sqlmap/?.?.?#*'}`, "webserver", true},
		{"question mark is one character", `sel: {labels.city: 'z?rich'}`, "application", true},
		{"question mark is not one byte", `sel: {labels.city: 'z??rich'}`, "application", false},
		{"escaped star is literal", `sel: {c-useragent: 'sqlmap\*'}`, "webserver", false},
		{"re is case-sensitive", `sel: {c-useragent|re: '^SQLMAP/'}`, "webserver", false},
		{"re i", `sel: {c-useragent|re|i: '^SQLMAP/[0-9.]+'}`, "webserver", true},
		{"gt", `sel: {http.response.status_code|gte: 400}`, "application", true},
		{"lt", `sel: {http.response.status_code|lt: 400}`, "application", false},
		{"exists", `sel: {url.query|exists: true}`, "application", true},
		{"not exists", `sel: {trace.id|exists: false}`, "application", true},
		{"null", `sel: {trace.id: null}`, "application", true},
		{"null on present", `sel: {user.name: null}`, "application", false},
		{"neq", `sel: {user.name|neq: bob}`, "application", true},
		{"escaped JSON string", `sel: {labels.tag: 'a"b\c'}`, "application", true},
		{"list of maps", "sel:\n        - user.name: bob\n        - sc-status: 404", "webserver", true},
		{"keywords", "kw:\n        - 'etc/passwd'\n        - nothing", "webserver", true},
		{"keywords all", "kw:\n        '|all':\n            - sqlmap\n            - nonexistent", "webserver", false},
		{"keyword matches the sent uri", "kw:\n        - '%2e%2E/etc'", "webserver", true},
		{"category web filters", `sel: {user.name: alice}`, "authentication", false},
		{"fieldref", `sel: {user.name|fieldref: user.name}`, "application", true},
		{"base64offset contains", `sel: {url.query|base64offset|contains: 'hello'}`, "application", false},
		{"windash", `sel: {c-useragent|windash|contains: '-x'}`, "webserver", false},
		{"star is any value", `sel: {user.name: '*'}`, "application", true},
		{"star absent", `sel: {trace.id: '*'}`, "application", false},
		{"empty string", `sel: {trace.id: ''}`, "application", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rule := fmt.Sprintf("title: t\nlogsource:\n    category: %s\ndetection:\n    %s\n    condition: 1 of them\n", c.logsource, c.detection)
			e := engineFor(t, rule)
			got := len(runEvents(e, web)) > 0
			if got != c.want {
				t.Errorf("matched = %v, want %v", got, c.want)
			}
		})
	}
}

func TestConditions(t *testing.T) {
	ev := `{"a":"1","b":"2","c":"3"}`
	base := "    sel_a: {a: '1'}\n    sel_b: {b: '2'}\n    filter_x: {c: 'x'}\n    _hidden: {c: 'nope'}\n"
	cases := []struct {
		cond string
		want bool
	}{
		{"sel_a and sel_b", true},
		{"sel_a and filter_x", false},
		{"sel_a and not filter_x", true},
		{"not sel_a or sel_b", true},
		{"not (sel_a or filter_x)", false},
		{"all of sel_*", true},
		{"1 of filter*", false},
		{"all of them", false},
		{"1 of them", true},
		{"all of sel_* and not 1 of filter*", true},
		{"all of them and not _hidden", false},
		{"ALL OF sel_* AND NOT filter_x", true},
		{"sel_a and (sel_b or filter_x) and not (filter_x)", true},
	}
	for _, c := range cases {
		t.Run(c.cond, func(t *testing.T) {
			e := engineFor(t, "title: t\ndetection:\n"+base+"    condition: "+c.cond+"\n")
			if got := len(runEvents(e, ev)) > 0; got != c.want {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
	// "them" leaves out _hidden: all of them is sel_a, sel_b, filter_x.
	e := engineFor(t, "title: t\ndetection:\n    sel_a: {a: '1'}\n    _hidden: {c: nope}\n    condition: all of them\n")
	if len(runEvents(e, ev)) != 1 {
		t.Error("all of them must skip identifiers starting with _")
	}
}

func TestConditionErrors(t *testing.T) {
	names := []string{"sel", "filter"}
	for _, c := range []string{"", "sel and", "sel or or filter", "(sel", "sel)", "unknown", "sel*", "2 of sel*",
		"1 of nothing*", "sel | count() > 5", "not", "sel and not", "of sel", "1 of", "sel filter", "sel ! filter",
		// Within the limit as written, but its canonical form, a space
		// around each and, is longer.
		strings.Repeat("(sel or filter)and", 454) + "(sel)"} {
		if _, err := ParseCondition(c, names); err == nil {
			t.Errorf("%q: no error", c)
		}
	}
	for _, c := range []string{"sel", "not not sel", "((sel))", "1 of them", "all of them", "any of sel*", "sel and not filter or sel",
		"(sel or filter) or (sel and filter) and (sel and filter)",
		// An and under an or needs no parentheses: written with them,
		// this canonical form nested 80 deep.
		strings.Repeat("sel or filter and (", 40) + "sel" + strings.Repeat(")", 40)} {
		e, err := ParseCondition(c, names)
		if err != nil {
			t.Errorf("%q: %v", c, err)
			continue
		}
		// String is canonical: it parses to itself.
		e2, err := ParseCondition(e.String(), names)
		if err != nil || e2.String() != e.String() {
			t.Errorf("%q: String %q does not round-trip (%v)", c, e.String(), err)
		}
	}
	deep := strings.Repeat("(", 100) + "sel" + strings.Repeat(")", 100)
	if _, err := ParseCondition(deep, names); err == nil {
		t.Error("deep nesting accepted")
	}
}

func TestAlertIsECS(t *testing.T) {
	e := engineFor(t, `title: Attack tool
id: 6f3c7a52-2b0e-4f3e-9d1a-6c2f0d9a1e11
logsource:
    category: webserver
detection:
    sel:
        c-useragent|contains: sqlmap
    condition: sel
tags:
    - attack.reconnaissance
    - attack.t1595.002
    - cve.2021-44228
level: medium
`)
	as := runEvents(e, `{"@timestamp":"`+ts(0)+`","event":{"id":"ev-1","category":["web"]},"client":{"ip":"203.0.113.7"},"http":{"response":{"status_code":200}},"user_agent":{"original":"sqlmap/1.8"}}`)
	if len(as) != 1 {
		t.Fatalf("%d alerts", len(as))
	}
	line := as[0].AppendJSON(nil)
	if err := event.Validate(line); err != nil {
		t.Fatalf("alert is not valid ECS: %v\n%s", err, line)
	}
	var doc map[string]any
	if err := json.Unmarshal(line, &doc); err != nil {
		t.Fatal(err)
	}
	flat, _ := json.Marshal(doc)
	for _, want := range []string{`"kind":"alert"`, `"T1595"`, `"T1595.002"`, `"TA0043"`, `"CVE-2021-44228"`,
		`"client":{"ip":"203.0.113.7"}`, `"status_code":200`, `"event_id":"ev-1"`, `"severity":47`} {
		if !strings.Contains(string(flat), want) {
			t.Errorf("alert lacks %s:\n%s", want, line)
		}
	}
}

// TestRepeatedValuesDecideAlike: an engine that has seen a field's value
// before (runProg keeps the last value's results) decides each event as an
// engine that sees it alone does, through repeats, changes and returns of
// values, cased and not, single and in lists.
func TestRepeatedValuesDecideAlike(t *testing.T) {
	const rules = `title: sqlmap
logsource:
    category: webserver
detection:
    sel: {c-useragent|contains: sqlmap}
    condition: sel
---
title: alice
logsource:
    category: webserver
detection:
    sel: {user.name: alice, url.path|endswith: /admin}
    condition: sel
`
	ev := func(ua, user, path string) string {
		return fmt.Sprintf(`{"event":{"category":["web"]},"user_agent":{"original":%q},"user":{"name":%q},"url":{"path":%q}}`, ua, user, path)
	}
	events := []string{
		ev("sqlmap/1.8", "alice", "/admin"), ev("sqlmap/1.8", "alice", "/admin"), ev("curl/8", "alice", "/x"),
		ev("curl/8", "ALICE", "/admin"), ev("SQLMap/2", "bob", "/admin"), ev("SQLMap/2", "bob", "/admin"),
		ev("curl/8", "alice", "/admin"), ev("sqlmap/1.8", "alice", "/y/admin"),
		`{"event":{"category":["web"]},"user_agent":{"original":["curl/8","sqlmap/1"]},"user":{"name":"bob"}}`,
		ev("curl/8", "bob", "/admin"),
	}
	seq := engineFor(t, rules)
	matched := 0
	for i, e := range events {
		var got []string
		seq.Process(Record{Index: uint64(i), Data: []byte(e)}, func(a *Alert) { got = append(got, a.Rule.Title) })
		var alone []string
		for _, a := range runEvents(engineFor(t, rules), e) {
			alone = append(alone, a.Rule.Title)
		}
		if strings.Join(got, ",") != strings.Join(alone, ",") {
			t.Errorf("event %d %s: after the others %v, alone %v", i, e, got, alone)
		}
		matched += len(got)
	}
	if matched < 6 {
		t.Fatalf("only %d alerts: the events do not exercise the rules", matched)
	}
}

// TestYAMLErrorNamesFileLines: a YAML error names lines of the file, both
// where it is and the other place its message names, whichever document
// of the file it is in.
func TestYAMLErrorNamesFileLines(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{"e: \ne:", `r.yml:2:1: YAML: mapping key "e" already defined at line 1, column 1`},
		// The message named [1:1], the document's first line, which is
		// the file's second.
		{"#\ne: \ne:", `r.yml:3:1: YAML: mapping key "e" already defined at line 2, column 1`},
		{"title: a\ndetection:\n    sel: {a: 1}\n    condition: sel\n---\ntitle: b\ndetection:\n    sel: {a: 1}\n    sel: {b: 1}\n    condition: sel\n",
			`r.yml:9:5: YAML: mapping key "sel" already defined at line 8, column 5`},
	} {
		rs := ParseRules("r.yml", []byte(tc.data), "custom")
		if len(rs.Errors) != 1 || rs.Errors[0].Error() != tc.want {
			t.Errorf("%q: errors %q, want %q", tc.data, rs.Errors, tc.want)
		}
	}
}
