package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/server"
)

// TestVerifySince: an auditor keeps the checkpoint they verified and, at
// the next audit, verifies only what was appended since (verify --since
// FILE): the records after it are read and checked (one altered there is
// found), records before it are not read again, and a FILE that is not a
// checkpoint signed by the given key, or no longer in the ledger's
// history, is refused or a finding.
func TestVerifySince(t *testing.T) {
	dir := t.TempDir()
	cfg := server.Defaults()
	cfg.DataDir = dir
	cfg.Detection.Disabled = true
	appendAlice := func(n int, tag string) {
		srv, err := server.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		var recs [][]byte
		for i := range n {
			recs = append(recs, (&event.Event{Timestamp: time.Now().UTC(), Kind: "event", Category: []string{"authentication"}, Action: event.ActionLoginFail,
				Outcome: "failure", UserName: "alice", Path: "/login", ServiceName: "api", ID: tag + "-" + string(rune('a'+i))}).AppendJSON(nil))
		}
		if _, err := srv.Ledger().Append(context.Background(), recs...); err != nil {
			t.Fatal(err)
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
	appendAlice(5, "before")
	key := filepath.Join(dir, "keys", "signer.pub")
	led := filepath.Join(dir, "ledger")
	out, _, code := call(runVerify, led, "--key", key)
	if code != 0 {
		t.Fatalf("first audit: %d %s", code, out)
	}
	held := filepath.Join(t.TempDir(), "audit-1.checkpoint")
	cp, err := os.ReadFile(filepath.Join(led, "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(held, cp, 0o600)
	oldSize := regexp.MustCompile(`(?m)^.*\n(\d+)\n`).FindStringSubmatch(string(cp))[1]
	appendAlice(7, "after")

	out, errOut, code := call(runVerify, led, "--key", key, "--since", held)
	m := regexp.MustCompile(`since the checkpoint of tree size (\d+) .*the (\d+) records after it were read and checked`).FindStringSubmatch(out)
	if code != 0 || m == nil || m[1] != oldSize {
		t.Fatalf("verify --since: %d, size %s held\n%s%s", code, oldSize, out, errOut)
	}
	total := regexp.MustCompile(`OK: .*: (\d+) records`).FindStringSubmatch(out)
	if total == nil || m[2] == "0" || total[1] == m[2] {
		t.Errorf("read %v of %v records: want only those after the held checkpoint\n%s", m[2], total, out)
	}

	// --json says the same as the text: the checkpoint started from, and
	// how many records after it were read; also when there are findings.
	sinceJSON := func(dir string, wantCode int) verifySince {
		t.Helper()
		out, errOut, code := call(runVerify, dir, "--key", key, "--since", held, "--json")
		var got struct {
			Records  uint64
			Findings []ledger.Finding
			Since    *verifySince
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || code != wantCode || got.Since == nil {
			t.Fatalf("verify --since --json: exit %d (want %d), %v\n%s%s", code, wantCode, err, out, errOut)
		}
		if (len(got.Findings) == 0) != (wantCode == 0) {
			t.Fatalf("verify --since --json: exit %d with findings %+v", code, got.Findings)
		}
		if got.Records == 0 || got.Since.RecordsChecked >= got.Records {
			t.Errorf("verify --since --json: %d of %d records checked: want only those after the held checkpoint", got.Since.RecordsChecked, got.Records)
		}
		return *got.Since
	}
	js := sinceJSON(led, 0)
	if fmt.Sprint(js.TreeSize) != oldSize || fmt.Sprint(js.RecordsChecked) != m[2] || js.File != held || js.Signed.IsZero() || js.Signed.After(time.Now()) {
		t.Errorf("verify --since --json: %+v; want tree size %s, %s records checked, file %s, the signing time", js, oldSize, m[2], held)
	}

	// Alter one record before and one after the held checkpoint, in copies
	// (same length: only the leaf hash shows it).
	alter := func(id string) string {
		c := t.TempDir()
		if err := os.CopyFS(c, os.DirFS(led)); err != nil {
			t.Fatal(err)
		}
		segs, _ := filepath.Glob(filepath.Join(c, "seg", "*"))
		for _, s := range segs {
			b, _ := os.ReadFile(s)
			if i := bytes.Index(b, []byte(`"alice"`)); i >= 0 && bytes.Contains(b, []byte(id)) {
				j := bytes.Index(b, []byte(id))
				k := bytes.Index(b[j:], []byte(`"alice"`))
				b[j+k+1] = 'A'
				os.WriteFile(s, b, 0o600)
				return c
			}
		}
		t.Fatalf("%s not found in %v", id, segs)
		return ""
	}
	altered := alter("after-c")
	if _, _, code := call(runVerify, altered, "--key", key, "--since", held); code != 1 {
		t.Errorf("a record after the held checkpoint altered: exit %d, want 1 (finding)", code)
	}
	if js := sinceJSON(altered, 1); fmt.Sprint(js.TreeSize) != oldSize {
		t.Errorf("verify --since --json with a finding: %+v; want tree size %s", js, oldSize)
	}
	if out, _, code := call(runVerify, alter("before-c"), "--key", key, "--since", held); code != 0 {
		t.Errorf("a record before the held checkpoint is not read again: exit %d\n%s", code, out)
	}
	// Not a checkpoint signed by the key.
	other := t.TempDir()
	ocfg := cfg
	ocfg.DataDir = other
	osrv, err := server.New(ocfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	osrv.Close()
	for name, args := range map[string][]string{
		"another collector's checkpoint": {"--since", filepath.Join(other, "ledger", "checkpoint")},
		"a missing file":                 {"--since", filepath.Join(other, "nothing")},
	} {
		if _, errOut, code := call(runVerify, append([]string{led, "--key", key}, args...)...); code != 2 || !strings.Contains(errOut, "--since") {
			t.Errorf("%s: exit %d %s", name, code, errOut)
		}
	}
}
