package server

import (
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
)

// metrics are the collector's counters, exposed in the Prometheus text
// format without a client library.
type metrics struct {
	ingested, rejected, duplicates, failed, overflow, authFailed, authRejected, ingestLimited atomic.Uint64
}

func newMetrics() *metrics { return &metrics{} }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	m := s.metrics
	st := s.audit.Stats()
	size := s.ledger.Size()
	indexed := s.index.Indexed()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	p := func(name, typ, help string, v any) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, v)
	}
	p("trailguard_events_ingested_total", "counter", "Events accepted and durably appended.", m.ingested.Load())
	p("trailguard_events_rejected_total", "counter", "Submitted events rejected as invalid (client mistakes: fix, do not resend as is).", m.rejected.Load())
	p("trailguard_events_duplicate_total", "counter", "Submitted events whose event.id was stored recently (not stored again).", m.duplicates.Load())
	p("trailguard_events_failed_total", "counter", "Submitted events not stored, or of unknown outcome, because of the collector (disk full, shutting down): to be resent.", m.failed.Load())
	p("trailguard_events_over_limit_total", "counter", "Submitted events beyond max_request_events in their request (answered 429, to be resent).", m.overflow.Load())
	p("trailguard_auth_failures_total", "counter", "Failed token checks and role denials.", m.authFailed.Load())
	p("trailguard_auth_rate_limited_total", "counter", "Failed token checks answered 429 because their address failed too often.", m.authRejected.Load())
	p("trailguard_ingest_limited_total", "counter", "Ingest requests refused by max_ingest_per_token (429) or max_ingest_requests (503).", m.ingestLimited.Load())
	p("trailguard_ingest_requests_in_progress", "gauge", "Ingest requests being received or stored (max_ingest_requests caps them; at the cap, more are answered 503).", s.slots.inProgress())
	p("trailguard_self_audit_unrecorded_total", "counter", "Requests without a valid token whose events were not recorded (over refused_audit_per_minute); summarised in audit_events_unrecorded events.", s.sampler.unrecorded.Load())
	p("trailguard_ledger_records", "gauge", "Records in the ledger (tree size).", size)
	p("trailguard_ledger_pruned_records", "gauge", "Records removed by retention.", s.ledger.Pruned())
	p("trailguard_ledger_bytes", "gauge", "Bytes of ledger segment files.", dirSize(filepath.Join(s.ledger.Dir(), "seg")))
	p("trailguard_index_records", "gauge", "Records indexed.", indexed)
	p("trailguard_index_lag_records", "gauge", "Records appended but not yet indexed.", size-min(size, indexed))
	p("trailguard_self_audit_queue_depth", "gauge", "Collector's own audit events waiting to be written.", st.Queued)
	p("trailguard_self_audit_dropped_total", "counter", "Collector's own access events dropped under overload.", st.Dropped)
	p("trailguard_self_audit_lost_total", "counter", "Collector's own events lost because its trail could not be written (disk full) and the queue was full.", st.Lost)
	p("trailguard_self_audit_failing", "gauge", "1 while the collector cannot write its own audit events (reads of audit data answer 503).", b2i(st.Failing))
	p("trailguard_disk_free_bytes", "gauge", "Free bytes on the data directory's file system (-1: unknown).", s.space.freeBytes())
	p("trailguard_disk_reserve_bytes", "gauge", "disk_reserve: free space ingest never takes.", s.cfg.DiskReserve)
	p("trailguard_index_failures_total", "counter", "Times the indexer stopped on an error and was restarted.", s.indexFailures.Load())
	p("trailguard_index_paused", "gauge", "1 while the index holds back for lack of space (free below twice disk_reserve).", b2i(s.space.indexPaused.Load()))
	if c := s.conns; c != nil {
		p("trailguard_connections_open", "gauge", "Client connections open (max_connections caps them).", c.Open())
		p("trailguard_connections_refused_total", "counter", "Client connections closed at once because their address held max_connections_per_address.", c.Refused())
	}
	s.forwardMetrics(w)
	s.detectionMetrics(w)
	for _, f := range s.extraMetrics {
		f(w)
	}
	s.uiMetrics(w)
}
