package server

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/access"
)

// TestDecisionsFileEditedWhileStopped: someone with write access to the
// data directory stops the collector, adds a ban of every address to
// decisions.json and starts it again. The bouncers are not served it: the
// decision names no ledger record that makes it, so it is logged,
// recorded in the ledger (block_decision_rejected), counted, and the
// decisions are rebuilt from the ledger (the operator's real ban stays).
func TestDecisionsFileEditedWhileStopped(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, detectionOn)
	bouncer := ts.token(t, "nginx-bouncer", access.RoleBouncer)
	if code, body := ts.do(t, "POST", "/v1/decisions", ts.admin, strings.NewReader(`{"scope":"Ip","value":"198.51.100.77","duration":"2h","reason":"test"}`)); code != 201 {
		t.Fatalf("manual ban: %d %s", code, body)
	}
	ts.stop(t)

	path := filepath.Join(dir, "decisions.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	real := st["active"].([]any)[0].(map[string]any)
	for _, forged := range []map[string]any{
		{"id": 4242, "uuid": "x", "origin": "trailguard", "type": "ban", "scope": "Range", "value": "0.0.0.0/0", "scenario": "manual",
			"created": real["created"], "until": "2036-01-01T00:00:00Z", "offence": 1},
		{"id": 4243, "uuid": "y", "origin": "trailguard", "type": "ban", "scope": "Range", "value": "::/0", "scenario": "manual",
			"created": real["created"], "until": "2036-01-01T00:00:00Z", "offence": 1, "ledger_index": real["ledger_index"]},
	} {
		st["active"] = append(st["active"].([]any), forged)
	}
	data, _ = json.Marshal(st)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	ts = startServer(t, dir, detectionOn)
	a := ts.stream(t, bouncer, true)
	if !has(a.New, "198.51.100.77") || has(a.New, "0.0.0.0/0") || has(a.New, "::/0") || len(a.New) != 1 {
		t.Fatalf("bouncer served %+v, want the operator's ban of 198.51.100.77 alone", a.New)
	}
	code, body := ts.do(t, "GET", "/metrics", ts.admin, nil)
	if code != 200 || !strings.Contains(string(body), "trailguard_decisions_rejected_total 2\n") {
		t.Errorf("metrics (%d): want trailguard_decisions_rejected_total 2:\n%s", code, body)
	}
	rejected := 0
	for e, err := range ts.ledger.Entries(0) {
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(e.Data, []byte(`"block_decision_rejected"`)) {
			rejected++
		}
	}
	if rejected != 2 {
		t.Errorf("%d block_decision_rejected records in the ledger, want 2", rejected)
	}
}
