package forward

import (
	"fmt"
	"io"
	"strconv"
)

// WriteMetrics writes the outputs' counters and gauges in the Prometheus
// text format, one series per output (label output="name").
func (m *Manager) WriteMetrics(w io.Writer) {
	st := m.Stats()
	type metric struct {
		name, typ, help string
		v               func(Stats) any
	}
	for _, mt := range []metric{
		{"trailguard_forward_records_total", "counter", "Records the output's engine acknowledged.", func(s Stats) any { return s.Delivered }},
		{"trailguard_forward_duplicates_total", "counter", "Of those, records the engine already had (409 on a resent _id).", func(s Stats) any { return s.Duplicates }},
		{"trailguard_forward_dead_letter_total", "counter", "Records refused by the engine (or never stored), written to the output's dead-letter file.", func(s Stats) any { return s.DeadLettered }},
		{"trailguard_forward_retries_total", "counter", "Record sends repeated after a retryable failure (429, 5xx, network).", func(s Stats) any { return s.Retried }},
		{"trailguard_forward_resent_total", "counter", "Records sent again because verification did not find them in the engine.", func(s Stats) any { return s.Resent }},
		{"trailguard_forward_lost_total", "counter", "Records deleted by retention before delivery (only with max_retention_delay).", func(s Stats) any { return s.Lost }},
		{"trailguard_forward_bytes_total", "counter", "Bytes of records acknowledged (before gzip).", func(s Stats) any { return s.Bytes }},
		{"trailguard_forward_lag_records", "gauge", "Ledger records not yet acknowledged by the output's engine.", func(s Stats) any { return s.LagRecords }},
		{"trailguard_forward_lag_seconds", "gauge", "Age of the oldest ledger record not yet acknowledged (0 when caught up).", func(s Stats) any { return strconv.FormatFloat(s.LagSeconds, 'f', 3, 64) }},
		{"trailguard_forward_unverified_records", "gauge", "Records acknowledged but not yet confirmed stored by query (the cursor waits for them).", func(s Stats) any { return s.Unverified }},
		{"trailguard_forward_cursor", "gauge", "Next ledger index the output resumes from after a restart.", func(s Stats) any { return s.Cursor }},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", mt.name, mt.help, mt.name, mt.typ)
		for _, s := range st {
			// Names are plain words (nameRE) and types known ones, so %q
			// quotes them as the exposition format does.
			fmt.Fprintf(w, "%s{output=%q,type=%q} %v\n", mt.name, s.Name, s.Type, mt.v(s))
		}
	}
}
