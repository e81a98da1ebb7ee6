package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/internal/ledgertest"
	"github.com/trailguard/trailguard/report"
)

// TestPrunedLedgerWording: a ledger whose oldest segments retention
// removed (policy pci-dss, records signed 400 days before), verified and
// reported by the real command. verify said "360 records (290 pruned)",
// which reads as 360 records checked, and "(all signed by T)"; the report
// said "70 (indices 0 to 360)" and, offline without --config, stated
// retention "none (kept for ever)" beside records removed under pci-dss.
// Now both say which records were read, which retention removed, when and
// per which policy, and that the rest is consistent with the checkpoint;
// the report names a policy in the signed records that differs from the
// one it states.
func TestPrunedLedgerWording(t *testing.T) {
	bin := buildTrailguard(t)
	data := t.TempDir()
	w := ledgertest.WritePCIDSS(t, data, "trailguard/pruned", true)
	pruned, end, day, size := w.Pruned, w.End, w.Day, w.Size
	if len(pruned) < 2 {
		t.Fatalf("the prune wrote %d retention records; this test counts them and wants more than one", len(pruned))
	}

	out, err := exec.Command(bin, "verify", "--data", data).CombinedOutput()
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	for _, want := range []string{
		fmt.Sprintf("records %d to %d (%d) read and checked; records 0 to %d were removed by retention (signed retention records below): their leaf hashes remain in the hash tiles, and with them the remaining log is consistent with the", end, size-1, size-end, end-1),
		fmt.Sprintf("the newest of tree size %d", size),
		fmt.Sprintf("pruned-by-policy: records 0 to %d were removed by retention on %s", pruned[0].End-1, day),
		"per policy pci-dss (keep one calendar year and at least 365 days): the earliest signed checkpoint covering them is from",
		"signed retention record pruned.log#0",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("verify does not say %q:\n%s", want, out)
		}
	}
	for _, old := range []string{"pruned)", "all signed by"} {
		if strings.Contains(string(out), old) {
			t.Errorf("verify still says %q:\n%s", old, out)
		}
	}

	js := filepath.Join(t.TempDir(), "r.json")
	if out, err := exec.Command(bin, "report", "--data", data, "--standard", "pci-dss", "--from", "12000h", "--out", js).CombinedOutput(); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(js)
	var s struct{ Report report.Report }
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	r := s.Report
	removed := fmt.Sprintf("records 0 to %d were removed by retention on %s per policy pci-dss (%d signed retention records)", end-1, day, len(pruned))
	var all []string
	for _, f := range r.Summary.Totals {
		all = append(all, f.Label+": "+f.Value)
	}
	for _, it := range r.Items {
		for _, f := range it.Facts {
			all = append(all, f.Label+": "+f.Value)
		}
		all = append(all, it.Notes...)
	}
	text := strings.Join(all, "\n")
	for _, want := range []string{
		fmt.Sprintf("Ledger records in the period: %d (indices %d to %d; %s)", size-end, end, size-1, removed),
		fmt.Sprintf("Before this report, %s: those %d records of the period could not be read. Their leaf hashes remain in the ledger's hash tiles: with them, the remaining records %d to %d give the root signed by checkpoint %d.", removed, end, end, size-1, size),
		"Removed by retention (the ledger's signed retention records): " + removed,
		"The ledger's signed retention records name policy pci-dss; the retention stated above is none (kept for ever)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the report does not say %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, fmt.Sprintf("(indices 0 to %d)", size)) {
		t.Errorf("the report still counts the removed records in the period's indices:\n%s", text)
	}
}
