package server

import (
	"context"
	"io"
	"net/http"
	"path/filepath"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/forward"
	"github.com/trailguard/trailguard/retention"
)

// openForward prepares the outputs of the `outputs:` setting before the
// ledger opens, and returns the ledger's PruneFloor: retention must already
// respect what they have not delivered. nil without outputs.
func (s *Server) openForward(prof retention.Profile) (func() uint64, error) {
	if len(s.cfg.Outputs) == 0 {
		return nil, nil
	}
	m, err := forward.Open(s.cfg.Outputs, forward.Options{
		Dir:    filepath.Join(s.cfg.DataDir, "forward"),
		Origin: s.cfg.Origin,
		Retain: prof.Retain,
		Logger: s.log,
		Audit: func(ev *event.Event) {
			if err := s.audit.Log(context.Background(), ev); err != nil {
				s.log.Error("forward: loss not recorded", "err", err)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	s.forward = m
	return m.Floor, nil
}

// startForward starts the outputs once the ledger and the self-audit are up.
func (s *Server) startForward() {
	if s.forward != nil {
		s.forward.Start(s.ledger)
	}
}

// closeForward stops the outputs and saves their cursors.
func (s *Server) closeForward() error {
	if s.forward == nil {
		return nil
	}
	return s.forward.Close()
}

// handleOutputs is GET /v1/outputs: each output's counters, cursor, lag
// (records and seconds) and delivery rate.
func (s *Server) handleOutputs(w http.ResponseWriter, r *http.Request) {
	st := []forward.Stats{}
	if s.forward != nil {
		st = s.forward.Stats()
	}
	writeJSON(w, http.StatusOK, map[string]any{"outputs": st})
}

// forwardMetrics appends the outputs' series to /metrics.
func (s *Server) forwardMetrics(w io.Writer) {
	if s.forward != nil {
		s.forward.WriteMetrics(w)
	}
}
