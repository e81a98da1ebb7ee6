package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ui"
)

// uiClient is a browser-like client: a cookie jar, and the headers a
// page's fetch sends.
type uiClient struct {
	t    *testing.T
	ts   *testServer
	c    *http.Client
	csrf string
}

func newUIClient(t *testing.T, ts *testServer) *uiClient {
	jar, _ := cookiejar.New(nil)
	return &uiClient{t: t, ts: ts, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (u *uiClient) do(method, path string, body string, hdr ...string) (*http.Response, []byte) {
	u.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u.ts.url+path, rd)
	if err != nil {
		u.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := u.c.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func (u *uiClient) signIn(token string) *http.Response {
	u.t.Helper()
	resp, b := u.do("POST", "/ui/api/session", `{"token":"`+token+`"}`)
	if resp.StatusCode == http.StatusOK {
		var s struct{ CSRF string }
		json.Unmarshal(b, &s)
		u.csrf = s.CSRF
	}
	return resp
}

func TestUISessionCookieAndAccess(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	u := newUIClient(t, ts)

	// Not signed in: the API through the UI is refused.
	if resp, _ := u.do("GET", "/ui/api/v1/events", ""); resp.StatusCode != 401 {
		t.Fatalf("anonymous /ui/api/v1/events: %d, want 401", resp.StatusCode)
	}
	resp := u.signIn(ts.read)
	if resp.StatusCode != 200 {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "tg_session" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/ui/" || len(cookie.Value) < 40 {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/ui/, a long random value", cookie)
	}
	if strings.Contains(resp.Header.Get("Set-Cookie"), ts.read) {
		t.Fatal("the token itself is in the cookie")
	}
	// Reads work, with the token's role.
	if resp, b := u.do("GET", "/ui/api/v1/events?from=1h", ""); resp.StatusCode != 200 {
		t.Fatalf("search through the UI: %d %s", resp.StatusCode, b)
	}
	if resp, _ := u.do("GET", "/ui/api/v1/tokens", ""); resp.StatusCode != 403 {
		t.Fatalf("a read session listing tokens: %d, want 403 (the API's own role check)", resp.StatusCode)
	}
	// The UI never ingests, even for an admin.
	a := newUIClient(t, ts)
	a.signIn(ts.admin)
	if resp, _ := a.do("POST", "/ui/api/v1/events", `{"message":"x"}`, "X-CSRF-Token", a.csrf); resp.StatusCode != 403 {
		t.Fatalf("ingest through the UI: %d, want 403", resp.StatusCode)
	}
	// Paths outside /v1 cannot be reached through the prefix.
	for _, p := range []string{"/ui/api/v1/../_bulk", "/ui/api/_bulk", "/ui/api/v1/%2e%2e/_license"} {
		if resp, _ := a.do("GET", p, ""); resp.StatusCode != 404 && resp.StatusCode/100 != 3 {
			t.Errorf("GET %s: %d, want 404 (or a redirect to a cleaned path)", p, resp.StatusCode)
		}
	}
	// Signing in again replaces the session: the previous cookie is dead.
	first := *cookie
	u.signIn(ts.read)
	if ts.ui.sessions.Len() != 2 { // u's new one and a's
		t.Fatalf("%d sessions after signing in again, want 2", ts.ui.sessions.Len())
	}
	stale := newUIClient(t, ts)
	stale.c.Jar.SetCookies(mustURL(ts.url+"/ui/"), []*http.Cookie{&first})
	if resp, _ := stale.do("GET", "/ui/api/v1/events", ""); resp.StatusCode != 401 {
		t.Fatalf("the replaced session's cookie: %d, want 401", resp.StatusCode)
	}
	for _, c := range u.c.Jar.Cookies(mustURL(ts.url + "/ui/")) {
		if c.Name == "tg_session" {
			cookie = c
		}
	}
	// Sign-out ends the session server-side: the old cookie is useless.
	old := *cookie
	if resp, _ := u.do("DELETE", "/ui/api/session", "", "X-CSRF-Token", u.csrf); resp.StatusCode != 204 {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	replay := newUIClient(t, ts)
	base, _ := url.Parse(ts.url + "/ui/")
	replay.c.Jar.SetCookies(base, []*http.Cookie{&old})
	if resp, _ := replay.do("GET", "/ui/api/v1/events", ""); resp.StatusCode != 401 {
		t.Fatalf("cookie after sign-out: %d, want 401", resp.StatusCode)
	}
}

func TestUISignInRefusals(t *testing.T) {
	ts := startServer(t, t.TempDir(), func(c *Config) { c.AuthFailBurst = 3; c.AuthFailPerMinute = 1 })
	u := newUIClient(t, ts)
	// Ingest tokens cannot sign in.
	if resp := u.signIn(ts.ingest); resp.StatusCode != 403 {
		t.Fatalf("ingest token sign-in: %d, want 403", resp.StatusCode)
	}
	// Cross-site sign-in (login CSRF) and forms are refused.
	if resp, _ := u.do("POST", "/ui/api/session", `{"token":"`+ts.read+`"}`, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"); resp.StatusCode != 403 {
		t.Fatalf("cross-site sign-in: %d, want 403", resp.StatusCode)
	}
	if resp, _ := u.do("POST", "/ui/api/session", `token=x`, "Content-Type", "application/x-www-form-urlencoded"); resp.StatusCode != 415 {
		t.Fatalf("form sign-in: %d, want 415", resp.StatusCode)
	}
	// Wrong tokens: 401 without a Basic challenge, then 429 with Retry-After.
	for i := range 3 {
		resp := u.signIn("tg_wrong")
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != "" {
			t.Fatalf("bad token #%d: %d %q", i, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	resp := u.signIn("tg_wrong")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("4th bad token: %d, want 429 with Retry-After", resp.StatusCode)
	}
	// A valid token still gets in (as with the API).
	if resp := u.signIn(ts.read); resp.StatusCode != 200 {
		t.Fatalf("valid token after failures: %d", resp.StatusCode)
	}
	// Every attempt is in the trail.
	var fails, ok, denied int
	waitAudit(t, ts, func(evs []*event.Event) bool {
		fails, ok, denied = 0, 0, 0
		for _, e := range evs {
			switch {
			case e.Action == event.ActionLoginFail && strings.Contains(e.Reason, "web UI sign-in"):
				fails++
			case e.Action == event.ActionLoginSuccess && e.Reason == "web UI sign-in" && e.UserName == "analyst":
				ok++
			case e.Action == event.ActionAuthzFail && strings.Contains(e.Reason, "may not sign in"):
				denied++
			}
		}
		return fails == 3 && ok == 1 && denied == 1
	})
	if fails != 3 || ok != 1 || denied != 1 {
		t.Fatalf("audited: %d failed, %d successful sign-ins, %d denials; want 3, 1, 1", fails, ok, denied)
	}
}

// waitAudit waits (bounded) until the collector's own events satisfy ok:
// they are written in the background after the answer.
func waitAudit(t *testing.T, ts *testServer, ok func([]*event.Event) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // must come: a long wait (a loaded machine stalls for seconds)
	for !ok(auditEvents(t, ts)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUICSRF(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	u := newUIClient(t, ts)
	u.signIn(ts.admin)
	cases := []struct {
		name string
		hdr  []string
		want int
	}{
		{"no token", []string{"X-CSRF-Token", ""}, 403},
		{"wrong token", []string{"X-CSRF-Token", "x" + u.csrf}, 403},
		{"other origin", []string{"X-CSRF-Token", u.csrf, "Origin", "http://evil.example"}, 403},
		{"cross-site fetch", []string{"X-CSRF-Token", u.csrf, "Sec-Fetch-Site", "cross-site"}, 403},
		{"same origin with token", []string{"X-CSRF-Token", u.csrf, "Origin", ts.url}, 202},
	}
	for _, c := range cases {
		resp, b := u.do("POST", "/ui/api/v1/integrity/verify", "", c.hdr...)
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, b, c.want)
		}
	}
	waitVerify(t, ts)
	// Sign-out needs the token too (no forced sign-out from elsewhere).
	if resp, _ := u.do("DELETE", "/ui/api/session", ""); resp.StatusCode != 403 {
		t.Fatalf("sign-out without CSRF token: %d, want 403", resp.StatusCode)
	}
}

func waitVerify(t *testing.T, ts *testServer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cur, _ := ts.ui.verify.status(); cur == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("verification still running")
}

func TestUISessionExpiry(t *testing.T) {
	ts := startServer(t, t.TempDir(), func(c *Config) { c.UISessionIdle = time.Minute; c.UISessionMax = 5 * time.Minute })
	now := time.Now()
	ts.ui.sessions.SetClock(func() time.Time { return now })
	u := newUIClient(t, ts)
	u.signIn(ts.read)
	get := func(hdr ...string) int {
		resp, _ := u.do("GET", "/ui/api/v1/events?from=1h", "", hdr...)
		return resp.StatusCode
	}
	// Activity within the idle timeout keeps the session; automatic
	// refreshes do not count as activity.
	for range 4 {
		now = now.Add(50 * time.Second)
		if c := get(); c != 200 {
			t.Fatalf("active session: %d", c)
		}
	}
	now = now.Add(50 * time.Second)
	if c := get("X-Trailguard-Background", "1"); c != 200 {
		t.Fatalf("background refresh: %d", c)
	}
	now = now.Add(20 * time.Second) // 70 s since the last activity
	if c := get(); c != 401 {
		t.Fatalf("idle session: %d, want 401", c)
	}
	// Absolute lifetime, however active.
	u.signIn(ts.read)
	for i := range 6 {
		now = now.Add(55 * time.Second)
		c := get()
		if want := 200; i == 5 {
			if c != 401 {
				t.Fatalf("session past its lifetime: %d, want 401", c)
			}
		} else if c != want {
			t.Fatalf("step %d: %d", i, c)
		}
	}
	n := 0
	waitAudit(t, ts, func(evs []*event.Event) bool {
		n = 0
		for _, e := range evs {
			if e.Action == event.ActionSessionExpired && e.UserName == "analyst" {
				n++
			}
		}
		return n == 2
	})
	if n != 2 {
		t.Fatalf("%d session_expired events, want 2", n)
	}
}

func TestUIRevokedTokenEndsSession(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	u := newUIClient(t, ts)
	u.signIn(ts.read)
	if _, err := ts.Tokens().Revoke("analyst"); err != nil {
		t.Fatal(err)
	}
	resp, _ := u.do("GET", "/ui/api/v1/events", "")
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != "" {
		// A Basic challenge would make the browser open a password dialog.
		t.Fatalf("session of a revoked token: %d, WWW-Authenticate %q; want 401 without a challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if ts.ui.sessions.Len() != 0 {
		t.Fatalf("the session of a revoked token is kept")
	}
}

func TestUIEntryAndHeaders(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	u := newUIClient(t, ts)
	// A browser at / goes to the UI; Elasticsearch clients get the info.
	resp, _ := u.do("GET", "/", "", "Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("browser at /: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, accept := range []string{"", "application/json", "application/vnd.elasticsearch+json; compatible-with=8"} {
		resp, b := u.do("GET", "/", "", "Accept", accept)
		if resp.StatusCode != 200 || resp.Header.Get("X-Elastic-Product") != "Elasticsearch" || !strings.Contains(string(b), "tagline") {
			t.Fatalf("GET / with Accept %q: %d %s", accept, resp.StatusCode, b)
		}
	}
	resp, b := u.do("GET", "/", "", "Accept", "text/html", "Authorization", "Bearer "+ts.ingest)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "tagline") {
		t.Fatalf("GET / with credentials and Accept text/html: %d", resp.StatusCode)
	}
	for _, p := range []string{"/ui/", "/ui/search", "/ui/js/app.js", "/ui/app.css", "/ui/api/session"} {
		resp, _ := u.do("GET", p, "")
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", p, h)
		}
	}
	if resp, _ := u.do("GET", "/ui/js/app.js", ""); resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Errorf("app.js type %q", resp.Header.Get("Content-Type"))
	}
	if resp, _ := u.do("GET", "/ui/nothing.js", ""); resp.StatusCode != 404 {
		t.Errorf("missing asset: %d", resp.StatusCode)
	}
	// A violation report is counted, and bounded.
	rep := `{"csp-report":{"document-uri":"http://x/ui/search","effective-directive":"script-src-elem","blocked-uri":"inline","script-sample":"alert(1)"}}`
	if resp, _ := u.do("POST", ui.CSPReportPath, rep, "Content-Type", "application/csp-report"); resp.StatusCode != 204 {
		t.Fatalf("CSP report: %d", resp.StatusCode)
	}
	if resp, _ := u.do("POST", ui.CSPReportPath, strings.Repeat("x", 20<<10)); resp.StatusCode != 413 {
		t.Fatalf("oversized CSP report: %d, want 413", resp.StatusCode)
	}
	if _, b := ts.do(t, "GET", "/metrics", ts.read, nil); !strings.Contains(string(b), "trailguard_ui_csp_violations_total 1\n") {
		t.Fatalf("metrics: %s", grepLines(string(b), "trailguard_ui"))
	}
	recorded := false
	waitAudit(t, ts, func(evs []*event.Event) bool {
		for _, e := range evs {
			recorded = recorded || e.Action == "ui_csp_violation" && strings.Contains(e.Reason, "script-src-elem")
		}
		return recorded
	})
	if !recorded {
		t.Fatal("the CSP violation is not in the trail")
	}
	_ = access.RoleRead
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestIntegrityVerify(t *testing.T) {
	wdir := t.TempDir()
	ts := startServer(t, t.TempDir(), func(c *Config) { c.Witness = []string{wdir} })
	for range 20 {
		if code, b := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(ev("authn_login_fail", "failure", "alice", "203.0.113.9", 401)+"\n")); code != 200 {
			t.Fatalf("ingest: %d %s", code, b)
		}
	}
	if code, _ := ts.do(t, "POST", "/v1/integrity/verify", ts.read, nil); code != 403 {
		t.Fatalf("verify with a read token: %d, want 403", code)
	}
	if code, b := ts.do(t, "POST", "/v1/integrity/verify", ts.admin, nil); code != 202 {
		t.Fatalf("verify: %d %s", code, b)
	}
	waitVerify(t, ts)
	code, b := ts.do(t, "GET", "/v1/integrity", ts.read, nil)
	if code != 200 {
		t.Fatalf("integrity: %d %s", code, b)
	}
	var st struct {
		TreeSize    uint64 `json:"tree_size"`
		VerifierKey string `json:"verifier_key"`
		Witnesses   []witnessJSON
		Last        *verifyJSON `json:"last_verify"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Last == nil || st.Last.OK == nil || !*st.Last.OK || st.Last.Report.Records < 20 || st.Last.Checked < 20 {
		t.Fatalf("last verify %s", b)
	}
	if len(st.Witnesses) != 1 || st.Witnesses[0].Signature != "ok" || st.Witnesses[0].TreeSize == nil || !strings.HasPrefix(st.VerifierKey, "test.example/trailguard+") {
		t.Fatalf("witnesses/key: %s", b)
	}
	// The result survives a restart.
	dir := ts.dir
	ts.stop(t)
	ts2 := startServer(t, dir, nil)
	if _, last := ts2.ui.verify.status(); last == nil || last.OK == nil || !*last.OK {
		t.Fatalf("last verification forgotten at restart: %+v", last)
	}
}
