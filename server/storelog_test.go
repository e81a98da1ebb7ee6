package server

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/ledger"
)

// TestAppendFailureLogSummarisesFullDisk: every shipper retries a 507
// after its Retry-After for as long as the disk stays full; the log gets
// one line for the first refusal, then one a minute with the requests and
// events refused since, while other append failures are each logged.
func TestAppendFailureLogSummarisesFullDisk(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	var a appendFailureLog
	full := fmt.Errorf("%w: /data/ledger: free space is below the reserve", ledger.ErrNoSpace)
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	// 100 shippers retrying every 30 s for ten minutes.
	for s := 0; s < 600; s += 30 {
		for range 100 {
			a.log(l, t0.Add(time.Duration(s)*time.Second), "ingest", 1000, full)
		}
	}
	a.log(l, t0.Add(10*time.Minute), "bulk", 7, errors.Join(ledger.ErrUnknownOutcome, errors.New("fdatasync: EIO")))
	a.log(l, t0.Add(10*time.Minute), "bulk", 8, errors.Join(ledger.ErrUnknownOutcome, errors.New("fdatasync: EIO")))
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	first := strings.Count(out, "ingest: ledger append refused: disk full")
	still := strings.Count(out, "ingest: ledger appends still refused: disk full")
	other := strings.Count(out, "bulk: ledger append failed")
	if first != 1 || still != 9 || other != 2 || len(lines) != 12 {
		t.Fatalf("%d lines (first %d, summaries %d, other failures %d); want 12 (1, 9, 2):\n%s", len(lines), first, still, other, out)
	}
	// The first summary, a minute on, counts the 199 refusals it did not log.
	if !strings.Contains(lines[1], "refused_requests_since_last_line=199") || !strings.Contains(lines[1], "refused_events_since_last_line=199000") {
		t.Errorf("summary without the counts: %s", lines[1])
	}
}
