package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/decision"
	"github.com/trailguard/trailguard/httpaudit"
)

// Decisions are served in the shape of CrowdSec's Local API, so that
// CrowdSec bouncers work unchanged: they authenticate with X-Api-Key (a
// token of role bouncer), poll GET /v1/decisions/stream (startup=true
// first) or ask GET /v1/decisions?ip=… (live mode).

func (s *Server) decisionRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/decisions/stream", apiKey(s.requireRole(access.RoleBouncer, s.handleDecisionStream)))
	mux.HandleFunc("GET /v1/decisions", apiKey(s.requireRole(access.RoleBouncer, s.handleDecisionList)))
	mux.HandleFunc("POST /v1/decisions", s.requireRole(access.RoleAdmin, s.handleDecisionCreate))
	mux.HandleFunc("DELETE /v1/decisions/{id}", s.requireRole(access.RoleAdmin, s.handleDecisionDelete))
}

// apiKey accepts CrowdSec's X-Api-Key header as a bearer token, and
// answers errors as CrowdSec's API does ({"message": …}): bouncers read
// that field (one of them crashes without it).
func apiKey(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if k := r.Header.Get("X-Api-Key"); k != "" && r.Header.Get("Authorization") == "" {
			r.Header.Set("Authorization", "Bearer "+k)
		}
		h(&lapiErrors{ResponseWriter: w}, r)
	}
}

// lapiErrors rewrites {"error": X} answers of status 400 and above into
// {"message": X, "error": X}.
type lapiErrors struct {
	http.ResponseWriter
	status int
}

func (w *lapiErrors) WriteHeader(code int) {
	w.status = code
	if code < 400 {
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *lapiErrors) Write(b []byte) (int, error) {
	if w.status < 400 {
		return w.ResponseWriter.Write(b)
	}
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(b, &e)
	w.ResponseWriter.Header().Del("Content-Length")
	writeJSON(w.ResponseWriter, w.status, map[string]string{"message": e.Error, "error": e.Error})
	return len(b), nil
}

// Unwrap lets http.ResponseController reach the connection.
func (w *lapiErrors) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wireDecision is a decision as CrowdSec's API writes it, plus ours.
type wireDecision struct {
	ID       int64  `json:"id"`
	UUID     string `json:"uuid"`
	Origin   string `json:"origin"`
	Type     string `json:"type"`
	Scope    string `json:"scope"`
	Value    string `json:"value"`
	Duration string `json:"duration"`
	Scenario string `json:"scenario"`
	// trailguard's own fields.
	Until   time.Time `json:"until"`
	Created time.Time `json:"created"`
	AlertID string    `json:"alert_id,omitempty"`
	Offence int       `json:"offence"`
	Reason  string    `json:"reason,omitempty"`
}

func wire(ds []decision.Decision, now time.Time) []wireDecision {
	if len(ds) == 0 {
		return nil // CrowdSec answers null, and bouncers expect it
	}
	out := make([]wireDecision, len(ds))
	for i, d := range ds {
		out[i] = wireDecision{ID: d.ID, UUID: d.UUID, Origin: d.Origin, Type: d.Type, Scope: d.Scope, Value: d.Value,
			Duration: d.Remaining(now), Scenario: d.Scenario, Until: d.Until, Created: d.Created, AlertID: d.AlertID,
			Offence: d.Offence, Reason: d.Reason}
	}
	return out
}

func (s *Server) decisionStore(w http.ResponseWriter) *decision.Store {
	d := s.Decisions()
	if d == nil {
		writeError(w, http.StatusNotFound, "decisions are disabled (detection.disabled or decisions.disabled)")
	}
	return d
}

// handleDecisionStream is GET /v1/decisions/stream: with startup=true every
// decision in force as "new"; then what changed since this token's
// previous call. scopes (default ip,range, as CrowdSec) filters.
func (s *Server) handleDecisionStream(w http.ResponseWriter, r *http.Request) {
	st := s.decisionStore(w)
	if st == nil {
		return
	}
	q := r.URL.Query()
	startup, _ := strconv.ParseBool(q.Get("startup"))
	scopes := []string{decision.ScopeIP, decision.ScopeRange}
	if v := q.Get("scopes"); v != "" {
		scopes = strings.Split(v, ",")
	}
	tok, _ := r.Context().Value(tokenKey{}).(access.Token)
	// What a bouncer has heard is this client's: its token, address and
	// User-Agent. Keyed by the token alone, anyone else polling with the
	// same key (a stolen one, or a second gateway sharing it) took the
	// changes this bouncer had not heard yet: it never enforced them.
	ua := r.UserAgent()
	if len(ua) > 128 {
		ua = ua[:128]
	}
	bouncer := tok.ID + "|" + clientAddr(r) + "|" + ua
	added, deleted := st.Stream(bouncer, startup, scopes)
	now := time.Now()
	if !startup && len(added) == 0 && len(deleted) == 0 && !s.polls.record(bouncer, now) {
		httpaudit.Discard(r.Context())
	}
	writeJSON(w, http.StatusOK, map[string]any{"new": wire(added, now), "deleted": wire(deleted, now)})
}

// handleDecisionList is GET /v1/decisions: the decisions in force, all or
// those covering ip=, or matching scope=/value=/type=.
func (s *Server) handleDecisionList(w http.ResponseWriter, r *http.Request) {
	st := s.decisionStore(w)
	if st == nil {
		return
	}
	q := r.URL.Query()
	var ds []decision.Decision
	if ip := q.Get("ip"); ip != "" {
		ds = st.Covering(ip)
	} else {
		ds = st.Active()
	}
	out := ds[:0]
	for _, d := range ds {
		if v := q.Get("scope"); v != "" && !strings.EqualFold(v, d.Scope) {
			continue
		}
		if v := q.Get("value"); v != "" && v != d.Value {
			continue
		}
		if v := q.Get("type"); v != "" && v != d.Type {
			continue
		}
		if v := q.Get("range"); v != "" && d.Value != v {
			continue
		}
		out = append(out, d)
	}
	writeJSON(w, http.StatusOK, wire(out, time.Now()))
}

// handleDecisionCreate is POST /v1/decisions {"scope", "value",
// "duration", "reason"}: an operator's ban.
func (s *Server) handleDecisionCreate(w http.ResponseWriter, r *http.Request) {
	st := s.decisionStore(w)
	if st == nil {
		return
	}
	var in struct {
		Scope, Value, Duration, Reason string
	}
	if err := decodeBody(w, r, &in); err != nil {
		writeError(w, http.StatusBadRequest, err.Error()+` (want {"scope": "Ip", "value": "203.0.113.5", "duration": "4h", "reason": "…"})`)
		return
	}
	var d time.Duration
	if in.Duration != "" {
		var err error
		if d, err = time.ParseDuration(in.Duration); err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "duration: want a positive Go duration such as 4h")
			return
		}
	}
	tok, _ := r.Context().Value(tokenKey{}).(access.Token)
	dec, err := st.Manual(r.Context(), in.Scope, in.Value, d, in.Reason, tok.Name)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if dec == nil {
		writeError(w, http.StatusConflict, in.Value+" is allowlisted (decisions.allowlist): not banned")
		return
	}
	httpaudit.Audit(r.Context(), httpaudit.Op{Action: "decision_created", Resource: "decision/" + strconv.FormatInt(dec.ID, 10),
		Reason: in.Reason, After: map[string]any{"scope": dec.Scope, "value": dec.Value, "until": dec.Until}})
	writeJSON(w, http.StatusCreated, wire([]decision.Decision{*dec}, time.Now())[0])
}

// handleDecisionDelete is DELETE /v1/decisions/{id}: unban.
func (s *Server) handleDecisionDelete(w http.ResponseWriter, r *http.Request) {
	st := s.decisionStore(w)
	if st == nil {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "id: want a decision id (a number)")
		return
	}
	tok, _ := r.Context().Value(tokenKey{}).(access.Token)
	dec, err := st.Delete(r.Context(), id, tok.Name, r.URL.Query().Get("reason"))
	switch {
	case errors.Is(err, decision.ErrNotFound):
		writeError(w, http.StatusNotFound, "no decision in force with this id")
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	httpaudit.Audit(r.Context(), httpaudit.Op{Action: "decision_deleted", Resource: "decision/" + strconv.FormatInt(id, 10),
		Before: map[string]any{"scope": dec.Scope, "value": dec.Value, "until": dec.Until}})
	writeJSON(w, http.StatusOK, wire([]decision.Decision{*dec}, time.Now())[0])
}
