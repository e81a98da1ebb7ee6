// Package demo is trailguard's one-command demonstration: a small sample
// API (users, login, role changes, orders) wrapped in httpaudit, a traffic
// generator that drives it like a handful of users and one attacker would,
// and a summary of the audit trail that results.
package demo

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/httpaudit"
)

type user struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Roles    []string `json:"roles"`
	password string
}

type order struct {
	ID     int    `json:"id"`
	Owner  string `json:"owner"`
	Item   string `json:"item"`
	Amount int    `json:"amount_cents"`
	Card   string `json:"card_number,omitempty"`
}

// api is the sample application: deliberately ordinary code that reports
// logins and sensitive operations through httpaudit.
type api struct {
	log *slog.Logger

	mu       sync.Mutex
	users    map[string]*user // by name
	sessions map[string]*user // by bearer token
	orders   []order
}

func newAPI(log *slog.Logger) *api {
	a := &api{log: log, users: map[string]*user{}, sessions: map[string]*user{}}
	for i, u := range []user{
		{Name: "alice", Roles: []string{"admin"}, password: "correct-horse-battery"},
		{Name: "bob", Roles: []string{"viewer"}, password: "hunter2-but-longer"},
		{Name: "carol", Roles: []string{"clerk"}, password: "s3cure-Passw0rd!"},
		{Name: "dave", Roles: []string{"clerk"}, password: "tr0ub4dor&3"},
	} {
		u.ID = "u" + strconv.Itoa(i+1)
		a.users[u.Name] = &u
	}
	return a
}

func (a *api) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("POST /api/login", a.login)
	mux.HandleFunc("POST /api/logout", a.authed(a.logout))
	mux.HandleFunc("GET /api/users", a.authed(a.listUsers))
	mux.HandleFunc("PUT /api/users/{name}/role", a.authed(a.setRole))
	mux.HandleFunc("GET /api/orders", a.authed(a.listOrders))
	mux.HandleFunc("POST /api/orders", a.authed(a.createOrder))
	mux.HandleFunc("GET /api/orders/{id}", a.authed(a.getOrder))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (a *api) login(w http.ResponseWriter, r *http.Request) {
	var in struct{ Username, Password string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad request"})
		return
	}
	// A copy taken under the lock, as in authed: setRole replaces Roles.
	// The session keeps the shared *user so that role changes apply to it.
	var u *user
	a.mu.Lock()
	shared := a.users[in.Username]
	if shared != nil {
		c := *shared
		u = &c
	}
	a.mu.Unlock()
	switch {
	case u == nil:
		httpaudit.Auth(r.Context(), httpaudit.Attempt{User: httpaudit.User{Name: in.Username}, Reason: "unknown user"})
	case subtle.ConstantTimeCompare([]byte(in.Password), []byte(u.password)) != 1:
		httpaudit.Auth(r.Context(), httpaudit.Attempt{User: httpaudit.User{ID: u.ID, Name: u.Name}, Reason: "bad password"})
	default:
		au := httpaudit.User{ID: u.ID, Name: u.Name, Roles: u.Roles}
		if err := httpaudit.Auth(r.Context(), httpaudit.Attempt{User: au, Success: true}); err != nil {
			// Fail closed: a login that cannot be audited does not happen.
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "audit unavailable"})
			return
		}
		token := newToken()
		a.mu.Lock()
		a.sessions[token] = shared
		a.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]string{"token": token})
		return
	}
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid credentials"})
}

func newToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// authed resolves the bearer token to a user and records it on the
// request's events.
func (a *api) authed(next func(http.ResponseWriter, *http.Request, *user)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// The handler gets a copy taken under the lock: setRole replaces a
		// user's Roles while other requests of that user are in flight.
		var u *user
		a.mu.Lock()
		if s := a.sessions[token]; s != nil {
			c := *s
			u = &c
		}
		a.mu.Unlock()
		if !ok || u == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="demo"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "login required"})
			return
		}
		httpaudit.SetUser(r.Context(), httpaudit.User{ID: u.ID, Name: u.Name, Roles: u.Roles})
		next(w, r, u)
	}
}

func (a *api) logout(w http.ResponseWriter, r *http.Request, u *user) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	a.mu.Lock()
	delete(a.sessions, token)
	a.mu.Unlock()
	httpaudit.Audit(r.Context(), httpaudit.Op{Action: event.ActionSessionLogout, Resource: "session",
		Category: []string{event.CategoryAuthentication}, Type: []string{event.TypeEnd}})
	w.WriteHeader(http.StatusNoContent)
}

// deny records an authorization failure and answers 403.
func deny(w http.ResponseWriter, r *http.Request, resource, why string) {
	httpaudit.Audit(r.Context(), httpaudit.Op{Action: event.ActionAuthzFail, Resource: resource,
		Outcome: event.OutcomeFailure, Reason: why})
	writeJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden"})
}

func (a *api) listUsers(w http.ResponseWriter, r *http.Request, u *user) {
	if !slices.Contains(u.Roles, "admin") {
		deny(w, r, "users", "role admin required")
		return
	}
	a.mu.Lock()
	out := make([]user, 0, len(a.users))
	for _, x := range a.users {
		out = append(out, *x)
	}
	a.mu.Unlock()
	slices.SortFunc(out, func(x, y user) int { return strings.Compare(x.ID, y.ID) })
	httpaudit.Audit(r.Context(), httpaudit.Op{Action: event.ActionSensitiveRead, Resource: "users"})
	writeJSON(w, http.StatusOK, out)
}

func (a *api) setRole(w http.ResponseWriter, r *http.Request, u *user) {
	name := r.PathValue("name")
	if !slices.Contains(u.Roles, "admin") {
		deny(w, r, "user/"+name, "role admin required to change roles")
		return
	}
	var in struct{ Role string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024)).Decode(&in); err != nil || in.Role == "" {
		httpaudit.Audit(r.Context(), httpaudit.Op{Action: event.ActionInputValidationFail, Resource: "user/" + name,
			Outcome: event.OutcomeFailure, Reason: "role missing"})
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "role required"})
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	target := a.users[name]
	if target == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such user"})
		return
	}
	before := slices.Clone(target.Roles)
	after := []string{in.Role}
	// Fail closed: the change is made only once its audit record is durable.
	err := httpaudit.Audit(r.Context(), httpaudit.Op{
		Action:   event.ActionUserRoleChange,
		Resource: "user/" + target.ID,
		Target:   &httpaudit.User{ID: target.ID, Name: target.Name},
		Before:   map[string]any{"roles": before},
		After:    map[string]any{"roles": after},
	})
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "audit unavailable"})
		return
	}
	target.Roles = after
	a.log.InfoContext(r.Context(), "role changed", "target", target.Name, "roles", after)
	writeJSON(w, http.StatusOK, target)
}

func (a *api) listOrders(w http.ResponseWriter, r *http.Request, u *user) {
	a.mu.Lock()
	var out []order
	for _, o := range a.orders {
		if o.Owner == u.Name || slices.Contains(u.Roles, "admin") {
			o.Card = ""
			out = append(out, o)
		}
	}
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (a *api) createOrder(w http.ResponseWriter, r *http.Request, u *user) {
	var in order
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil || in.Amount <= 0 || in.Item == "" {
		httpaudit.Audit(r.Context(), httpaudit.Op{Action: event.ActionInputValidationFail, Resource: "orders",
			Outcome: event.OutcomeFailure, Reason: "item and a positive amount_cents are required"})
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid order"})
		return
	}
	a.mu.Lock()
	in.ID = len(a.orders) + 1
	in.Owner = u.Name
	a.orders = append(a.orders, in)
	a.mu.Unlock()
	// The order, card number included, goes into the audit record; the
	// redactor keeps only what PCI DSS allows of it.
	httpaudit.Audit(r.Context(), httpaudit.Op{Action: event.ActionSensitiveCreate, Resource: fmt.Sprintf("order/%d", in.ID), After: in})
	a.log.InfoContext(r.Context(), "order placed", "order", in.ID, "amount_cents", in.Amount, "card_number", in.Card)
	in.Card = ""
	writeJSON(w, http.StatusCreated, in)
}

func (a *api) getOrder(w http.ResponseWriter, r *http.Request, u *user) {
	id, _ := strconv.Atoi(r.PathValue("id"))
	a.mu.Lock()
	defer a.mu.Unlock()
	if id < 1 || id > len(a.orders) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such order"})
		return
	}
	o := a.orders[id-1]
	if o.Owner != u.Name && !slices.Contains(u.Roles, "admin") {
		deny(w, r, fmt.Sprintf("order/%d", id), "not the owner")
		return
	}
	o.Card = ""
	writeJSON(w, http.StatusOK, o)
}
