package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/report"
	"github.com/trailguard/trailguard/server"
)

func init() {
	// Reports made by `serve` (GET /v1/reports) name this binary too.
	server.Version = strings.TrimPrefix(versionLine(), "trailguard ")
	register("report", "compliance report (PCI DSS, SOC 2, HIPAA) from the ledger: signed JSON, HTML or PDF", func(args []string) int {
		return runReport(args, os.Stdout, os.Stderr)
	})
	register("verify-report", "check a report's signature and compute its figures again from the ledger", func(args []string) int {
		return runVerifyReport(args, os.Stdout, os.Stderr)
	})
}

func runReport(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("report", `usage: trailguard report --standard pci-dss|soc2|hipaa [--from TIME] [--to TIME] [--format json|html|pdf] [--data DIR] [--out FILE]

Computes a compliance report from the collector's ledger (it may be running):
each requirement with a status (met, gap, not applicable, not assessable from
logs) and the evidence the trail gives. The JSON form is signed with the
collector's key and is the source of the HTML and PDF forms, which print its
SHA-256; with --out and --format html or pdf, the signed JSON is written beside
it (FILE with .json). Several forms of the same signed report at once:
--format pdf,html --out FILE writes FILE.pdf, FILE.html and FILE.json. What the
ledger cannot show (retention, witnesses, rules) is stated as the collector
ran with it: its signed record of the settings it started with
(DIR/settings.json); the report names every way --config and TRAILGUARD_*
differ from it. A data directory without that record (a collector before
this version) is stated as --config gives it: pass the collector's own.
Check a report with trailguard verify-report.`, stdout, stderr)
	fs.examples = `trailguard report --standard pci-dss --format pdf --out pci-q4.pdf --from 2026-10-01T00:00:00Z --to 2027-01-01T00:00:00Z
trailguard report --standard soc2 --from 720h --format pdf,html --out soc2-monthly`
	data := fs.dataFlag("the collector's data directory `DIR` (env TRAILGUARD_DATA)")
	std := fs.String("standard", "", "`STANDARD`: pci-dss, soc2 or hipaa")
	from := fs.String("from", "720h", "start of the period: RFC 3339 `TIME` or a duration back from now")
	to := fs.String("to", "", "end of the period: RFC 3339 `TIME` or a duration back from now (default now)")
	format := fs.String("format", "json", "`FORMAT`: json, html or pdf, or several (pdf,html) with --out")
	out := fs.String("out", "", "write to `FILE` instead of standard output")
	config := fs.String("config", "", "the collector's YAML `FILE`: compared with what the collector ran with (DIR/settings.json), stated when the collector recorded none")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "trailguard report: "+format+"\n", a...)
		return 1
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "trailguard report: unexpected argument %q\n", pos[0])
		return 2
	}
	// Every value is checked before anything is read or said: a wrong
	// --standard was found by report.Compute, after the data directory's
	// checks and a note on the settings, and --from and --to exited 1.
	if *std == "" {
		return fs.missing("--standard (pci-dss, soc2 or hipaa)")
	}
	if !knownStandard(*std) {
		return fs.invalid("standard", *std, "want pci-dss, soc2 or hipaa")
	}
	formats := strings.Split(*format, ",")
	for _, f := range formats {
		switch f {
		case "json", "html", "pdf":
		default:
			return fs.invalid("format", *format, "want json, html or pdf, or several separated by commas (pdf,html)")
		}
	}
	if len(formats) > 1 && *out == "" {
		fmt.Fprintf(stderr, "trailguard report: --format %s writes several files: give --out FILE (each form is FILE with its extension: FILE.pdf, FILE.html, FILE.json)\n", *format)
		return 2
	}
	if *out == "" && slices.Contains(formats, "pdf") && isTerminal(stdout) {
		fmt.Fprintln(stderr, "trailguard report: --format pdf is binary and standard output is a terminal: give --out FILE (or redirect it: > report.pdf)")
		return 2
	}
	now := time.Now()
	fromT, err := parseWhen(*from, now)
	if err != nil {
		return fs.invalid("from", *from, err.Error())
	}
	toT := now
	if *to != "" {
		if toT, err = parseWhen(*to, now); err != nil {
			return fs.invalid("to", *to, err.Error())
		}
	}
	if err := requireDataDir(*data); err != nil {
		return fail("%v", err)
	}
	cargs := []string{"--data", *data}
	if *config != "" {
		cargs = append(cargs, "--config", *config)
	}
	cfg, err := server.LoadConfig(cargs, os.Environ())
	if err != nil {
		return fail("%v", err)
	}
	// Said before the key is looked for: a directory that is not a
	// collector's was answered with the missing key and how to give one.
	if !hasLedger(filepath.Join(cfg.DataDir, "ledger")) {
		return fail("%s", noLedgerIn(filepath.Join(cfg.DataDir, "ledger")))
	}
	signerPath := cfg.SignerKey
	if signerPath == "" {
		signerPath = filepath.Join(cfg.DataDir, "keys", "signer.key")
	}
	signer, err := ledger.LoadSigner(signerPath)
	if err != nil {
		return fail("%v (the report is signed with the collector's key: run report where the collector's data directory and key are, or give signer_key with --config; with the public key alone, check a signed report with trailguard verify-report FILE --key signer.pub --data DIR)", err)
	}
	cacheKey, err := ledger.DeriveKey(signerPath, report.CachePurpose)
	if err != nil {
		return fail("%v", err)
	}
	keys, err := ledger.LoadVerifiers(strings.TrimSuffix(signerPath, ".key") + ".pub")
	if err != nil {
		return fail("%v", err)
	}
	l, err := ledger.OpenReadOnly(filepath.Join(cfg.DataDir, "ledger"))
	if err != nil {
		return fail("%v", err)
	}
	defer l.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	state, err := server.ReportState(ctx, cfg, l, keys)
	if err != nil {
		return fail("%v", err)
	}
	switch si := state.Settings; {
	case si != nil && si.Source == report.SettingsCollector:
		fmt.Fprintf(stderr, "trailguard report: stating the settings the collector started with at %s (%s, signed with its key)\n",
			si.Started.Format(time.RFC3339), filepath.Join(cfg.DataDir, server.SettingsFile))
		for _, d := range si.Differences {
			fmt.Fprintf(stderr, "trailguard report: the configuration given differs: %s (the report states what the collector ran with, and says so)\n", d)
		}
	default:
		if si != nil && si.Problem != "" {
			fmt.Fprintf(stderr, "trailguard report: %s: the report states the configuration given, and says so\n", si.Problem)
		}
		if *config == "" {
			// The report signs these facts as the collector's: defaults
			// where the collector ran with a configuration file would state
			// "no witness" and "kept for ever" for a collector that has both.
			ret := cfg.Retention
			if ret == "" {
				ret = "none (kept for ever)"
			}
			fmt.Fprintf(stderr, "trailguard report: no --config: the report states retention %s, %d witnesses and the rules of the defaults and TRAILGUARD_* variables; if the collector runs with a configuration file, pass it with --config FILE, or take the report from the running collector (GET /v1/reports)\n",
				ret, len(cfg.Witness))
		}
	}
	rep, err := report.Compute(ctx, l, report.Options{Standard: *std, From: fromT, To: toT, Verifiers: keys, State: state,
		Generator: versionLine(), Cache: filepath.Join(cfg.DataDir, "report-cache"), CacheKey: cacheKey})
	if errors.Is(err, report.ErrStandard) {
		fmt.Fprintf(stderr, "trailguard report: --standard %q: want pci-dss, soc2 or hipaa\n", *std)
		return 2
	}
	if err != nil {
		return fail("%v", err)
	}
	if n := rep.State.Integrity.CacheRejected; n > 0 {
		fmt.Fprintf(stderr, "trailguard report: %d chunks of figures in %s failed their authentication (altered or planted on disk): not used; their records were read again from the ledger, and the files moved aside (.rejected)\n",
			n, filepath.Join(cfg.DataDir, "report-cache"))
	}
	file, sum, err := report.Sign(rep, signer)
	if err != nil {
		return fail("%v", err)
	}
	// Every form is rendered from the one signed report, so the hash the
	// HTML and PDF print is the JSON's beside them (two runs would make two
	// reports: the period's end and the generation time differ).
	base := strings.TrimSuffix(*out, filepath.Ext(*out))
	var written []string
	for _, f := range formats {
		body := file
		switch f {
		case "html":
			body, err = report.HTML(rep, sum)
		case "pdf":
			body, err = report.PDF(rep, sum)
		}
		if err != nil {
			return fail("%v", err)
		}
		if *out == "" {
			stdout.Write(body)
			continue
		}
		path := *out
		if len(formats) > 1 {
			path = base + "." + f
		}
		if err := os.WriteFile(path, body, 0o644); err != nil {
			return fail("%v", err)
		}
		written = append(written, path)
	}
	if *out != "" && !slices.Contains(formats, "json") {
		js := base + ".json"
		if err := os.WriteFile(js, file, 0o644); err != nil {
			return fail("%v", err)
		}
		fmt.Fprintf(stderr, "signed JSON (the source of %s): %s\n", strings.Join(written, ", "), js)
	}
	if rep.Checkpoint.Origin == "" {
		fmt.Fprintf(stderr, "trailguard report: no checkpoint was signed before %s: the period ends before the trail began, so the report covers no record; give a --to after the ledger's first checkpoint\n", rep.To.Format(time.RFC3339))
	}
	fmt.Fprintf(stderr, "%s report, %s to %s: %d met, %d gaps, %d not assessable; checkpoint %d; sha256 %s\n", *std,
		rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339), rep.Summary.Met, rep.Summary.Gaps, rep.Summary.NotAssessable,
		rep.Checkpoint.TreeSize, sum)
	return 0
}

// knownStandard reports whether report can be made for the standard id.
func knownStandard(id string) bool {
	for _, s := range report.Standards() {
		if s.ID == id {
			return true
		}
	}
	return false
}

// parseWhen reads an RFC 3339 time or a duration back from now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("want an RFC 3339 time (2026-11-01T00:00:00Z) or a duration back from now (720h)")
	}
	return t, nil
}

func runVerifyReport(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("verify-report", `usage: trailguard verify-report FILE --key FILE [--data DIR]

Checks a signed JSON report: its bytes against their SHA-256, the signature
with the collector's public key, and — given the collector's data directory —
that its checkpoint is part of the ledger and that every figure computed
again from the ledger is the one the report states (a differing figure is
named). Exit status 0 only if all of that holds.`, stdout, stderr)
	var keys keyList
	fs.Var(&keys, "key", "verifier key `FILE` (the collector's signer.pub; repeat for rotated keys)")
	data := fs.String("data", "", "the collector's data directory `DIR`: recompute the figures from DIR/ledger")
	fs.Var(aliasValue{data}, "ledger", "")
	fs.hidden["ledger"] = true
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return fs.missing("the report FILE")
	}
	if len(keys) == 0 {
		return fs.missing("--key FILE (an auditor uses their own copy of the collector's public key)")
	}
	vs, err := loadVerifierKeys(keys)
	if err != nil {
		fmt.Fprintln(stderr, "trailguard verify-report:", err)
		return 1
	}
	file, err := os.ReadFile(pos[0])
	if err != nil {
		fmt.Fprintln(stderr, "trailguard verify-report:", err)
		return 1
	}
	okAll := true
	rep, sum, err := report.Open(file, vs)
	if err != nil {
		okAll = false
		fmt.Fprintf(stdout, "FAIL: %v\n", err)
		if rep, err = report.Unverified(file); err != nil {
			return 1
		}
		fmt.Fprintln(stdout, "  (the figures are still compared with the ledger below, to name what was changed)")
	} else {
		fmt.Fprintf(stdout, "OK: signature verified with %s; report sha256 %s\n", vs[0].Name(), sum)
	}
	fmt.Fprintf(stdout, "  %s, %s to %s, checkpoint %s tree size %d root %s\n", rep.Standard, rep.From.Format(time.RFC3339),
		rep.To.Format(time.RFC3339), rep.Checkpoint.Origin, rep.Checkpoint.TreeSize, rep.Checkpoint.RootHash)
	if *data == "" {
		fmt.Fprintln(stdout, "  figures not recomputed (give --data DIR, the collector's data directory)")
		if okAll {
			return 0
		}
		return 1
	}
	dir := *data
	if st, err := os.Stat(filepath.Join(dir, "ledger")); err == nil && st.IsDir() {
		dir = filepath.Join(dir, "ledger")
	}
	l, err := ledger.OpenReadOnly(dir)
	if err != nil {
		fmt.Fprintln(stderr, "trailguard verify-report:", err)
		return 1
	}
	defer l.Close()
	rc, err := report.Recompute(context.Background(), l, rep, vs)
	if err != nil {
		fmt.Fprintln(stderr, "trailguard verify-report:", err)
		return 1
	}
	if rc.CheckpointOK {
		fmt.Fprintf(stdout, "OK: checkpoint %d is signed and part of the ledger at %s\n", rep.Checkpoint.TreeSize, dir)
	} else {
		okAll = false
		fmt.Fprintf(stdout, "FAIL: %s\n", rc.Problem)
	}
	if len(rc.Differences) == 0 {
		fmt.Fprintf(stdout, "OK: every figure computed again from the ledger's %d records matches\n", rep.Figures.Records)
	} else {
		okAll = false
		fmt.Fprintf(stdout, "FAIL: %d values differ from the ledger:\n", len(rc.Differences))
		for _, d := range rc.Differences {
			fmt.Fprintf(stdout, "  %s\n", d)
		}
	}
	if okAll {
		return 0
	}
	return 1
}
