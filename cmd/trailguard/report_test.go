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

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/report"
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
	// The facts outside the ledger are what the collector ran with: its
	// signed record of its start, which the report says it states.
	if !strings.Contains(errOut, "stating the settings the collector started with at") {
		t.Errorf("report does not say what it states: %s", errOut)
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

// reportWithConfig runs trailguard report --standard soc2 --from 1h over
// the data directory dir with the configuration file conf, and returns the
// signed JSON report it wrote, opened with dir's signer key, and what the
// command said on standard error.
func reportWithConfig(t *testing.T, dir, conf string) (*report.Report, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "r.json")
	_, errOut, code := call(runReport, "--data", dir, "--config", conf, "--standard", "soc2", "--from", "1h", "--out", out)
	if code != 0 {
		t.Fatalf("report: %d %s", code, errOut)
	}
	var rep *report.Report
	b, err := os.ReadFile(out)
	if err == nil {
		var keys []note.Verifier
		if keys, err = ledger.LoadVerifiers(filepath.Join(dir, "keys", "signer.pub")); err == nil {
			rep, _, err = report.Open(b, keys)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return rep, errOut
}

// TestReportStatesWhatTheCollectorRan: a report made offline states the
// settings the collector started with (its signed DIR/settings.json, whose
// hash its start event in the ledger carries), not the --config it is
// given, and names every difference; a settings file altered on disk is
// not used, and the report says so; a data directory without one (an
// older collector) is stated from --config, with the old warning.
func TestReportStatesWhatTheCollectorRan(t *testing.T) {
	dir := t.TempDir()
	witness := t.TempDir()
	cfg := server.Defaults()
	cfg.DataDir = dir
	cfg.Retention = "soc2"
	cfg.Witness = []string{witness}
	cfg.Detection.Disabled = true
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	settings, err := os.ReadFile(filepath.Join(dir, server.SettingsFile))
	if err != nil {
		t.Fatal(err)
	}
	var saved struct{ SHA256 string }
	if err := json.Unmarshal(settings, &saved); err != nil || len(saved.SHA256) != 64 {
		t.Fatalf("settings.json: %v %s", err, settings)
	}
	l, err := ledger.OpenReadOnly(filepath.Join(dir, "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	startCarries := false
	for e, err := range l.Entries(0) {
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(e.Data, []byte(`"sys_startup"`)) && bytes.Contains(e.Data, []byte("settings sha256 "+saved.SHA256)) {
			startCarries = true
		}
	}
	l.Close()
	if !startCarries {
		t.Errorf("no start event in the ledger carries the settings' sha256 %s", saved.SHA256)
	}

	// The operator hands the auditor's report another file: pci-dss, no
	// witness, detection on.
	conf := filepath.Join(t.TempDir(), "serve.yaml")
	os.WriteFile(conf, []byte("retention: pci-dss\n"), 0o600)
	cases := []struct {
		name      string
		prepare   func()
		retention string
		witnesses int
		source    string
		stderr    []string
		finding   string
	}{
		{"as the collector ran", func() {}, "soc2", 1, report.SettingsCollector,
			[]string{"stating the settings the collector started with", "retention: the collector ran with soc2, the configuration gives pci-dss",
				"witness: the collector ran with [" + witness + "], the configuration gives []", "detection: the collector ran it off, the configuration on"},
			"the configuration given to the report differs from what the collector ran with"},
		{"settings altered on disk", func() {
			os.WriteFile(filepath.Join(dir, server.SettingsFile), bytes.Replace(settings, []byte(`"retention":"soc2"`), []byte(`"retention":"hipaa"`), 1), 0o600)
		}, "pci-dss", 0, report.SettingsConfiguration,
			[]string{"settings.json: its settings do not match their signed hash (altered)"},
			"the collector's signed record of its settings was not used"},
		{"an older collector: no settings saved", func() { os.Remove(filepath.Join(dir, server.SettingsFile)) }, "pci-dss", 0, report.SettingsConfiguration,
			nil, ""},
	}
	for _, c := range cases {
		c.prepare()
		rep, errOut := reportWithConfig(t, dir, conf)
		st := rep.State
		if st.Retention.Profile != c.retention || len(st.Witnesses) != c.witnesses || st.Settings == nil || st.Settings.Source != c.source {
			t.Errorf("%s: stated retention %q, %d witnesses, settings %+v; want %q, %d, source %s", c.name, st.Retention.Profile, len(st.Witnesses), st.Settings, c.retention, c.witnesses, c.source)
		}
		for _, w := range c.stderr {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: standard error lacks %q:\n%s", c.name, w, errOut)
			}
		}
		found := c.finding == ""
		for _, f := range rep.Summary.TopFindings {
			if c.finding != "" && strings.Contains(f, c.finding) {
				found = true
			}
			if c.finding == "" && strings.HasPrefix(f, "Settings:") {
				t.Errorf("%s: finding %q", c.name, f)
			}
		}
		if !found {
			t.Errorf("%s: no top finding %q in %q", c.name, c.finding, rep.Summary.TopFindings)
		}
	}
}

// TestReportStaleSettings: settings.json put back from an earlier start
// (signed all the same) is not stated as the collector's settings: the
// newest start event in the ledger names other settings, and the report
// says the file is stale and states its configuration. The current file
// is still used after a restart with the same settings.
func TestReportStaleSettings(t *testing.T) {
	dir := t.TempDir()
	start := func(retention string) []byte {
		t.Helper()
		cfg := server.Defaults()
		cfg.DataDir = dir
		cfg.Retention = retention
		cfg.Detection.Disabled = true
		srv, err := server.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, server.SettingsFile))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	conf := filepath.Join(t.TempDir(), "serve.yaml")
	os.WriteFile(conf, []byte("retention: pci-dss\n"), 0o600)
	run := func() (report.State, string) {
		t.Helper()
		rep, errOut := reportWithConfig(t, dir, conf)
		return rep.State, errOut
	}
	old := start("soc2")
	start("hipaa")
	if st, errOut := run(); st.Retention.Profile != "hipaa" || st.Settings.Source != report.SettingsCollector {
		t.Fatalf("current settings: retention %q, %+v\n%s", st.Retention.Profile, st.Settings, errOut)
	}
	if err := os.WriteFile(filepath.Join(dir, server.SettingsFile), old, 0o600); err != nil {
		t.Fatal(err)
	}
	st, errOut := run()
	if st.Retention.Profile != "pci-dss" || st.Settings.Source != report.SettingsConfiguration ||
		!strings.Contains(st.Settings.Problem, "stale") || !strings.Contains(errOut, "stale") {
		t.Fatalf("settings.json of an earlier start put back: stated retention %q, settings %+v\n%s", st.Retention.Profile, st.Settings, errOut)
	}
	t.Log(st.Settings.Problem)
	// The same settings again: the newest start names the same hash.
	start("hipaa")
	if st, errOut := run(); st.Retention.Profile != "hipaa" || st.Settings.Source != report.SettingsCollector {
		t.Fatalf("restart with the same settings: retention %q, %+v\n%s", st.Retention.Profile, st.Settings, errOut)
	}
}
