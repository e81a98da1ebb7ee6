package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/server"
)

func init() {
	runners["report"] = runReport
	runners["verify-report"] = runVerifyReport
}

// TestReportCLI: trailguard report over a collector's data directory
// writes a PDF and the signed JSON beside it; verify-report accepts them,
// and names the figure in a copy edited by hand.
func TestReportCLI(t *testing.T) {
	dir := t.TempDir()
	cfg := server.Defaults()
	cfg.DataDir = dir
	cfg.Detection.Disabled = true
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs [][]byte
	for i := range 7 {
		recs = append(recs, (&event.Event{Timestamp: time.Now().UTC(), Kind: "event", Category: []string{"authentication"}, Action: event.ActionLoginFail,
			Outcome: "failure", UserName: "alice", ClientIP: "203.0.113.5", Path: "/login", ServiceName: "api", ID: event.NewID()}).AppendJSON(nil))
		_ = i
	}
	if _, err := srv.Ledger().Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "r.pdf")
	_, errOut, code := call(runReport, "--data", dir, "--standard", "pci-dss", "--from", "1h", "--format", "pdf", "--out", out)
	if code != 0 || !strings.Contains(errOut, "sha256 ") {
		t.Fatalf("report: %d %s", code, errOut)
	}
	if b, err := os.ReadFile(out); err != nil || !bytes.HasPrefix(b, []byte("%PDF-")) {
		t.Fatalf("pdf: %v", err)
	}
	js := filepath.Join(dir, "r.json")
	key := filepath.Join(dir, "keys", "signer.pub")
	// An auditor with the ledger and the public key only is told to check
	// a report instead of making one.
	audit := t.TempDir()
	if err := os.CopyFS(filepath.Join(audit, "ledger"), os.DirFS(filepath.Join(dir, "ledger"))); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := call(runReport, "--data", audit, "--standard", "pci-dss"); code == 0 || !strings.Contains(errOut, "trailguard verify-report FILE --key signer.pub") {
		t.Errorf("report without the signer key: %d %s", code, errOut)
	}
	stdout, _, code := call(runVerifyReport, js, "--key", key, "--data", dir)
	if code != 0 || !strings.Contains(stdout, "every figure computed again") {
		t.Fatalf("verify-report: %d\n%s", code, stdout)
	}
	b, _ := os.ReadFile(js)
	edited := bytes.Replace(b, []byte(`"authentication_failures":{"total":7`), []byte(`"authentication_failures":{"total":5`), 1)
	if bytes.Equal(edited, b) {
		t.Fatal("figure not found")
	}
	os.WriteFile(js, edited, 0o644)
	stdout, _, code = call(runVerifyReport, js, "--key", key, "--data", dir)
	if code != 1 || !strings.Contains(stdout, "do not match its signed hash") ||
		!strings.Contains(stdout, "figures.authentication_failures.total: the report says 5, the ledger gives 7") {
		t.Fatalf("verify-report of an edited file: %d\n%s", code, stdout)
	}
	// The facts outside the ledger come from --config: without it the
	// report says which it states, and how to give the collector's own.
	if !strings.Contains(errOut, "no --config: the report states retention none (kept for ever), 0 witnesses") || !strings.Contains(errOut, "--config FILE") {
		t.Errorf("report without --config does not say what it states: %s", errOut)
	}
	// Several forms of one signed report: the HTML and the PDF print the
	// hash of the JSON written beside them (two runs would sign two
	// reports, and the second JSON would overwrite the first's source).
	both := filepath.Join(dir, "q4.pdf")
	_, errOut, code = call(runReport, "--data", dir, "--standard", "soc2", "--from", "1h", "--format", "pdf,html", "--out", both)
	if code != 0 {
		t.Fatalf("report --format pdf,html: %d %s", code, errOut)
	}
	signed, _ := os.ReadFile(filepath.Join(dir, "q4.json"))
	html, _ := os.ReadFile(filepath.Join(dir, "q4.html"))
	pdf, _ := os.ReadFile(both)
	var head struct{ SHA256 string }
	if err := json.Unmarshal(signed, &head); err != nil || len(head.SHA256) != 64 || !bytes.Contains(html, []byte(head.SHA256)) ||
		!bytes.HasPrefix(pdf, []byte("%PDF-")) || !strings.Contains(errOut, "sha256 "+head.SHA256) {
		t.Fatalf("q4.json (%v, sha256 %q), q4.html and q4.pdf are not one report: %s", err, head.SHA256, errOut)
	}
	// A period before the trail began: said on standard error and on the
	// page, not a header of empty fields.
	page, errOut, code := call(runReport, "--data", dir, "--standard", "pci-dss", "--from", "2020-01-01T00:00:00Z", "--to", "2020-02-01T00:00:00Z", "--format", "html")
	if code != 0 || !strings.Contains(errOut, "the period ends before the trail began") || !strings.Contains(page, "none: no checkpoint was signed before the period") {
		t.Errorf("report before the trail: %d %s", code, errOut)
	}
	for _, args := range [][]string{{"--format", "pdf,html"}, {"--format", "pdf,doc", "--out", both}} {
		if _, errOut, code := call(runReport, append([]string{"--data", dir, "--standard", "soc2"}, args...)...); code != 2 || !strings.Contains(errOut, "--out FILE") && !strings.Contains(errOut, "separated by commas") {
			t.Errorf("report %q: %d %s", args, code, errOut)
		}
	}
	if _, errOut, code := call(runReport, "--data", dir, "--standard", "iso27001"); code != 2 || !strings.Contains(errOut, "pci-dss, soc2 or hipaa") {
		t.Fatalf("bad standard: %d %s", code, errOut)
	}
}
