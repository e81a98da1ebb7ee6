package server

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
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

// TestOldDecisionsFileCannotReviveUnban: someone with write access to the
// data directory keeps a copy of decisions.json while a ban is in force;
// the operator lifts the ban; with the collector stopped, the copy is put
// back with its through raised past the unban, so that the catch-up from
// the ledger would start after it. The ban's creation record is real, so
// the file's check alone let it back into force. It stays lifted, the
// stale file is recorded as rejected, and a ban made after the copy (which
// the copy does not hold) is still served.
func TestOldDecisionsFileCannotReviveUnban(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, detectionOn)
	bouncer := ts.token(t, "nginx-bouncer", access.RoleBouncer)
	ban := func(value string) int64 {
		code, body := ts.do(t, "POST", "/v1/decisions", ts.admin, strings.NewReader(`{"scope":"Ip","value":"`+value+`","duration":"2h","reason":"test"}`))
		if code != 201 {
			t.Fatalf("manual ban of %s: %d %s", value, code, body)
		}
		var d struct{ ID int64 }
		if err := json.Unmarshal(body, &d); err != nil || d.ID == 0 {
			t.Fatalf("ban answer %s: %v", body, err)
		}
		return d.ID
	}
	lifted := ban("198.51.100.77")
	ts.stop(t)
	path := filepath.Join(dir, "decisions.json")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	ts = startServer(t, dir, detectionOn)
	if code, body := ts.do(t, "DELETE", "/v1/decisions/"+strconv.FormatInt(lifted, 10), ts.admin, nil); code != 200 {
		t.Fatalf("unban: %d %s", code, body)
	}
	ban("198.51.100.88")
	through := ts.ledger.Size()
	ts.stop(t)

	var st map[string]any
	if err := json.Unmarshal(old, &st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(old), "198.51.100.77") {
		t.Fatalf("the old copy does not hold the ban: %s", old)
	}
	st["through"] = through
	data, _ := json.Marshal(st)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	ts = startServer(t, dir, detectionOn)
	a := ts.stream(t, bouncer, true)
	if has(a.New, "198.51.100.77") || !has(a.New, "198.51.100.88") || len(a.New) != 1 {
		t.Fatalf("bouncer served %+v, want the later ban of 198.51.100.88 alone (198.51.100.77 was lifted)", a.New)
	}
	code, body := ts.do(t, "GET", "/metrics", ts.admin, nil)
	if code != 200 || !strings.Contains(string(body), "trailguard_decisions_rejected_total 1\n") {
		t.Errorf("metrics (%d): want trailguard_decisions_rejected_total 1:\n%s", code, body)
	}
	rejected := 0
	for e, err := range ts.ledger.Entries(0) {
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(e.Data, []byte(`"block_decision_rejected"`)) && bytes.Contains(e.Data, []byte("198.51.100.77")) {
			rejected++
		}
	}
	if rejected != 1 {
		t.Errorf("%d block_decision_rejected records of 198.51.100.77 in the ledger, want 1", rejected)
	}
}
