// Package deploy_test checks the deployment assets in deploy/: every file
// parses, every field an asset references is one trailguard emits (the ECS
// table in event/ecs_fields.go plus our own trailguard.* fields), the index
// templates map every emitted field with its ECS type, the retention
// policies match the retention profiles, and the systemd units pass
// systemd-analyze verify.
package deploy_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/trailguard/trailguard/detect"
	"github.com/trailguard/trailguard/event"
)

// emitted returns every field trailguard writes, by dotted name, with its
// Elasticsearch type: the leaves of a fully populated event, what the
// collector adds when forwarding (trailguard.ledger.*), and the object
// fields whose contents are free-form.
func emitted() map[string]string {
	ev := &event.Event{
		Timestamp: time.Now(), Kind: "event", Category: []string{"web"}, Type: []string{"access"}, Action: "a", Outcome: "success",
		Reason: "r", Duration: 1, ID: "id", Dataset: "d", Ingested: time.Now(), Severity: 1, Message: "m", LogLevel: "info",
		ErrorMessage: "e", RequestID: "r", TraceID: "t", SpanID: "s", Method: "GET", Path: "/", Query: "q", Original: "/x",
		RequestBodyBytes: 1, RequestBody: "b", Referrer: "r", StatusCode: 200, ResponseBodyBytes: 1, SourceIP: "192.0.2.1",
		SourcePort: 1, ClientIP: "192.0.2.2", UserID: "u", UserName: "n", UserRoles: []string{"r"}, TargetUserID: "t",
		TargetUserName: "t", UserAgent: "ua", ServiceName: "s", HostName: "h",
		Audit: &event.Audit{Resource: "r", Before: json.RawMessage(`{}`), After: json.RawMessage(`{}`)},
		Attrs: json.RawMessage(`{}`), Labels: map[string]string{"k": "v"}, RequestHeaders: map[string]string{"accept": "x"},
	}
	out := map[string]string{}
	walkDoc(out, ev.AppendJSON(nil))
	// An alert of the detection engine, with every part it can have.
	at := time.Now()
	rule := &detect.Rule{ID: "r", Name: "brute_force", Title: "t", Description: "d", Author: "a", Level: "high",
		References: []string{"https://example.com"}, FalsePositives: []string{"f"}, Ruleset: "builtin",
		Tags:        []string{"attack.t1110.001", "attack.credential_access", "cve.2021-44228"},
		Correlation: &detect.Correlation{Type: detect.RateOfRise}}
	al := &detect.Alert{ID: "x", Rule: rule, Time: at, First: at, Last: at, Index: 1, EventID: "e", Count: 3, Rate: 2, Baseline: 1,
		Group:  []detect.Field{{Name: "client.ip", ECS: "client.ip", Value: "192.0.2.1"}},
		Fields: []detect.Field{{Name: "user.name", ECS: "user.name", Value: "u"}}, Evidence: []uint64{1}, EvidenceIDs: []string{"e"}}
	walkDoc(out, al.AppendJSON(nil))
	out["trailguard.ledger.origin"] = "keyword"
	out["trailguard.ledger.index"] = "long"
	return out
}

// walkDoc adds the leaves of a JSON document to out with their types.
func walkDoc(out map[string]string, line []byte) {
	var doc map[string]any
	if err := json.Unmarshal(line, &doc); err != nil {
		panic(err)
	}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			name := k
			if prefix != "" {
				name = prefix + "." + k
			}
			if free, ok := freeForm[name]; ok {
				out[name] = free
				continue
			}
			if sub, ok := v.(map[string]any); ok {
				walk(name, sub)
				continue
			}
			typ, ok := event.ECSType(name)
			if own, isOwn := ownFields[name]; isOwn {
				typ, ok = own, true
			}
			if !ok {
				panic("emitted field " + name + " is neither in ECS nor free-form")
			}
			out[name] = typ
		}
	}
	walk("", doc)
}

// ownFields are trailguard's own scalar fields, outside ECS.
var ownFields = map[string]string{
	"trailguard.audit.resource":          "keyword",
	"trailguard.alert.count":             "long",
	"trailguard.alert.rule_name":         "keyword",
	"trailguard.alert.rate":              "double",
	"trailguard.alert.baseline":          "double",
	"trailguard.alert.falsepositives":    "keyword",
	"trailguard.alert.evidence.index":    "long",
	"trailguard.alert.evidence.event_id": "keyword",
	"trailguard.alert.trigger.index":     "long",
	"trailguard.alert.trigger.event_id":  "keyword",
}

// freeForm are object fields whose keys are chosen at run time: labels
// (keyword values), chosen request headers (keyword values), and the JSON
// an application attaches (kept in _source, not indexed).
var freeForm = map[string]string{
	"labels":                          "object",
	"trailguard.http.request.headers": "object",
	"trailguard.audit.before":         "object",
	"trailguard.audit.after":          "object",
	"trailguard.attrs":                "object",
	"trailguard.alert.group":          "object",
}

// isEmitted reports whether a field name an asset references is emitted:
// exactly, or inside a free-form object.
func isEmitted(fields map[string]string, name string) bool {
	if _, ok := fields[name]; ok {
		return true
	}
	for _, p := range slices.Sorted(maps.Keys(freeForm)) {
		if strings.HasPrefix(name, p+".") {
			return true
		}
	}
	return false
}
