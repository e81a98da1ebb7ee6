package server

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/trailguard/trailguard/access"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.handleReady)
	if s.cfg.MetricsPublic {
		mux.HandleFunc("GET /metrics", s.handleMetrics)
	} else {
		mux.HandleFunc("GET /metrics", s.requireRole(access.RoleRead, s.handleMetrics))
	}
	s.esRoutes(mux)

	mux.HandleFunc("POST /v1/events", s.requireRole(access.RoleIngest, s.limitIngest(s.handleIngest)))
	mux.HandleFunc("POST /v1/logs", s.requireRole(access.RoleIngest, s.limitIngest(s.handleOTLPLogs)))

	mux.HandleFunc("GET /v1/events", s.requireRole(access.RoleRead, s.handleSearch))
	mux.HandleFunc("GET /v1/events/{id}", s.requireRole(access.RoleRead, s.handleEvent))
	mux.HandleFunc("GET /v1/stats", s.requireRole(access.RoleRead, s.handleStats))
	mux.HandleFunc("GET /v1/tail", s.requireRole(access.RoleRead, s.handleTail))
	mux.HandleFunc("GET /v1/checkpoint", s.requireRole(access.RoleRead, s.handleCheckpoint))
	// The ledger's Merkle tree as a C2SP tlog-tiles log (checkpoint, tile/…).
	mux.HandleFunc("GET /v1/ledger/", s.requireRole(access.RoleRead, http.StripPrefix("/v1/ledger", s.ledger.TileHandler()).ServeHTTP))
	mux.HandleFunc("GET /v1/outputs", s.requireRole(access.RoleRead, s.handleOutputs))
	s.alertRoutes(mux)
	s.decisionRoutes(mux)
	s.reportRoutes(mux)

	mux.HandleFunc("GET /v1/tokens", s.requireRole(access.RoleAdmin, s.handleTokenList))
	mux.HandleFunc("POST /v1/tokens", s.requireRole(access.RoleAdmin, s.handleTokenCreate))
	mux.HandleFunc("DELETE /v1/tokens/{name}", s.requireRole(access.RoleAdmin, s.handleTokenRevoke))
	s.uiRoutes(mux) // the web UI, its session API and /v1/integrity (ui.go)
	return s.uiEntry(mux)
}

// handleReady answers 200 when the collector can take and serve events,
// 503 with the reasons otherwise: the disk is full (ingest answers 507),
// the ledger failed, the collector's own trail cannot be written (reads
// answer 503), or the index is more than 100,000 records behind. It
// recovers by itself when the cause goes away. Reasons name settings, not
// server paths.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	size, indexed := s.ledger.Size(), s.index.Indexed()
	var reasons []string
	free := s.space.freeBytes()
	if free >= 0 && free < s.cfg.DiskReserve {
		reasons = append(reasons, fmt.Sprintf("disk full: %d MiB free on the data directory's file system, below disk_reserve (%d MiB): ingest answers 507 until space is freed",
			free>>20, s.cfg.DiskReserve>>20))
	}
	if st := s.audit.Stats(); st.Failing {
		reasons = append(reasons, "the collector cannot write its own audit events: reads of audit data answer 503")
	}
	if s.space.indexPaused.Load() {
		reasons = append(reasons, fmt.Sprintf("index paused: free space below twice disk_reserve (%d MiB); searches miss the newest events", 2*s.cfg.DiskReserve>>20))
	}
	if size-min(size, indexed) > 100000 {
		reasons = append(reasons, fmt.Sprintf("index %d records behind the ledger", size-min(size, indexed)))
	}
	out := map[string]any{"ready": len(reasons) == 0, "ledger": size, "indexed": indexed}
	if free >= 0 {
		out["disk_free_bytes"] = free
	}
	if len(reasons) > 0 {
		out["reasons"] = reasons
		writeJSON(w, http.StatusServiceUnavailable, out)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// handleCheckpoint is GET /v1/checkpoint: the latest signed checkpoint, as
// a C2SP signed note (text/plain), for witnesses and auditors.
func (s *Server) handleCheckpoint(w http.ResponseWriter, r *http.Request) {
	signed, _ := s.ledger.LatestCheckpoint()
	if signed == nil {
		writeError(w, http.StatusServiceUnavailable, "no checkpoint yet")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(signed)
}

func (s *Server) handleTokenList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.tokens.List())
}

func (s *Server) handleTokenCreate(w http.ResponseWriter, r *http.Request) {
	var in struct{ Name, Role string }
	if err := decodeBody(w, r, &in); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	role, err := access.ParseRole(in.Role)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	tok, secret, err := s.tokens.Create(in.Name, role)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	auditToken(r, "authn_token_created", tok)
	writeJSON(w, http.StatusCreated, map[string]any{"token": secret, "id": tok.ID, "name": tok.Name, "role": tok.Role})
}

func (s *Server) handleTokenRevoke(w http.ResponseWriter, r *http.Request) {
	tok, err := s.tokens.Revoke(r.PathValue("name"))
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	auditToken(r, "authn_token_revoked", tok)
	writeJSON(w, http.StatusOK, tok)
}

// dirSize sums the sizes of the files below dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
