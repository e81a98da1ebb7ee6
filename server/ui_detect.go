package server

// Read endpoints the UI needs beside the detection API: one rule with its
// correlation parameters (the Overview redraws a rate_of_rise baseline
// with them), and the allowlist of networks never blocked (Blocks page).

import (
	"net/http"
	"strings"

	"github.com/trailguard/trailguard/access"
)

func (s *Server) uiDetectRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/rules/{name}", s.requireRole(access.RoleRead, s.handleRule))
	mux.HandleFunc("GET /v1/decisions/allowlist", s.requireRole(access.RoleRead, s.handleAllowlist))
}

// ruleJSON is a rule as GET /v1/rules/{name} shows it.
type ruleJSON struct {
	ID          string           `json:"id"`
	Name        string           `json:"name,omitempty"`
	Title       string           `json:"title"`
	Description string           `json:"description,omitempty"`
	Level       string           `json:"level,omitempty"`
	Ruleset     string           `json:"ruleset,omitempty"`
	Source      string           `json:"source"`
	Type        string           `json:"type"`
	Correlation *correlationJSON `json:"correlation,omitempty"`
}

type correlationJSON struct {
	Type     string                       `json:"type"`
	Rules    []string                     `json:"rules"`
	GroupBy  []string                     `json:"group_by,omitempty"`
	Timespan string                       `json:"timespan"`
	Baseline string                       `json:"baseline,omitempty"`
	Cond     map[string]any               `json:"condition"`
	Aliases  map[string]map[string]string `json:"aliases,omitempty"`
}

// handleRule is GET /v1/rules/{name}: a loaded rule by id or name, with its
// correlation parameters (timespan, baseline, thresholds).
func (s *Server) handleRule(w http.ResponseWriter, r *http.Request) {
	d := s.detect
	if d == nil {
		writeError(w, http.StatusNotFound, errDetectionOff.Error())
		return
	}
	name := r.PathValue("name")
	for _, rl := range d.runner.Engine.Rules() {
		if rl.ID != name && rl.Name != name {
			continue
		}
		out := ruleJSON{ID: rl.ID, Name: rl.Name, Title: rl.Title, Description: strings.TrimSpace(rl.Description), Level: rl.Level,
			Ruleset: rl.Ruleset, Source: rl.Source.String(), Type: "detection"}
		if c := rl.Correlation; c != nil {
			out.Type = c.Type
			cond := map[string]any{}
			for k, v := range map[string]*float64{"gt": c.Condition.GT, "gte": c.Condition.GTE, "lt": c.Condition.LT, "lte": c.Condition.LTE, "eq": c.Condition.EQ, "neq": c.Condition.NEQ} {
				if v != nil {
					cond[k] = *v
				}
			}
			if c.Condition.Field != "" {
				cond["field"] = c.Condition.Field
			}
			if c.Condition.Factor != 0 {
				cond["factor"] = c.Condition.Factor
			}
			cj := &correlationJSON{Type: c.Type, Rules: c.Rules, GroupBy: c.GroupBy, Timespan: shortDuration(c.Timespan), Cond: cond, Aliases: c.Aliases}
			if c.Baseline > 0 {
				cj.Baseline = shortDuration(c.Baseline)
			}
			out.Correlation = cj
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	writeError(w, http.StatusNotFound, "no loaded rule with id or name "+name+" (GET /v1/rules lists them)")
}

// handleAllowlist is GET /v1/decisions/allowlist: the networks block
// decisions never cover (decisions.allowlist).
func (s *Server) handleAllowlist(w http.ResponseWriter, r *http.Request) {
	list := s.cfg.Decisions.Allowlist
	if list == nil {
		list = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"allowlist": list, "decisions_enabled": s.Decisions() != nil})
}
