package ui

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestSessionsExpiry(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := NewSessions(10*time.Minute, time.Hour, 3)
	s.SetClock(func() time.Time { return now })
	cookie, sess, _ := s.Create("id1", "alice", "read", "tg_secret")
	if len(cookie) < 40 || sess.CSRF == "" || sess.CSRF == cookie || sess.Secret != "tg_secret" {
		t.Fatalf("session %+v, cookie %q", sess, cookie)
	}
	cases := []struct {
		advance time.Duration
		active  bool
		want    error
	}{
		{9 * time.Minute, true, nil},                // within idle: activity restarts it
		{9 * time.Minute, false, nil},               // 9 min since the activity
		{2 * time.Minute, false, ErrSessionExpired}, // 11 min idle (background did not count)
		{0, true, ErrNoSession},                     // removed
	}
	for i, c := range cases {
		now = now.Add(c.advance)
		if _, err := s.Lookup(cookie, c.active); err != c.want {
			t.Fatalf("step %d: %v, want %v", i, err, c.want)
		}
	}
	// Absolute lifetime, however active.
	cookie, _, _ = s.Create("id1", "alice", "read", "x")
	for i := range 6 {
		now = now.Add(9 * time.Minute)
		if _, err := s.Lookup(cookie, true); err != nil {
			t.Fatalf("active step %d: %v", i, err)
		}
	}
	now = now.Add(7 * time.Minute) // 61 min after sign-in
	if _, err := s.Lookup(cookie, true); err != ErrSessionExpired {
		t.Fatalf("past the lifetime: %v", err)
	}
	// Unknown and forged cookies.
	for _, c := range []string{"", "x", strings.Repeat("A", 43)} {
		if _, err := s.Lookup(c, true); err != ErrNoSession {
			t.Fatalf("cookie %q: %v", c, err)
		}
	}
}

func TestSessionsLimit(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := NewSessions(0, 0, 3)
	s.SetClock(func() time.Time { return now })
	var cookies []string
	for i := range 5 {
		now = now.Add(time.Second)
		c, _, ev := s.Create("id", "u", "read", "x")
		if (ev != nil) != (i >= 3) {
			t.Fatalf("create %d: evicted %v", i, ev)
		}
		cookies = append(cookies, c)
	}
	if s.Len() != 3 {
		t.Fatalf("%d sessions, want 3", s.Len())
	}
	for i, c := range cookies {
		_, err := s.Lookup(c, false)
		if (err == nil) != (i >= 2) {
			t.Fatalf("session %d: %v (the oldest go first)", i, err)
		}
	}
	if _, ok := s.Delete(cookies[4]); !ok || s.Len() != 2 {
		t.Fatal("delete")
	}
}

func TestSessionCookie(t *testing.T) {
	plain := httptest.NewRequest("GET", "http://collector:8600/ui/", nil)
	c := SessionCookie(plain, "v", 0)
	if c.Name != "tg_session" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/ui/" {
		t.Fatalf("plain HTTP cookie %+v", c)
	}
	tlsReq := httptest.NewRequest("GET", "https://collector:8600/ui/", nil)
	tlsReq.TLS = &tls.ConnectionState{}
	c = SessionCookie(tlsReq, "v", 0)
	if c.Name != "__Host-tg_session" || !c.Secure || c.Path != "/" || c.Domain != "" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("TLS cookie %+v: __Host- needs Secure, Path=/ and no Domain", c)
	}
	tlsReq.AddCookie(&http.Cookie{Name: "tg_session", Value: "planted"})
	if v := CookieValue(tlsReq); v != "" {
		t.Fatalf("under TLS the unprefixed cookie was read: %q", v)
	}
}

func TestCSRF(t *testing.T) {
	sess := Session{CSRF: "secret-value"}
	req := func(hdr ...string) *http.Request {
		r := httptest.NewRequest("POST", "http://collector:8600/ui/api/v1/x", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		return r
	}
	cases := []struct {
		name string
		r    *http.Request
		ok   bool
	}{
		{"token, same origin", req("X-CSRF-Token", "secret-value", "Origin", "http://collector:8600", "Sec-Fetch-Site", "same-origin"), true},
		{"token, no origin headers", req("X-CSRF-Token", "secret-value"), true},
		{"no token", req("Origin", "http://collector:8600"), false},
		{"wrong token", req("X-CSRF-Token", "secret-valuf"), false},
		{"other origin", req("X-CSRF-Token", "secret-value", "Origin", "http://evil.example"), false},
		{"other port", req("X-CSRF-Token", "secret-value", "Origin", "http://collector:8601"), false},
		{"https origin on http", req("X-CSRF-Token", "secret-value", "Origin", "https://collector:8600"), false},
		{"same-site", req("X-CSRF-Token", "secret-value", "Sec-Fetch-Site", "same-site"), false},
		{"cross-site", req("X-CSRF-Token", "secret-value", "Sec-Fetch-Site", "cross-site"), false},
		{"null origin", req("X-CSRF-Token", "secret-value", "Origin", "null"), false},
	}
	for _, c := range cases {
		if err := CheckCSRF(c.r, sess); (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if CheckCSRF(req("X-CSRF-Token", ""), Session{}) == nil {
		t.Error("an empty token matched an empty session value")
	}
}

func TestWantsHTML(t *testing.T) {
	cases := []struct {
		accept, auth string
		want         bool
	}{
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "", true},
		{"TEXT/HTML", "", true},
		{"", "", false},
		{"*/*", "", false},
		{"application/json", "", false},
		{"application/vnd.elasticsearch+json; compatible-with=8", "", false},
		{"text/html", "Bearer tg_x", false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Accept", c.accept)
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		if got := WantsHTML(r); got != c.want {
			t.Errorf("Accept %q auth %q: %v", c.accept, c.auth, got)
		}
	}
}

func TestHandler(t *testing.T) {
	h := Handler()
	get := func(method, path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
		return w
	}
	for _, c := range []struct {
		path, ctype string
		code        int
	}{
		{"/ui/", "text/html; charset=utf-8", 200},
		{"/ui/search", "text/html; charset=utf-8", 200},
		{"/ui/alerts/", "text/html; charset=utf-8", 200},
		{"/ui/js/app.js", "text/javascript; charset=utf-8", 200},
		{"/ui/app.css", "text/css; charset=utf-8", 200},
		{"/ui/favicon.svg", "image/svg+xml", 200},
		{"/ui/nosuch", "", 404},
		{"/ui/js/", "", 404},
		{"/ui/js/../ui.go", "", 404},
		{"/ui", "", 301},
	} {
		w := get("GET", c.path)
		if w.Code != c.code || c.ctype != "" && w.Header().Get("Content-Type") != c.ctype {
			t.Errorf("%s: %d %q", c.path, w.Code, w.Header().Get("Content-Type"))
		}
		if w.Header().Get("Content-Security-Policy") != ContentSecurityPolicy || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: security headers missing", c.path)
		}
	}
	if w := get("POST", "/ui/"); w.Code != 405 {
		t.Errorf("POST: %d", w.Code)
	}
	// Revalidation by ETag.
	w := get("GET", "/ui/js/app.js")
	r := httptest.NewRequest("GET", "/ui/js/app.js", nil)
	r.Header.Set("If-None-Match", w.Header().Get("ETag"))
	w2 := httptest.NewRecorder()
	h.ServeHTTP(w2, r)
	if w2.Code != 304 {
		t.Errorf("If-None-Match: %d", w2.Code)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("/ui/js/app.js: Cache-Control %q", cc)
	}
}

// TestHandlerVersioned: index.html names every module and the stylesheet
// under the assets' version, served there for good; another version gets
// today's file revalidated, and the version changes with any asset.
func TestHandlerVersioned(t *testing.T) {
	h := Handler()
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w
	}
	index := get("/ui/search")
	if index.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("index.html: Cache-Control %q", index.Header().Get("Cache-Control"))
	}
	ver := h.(*handler).version
	body := index.Body.String()
	refs := regexp.MustCompile(`(?:href|src)="(/ui/[^"]+)"`).FindAllStringSubmatch(body, -1)
	var versioned int
	for _, m := range refs {
		u := m[1]
		if strings.HasSuffix(u, ".js") || strings.HasSuffix(u, ".css") {
			if !strings.HasPrefix(u, "/ui/v/"+ver+"/") {
				t.Errorf("index.html loads %s outside its version", u)
			}
			versioned++
			w := get(u)
			want, _ := fs.ReadFile(Assets(), strings.TrimPrefix(u, "/ui/v/"+ver+"/"))
			if w.Code != 200 || w.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" || !bytes.Equal(w.Body.Bytes(), want) {
				t.Errorf("%s: %d %q", u, w.Code, w.Header().Get("Cache-Control"))
			}
		}
	}
	if versioned < 10 {
		t.Fatalf("only %d versioned assets in index.html:\n%s", versioned, body)
	}
	if w := get("/ui/v/0123456789abcdef/js/app.js"); w.Code != 200 || w.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("another version: %d %q", w.Code, w.Header().Get("Cache-Control"))
	}
	for _, p := range []string{"/ui/v/" + ver + "/js/../../ui.go", "/ui/v/" + ver + "/", "/ui/v/" + ver, "/ui/v/"} {
		if w := get(p); w.Code != 404 {
			t.Errorf("%s: %d", p, w.Code)
		}
	}
	// A changed asset changes the version.
	fsys := fstest.MapFS{}
	fs.WalkDir(Assets(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := fs.ReadFile(Assets(), p)
			fsys[p] = &fstest.MapFile{Data: data}
		}
		return err
	})
	fsys["js/dom.js"] = &fstest.MapFile{Data: append(fsys["js/dom.js"].Data, "\n// changed\n"...)}
	if other := newHandler(fsys); other.version == ver {
		t.Errorf("the version %s did not change with js/dom.js", ver)
	}
}

// TestAssetsStayOurs: no inline script or style, no eval, no external URL,
// no HTML sink in the JavaScript: what the CSP forbids is not there to be
// forbidden, and what the DOM rules forbid is checked in the source too.
func TestAssetsStayOurs(t *testing.T) {
	fsys := Assets()
	fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, _ := fsys.Open(p)
		b, _ := io.ReadAll(f)
		f.Close()
		// The SVG namespace is a name, not a place anything is loaded from.
		src := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute(\"on", "http://", "https://", "//cdn", "style=\""} {
			if strings.Contains(src, bad) {
				t.Errorf("%s contains %q", p, bad)
			}
		}
		if strings.HasSuffix(p, ".html") && (strings.Contains(src, "<script>") || strings.Contains(src, "<style")) {
			t.Errorf("%s has inline script or style", p)
		}
		return nil
	})
}

// TestSessionsPerToken: one token's holder signing in again and again
// (a stolen read token) ends that token's own oldest sessions once it has
// PerTokenLimit, never the sessions of other tokens. Before, every
// sign-in past the table's limit ended the oldest session of anyone: a
// script with one read token signed the whole UI out.
func TestSessionsPerToken(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := NewSessions(0, 0, PerTokenLimit+10)
	s.SetClock(func() time.Time { return now })
	var others []string
	for i := range 10 {
		now = now.Add(time.Second)
		c, _, _ := s.Create(fmt.Sprint("admin-", i), "ops", "admin", "x")
		others = append(others, c)
	}
	var mine []string
	for range 3 * PerTokenLimit {
		now = now.Add(time.Second)
		c, _, ev := s.Create("stolen", "analyst", "read", "y")
		if ev != nil && ev.TokenID != "stolen" {
			t.Fatalf("a sign-in of token stolen ended %s's session", ev.TokenID)
		}
		mine = append(mine, c)
	}
	for i, c := range others {
		if _, err := s.Lookup(c, false); err != nil {
			t.Errorf("session of admin-%d: %v", i, err)
		}
	}
	if _, err := s.Lookup(mine[len(mine)-1], false); err != nil {
		t.Errorf("the newest session of the busy token: %v", err)
	}
	if _, err := s.Lookup(mine[0], false); err == nil {
		t.Error("the busy token's oldest session survived past PerTokenLimit")
	}
	if s.Len() != 10+PerTokenLimit {
		t.Errorf("%d sessions, want %d", s.Len(), 10+PerTokenLimit)
	}
}
