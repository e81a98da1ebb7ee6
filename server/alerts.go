package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/alerting"
	"github.com/trailguard/trailguard/httpaudit"
)

// ActionAlertStatus is event.action of the audit event an alert's change
// of status leaves in the trail.
const ActionAlertStatus = "alert_status_changed"

func (s *Server) alertRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/alerts", s.requireRole(access.RoleRead, s.handleAlertList))
	mux.HandleFunc("GET /v1/alerts/{id}", s.requireRole(access.RoleRead, s.handleAlertGet))
	mux.HandleFunc("PATCH /v1/alerts/{id}", s.requireRole(access.RoleAdmin, s.handleAlertPatch))
	mux.HandleFunc("GET /v1/rules", s.requireRole(access.RoleRead, s.handleRules))
}

// handleAlertList is GET /v1/alerts: alerts newest first; status, rule
// (id or name), since (RFC 3339 or a duration back: 24h) and limit
// (default 100, at most 10,000) filter them.
func (s *Server) handleAlertList(w http.ResponseWriter, r *http.Request) {
	st := s.Alerts()
	if st == nil {
		writeError(w, http.StatusNotFound, errDetectionOff.Error())
		return
	}
	q := r.URL.Query()
	f := alerting.Filter{Status: q.Get("status"), Rule: q.Get("rule"), Limit: 100}
	switch f.Status {
	case "", alerting.StatusOpen, alerting.StatusAcknowledged, alerting.StatusResolved:
	default:
		writeError(w, http.StatusBadRequest, "status: want open, acknowledged or resolved")
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "limit: want a number from 1 to 10000")
			return
		}
		f.Limit = n
	}
	if v := q.Get("since"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			f.Since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			f.Since = t
		} else {
			writeError(w, http.StatusBadRequest, "since: want an RFC 3339 time or a duration such as 24h")
			return
		}
	}
	list := st.List(f)
	httpaudit.AuditPersisted(r.Context(), httpaudit.Op{Action: "sensitive_read", Resource: "alerts", After: map[string]any{"query": r.URL.RawQuery, "returned": len(list)}})
	writeJSON(w, http.StatusOK, map[string]any{"alerts": list})
}

// handleAlertGet is GET /v1/alerts/{id}: the alert, and its document as
// stored in the ledger (with the evidence's event.ids).
func (s *Server) handleAlertGet(w http.ResponseWriter, r *http.Request) {
	st := s.Alerts()
	if st == nil {
		writeError(w, http.StatusNotFound, errDetectionOff.Error())
		return
	}
	a, ok := st.Get(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no alert with this id")
		return
	}
	out := map[string]any{"alert": a}
	if e, err := s.ledger.Read(a.Index); err == nil && json.Valid(e.Data) {
		out["document"] = json.RawMessage(e.Data)
	}
	httpaudit.AuditPersisted(r.Context(), httpaudit.Op{Action: "sensitive_read", Resource: alerting.ResourcePrefix + a.ID})
	writeJSON(w, http.StatusOK, out)
}

// handleAlertPatch is PATCH /v1/alerts/{id} {"status": …, "note": …}: an
// audited change of status.
func (s *Server) handleAlertPatch(w http.ResponseWriter, r *http.Request) {
	st := s.Alerts()
	if st == nil {
		writeError(w, http.StatusNotFound, errDetectionOff.Error())
		return
	}
	var in struct {
		Status string `json:"status"`
		Note   string `json:"note"`
	}
	if err := decodeBody(w, r, &in); err != nil {
		writeError(w, http.StatusBadRequest, err.Error()+` (want {"status": "acknowledged" | "resolved" | "open", "note": "…"})`)
		return
	}
	if len(in.Note) > 2048 {
		writeError(w, http.StatusBadRequest, "note: at most 2048 bytes")
		return
	}
	tok, _ := r.Context().Value(tokenKey{}).(access.Token)
	before, after, err := st.SetStatus(r.PathValue("id"), in.Status, tok.Name, in.Note)
	switch {
	case errors.Is(err, alerting.ErrNotFound):
		writeError(w, http.StatusNotFound, "no alert with this id")
		return
	case errors.Is(err, alerting.ErrStatus):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if aerr := httpaudit.AuditPersisted(r.Context(), httpaudit.Op{Action: ActionAlertStatus, Resource: alerting.ResourcePrefix + after.ID,
		Reason: in.Note, Before: map[string]any{"status": before.Status}, After: map[string]any{"status": after.Status}}); aerr != nil {
		writeError(w, http.StatusServiceUnavailable, "status changed but not recorded in the trail: "+aerr.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"alert": after})
}

// handleRules is GET /v1/rules: the detection rules loaded and the ones
// that could not be (file, line, reason).
func (s *Server) handleRules(w http.ResponseWriter, r *http.Request) {
	d := s.detect
	if d == nil {
		writeError(w, http.StatusNotFound, errDetectionOff.Error())
		return
	}
	// The keys of GET /v1/rules/{name} (ruleJSON), which the list had in
	// Go's spelling ("ID", "Name", …) beside its own snake-case "errors".
	type rule struct {
		ID      string `json:"id"`
		Name    string `json:"name,omitempty"`
		Title   string `json:"title"`
		Level   string `json:"level,omitempty"`
		Type    string `json:"type"`
		Ruleset string `json:"ruleset,omitempty"`
		Source  string `json:"source"`
		Block   string `json:"block,omitempty"`
	}
	var rules []rule
	for _, r := range d.runner.Engine.Rules() {
		typ := "detection"
		if r.Correlation != nil {
			typ = r.Correlation.Type
		}
		block := ""
		if r.Response != nil {
			block = r.Response.Block
		}
		rules = append(rules, rule{r.ID, r.Name, r.Title, r.Level, typ, r.Ruleset, r.Source.String(), block})
	}
	errs := []map[string]any{}
	for _, e := range d.ruleErrs {
		errs = append(errs, map[string]any{"file": e.File, "line": e.Line, "column": e.Col, "rule": e.Rule, "reason": e.Reason})
	}
	writeJSON(w, http.StatusOK, map[string]any{"rules": rules, "errors": errs})
}
