package server

import (
	"encoding/json"
	"testing"
)

// TestRulesListKeys: GET /v1/rules lists each rule under the keys GET
// /v1/rules/{name} gives it ("id", "name", "title", …), with the same
// values. The list answered Go's field names ("ID", "Name", "Title"),
// so a client that read one answer could not read the other.
func TestRulesListKeys(t *testing.T) {
	ts := startServer(t, t.TempDir(), detectionOn)
	code, body := ts.do(t, "GET", "/v1/rules", ts.read, nil)
	var list struct {
		Rules []map[string]any `json:"rules"`
	}
	if err := json.Unmarshal(body, &list); code != 200 || err != nil || len(list.Rules) == 0 {
		t.Fatalf("GET /v1/rules: %d %v %.300s", code, err, body)
	}
	checked := 0
	for _, r := range list.Rules {
		name, _ := r["name"].(string)
		if name == "" {
			t.Fatalf("a listed rule without \"name\": %v", r)
		}
		code, body := ts.do(t, "GET", "/v1/rules/"+name, ts.read, nil)
		var one map[string]any
		if err := json.Unmarshal(body, &one); code != 200 || err != nil {
			t.Fatalf("GET /v1/rules/%s: %d %v %.300s", name, code, err, body)
		}
		for _, k := range []string{"id", "name", "title", "level", "type", "ruleset", "source"} {
			if r[k] != one[k] {
				t.Errorf("rule %s: %q is %v in the list, %v on its own", name, k, r[k], one[k])
			}
		}
		checked++
	}
	if checked < 10 {
		t.Errorf("only %d rules checked; the built-in rules are more", checked)
	}
}
