package event

import (
	"testing"
	"time"
)

// TestProvenance: the one pass leaves every line that claims the
// collector's provenance to Decode (whose caller refuses it with
// CheckProvenance's reason), and takes the others; a line forwarded from
// another collector's ledger (LedgerOrigin) passes CheckProvenance.
func TestProvenance(t *testing.T) {
	now := time.Date(2026, 11, 30, 15, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		line           string
		reserved, fast bool
	}{
		{`{"service":{"name":"shop"},"event":{"dataset":"shop.audit"}}`, false, true},
		{`{"service":{"name":"trailguard-collectors"},"event":{"dataset":"trailguard.alerts"}}`, false, true},
		{`{"service":{"name":"trailguard-collector"}}`, true, false},
		{`{"service":{"name":"TRAILGUARD-COLLECTOR"}}`, true, false},
		{`{"service":{"name":"trailguard\u002dcollector"}}`, true, false},
		{`{"event":{"dataset":"trailguard.alert"}}`, true, false},
		{`{"event":{"dataset":"Trailguard.Decision"}}`, true, false},
		{`{"event.dataset":"trailguard.decision"}`, true, false},
		{`{"service.name":"trailguard-collector"}`, true, false},
		{`{"trailguard.ledger.origin":"edge/1","service":{"name":"trailguard-collector"},"event":{"dataset":"trailguard.alert"}}`, false, false},
		{`{"trailguard":{"ledger":{"origin":""}},"service":{"name":"trailguard-collector"}}`, true, false},
		{`{"trailguard":{"ledger":{"origin":7}},"event":{"dataset":"trailguard.alert"}}`, true, false},
	} {
		_, _, ok := AppendNormalized(nil, []byte(c.line), now, AppendID)
		if ok != c.fast {
			t.Errorf("%s: one pass took it: %v, want %v", c.line, ok, c.fast)
		}
		ev, err := Decode([]byte(c.line))
		if err != nil {
			t.Fatalf("%s: %v", c.line, err)
		}
		if err := ev.CheckProvenance(); (err != nil) != c.reserved {
			t.Errorf("%s: CheckProvenance = %v, want reserved %v", c.line, err, c.reserved)
		}
	}
}
