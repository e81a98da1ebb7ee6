package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/ledgertest"
)

// TestLedgerVerifiedWording: the ledger_verified event a real collector
// records after verifying a real ledger, for a ledger never pruned, one
// that retention pruned under the policy the collector states, and one
// pruned under another policy than the collector's (and than none). The
// event must say how many records were checked, or, once pruned, which
// were read and checked and which retention removed, when and per which
// policy, and, when that is not the collector's retention, both policies.
// It said "records 0 to N removed by retention (signed retention
// records)", with no date nor policy, and nothing of a policy that differs.
func TestLedgerVerifiedWording(t *testing.T) {
	const origin = "test.example/trailguard" // startServer's
	type facts struct {
		records     uint64 // of the verification
		checkpoints int
		end         uint64 // records [0, end) were pruned
		day         string // when
	}
	for _, tc := range []struct {
		name   string
		prune  bool   // pci-dss removes the ledger's oldest segments
		stated string // the collector's retention setting
		want   func(f facts) []string
		not    []string
	}{{
		name: "unpruned", stated: "",
		want: func(f facts) []string {
			return []string{fmt.Sprintf("ledger verified: %d records, %d checkpoints", f.records, f.checkpoints)}
		},
		not: []string{"retention", "policy", "removed"},
	}, {
		name: "pruned under the stated policy", prune: true, stated: "pci-dss",
		want: func(f facts) []string {
			return []string{
				fmt.Sprintf("ledger verified: records %d to %d read and checked; records 0 to %d removed by retention", f.end, f.records-1, f.end-1),
				fmt.Sprintf("(signed retention records: records 0 to %d on %s per policy pci-dss)", f.end-1, f.day),
				fmt.Sprintf("consistent with %d checkpoints", f.checkpoints),
			}
		},
		not: []string{"this collector's retention", "do not verify", "no signed retention record"},
	}, {
		name: "pruned under another policy than the stated one", prune: true, stated: "hipaa",
		want: func(f facts) []string {
			return []string{
				fmt.Sprintf("ledger verified: records %d to %d read and checked; records 0 to %d removed by retention", f.end, f.records-1, f.end-1),
				fmt.Sprintf("(signed retention records: records 0 to %d on %s per policy pci-dss)", f.end-1, f.day),
				fmt.Sprintf("consistent with %d checkpoints", f.checkpoints),
				"removed under policy pci-dss, but this collector's retention is hipaa",
			}
		},
	}, {
		name: "pruned, and the collector keeps everything", prune: true, stated: "",
		want: func(f facts) []string {
			return []string{
				fmt.Sprintf("records 0 to %d on %s per policy pci-dss", f.end-1, f.day),
				"removed under policy pci-dss, but this collector's retention is none (kept for ever)",
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := ledgertest.WritePCIDSS(t, dir, origin, tc.prune)
			f := facts{end: w.End, day: w.Day}

			ts := startServer(t, dir, func(c *Config) { c.Retention = tc.stated })
			if code, b := ts.do(t, "POST", "/v1/integrity/verify", ts.admin, nil); code != 202 {
				t.Fatalf("verify: %d %s", code, b)
			}
			waitVerify(t, ts)
			_, last := ts.ui.verify.status()
			if last == nil || last.Report == nil || last.OK == nil || !*last.OK {
				t.Fatalf("verification: %+v", last)
			}
			f.records, f.checkpoints = last.Report.Records, last.Report.Checkpoints
			if tc.prune && last.Report.Pruned != f.end {
				t.Fatalf("verify counts %d records pruned, the prune removed %d", last.Report.Pruned, f.end)
			}
			// The event is recorded after the result is kept (which
			// waitVerify sees): wait for it.
			var msgs []string
			for deadline := time.Now().Add(30 * time.Second); len(msgs) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				for e, err := range ts.ledger.Entries(ts.ledger.Pruned()) {
					if err != nil {
						t.Fatal(err)
					}
					if ev, err := event.Decode(e.Data); err == nil && ev.Action == "ledger_verified" {
						msgs = append(msgs, ev.Message)
						if ev.Outcome != event.OutcomeSuccess {
							t.Errorf("outcome %q", ev.Outcome)
						}
					}
				}
			}
			if len(msgs) != 1 {
				t.Fatalf("%d ledger_verified events: %q", len(msgs), msgs)
			}
			t.Logf("%s", msgs[0])
			for _, want := range tc.want(f) {
				if !strings.Contains(msgs[0], want) {
					t.Errorf("ledger_verified does not say %q:\n%s", want, msgs[0])
				}
			}
			for _, not := range tc.not {
				if strings.Contains(msgs[0], not) {
					t.Errorf("ledger_verified says %q:\n%s", not, msgs[0])
				}
			}
		})
	}
}
