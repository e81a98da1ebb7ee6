package httpaudit_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/mux"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/httpaudit"
	"github.com/trailguard/trailguard/sink"
)

// show prints the action, status and path of every event in a JSON-lines
// trail, the fields an example can show deterministically.
func show(trail *bytes.Buffer) {
	sc := bufio.NewScanner(trail)
	for sc.Scan() {
		ev, err := event.Decode(sc.Bytes())
		if err != nil {
			panic(err)
		}
		fmt.Println(strings.TrimSpace(fmt.Sprint(ev.Action, " ", ev.Outcome, " ", ev.StatusCode, " ", ev.Path, " ", ev.UserName, " ", ev.Reason)))
	}
}

// The standard library's ServeMux: wrap the mux, and handlers report logins
// and sensitive operations through the request context.
func Example() {
	var trail bytes.Buffer
	audit, err := httpaudit.New(httpaudit.Config{Sink: sink.NewWriter(&trail), ServiceName: "shop"})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("password") != "correct horse" {
			httpaudit.Auth(r.Context(), httpaudit.Attempt{User: httpaudit.User{Name: r.FormValue("user")}, Reason: "bad password"})
			http.Error(w, "invalid credentials", http.StatusUnauthorized)
			return
		}
		httpaudit.Auth(r.Context(), httpaudit.Attempt{User: httpaudit.User{ID: "u1", Name: "alice"}, Success: true})
	})
	handler := audit.Middleware(mux)

	for _, pw := range []string{"guess", "correct horse"} {
		req := httptest.NewRequest("POST", "/login", strings.NewReader("user=alice&password="+pw))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		handler.ServeHTTP(httptest.NewRecorder(), req)
	}
	audit.Close() // drains the queue
	show(&trail)
	// Output:
	// authn_login_fail failure 0 /login alice bad password
	// http_request failure 401 /login
	// authn_login_success success 0 /login alice
	// http_request success 200 /login alice
}

// chi takes the middleware with Use; the audit trail records the role
// change with its before and after state.
func Example_chi() {
	var trail bytes.Buffer
	audit, _ := httpaudit.New(httpaudit.Config{Sink: sink.NewWriter(&trail)})
	r := chi.NewRouter()
	r.Use(audit.Middleware)
	r.Put("/users/{id}/role", func(w http.ResponseWriter, r *http.Request) {
		httpaudit.SetUser(r.Context(), httpaudit.User{ID: "u1", Name: "alice", Roles: []string{"admin"}})
		err := httpaudit.Audit(r.Context(), httpaudit.Op{
			Action:   event.ActionUserRoleChange,
			Resource: "user/" + chi.URLParam(r, "id"),
			Before:   map[string]any{"role": "viewer"},
			After:    map[string]any{"role": "admin"},
		})
		if err != nil { // fail-closed: refuse what cannot be audited
			http.Error(w, "audit unavailable", http.StatusServiceUnavailable)
		}
	})
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("PUT", "/users/42/role", nil))
	audit.Close()
	show(&trail)
	// Output:
	// user_role_change success 0 /users/42/role alice
	// http_request success 200 /users/42/role alice
}

// gorilla/mux takes the middleware with Use as well; the application's own
// slog records go through the same scrubber and carry the request id.
func Example_gorilla() {
	var trail bytes.Buffer
	audit, _ := httpaudit.New(httpaudit.Config{Sink: sink.NewWriter(&trail)})
	log := slog.New(audit.SlogHandler(nil))
	r := mux.NewRouter()
	r.Use(audit.Middleware)
	r.HandleFunc("/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		log.InfoContext(r.Context(), "order viewed", "order", mux.Vars(r)["id"], "api_key", "sk_live_123")
		w.WriteHeader(http.StatusNoContent)
	})
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/orders/7", nil))
	audit.Close()
	out := trail.String()
	fmt.Println(strings.Contains(out, "sk_live_123"), strings.Count(out, "\n"))
	// Output: false 2
}

// Transport carries the request id of the incoming request to the services
// it calls, so their logs share http.request.id with ours.
func ExampleTransport() {
	downstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("downstream saw", r.Header.Get("X-Request-ID"))
	}))
	defer downstream.Close()
	client := &http.Client{Transport: httpaudit.Transport(nil)}

	audit, _ := httpaudit.New(httpaudit.Config{Sink: sink.NewWriter(io.Discard)})
	defer audit.Close()
	api := audit.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), "GET", downstream.URL, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}))
	req := httptest.NewRequest("GET", "/checkout", nil)
	req.Header.Set("X-Request-ID", "req-7f3a")
	api.ServeHTTP(httptest.NewRecorder(), req)
	// Output: downstream saw req-7f3a
}
