package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/ui"
)

// proofCase is one check of proof.js: a record, the API's inclusion bundle
// (possibly altered), the verifier key, and what the check must say.
type proofCase struct {
	Name   string          `json:"name"`
	Record []byte          `json:"record"`
	Bundle json.RawMessage `json:"bundle"`
	Key    string          `json:"key"`
	Want   bool            `json:"want"`
}

// TestProofJS checks the browser's proof code (ui/assets/js/proof.js, run
// by Node.js, whose Web Crypto is the browsers' API) against bundles made
// by the ledger: every index of trees of several sizes verifies, and every
// alteration fails: another record, index, tree size, proof hash, a proof
// cut short or padded, a root or note changed after signing, another key.
func TestProofJS(t *testing.T) {
	node := testenv.Tool(t, "node", "apt-get install nodejs")
	skey, vkey, err := ledger.GenerateKey("proof-test.example/log")
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := ledger.GenerateKey("proof-test.example/log")
	signer, _ := note.NewSigner(skey)
	var cases []proofCase
	for _, size := range []int{1, 2, 3, 7, 8, 9, 100, 257} {
		dir := t.TempDir()
		l, err := ledger.Open(dir, ledger.Options{Origin: "proof-test.example/log", Signer: signer})
		if err != nil {
			t.Fatal(err)
		}
		recs := make([][]byte, size)
		for i := range recs {
			recs[i] = fmt.Appendf(nil, `{"@timestamp":"2026-11-30T00:00:00Z","message":"record %d of %d <&>"}`, i, size)
		}
		if _, err := l.Append(context.Background(), recs...); err != nil {
			t.Fatal(err)
		}
		signed, err := l.Checkpoint(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{0, size / 2, size - 1} {
			b, err := l.ProveInclusion(uint64(i), signed)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := json.Marshal(b)
			name := fmt.Sprintf("size %d index %d", size, i)
			cases = append(cases, proofCase{name, recs[i], raw, vkey, true})
			if size == 1 && i > 0 {
				continue
			}
			alter := func(what string, key string, rec []byte, f func(m map[string]any)) {
				var m map[string]any
				json.Unmarshal(raw, &m)
				if f != nil {
					f(m)
				}
				b, _ := json.Marshal(m)
				cases = append(cases, proofCase{name + ": " + what, rec, b, key, false})
			}
			other := append([]byte(nil), recs[i]...)
			other[len(other)-3] ^= 1
			alter("another record", vkey, other, nil)
			alter("another key", otherKey, recs[i], nil)
			alter("note text changed after signing", vkey, recs[i], func(m map[string]any) {
				m["checkpoint"] = strings.Replace(m["checkpoint"].(string), fmt.Sprintf("\n%d\n", size), fmt.Sprintf("\n%d\n", size+1), 1)
			})
			if size > 1 {
				alter("another index", vkey, recs[i], func(m map[string]any) { m["index"] = (i + 1) % size })
				alter("a proof hash changed", vkey, recs[i], func(m map[string]any) {
					p := m["proof"].([]any)
					p[0] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
				})
				alter("proof cut short", vkey, recs[i], func(m map[string]any) { p := m["proof"].([]any); m["proof"] = p[:len(p)-1] })
				alter("proof padded", vkey, recs[i], func(m map[string]any) { m["proof"] = append(m["proof"].([]any), m["proof"].([]any)[0]) })
				alter("another tree size", vkey, recs[i], func(m map[string]any) { m["tree_size"] = size + 1 })
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	work := t.TempDir()
	src, err := fs.ReadFile(ui.Assets(), "js/proof.js")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(work, "proof.mjs"), src, 0o644)
	vec, _ := json.Marshal(cases)
	os.WriteFile(filepath.Join(work, "cases.json"), vec, 0o644)
	script := `
import { readFileSync } from "node:fs";
import { checkInclusion } from "./proof.mjs";
const cases = JSON.parse(readFileSync("./cases.json", "utf8"));
const out = [];
for (const c of cases) {
  const rec = Uint8Array.from(Buffer.from(c.record, "base64"));
  const r = await checkInclusion(rec, c.bundle, c.key);
  out.push({ ok: r.ok, steps: r.steps });
}
console.log(JSON.stringify(out));
`
	os.WriteFile(filepath.Join(work, "run.mjs"), []byte(script), 0o644)
	cmd := exec.Command(node, "--no-warnings", "run.mjs")
	cmd.Dir = work
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v %s", err, outb)
	}
	var res []struct {
		OK    bool `json:"ok"`
		Steps []struct{ Name, Status, Detail string }
	}
	if err := json.Unmarshal(outb, &res); err != nil || len(res) != len(cases) {
		t.Fatalf("node output: %v %s", err, outb)
	}
	sigChecked := 0
	for i, c := range cases {
		if res[i].OK != c.Want {
			t.Errorf("%s: ok=%v, want %v: %+v", c.Name, res[i].OK, c.Want, res[i].Steps)
		}
		for _, s := range res[i].Steps {
			if s.Name == "Checkpoint signature" && s.Status == "ok" {
				sigChecked++
			}
		}
	}
	if sigChecked == 0 {
		t.Errorf("no Ed25519 signature was checked (Web Crypto without Ed25519?)")
	}
	t.Logf("%d cases, %d with the signature checked", len(cases), sigChecked)
}
