package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trailguard/trailguard/detect"
)

// TestRuleFilesRecorded: someone with write access to the data directory
// drops a rule file into DATA/rules that bans every client, and later
// changes it. Rules are loaded as they are (docs/detection.md), so the
// trail cannot refuse them, but each start records in the ledger the rule
// files it ran with and each one's SHA-256: the dropped file, then its
// changed content, are on the signed record. Before, nothing in the ledger
// named the rule files: a rule of the same id as a built-in one, changed
// to match everything, left no trace but its bans.
func TestRuleFilesRecorded(t *testing.T) {
	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rulesDir, 0o700); err != nil {
		t.Fatal(err)
	}
	evil := filepath.Join(rulesDir, "evil.yml")
	contents := []string{
		"title: Everyone\nname: everyone\nlogsource: {category: webserver}\ndetection: {sel: {event.outcome: failure}, condition: sel}\nresponse: {block: client.ip}\n",
		"title: Everyone\nname: everyone\nlogsource: {category: webserver}\ndetection: {sel: {event.kind: event}, condition: sel}\nresponse: {block: client.ip}\n",
	}
	var want []string
	for _, content := range contents {
		if err := os.WriteFile(evil, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(content))
		want = append(want, hex.EncodeToString(sum[:]))
		ts := startServer(t, dir, detectionOn)
		// The record goes through the collector's own audit logger,
		// whose writer appends it after the start returns: read until it
		// is there.
		var got [][]detect.RuleFile
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got = rulesLoaded(t, ts)
			if len(got) >= len(want) || time.Now().After(deadline) {
				break
			}
		}
		ts.stop(t)
		if len(got) != len(want) {
			t.Fatalf("%d %s records after %d starts", len(got), ActionRulesLoaded, len(want))
		}
		for i, files := range got {
			var found, builtin bool
			for _, f := range files {
				found = found || f.Name == evil && f.SHA256 == want[i] && f.Size == len(contents[i])
				builtin = builtin || filepath.Base(f.Name) == "brute_force.yml" && len(f.SHA256) == 64
			}
			if !found || !builtin {
				t.Errorf("start %d recorded %+v, want %s sha256 %s and the built-in files", i+1, files, evil, want[i])
			}
		}
	}
}

// rulesLoaded returns the files of each detection_rules_loaded record in
// the collector's ledger, in order.
func rulesLoaded(t *testing.T, ts *testServer) [][]detect.RuleFile {
	t.Helper()
	var got [][]detect.RuleFile
	for e, err := range ts.ledger.Entries(0) {
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(e.Data, []byte(`"`+ActionRulesLoaded+`"`)) {
			continue
		}
		var doc struct {
			Event struct{ Action string }
			Files []detect.RuleFile `json:"trailguard.rules.files"`
		}
		if err := json.Unmarshal(e.Data, &doc); err != nil {
			t.Fatalf("record %d: %v: %s", e.Index, err, e.Data)
		}
		if doc.Event.Action == ActionRulesLoaded {
			got = append(got, doc.Files)
		}
	}
	return got
}
