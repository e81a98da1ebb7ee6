package server

// The web UI (package ui) as the collector serves it: the embedded pages at
// /ui/, sign-in with an API token into a session cookie, and /ui/api/v1/…,
// which runs the request through the same /v1 endpoints as an API client
// with the session's token, so every read the UI makes is checked, limited
// and audited exactly as the API's are.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/httpaudit"
	"github.com/trailguard/trailguard/ui"
)

// uiState is the UI's part of the server.
type uiState struct {
	sessions *ui.Sessions
	verify   *verifyRun
	overview *overviewRollup
	// followDone is closed when the overview's follower has ended (the
	// ledger closed, or followStop) and saved its counts. Both are set
	// once, in followOnce (nil while the follower has not started).
	followDone chan struct{}
	followStop context.CancelFunc
	followOnce sync.Once

	signIns, signInFailures, cspReports atomic.Uint64
}

// uiAPIPrefix is where the pages call the API: /ui/api/v1/… is /v1/….
const uiAPIPrefix = "/ui/api"

// backgroundHeader marks a request the page made by itself (auto-refresh,
// progress polling): it does not count as activity for the idle timeout.
const backgroundHeader = "X-Trailguard-Background"

// uiRoutes mounts the UI on mux.
func (s *Server) uiRoutes(mux *http.ServeMux) {
	s.ui = &uiState{sessions: ui.NewSessions(s.cfg.UISessionIdle, s.cfg.UISessionMax, 0)}
	s.ui.verify = s.newVerifyRun()
	s.ui.overview = newOverviewRollup(filepath.Join(s.cfg.DataDir, "ui-overview.json"))
	s.ui.overview.pace = s.cfg.FollowerPace
	if !s.cfg.OverviewOnDemand {
		s.StartOverview()
	}
	mux.Handle("GET "+ui.Prefix, ui.Handler())
	mux.HandleFunc("GET "+uiAPIPrefix+"/session", s.handleUISession)
	mux.HandleFunc("POST "+uiAPIPrefix+"/session", s.handleUISignIn)
	mux.HandleFunc("DELETE "+uiAPIPrefix+"/session", s.handleUISignOut)
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		mux.HandleFunc(m+" "+uiAPIPrefix+"/v1/", s.handleUIAPI(mux))
	}
	mux.HandleFunc("POST "+ui.CSPReportPath, s.handleCSPReport)

	mux.HandleFunc("GET /v1/integrity", s.requireRole(access.RoleRead, s.handleIntegrity))
	mux.HandleFunc("POST /v1/integrity/verify", s.requireRole(access.RoleAdmin, s.handleVerifyStart))
	mux.HandleFunc("GET /v1/overview", s.requireRole(access.RoleRead, s.handleOverview))
	s.uiDetectRoutes(mux)
}

// StartOverview starts the UI overview's follower if it has not started:
// at New, unless Config.OverviewOnDemand defers it to the first request for
// the overview or to this call (an embedder about to serve the API). It
// resumes from the counts saved in ui-overview.json. Nothing starts once
// the server is closing.
func (s *Server) StartOverview() {
	if s.ui == nil {
		return
	}
	s.ui.followOnce.Do(func() {
		ctx, stop := context.WithCancel(context.Background())
		s.ui.followStop, s.ui.followDone = stop, make(chan struct{})
		go func() {
			defer close(s.ui.followDone)
			s.ui.overview.follow(ctx, s.ledger) // until stopped or the ledger closes
			if err := s.ui.overview.save(); err != nil {
				s.log.Warn("the overview's counts were not saved; the next start reads the ledger again", "err", err)
			}
		}()
	})
}

// stopOverview tells the overview's follower to stop, if it runs, and
// keeps one from starting afterwards.
func (s *Server) stopOverview() {
	s.ui.followOnce.Do(func() {})
	if s.ui.followStop != nil {
		s.ui.followStop()
	}
}

// closeUI stops what the UI runs in the background with the data
// directory and waits for it: the overview's follower, which saves its
// counts (ui-overview.json, from where the next start resumes), and a
// verification in progress. The shutdown bounds the wait (shutdown.go).
func (s *Server) closeUI() {
	if s.ui == nil {
		return
	}
	s.stopOverview()
	if s.ui.followDone != nil {
		<-s.ui.followDone
	}
	v := s.ui.verify
	v.mu.Lock()
	running, done := v.running, v.done
	v.mu.Unlock()
	if running {
		<-done
	}
}

// uiEntry sends browsers that open the collector's root to the UI. GET / is
// also Elasticsearch's info endpoint, which clients and shippers call with
// Accept: application/json (or none) and often with credentials: only a
// request that asks for HTML and carries no Authorization is redirected.
func (s *Server) uiEntry(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) && ui.WantsHTML(r) {
			ui.SetSecurityHeaders(w.Header())
			http.Redirect(w, r, ui.Prefix, http.StatusFound)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// uiHeaders are set on every /ui/api answer: never cached, never framed.
func uiHeaders(w http.ResponseWriter) {
	ui.SetSecurityHeaders(w.Header())
	w.Header().Set("Cache-Control", "no-store")
}

// sessionJSON is what the pages learn about their session.
type sessionJSON struct {
	Name     string    `json:"name"`
	TokenID  string    `json:"token_id"`
	Role     string    `json:"role"`
	CSRF     string    `json:"csrf"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
	Idle     string    `json:"idle_timeout"`
	Lifetime string    `json:"lifetime"`
}

func (s *Server) sessionJSON(sess ui.Session) sessionJSON {
	return sessionJSON{Name: sess.Name, TokenID: sess.TokenID, Role: sess.Role, CSRF: sess.CSRF, Created: sess.Created.UTC(),
		Expires: s.ui.sessions.Expires(sess).UTC(), Idle: shortDuration(s.ui.sessions.Idle()), Lifetime: shortDuration(s.ui.sessions.Lifetime())}
}

// session finds the request's session, or answers 401 (ok false). An
// expired session is recorded as such (once: it is removed).
func (s *Server) session(w http.ResponseWriter, r *http.Request) (ui.Session, bool) {
	active := r.Header.Get(backgroundHeader) == ""
	sess, err := s.ui.sessions.Lookup(ui.CookieValue(r), active)
	if err == nil {
		httpaudit.SetUser(r.Context(), httpaudit.User{ID: sess.TokenID, Name: sess.Name, Roles: []string{sess.Role}})
		if m := markFrom(r.Context()); m != nil {
			m.setAuthorized()
		}
		return sess, true
	}
	http.SetCookie(w, ui.SessionCookie(r, "", -1))
	if errors.Is(err, ui.ErrSessionExpired) {
		// The user was signed in: this is their event, always recorded.
		user := httpaudit.User{ID: sess.TokenID, Name: sess.Name, Roles: []string{sess.Role}}
		httpaudit.SetUser(r.Context(), user)
		if m := markFrom(r.Context()); m != nil {
			m.setAuthorized()
		}
		httpaudit.Audit(r.Context(), httpaudit.Op{Action: event.ActionSessionExpired, Resource: "ui-session",
			Reason: fmt.Sprintf("web UI session of token %s ended (signed in %s; idle timeout %v, lifetime %v)",
				sess.Name, sess.Created.UTC().Format(time.RFC3339), s.ui.sessions.Idle(), s.ui.sessions.Lifetime())})
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "your session expired; sign in again", "expired": true})
		return sess, false
	}
	writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "sign in with an API token of role read or admin", "signin": true})
	return sess, false
}

// handleUISession is GET /ui/api/session: who is signed in, and the CSRF
// value for changes.
func (s *Server) handleUISession(w http.ResponseWriter, r *http.Request) {
	uiHeaders(w)
	sess, ok := s.session(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.sessionJSON(sess))
}

// uiSignInBytes bounds a sign-in body: a token is 40-odd characters.
const uiSignInBytes = 4 << 10

// handleUISignIn is POST /ui/api/session {"token": "tg_…"}: a token of role
// read or admin starts a session. Failed sign-ins are the API's failed token
// checks: limited per address (429 with Retry-After beyond auth_fail_burst)
// and recorded as authn_login_fail within the same sampling budget.
func (s *Server) handleUISignIn(w http.ResponseWriter, r *http.Request) {
	uiHeaders(w)
	if !ui.SameOrigin(r) {
		writeError(w, http.StatusForbidden, ui.ErrCrossSite.Error())
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		// A cross-site form cannot send JSON without a preflight.
		writeError(w, http.StatusUnsupportedMediaType, `send {"token": "tg_…"} as application/json`)
		return
	}
	var in struct {
		Token string `json:"token"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, uiSignInBytes)
	if err := decodeBody(w, r, &in); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ip, mark := clientAddr(r), markFrom(r.Context())
	tok, err := s.tokens.Check(strings.TrimSpace(in.Token))
	if err == nil && tok.Role != access.RoleRead && tok.Role != access.RoleAdmin {
		// A valid token of another role: a denial, not a failed
		// authentication (as the API answers 403 to it).
		httpaudit.SetUser(r.Context(), httpaudit.User{ID: tok.ID, Name: tok.Name, Roles: []string{string(tok.Role)}})
		s.metrics.authFailed.Add(1)
		s.ui.signInFailures.Add(1)
		if s.shouldRecord(mark, ip) {
			httpaudit.Audit(r.Context(), httpaudit.Op{Action: event.ActionAuthzFail, Resource: "ui-session", Outcome: event.OutcomeFailure,
				Reason: "web UI sign-in: role " + string(tok.Role) + " may not sign in (needs read or admin)"})
		}
		writeError(w, http.StatusForbidden, "a token of role "+string(tok.Role)+" cannot sign in; use one of role read or admin")
		return
	}
	if err != nil {
		s.metrics.authFailed.Add(1)
		s.ui.signInFailures.Add(1)
		record := s.shouldRecord(mark, ip)
		if s.throttled(w, r, ip, record, "ui-session", "too many failed sign-ins and token checks from ",
			"too many failed attempts from this address; try again in %d s") {
			return
		}
		reason := "invalid token"
		switch {
		case in.Token == "":
			reason = "no token"
		case errors.Is(err, access.ErrRevoked):
			reason = "revoked token"
		}
		if record {
			httpaudit.Auth(r.Context(), httpaudit.Attempt{User: httpaudit.User{Name: tok.Name}, Reason: "web UI sign-in: " + reason})
		}
		// No WWW-Authenticate: a Basic challenge would make the browser
		// open its own password dialog.
		writeError(w, http.StatusUnauthorized, "sign-in failed: "+reason)
		return
	}
	if mark != nil {
		mark.setAuthorized()
	}
	// A sign-in replaces the session this browser had, if any: its cookie
	// is about to be overwritten, and must not stay usable elsewhere.
	if old := ui.CookieValue(r); old != "" {
		s.ui.sessions.Delete(old)
	}
	cookie, sess, evicted := s.ui.sessions.Create(tok.ID, tok.Name, string(tok.Role), strings.TrimSpace(in.Token))
	s.ui.signIns.Add(1)
	if evicted != nil {
		s.log.Warn("web UI session ended to stay within the session limit", "token", evicted.Name, "signed_in", evicted.Created)
	}
	httpaudit.Auth(r.Context(), httpaudit.Attempt{User: httpaudit.User{ID: tok.ID, Name: tok.Name, Roles: []string{string(tok.Role)}},
		Success: true, Reason: "web UI sign-in"})
	http.SetCookie(w, ui.SessionCookie(r, cookie, 0))
	writeJSON(w, http.StatusOK, s.sessionJSON(sess))
}

// handleUISignOut is DELETE /ui/api/session: ends the session (CSRF-checked,
// so no other site can sign a user out either).
func (s *Server) handleUISignOut(w http.ResponseWriter, r *http.Request) {
	uiHeaders(w)
	sess, ok := s.session(w, r)
	if !ok {
		return
	}
	if err := ui.CheckCSRF(r, sess); err != nil {
		writeError(w, http.StatusForbidden, err.Error())
		return
	}
	s.ui.sessions.Delete(ui.CookieValue(r))
	http.SetCookie(w, ui.SessionCookie(r, "", -1))
	httpaudit.Audit(r.Context(), httpaudit.Op{Action: event.ActionSessionLogout, Resource: "ui-session", Reason: "web UI sign-out"})
	w.WriteHeader(http.StatusNoContent)
}

// uiWrites are the changes the UI may make through /ui/api/v1 (with a
// CSRF token and, in the API itself, the admin role). Everything else that
// is not a read is refused: the UI never ingests or manages tokens.
var uiWrites = []struct{ method, prefix string }{
	{http.MethodPatch, "/v1/alerts/"},
	{http.MethodPost, "/v1/alerts/"},
	{http.MethodDelete, "/v1/decisions/"},
	{http.MethodPost, "/v1/integrity/verify"},
}

func uiWriteAllowed(method, p string) bool {
	for _, w := range uiWrites {
		if w.method == method && (p == w.prefix || strings.HasPrefix(p, w.prefix) && strings.HasSuffix(w.prefix, "/")) {
			return true
		}
	}
	return false
}

// handleUIAPI is /ui/api/v1/…: the request goes to the /v1 endpoint of the
// same name with the session's token, through the same mux, role checks and
// audit as an API client's.
func (s *Server) handleUIAPI(mux *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		uiHeaders(w)
		target := strings.TrimPrefix(r.URL.Path, uiAPIPrefix)
		if !strings.HasPrefix(target, "/v1/") || path.Clean(target) != target {
			writeError(w, http.StatusNotFound, "no such API path")
			return
		}
		sess, ok := s.session(w, r)
		if !ok {
			return
		}
		if ui.StateChanging(r.Method) {
			if !uiWriteAllowed(r.Method, target) {
				writeError(w, http.StatusForbidden, r.Method+" "+target+" is not available from the web UI; use the API with a token")
				return
			}
			if err := ui.CheckCSRF(r, sess); err != nil {
				writeError(w, http.StatusForbidden, err.Error())
				return
			}
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = target
		r2.URL.RawPath = strings.TrimPrefix(r.URL.RawPath, uiAPIPrefix)
		r2.RequestURI = r2.URL.RequestURI()
		r2.Header.Del("Cookie")
		r2.Header.Del(backgroundHeader)
		r2.Header.Set("Authorization", "Bearer "+sess.Secret)
		mux.ServeHTTP(&uiWriter{ResponseWriter: w, end: func() {
			// The token stopped working (revoked): so did the session.
			s.ui.sessions.Delete(ui.CookieValue(r))
			http.SetCookie(w, ui.SessionCookie(r, "", -1))
		}}, r2)
	}
}

// uiWriter adapts the API's answers for pages: a 401 carries no
// WWW-Authenticate (a Basic challenge makes browsers open their own
// password dialog, even for fetch) and ends the session.
type uiWriter struct {
	http.ResponseWriter
	end   func()
	wrote bool
}

func (w *uiWriter) WriteHeader(code int) {
	if !w.wrote && code == http.StatusUnauthorized {
		// The API sets it under its conventional spelling, not the
		// canonical key: remove both.
		delete(w.Header(), "WWW-Authenticate")
		w.Header().Del("WWW-Authenticate")
		w.end()
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *uiWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController flush the live tail.
func (w *uiWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// cspReportBytes bounds a violation report.
const cspReportBytes = 16 << 10

// handleCSPReport receives Content-Security-Policy violation reports from
// the UI's pages: a violation on these pages means something tried to run
// or load what the policy forbids (an injection attempt, or a bug), so each
// is logged and, within the budget of unauthenticated requests, recorded in
// the trail.
func (s *Server) handleCSPReport(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, cspReportBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "report too large")
		return
	}
	s.ui.cspReports.Add(1)
	var rep struct {
		R struct {
			Document  string `json:"document-uri"`
			Directive string `json:"violated-directive"`
			Effective string `json:"effective-directive"`
			Blocked   string `json:"blocked-uri"`
			Sample    string `json:"script-sample"`
		} `json:"csp-report"`
	}
	json.Unmarshal(body, &rep)
	reason := fmt.Sprintf("web UI Content-Security-Policy violation: %s blocked %q on %s", cmpOr(rep.R.Effective, rep.R.Directive), rep.R.Blocked, rep.R.Document)
	if rep.R.Sample != "" {
		reason += " (sample " + strconv.Quote(rep.R.Sample) + ")"
	}
	// Anyone can send these, without a token: the log gets them within
	// the trail's per-address sampling budget, values cut short (a line
	// of 16 KiB for every request filled the operator's log before).
	if s.shouldRecord(markFrom(r.Context()), clientAddr(r)) {
		s.log.Warn("web UI CSP violation", "directive", clipLog(cmpOr(rep.R.Effective, rep.R.Directive)),
			"blocked", clipLog(rep.R.Blocked), "document", clipLog(rep.R.Document))
		httpaudit.Audit(r.Context(), httpaudit.Op{Action: "ui_csp_violation", Resource: "ui", Outcome: event.OutcomeFailure, Reason: reason,
			Category: []string{event.CategoryWeb}, Type: []string{event.TypeDenied}})
	}
	w.WriteHeader(http.StatusNoContent)
}

// clipLog cuts a value sent by anyone to 256 bytes (at a character
// boundary) for the collector's own log.
func clipLog(v string) string {
	const max = 256
	if len(v) <= max {
		return v
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut] + "…[truncated from " + strconv.Itoa(len(v)) + " bytes]"
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// uiMetrics appends the UI's series to /metrics.
func (s *Server) uiMetrics(w io.Writer) {
	if s.ui == nil {
		return
	}
	p := func(name, typ, help string, v any) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, v)
	}
	p("trailguard_ui_sessions", "gauge", "Web UI sessions held (signed in, not yet swept after expiry).", s.ui.sessions.Len())
	p("trailguard_ui_signins_total", "counter", "Web UI sign-ins.", s.ui.signIns.Load())
	p("trailguard_ui_signin_failures_total", "counter", "Web UI sign-ins refused (bad, revoked or under-privileged tokens).", s.ui.signInFailures.Load())
	p("trailguard_ui_csp_violations_total", "counter", "Content-Security-Policy violation reports from the web UI's pages.", s.ui.cspReports.Load())
}
