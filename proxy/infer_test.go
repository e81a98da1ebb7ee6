package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/event"
)

// loginAPI is an upstream with the routes of a typical API: JSON, form
// and Basic logins, a role change, an admin-only page. Nothing in it
// knows about trailguard.
func loginAPI(t *testing.T) *upstream {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/login":
			var c struct {
				Credentials struct{ Email, Password string }
			}
			json.NewDecoder(r.Body).Decode(&c)
			if c.Credentials.Password == "correct-horse" {
				io.WriteString(w, `{"token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2lnbmF0dXJl"}`)
				return
			}
			http.Error(w, "bad credentials", 401)
		case r.URL.Path == "/form/login":
			r.ParseForm()
			if r.PostForm.Get("pass") == "correct-horse" {
				return
			}
			http.Error(w, "no", 403)
		case r.URL.Path == "/basic":
			if _, pw, _ := r.BasicAuth(); pw == "correct-horse" {
				io.WriteString(w, "hello")
				return
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="x"`)
			http.Error(w, "no", 401)
		case strings.HasPrefix(r.URL.Path, "/api/users/"):
			io.ReadAll(r.Body)
			if r.Header.Get("X-Role") == "viewer" {
				http.Error(w, "forbidden", 403)
				return
			}
			w.WriteHeader(204)
		case r.URL.Path == "/admin":
			http.Error(w, "forbidden", 403)
		case r.URL.Path == "/upload":
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
		default:
			http.Error(w, "who are you", 401)
		}
	})
}

const password = "correct-horse"

func TestAuthInference(t *testing.T) {
	t.Parallel()
	up := loginAPI(t)
	_, gw, ms := gateway(t, Config{
		Routes: []Route{{Upstream: up.URL}, {Path: "/upload", Upstream: up.URL, CaptureBody: 256}},
		Logins: []Login{
			{Method: "POST", Path: "/api/login", User: "json:credentials.email"},
			{Path: "/form/login", User: "form:user"},
		},
		Sensitive: []Sensitive{{Method: "PUT", Path: "/api/users/{id}/role", Action: event.ActionUserRoleChange, TargetUser: "id"}},
	})
	post := func(path, ct, body string, hdr ...string) int {
		req, _ := http.NewRequest("POST", gw+path, strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		if strings.HasPrefix(path, "/api/users/") {
			req.Method = "PUT"
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	jsonLogin := func(user, pw string) string {
		return `{"credentials":{"email":"` + user + `","password":"` + pw + `"}}`
	}
	if c := post("/api/login", "application/json", jsonLogin("alice@example.com", password)); c != 200 {
		t.Fatalf("login: %d", c)
	}
	if c := post("/api/login", "application/json", jsonLogin("mallory@example.com", "guess-1-"+password)); c != 401 {
		t.Fatalf("bad login: %d", c)
	}
	if c := post("/form/login", "application/x-www-form-urlencoded", "user=bob&pass=guess-2-"+password); c != 403 {
		t.Fatalf("bad form login: %d", c)
	}
	if c := post("/form/login", "application/x-www-form-urlencoded", "user=bob&pass="+password); c != 200 {
		t.Fatalf("form login: %d", c)
	}
	reqB, _ := http.NewRequest("GET", gw+"/basic", nil)
	reqB.SetBasicAuth("carol", "guess-3-"+password)
	if resp, _ := http.DefaultClient.Do(reqB); resp.StatusCode != 401 {
		t.Fatalf("basic: %d", resp.StatusCode)
	}
	reqB.SetBasicAuth("carol", password)
	if resp, _ := http.DefaultClient.Do(reqB); resp.StatusCode != 200 {
		t.Fatalf("basic ok: %d", resp.StatusCode)
	}
	if resp := get(t, gw+"/admin"); resp.StatusCode != 403 {
		t.Fatalf("admin: %d", resp.StatusCode)
	}
	if c := post("/api/users/42/role", "application/json", `{"role":"admin","password":"guess-4-`+password+`"}`); c != 204 {
		t.Fatalf("role change: %d", c)
	}
	if c := post("/api/users/43/role", "application/json", `{"role":"admin"}`, "X-Role", "viewer"); c != 403 {
		t.Fatalf("refused role change: %d", c)
	}
	if c := post("/upload", "application/json", `{"note":"hi","api_key":"guess-5-`+password+`"}`); c != 200 {
		t.Fatalf("upload: %d", c)
	}

	evs := ms.wait(t, "every inferred event", func(evs []*event.Event) bool {
		return len(byAction(evs, event.ActionLoginSuccess)) >= 2 && len(byAction(evs, event.ActionLoginFail)) >= 3 &&
			len(byAction(evs, event.ActionUserRoleChange)) >= 2 && len(byAction(evs, event.ActionAuthzFail)) >= 2 &&
			len(byAction(evs, event.ActionHTTPRequest)) >= 10
	})
	type auth struct{ action, user, path string }
	var got []auth
	for _, ev := range evs {
		if ev.Action == event.ActionLoginSuccess || ev.Action == event.ActionLoginFail {
			got = append(got, auth{ev.Action, ev.UserName, ev.Path})
			if ev.Dataset != event.DatasetAuth || ev.RequestID == "" || ev.TraceID == "" || ev.ClientIP != "127.0.0.1" {
				t.Errorf("auth event lacks correlation or origin: %+v", ev)
			}
		}
	}
	want := []auth{
		{event.ActionLoginSuccess, "alice@example.com", "/api/login"},
		{event.ActionLoginFail, "mallory@example.com", "/api/login"},
		{event.ActionLoginFail, "bob", "/form/login"},
		{event.ActionLoginSuccess, "bob", "/form/login"},
		{event.ActionLoginFail, "carol", "/basic"},
	}
	for i, w := range want {
		if i >= len(got) || got[i] != w {
			t.Errorf("auth event %d: %+v, want %+v (all: %+v)", i, got, w, got)
			break
		}
	}
	// The Basic user the upstream accepted is the actor of its request.
	for _, ev := range byAction(evs, event.ActionHTTPRequest) {
		if ev.Path == "/basic" && ev.StatusCode == 200 && ev.UserName != "carol" {
			t.Errorf("accepted Basic user not on the access event: %q", ev.UserName)
		}
		if ev.Path == "/api/login" && ev.StatusCode == 200 && ev.UserName != "alice@example.com" {
			t.Errorf("logged-in user not on the login's access event: %q", ev.UserName)
		}
	}
	roles := byAction(evs, event.ActionUserRoleChange)
	if r := roles[0]; r.TargetUserID != "42" || r.Outcome != event.OutcomeSuccess || r.Audit == nil ||
		!bytes.Contains(r.Audit.After, []byte(`"role":"admin"`)) || r.Audit.Resource != "/api/users/42/role" {
		t.Errorf("role change event: %+v %s", r, r.Audit.After)
	}
	if r := roles[1]; r.TargetUserID != "43" || r.Outcome != event.OutcomeFailure {
		t.Errorf("refused role change: %+v", r)
	}
	var captured bool
	for _, ev := range evs {
		if ev.Path == "/upload" && ev.Action == event.ActionHTTPRequest {
			captured = strings.Contains(ev.RequestBody, `"note":"hi"`)
		}
	}
	if !captured {
		t.Error("capture_body: the upload's body is not on its access event")
	}
	// No password that was typed reaches the sink, in any form.
	all := ms.all()
	for _, secret := range []string{password, url.QueryEscape(password), "eyJhbGciOiJIUzI1NiJ9"} {
		if bytes.Contains(all, []byte(secret)) {
			t.Errorf("secret %q reached the trail", secret)
		}
	}
}

func TestCaptureBounded(t *testing.T) {
	t.Parallel()
	up := loginAPI(t)
	_, gw, ms := gateway(t, Config{Routes: []Route{{Upstream: up.URL, CaptureBody: 64}}})
	big := `{"data":"` + strings.Repeat("x", 1000) + `"}`
	resp, err := http.Post(gw+"/upload", "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != big {
		t.Fatal("the upstream did not get the whole body")
	}
	evs := ms.wait(t, "upload event", func(evs []*event.Event) bool {
		for _, ev := range evs {
			if ev.Path == "/upload" {
				return true
			}
		}
		return false
	})
	for _, ev := range evs {
		if ev.Path == "/upload" && (ev.RequestBody != "" || ev.RequestBodyBytes != int64(len(big))) {
			t.Errorf("body over the cap: recorded %q (%d bytes)", ev.RequestBody, ev.RequestBodyBytes)
		}
	}
}

func TestUserExtract(t *testing.T) {
	t.Parallel()
	cases := []struct {
		src, ct, body, want string
	}{
		{"json:user", "application/json", `{"user":"alice","password":"p"}`, "alice"},
		{"json:a.b", "application/json", `{"a":{"b":"deep"}}`, "deep"},
		{"json:a.b", "application/json", `{"a":"flat"}`, ""},
		{"json:user", "application/json", `{"user":12}`, "12"},
		{"json:user", "application/json", `not json`, ""},
		{"form:u", "application/x-www-form-urlencoded", "u=bob&p=x", "bob"},
		{"form:u", "application/json", "u=bob", ""},
		{"form:u", "application/json", `{"u":"json-bob"}`, "json-bob"},
		{"json:u", "application/x-www-form-urlencoded", "u=form-bob", "form-bob"},
	}
	for _, tc := range cases {
		us, err := parseUserSource(tc.src)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := http.NewRequest("POST", "/", nil)
		if got := us.extract(r, tc.ct, []byte(tc.body)); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.src, tc.body, got, tc.want)
		}
	}
}

func FuzzUserExtract(f *testing.F) {
	f.Add("json:user", `{"user":"alice","password":"x"}`)
	f.Add("form:user", "user=a%20b&password=x")
	f.Add("json:a.b.c", `{"a":{"b":{"c":1e400}}}`)
	f.Fuzz(func(t *testing.T, src, body string) {
		us, err := parseUserSource(src)
		if err != nil {
			return
		}
		r, _ := http.NewRequest("POST", "/?user=q", nil)
		for _, ct := range []string{"application/json", "application/x-www-form-urlencoded"} {
			u := us.extract(r, ct, []byte(body))
			if len(u) > len(body)+1 {
				t.Fatalf("user %q longer than the body %q", u, body)
			}
		}
		// Every name Go's strict parser reads from a form is among the
		// names checked against bans (formNames reads more: ';' pairs,
		// bad escapes kept).
		if us.kind != "form" {
			return
		}
		names, _ := us.names(r, "application/x-www-form-urlencoded", []byte(body))
		strict, _ := url.ParseQuery(body)
		for k, vs := range strict {
			if !strings.EqualFold(k, us.path[0]) {
				continue
			}
			for _, v := range vs {
				if strings.TrimSpace(v) != "" && !slices.Contains(names, v) {
					t.Fatalf("form %q: url.ParseQuery reads %s=%q, names %q does not", body, k, v, names)
				}
			}
		}
	})
}

// refMatch is pattern.match written the slow, obvious way, from the
// pattern's text: split both at '/', drop one trailing slash from each,
// then compare segment by segment. FuzzPattern holds the real one to it.
func refMatch(pat, path, want string) (string, bool) {
	if path == "" || path[0] != '/' {
		return "", false
	}
	if len(path) > 1 && strings.HasSuffix(path, "/") {
		path = path[:len(path)-1]
	}
	segs := strings.Split(pat[1:], "/")
	if len(segs) > 1 && segs[len(segs)-1] == "" {
		segs = segs[:len(segs)-1]
	}
	got := strings.Split(path[1:], "/")
	var val string
	for i, sg := range segs {
		if sg == "**" || strings.HasPrefix(sg, "{") && strings.HasSuffix(sg, "...}") {
			// The rest of the path, which may be nothing: /files/**
			// takes /files.
			if i > len(got) {
				return "", false
			}
			if sg == "**" && want == "" || sg == "{"+want+"...}" {
				val = strings.Join(got[i:], "/")
			}
			return val, true
		}
		if i >= len(got) {
			return "", false
		}
		switch {
		case sg == "*" || strings.HasPrefix(sg, "{") && strings.HasSuffix(sg, "}"):
			if got[i] == "" {
				return "", false
			}
			if want != "" && sg == "{"+want+"}" {
				val = got[i]
			}
		case !strings.EqualFold(sg, got[i]):
			return "", false
		}
	}
	if len(got) != len(segs) {
		return "", false
	}
	return val, true
}

func FuzzPattern(f *testing.F) {
	f.Add("/api/users/{id}/role", "/api/users/42/role")
	f.Add("/files/{rest...}", "/files/a/b")
	f.Add("/**", "/")
	f.Add("/files/**", "/files")
	f.Add("/a/b/**", "/a")
	f.Add("/Login/", "/LOGIN/")
	f.Add("/", "/")
	f.Add("/a//*", "/a//b/")
	f.Add("/K", "/\u212a") // KELVIN SIGN folds to k
	f.Fuzz(func(t *testing.T, pat, path string) {
		pt, err := compilePattern(pat)
		if err != nil {
			return
		}
		// Every name, no name, and a name no pattern has (as
		// matchOnly asks).
		for _, n := range append(pt.names, "", "\x00") {
			got, ok := pt.match(path, n)
			want, wantOK := refMatch(pat, path, n)
			if got != want || ok != wantOK {
				t.Fatalf("%q ~ %q, {%s}: %q %v, want %q %v", pat, path, n, got, ok, want, wantOK)
			}
			if ok && !strings.Contains(path, got) {
				t.Fatalf("%s ~ %s: %q is not part of the path", pat, path, got)
			}
		}
	})
}
