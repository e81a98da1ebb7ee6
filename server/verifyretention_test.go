package server

import (
	"sync"
	"testing"

	"github.com/trailguard/trailguard/internal/ledgertest"
	"github.com/trailguard/trailguard/internal/verifyhook"
	"github.com/trailguard/trailguard/ledger"
)

// TestVerifyHoldsRetention: a verification started from the API on a real
// collector whose ledger holds records past its retention, with a
// retention pass forced where it would make the verification wrong (after
// the retention records are read, before the segments are): the pass
// deletes nothing, the result is clean, and the next pass, after the
// verification, deletes what expired. Without the hold the pass deleted
// segments under the verification, which reported their records deleted
// without a retention record: a false finding in an auditor-facing result.
func TestVerifyHoldsRetention(t *testing.T) {
	dir := t.TempDir()
	w := ledgertest.WritePCIDSS(t, dir, "test.example/trailguard", false)
	var mu sync.Mutex
	var during []ledger.PruneRecord
	var duringErr error
	forced := false
	// The legal hold keeps retention off until the test forces it: the
	// collector's own pass at start would delete before the verification.
	ts := startServerWith(t, dir, func(c *Config) { c.Retention = "pci-dss"; c.LegalHold = true }, nil)
	defer verifyhook.SetAfterPruned(func(d string) {
		if d != ts.ledger.Dir() {
			return
		}
		recs, err := ts.ledger.Prune()
		mu.Lock()
		defer mu.Unlock()
		during, duringErr, forced = append(during, recs...), err, true
	})()
	ts.ledger.SetLegalHold(false)

	if code, b := ts.do(t, "POST", "/v1/integrity/verify", ts.admin, nil); code != 202 {
		t.Fatalf("verify: %d %s", code, b)
	}
	waitVerify(t, ts)
	_, last := ts.ui.verify.status()
	if last == nil || last.Report == nil || last.OK == nil || !*last.OK || len(last.Report.Findings) != 0 || last.Report.Records < w.Size {
		t.Fatalf("verification with retention forced under it: %+v", last)
	}
	mu.Lock()
	if !forced || duringErr != nil || len(during) != 0 {
		t.Fatalf("retention during the verification (forced %t): deleted %+v (%v)", forced, during, duringErr)
	}
	mu.Unlock()

	// The hold ended with the verification.
	after, err := ts.ledger.Prune()
	if err != nil || len(after) == 0 {
		t.Fatalf("retention after the verification: deleted %+v (%v)", after, err)
	}
}
