package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/alerting"
	"github.com/trailguard/trailguard/decision"
	"github.com/trailguard/trailguard/detect"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/testenv"
)

// normalisingUpstream is an API that routes as common frameworks do: it
// decodes escapes, resolves dot segments and merges slashes (Go's
// path.Clean, Werkzeug, nginx), ignores a trailing slash and case
// (Express, ASP.NET). It answers 403 to a wrong password at POST /login
// (so that a login the gateway does not recognise is no authentication
// failure at all), 200 to PUT /api/users/{id}/role and GET /api/search,
// and 404 to anything else; the route it served is in X-Route.
func normalisingUpstream(t *testing.T) *upstream {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		p, err := url.PathUnescape(r.URL.EscapedPath())
		if err != nil {
			http.Error(w, "bad path", http.StatusBadRequest)
			return
		}
		p = strings.ToLower(strings.TrimSuffix(path.Clean("/"+dropParams(p)), "/"))
		segs := strings.Split(p, "/")
		switch {
		case strings.EqualFold(r.Method, "POST") && p == "/login":
			w.Header().Set("X-Route", "login")
			b, _ := io.ReadAll(r.Body)
			if !strings.Contains(string(b), `"password":"right"`) {
				http.Error(w, "no", http.StatusForbidden)
			}
		case strings.EqualFold(r.Method, "PUT") && len(segs) == 5 && segs[1] == "api" && segs[2] == "users" && segs[4] == "role":
			w.Header().Set("X-Route", "role:"+segs[3])
		case r.Method == "GET" && p == "/api/search":
			w.Header().Set("X-Route", "search")
		default:
			http.NotFound(w, r)
		}
	})
}

// dropParams drops ";" path parameters from each segment, as Tomcat does.
func dropParams(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			segs[i] = s[:j]
		}
	}
	return strings.Join(segs, "/")
}

// pathVariants are request-targets that the normalising upstream serves
// as canon: each must get the same decisions at the gateway.
func pathVariants(canon string) []string {
	rest := strings.TrimPrefix(canon, "/")
	first, tail, _ := strings.Cut(rest, "/")
	vs := []string{
		canon,
		"/" + strings.ReplaceAll(rest, "/", "//"),
		"//" + rest,
		"/./" + rest,
		"/zz/../" + rest,
		"/zz/%2E%2E/" + rest,
		"/zz/%2e./" + rest,
		"/%" + strconv.FormatInt(int64(first[0]), 16) + first[1:] + "/" + tail,
		canon + "/",
		canon + "/.",
		canon + "//",
		strings.ToUpper(canon),
		"/" + first + "/./" + tail,
		canon + ";jsessionid=1",
		"/" + first + ";x=1/" + tail,
		"/zz/..;/" + rest,
	}
	if tail != "" {
		vs = append(vs, "/"+first+"/xx/../"+tail, "/"+first+"/"+tail+"/../"+path.Base(canon))
	}
	out := vs[:1]
	for _, v := range vs[1:] {
		if v != canon {
			out = append(out, v)
		}
	}
	return out
}

// rawRequest sends one request with exactly this request-target (no
// client library cleans it) and returns the answer's status and X-Route.
func rawRequest(t *testing.T, gw, method, target, body string, hdr ...string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(gw, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n")
	for i := 0; i+1 < len(hdr); i += 2 {
		b.WriteString(hdr[i] + ": " + hdr[i+1] + "\r\n")
	}
	if body != "" {
		b.WriteString("Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Route")
}

var http1Modes = []string{HTTP1Lean, HTTP1NetHTTP}

func mustUnescape(t *testing.T, p string) string {
	t.Helper()
	u, err := url.PathUnescape(p)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestPathVariantsGetTheSameDecisions: every spelling of a sensitive
// route that the upstream serves as that route yields its audit event,
// with the right target; every spelling of a rate-limited route counts
// against its bucket. Both listeners, both forwarding paths.
func TestPathVariantsGetTheSameDecisions(t *testing.T) {
	t.Parallel()
	for _, mode := range http1Modes {
		for _, noFast := range []bool{false, true} {
			t.Run(mode+"/noFast="+strconv.FormatBool(noFast), func(t *testing.T) {
				t.Parallel()
				up := normalisingUpstream(t)
				p, gw, ms, _ := gatewayServer(t, Config{HTTP1: mode, TrustedProxies: []string{"127.0.0.1"},
					Routes: []Route{
						{Upstream: up.URL},
						{Path: "/api/search", Upstream: up.URL, RateLimit: &RateLimit{Rate: 0.001, Burst: 1}},
					},
					Sensitive: []Sensitive{{Method: "PUT", Path: "/api/users/{id}/role", Action: event.ActionUserRoleChange, TargetUser: "id"}},
				})
				p.noFast.Store(noFast)

				variants := pathVariants("/api/users/7/role")
				for i, v := range variants {
					method := [...]string{"PUT", "put", "Put"}[i%3] // as Werkzeug serves them
					code, route := rawRequest(t, gw, method, v, `{"role":"admin"}`, "X-Request-Id", "v-"+strconv.Itoa(i))
					if code != 200 || route != "role:7" {
						t.Fatalf("PUT %s: %d %q: the upstream does not serve it as the role change, the test proves nothing", v, code, route)
					}
				}
				// A request's audit event is queued before its access event.
				evs := ms.wait(t, "the requests", hasAction(event.ActionHTTPRequest, len(variants)))
				got := map[string]bool{}
				for _, ev := range byAction(evs, event.ActionUserRoleChange) {
					got[ev.RequestID] = true
					if ev.TargetUserID != "7" {
						t.Errorf("%s: target %q, want user 7", ev.Original, ev.TargetUserID)
					}
				}
				for _, ev := range byAction(evs, event.ActionHTTPRequest) {
					if strings.EqualFold(ev.Method, "PUT") && !got[ev.RequestID] {
						t.Errorf("%s %s (%s) reached the role change without its audit event", ev.Method, ev.Path, ev.Original)
					}
				}

				for i, v := range pathVariants("/api/search") {
					client := "192.0.2." + strconv.Itoa(i+1)
					if code, _ := rawRequest(t, gw, "GET", "/api/search", "", "X-Forwarded-For", client); code != 200 {
						t.Fatalf("first search from %s: %d", client, code)
					}
					code, route := rawRequest(t, gw, "GET", v, "", "X-Forwarded-For", client)
					if code != http.StatusTooManyRequests {
						t.Errorf("GET %s after the bucket was spent: %d (upstream route %q), want 429", v, code, route)
					}
				}
			})
		}
	}
}

// TestPathVariantsCountAsLogins: every spelling of the login route is a
// login, its 403 a failed login with the user named, and ten of them
// from one address block it (the request lane over the built-in brute
// force rule), before anything more reaches the upstream.
func TestPathVariantsCountAsLogins(t *testing.T) {
	t.Parallel()
	for _, mode := range http1Modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			up := normalisingUpstream(t)
			st, err := decision.Open(decision.Options{Path: filepath.Join(t.TempDir(), "decisions.json")}, noEntries{})
			if err != nil {
				t.Fatal(err)
			}
			eng, errs := detect.NewEngine(detect.Builtin(), detect.Options{})
			if len(errs) > 0 {
				t.Fatal(errs[0])
			}
			lane := newRequestLane(eng.Rules(), st.Target)
			ms := &memSink{}
			cfg := Config{HTTP1: mode, Routes: []Route{{Upstream: up.URL}}, TrustedProxies: []string{"127.0.0.1"},
				Logins: []Login{{Method: "POST", Path: "/login", User: "json:username"}},
				Sink:   laneSink{Sink: ms, lane: lane}}
			p, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			p.gate = newAnswerGate(func() uint64 { return p.audit.Stats().Enqueued }, lane.seen.Load)
			lane.gate.Store(p.gate)
			lane.p.Store(p)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := listen(p, cfg, ln)
			t.Cleanup(func() { srv.Close(); p.Close() })
			gw := "http://" + ln.Addr().String()

			// Ten attempts, each spelt other than /login. Spellings with
			// ".." are left out: the built-in traversal rule blocks the
			// client for those alone.
			var spellings []string
			for _, v := range pathVariants("/login")[1:] {
				if !strings.Contains(v, "..") && !strings.Contains(strings.ToLower(v), "%2e") {
					spellings = append(spellings, v)
				}
			}
			variants := make([]string, 10)
			for i := range variants {
				variants[i] = spellings[i%len(spellings)]
			}
			for i, v := range variants {
				method := [...]string{"POST", "post"}[i%2] // as Werkzeug serves them
				code, route := rawRequest(t, gw, method, v, `{"username":"admin","password":"guess`+strconv.Itoa(i)+`"}`, "X-Forwarded-For", "203.0.113.9",
					"X-Request-Id", "login-"+strconv.Itoa(i))
				if code != 403 || (route != "login" && i < len(variants)-1) {
					// (The last one's answer may be withheld: the block it
					// causes covers it.)
					t.Fatalf("POST %s: %d %q, want the upstream login's 403", v, code, route)
				}
			}
			evs := ms.wait(t, "the failed logins", hasAction(event.ActionHTTPRequest, len(variants)))
			fails := byAction(evs, event.ActionLoginFail)
			if len(fails) != len(variants) {
				t.Errorf("%d failed logins recorded for %d", len(fails), len(variants))
			}
			for _, ev := range fails {
				if ev.UserName == "" {
					t.Errorf("%s: failed login without the user", ev.Path)
				}
			}
			// Each event records the path decided on (url.path, the
			// login's, as rules, searches and reports read it) and the
			// target as sent (url.original).
			for _, ev := range append(fails, byAction(evs, event.ActionHTTPRequest)...) {
				i, err := strconv.Atoi(strings.TrimPrefix(ev.RequestID, "login-"))
				if err != nil || i >= len(variants) {
					t.Fatalf("event of request %q", ev.RequestID)
				}
				v := variants[i]
				want, err := matchPath(&url.URL{Path: mustUnescape(t, v), RawPath: v})
				if err != nil || !strings.EqualFold(strings.TrimSuffix(want, "/"), "/login") {
					t.Fatalf("%s: matchPath %q, %v", v, want, err)
				}
				orig := strings.Replace(v, "jsessionid=1", "jsessionid=[REDACTED]", 1) // a session id is a secret
				if v == want {
					orig = "" // url.original only when it says more
				}
				if ev.Path != want || ev.Original != orig {
					t.Errorf("%s of %s: url.path %q, url.original %q; want %q, %q", ev.Action, v, ev.Path, ev.Original, want, orig)
				}
			}
			before := up.count()
			waitFor(t, "the brute force blocked", func() bool {
				code, _ := rawRequest(t, gw, "POST", "/./login", `{"username":"admin","password":"right"}`, "X-Forwarded-For", "203.0.113.9")
				return code == http.StatusForbidden && up.count() == before
			})
		})
	}
}

// TestPathRefusals: a path that climbs above the root, one with an
// encoded slash or a backslash, and TRACE and CONNECT are refused (400,
// 405) with an input_validation_fail event; the upstream sees none.
func TestPathRefusals(t *testing.T) {
	t.Parallel()
	for _, mode := range http1Modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			up := normalisingUpstream(t)
			_, gw, ms, _ := gatewayServer(t, Config{HTTP1: mode, Routes: []Route{{Upstream: up.URL}}})
			cases := []struct {
				method, target string
				want           int
				hdr            []string
			}{
				{"GET", "/", 400, []string{"X-Original-URL", "/api/users/7/role"}},
				{"GET", "/", 400, []string{"x-rewrite-url", "/api/users/7/role"}},
				{"GET", "/../api/search", 400, nil},
				{"GET", "/api/../../api/search", 400, nil},
				{"GET", "/api/%2E%2E/%2e%2e/etc", 400, nil},
				{"PUT", "/api/users%2F7/role", 400, nil},
				{"PUT", "/api/users/7%2frole", 400, nil},
				{"GET", "/api%5Csearch", 400, nil},
				{"GET", "/api\\search", 400, nil},
				{"TRACE", "/api/search", 405, nil},
				{"trace", "/api/search", 405, nil},
				{"CONNECT", "gw.test:443", 405, nil},
			}
			for _, tc := range cases {
				if code, _ := rawRequest(t, gw, tc.method, tc.target, "", tc.hdr...); code != tc.want {
					t.Errorf("%s %s: %d, want %d", tc.method, tc.target, code, tc.want)
				}
			}
			ms.wait(t, "the refusals recorded", hasAction(event.ActionInputValidationFail, len(cases)))
			if c := up.count(); c != 0 {
				t.Errorf("the upstream saw %d refused requests", c)
			}
		})
	}
}

// FuzzMatchPath: the path decisions are made on is clean (matchPath
// of it is itself), has no dot segment and no empty segment, and is
// where an upstream that decodes and cleans the client's path (Go's
// path.Clean) would go.
func FuzzMatchPath(f *testing.F) {
	for _, s := range []string{"/", "/api/users/7/role", "//a//b/", "/a/./b/../c", "/%61pi/x", "/a/b/..", "/..",
		"/a/%2E%2E/b", "/a%2Fb", "/a/b/.", "/.a/..b/...", "/a\\b", "*", "", "/..;/x", "/a/..;x/b", "/a;b/c;d/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.ParseRequestURI(raw)
		if err != nil {
			return
		}
		got, err := matchPath(u)
		if err != nil {
			return
		}
		if got == "" || got[0] != '/' {
			if strings.HasPrefix(u.Path, "/") {
				t.Fatalf("%q: %q is not absolute", raw, got)
			}
			return
		}
		again, err := matchPath(&url.URL{Path: got})
		if err != nil || again != got {
			t.Fatalf("%q: %q is not clean: %q %v", raw, got, again, err)
		}
		for i, s := range strings.Split(got[1:], "/") {
			if s == "." || s == ".." || (s == "" && i != strings.Count(got[1:], "/")) {
				t.Fatalf("%q: %q has segment %q", raw, got, s)
			}
		}
		upstream, err := url.PathUnescape(u.EscapedPath())
		if err != nil {
			t.Fatalf("%q: parsed but not unescapable: %v", raw, err)
		}
		upstream = dropParams(upstream) // an upstream that drops them (Tomcat)
		if want := path.Clean(upstream); want != path.Clean(got) {
			t.Fatalf("%q: decisions on %q, the upstream serves %q", raw, got, want)
		}
	})
}

// TestStripPrefixOfOtherSpellings: a stripped route's prefix is taken off
// however the client spelt it, so that the upstream gets the path the
// decisions saw less the prefix, as nginx's proxy_pass with a URI; a path
// spelt plainly is forwarded as sent, escapes and all.
func TestStripPrefixOfOtherSpellings(t *testing.T) {
	t.Parallel()
	for _, mode := range http1Modes {
		for _, noFast := range []bool{false, true} {
			t.Run(mode+"/noFast="+strconv.FormatBool(noFast), func(t *testing.T) {
				t.Parallel()
				up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("X-Route", r.URL.EscapedPath())
				})
				p, gw, _, _ := gatewayServer(t, Config{HTTP1: mode, Routes: []Route{
					{Path: "/svc/", Upstream: up.URL + "/base", StripPrefix: true},
					{Upstream: up.URL + "/other"},
				}})
				p.noFast.Store(noFast)
				for target, want := range map[string]string{
					"/svc/a/b":           "/base/a/b",
					"/svc/a%3Ab/c%20d":   "/base/a%3Ab/c%20d",
					"/SVC/a/b":           "/base/a/b",
					"//svc//a/b":         "/base/a/b",
					"/x/../svc/./a/b":    "/base/a/b",
					"/svc/a/../b/":       "/base/b/",
					"/%73vc/a/b":         "/base/a/b",
					"/svc":               "/base/",
					"/svcx/a":            "/other/svcx/a",
					"/x/../svcx/a":       "/other/x/../svcx/a",
					"/svc/x/%2E%2E/a%20": "/base/a%20",
				} {
					if code, got := rawRequest(t, gw, "GET", target, ""); code != 200 || got != want {
						t.Errorf("GET %s: %d, upstream got %q, want %q", target, code, got, want)
					}
				}
			})
		}
	}
}

// A plain path costs matchPath one scan and no allocation.
func TestMatchPathPlainAllocatesNothing(t *testing.T) {
	u, _ := url.ParseRequestURI("/api/users/7/role.json?x=1")
	if n := testing.AllocsPerRun(100, func() {
		if got, err := matchPath(u); err != nil || got != u.Path {
			t.Fatalf("%q %v", got, err)
		}
	}); n != 0 {
		t.Errorf("%v allocations for a plain path", n)
	}
}

func BenchmarkMatchPath(b *testing.B) {
	for _, raw := range []string{"/api/users/7/role", "/api//users/./7/../7/role"} {
		u, _ := url.ParseRequestURI(raw)
		b.Run(raw, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if got, err := matchPath(u); err != nil || got != "/api/users/7/role" {
					b.Fatalf("%q %v", got, err)
				}
			}
		})
	}
}

// TestFlaskPathVariants: the Flask app of TestFlaskAppBehindGateway, a
// real upstream that knows nothing of trailguard, behind the gateway
// (both listeners): every spelling of the role change that Flask serves
// as the role change has its audit event, naming the user changed.
func TestFlaskPathVariants(t *testing.T) {
	testenv.Long(t)
	t.Parallel()
	py := flaskPython(t)
	line, _ := startProcess(t, "listening ", py, "testdata/flaskapp/app.py")
	app := "http://127.0.0.1:" + strings.TrimPrefix(line, "listening ")
	resp, err := http.Post(app+"/login", "application/json", strings.NewReader(`{"username":"alice","password":"wonderland-7"}`))
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]string
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	token := out["token"]
	if token == "" {
		t.Fatal("no token from the Flask app")
	}
	for _, mode := range http1Modes {
		t.Run(mode, func(t *testing.T) {
			_, gw, ms, _ := gatewayServer(t, Config{HTTP1: mode, Routes: []Route{{Upstream: app}},
				Sensitive: []Sensitive{{Method: "PUT", Path: "/api/users/{id}/role", Action: event.ActionUserRoleChange, TargetUser: "id"}}})
			served := map[string]string{} // request id: target
			for i, v := range pathVariants("/api/users/bob/role") {
				id := mode[:1] + "-flask-" + strconv.Itoa(i)
				method := [...]string{"PUT", "put"}[i%2] // Werkzeug serves "put" as PUT
				code, _ := rawRequest(t, gw, method, v, `{"role":"viewer"}`, "Authorization", "Bearer "+token, "X-Request-Id", id)
				t.Logf("%s %s: Flask answers %d", method, v, code)
				if code == 200 {
					served[id] = method + " " + v
				}
			}
			if len(served) < 2 {
				t.Fatalf("Flask served %d spellings of the role change, want at least /api/users/bob/role and /%%61pi/users/bob/role", len(served))
			}
			evs := ms.wait(t, "the requests", hasAction(event.ActionHTTPRequest, len(pathVariants("/api/users/bob/role"))))
			audited := map[string]bool{}
			for _, ev := range byAction(evs, event.ActionUserRoleChange) {
				if ev.TargetUserID == "bob" && ev.Outcome == event.OutcomeSuccess {
					audited[ev.RequestID] = true
				}
			}
			for id, v := range served {
				if !audited[id] {
					t.Errorf("%s changed bob's role at Flask without its audit event", v)
				}
			}
		})
	}
}

// TestSingleNodeReportsSpellingsUnderTheRoute: a brute force through
// /login;jsessionid=N (Tomcat, Jetty and Spring serve it as /login) is
// recorded, indexed, counted and alerted on under /login on a single
// node: a search or a top-paths count of url.path finds every attempt
// there, each with the target as sent in url.original, and the built-in
// brute-force rule fires on them.
func TestSingleNodeReportsSpellingsUnderTheRoute(t *testing.T) {
	t.Parallel()
	up := normalisingUpstream(t)
	g, gw, _ := serveGateway(t, Config{DataDir: t.TempDir(), Routes: []Route{{Upstream: up.URL}}, TrustedProxies: []string{"127.0.0.1"},
		Logins: []Login{{Method: "POST", Path: "/login", User: "json:username"}}})
	const attempts = 10
	for i := range attempts {
		code, _ := rawRequest(t, gw, "POST", "/login;jsessionid="+strconv.Itoa(i), `{"username":"admin","password":"guess`+strconv.Itoa(i)+`"}`,
			"X-Forwarded-For", "203.0.113.9")
		if code != http.StatusForbidden {
			t.Fatalf("attempt %d: %d, want the upstream's 403 (or the block's)", i, code)
		}
	}
	col := g.Collector()
	waitFor(t, "the brute-force alert", func() bool {
		return len(col.Alerts().List(alerting.Filter{Rule: "trailguard_brute_force_source"})) > 0
	})
	_, token, err := col.Tokens().Create("reader", access.RoleRead)
	if err != nil {
		t.Fatal(err)
	}
	api := func(target string, into any) {
		t.Helper()
		req := httptest.NewRequest("GET", target, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		col.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", target, rec.Code, rec.Body)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), into); err != nil {
			t.Fatalf("%s: %v", target, err)
		}
	}
	q := url.QueryEscape("event.action:authn_login_fail and url.path:/login")
	var found struct {
		Hits []struct {
			Event struct {
				URL struct{ Path, Original string } `json:"url"`
			} `json:"event"`
		} `json:"hits"`
	}
	waitFor(t, "the failed logins indexed", func() bool {
		api("/v1/events?limit=100&q="+q, &found)
		return len(found.Hits) >= attempts
	})
	for _, h := range found.Hits {
		if !strings.HasPrefix(h.Event.URL.Original, "/login;jsessionid=") {
			t.Errorf("url.original %q, want the target as sent", h.Event.URL.Original)
		}
	}
	var top struct {
		Top []struct {
			Value string
			Count int64
		} `json:"top"`
	}
	api("/v1/stats?top=url.path&q="+url.QueryEscape("event.action:authn_login_fail"), &top)
	if len(top.Top) != 1 || top.Top[0].Value != "/login" || top.Top[0].Count != attempts {
		t.Errorf("failed logins by url.path: %+v, want all %d under /login", top.Top, attempts)
	}
}
