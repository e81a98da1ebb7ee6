package proxy

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/event"
)

// TestUserDecisionNotEvadedByLoginBody: a user-name ban holds whatever
// shape the login body takes that an upstream would still read the user
// from (review, MEDIUM, network: each case below reached the upstream with
// alice's login while alice was banned). The gateway either finds the
// banned name or refuses a body it cannot read a user from.
func TestUserDecisionNotEvadedByLoginBody(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	p, gw, _ := gateway(t, Config{Routes: []Route{{Upstream: up.URL}},
		Logins: []Login{{Path: "/login", User: "json:user", MaxBody: 1024}}})
	p.Apply("test", Update{New: []Decision{{Type: "ban", Scope: "Username", Value: "alice", Duration: "1h", Scenario: "account_lock"}}})
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("user", "alice")
	mw.WriteField("password", "x")
	mw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("user=alice&password=x"))
	zw.Close()
	for _, tc := range []struct {
		name, ct, body string
		hdr            []string
	}{
		// Express, Flask, Spring and PHP read bodies far larger than
		// max_body: the name is in its first bytes.
		{"json past max_body", "application/json", `{"user":"alice","password":"x","pad":"` + strings.Repeat("z", 2000) + `"}`, nil},
		{"form past max_body", "application/x-www-form-urlencoded", "user=alice&password=x&pad=" + strings.Repeat("z", 2000), nil},
		// PHP, Express (qs) and Werkzeug keep the other fields of a form
		// with a bad escape in one of them.
		{"form with a bad escape elsewhere", "application/x-www-form-urlencoded", "user=alice&password=x&z=%", nil},
		// PHP and Express take the last of repeated fields.
		{"form field repeated", "application/x-www-form-urlencoded", "user=bob&user=alice&password=x", nil},
		// Go's encoding/json binds a struct field in any case.
		{"json key in another case", "application/json", `{"User":"alice","password":"x"}`, nil},
		// PHP's $_POST, Flask's request.form and multer read multipart.
		{"multipart form", mw.FormDataContentType(), mp.String(), nil},
		// Express's body-parser inflates a gzip or deflate body by
		// default; the gateway read the compressed bytes as a form
		// without a user.
		{"gzip form", "application/x-www-form-urlencoded", gz.String(), []string{"Content-Encoding", "gzip"}},
		// Python's parse_qsl before 3.9.2 (Django, Flask of the time)
		// and Rack's query strings split pairs on ';' too; Go skipped
		// the pair holding one.
		{"form pairs split by ;", "application/x-www-form-urlencoded", "user=alice;password=x", nil},
		// A second Content-Type some upstreams take instead of the first:
		// the gateway read the JSON as a form.
		{"two content types", "application/x-www-form-urlencoded", `{"user":"alice","password":"x"}`, []string{"Content-Type", "application/json"}},
	} {
		req, _ := http.NewRequest("POST", gw+"/login", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.ct)
		for i := 0; i+1 < len(tc.hdr); i += 2 {
			req.Header.Add(tc.hdr[i], tc.hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("%s: %d, the banned user's login was forwarded", tc.name, resp.StatusCode)
		}
	}
	if n := up.count(); n != 0 {
		t.Errorf("%d of the banned user's logins reached the upstream", n)
	}
	// Other users still log in, whatever the shape of their body within
	// the bound.
	for _, tc := range []struct{ ct, body string }{
		{"application/json", `{"user":"bob","password":"y"}`},
		{"application/x-www-form-urlencoded", "user=bob&password=y&z=%"},
		{"application/json", `{"User":"bob","password":"y"}`},
	} {
		resp, err := http.Post(gw+"/login", tc.ct, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("bob's login %q: %d", tc.body, resp.StatusCode)
		}
	}
}

// TestLoginUserNotHiddenByBodyShape: a failed login through a login route
// is recorded with its user (the distributed brute force against one
// account groups failures by user.name) whatever the body's shape, or not
// forwarded at all (review, MEDIUM, network: padded past max_body, sent
// chunked or as multipart, each failure was recorded without a user, so
// a botnet guessing one account's password was never grouped).
func TestLoginUserNotHiddenByBodyShape(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	_, gw, ms := gateway(t, Config{Routes: []Route{{Upstream: up.URL}},
		Logins: []Login{{Path: "/login", User: "json:user", MaxBody: 1024}}})
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("user", "alice")
	mw.WriteField("password", "x")
	mw.Close()
	pad := strings.Repeat("z", 2000)
	cases := []struct {
		name, ct string
		body     io.Reader
	}{
		{"json past max_body", "application/json", strings.NewReader(`{"user":"alice","password":"x","pad":"` + pad + `"}`)},
		{"json past max_body, chunked", "application/json", io.MultiReader(strings.NewReader(`{"user":"alice","password":"x","pad":"`), strings.NewReader(pad+`"}`))},
		{"form past max_body", "application/x-www-form-urlencoded", strings.NewReader("user=alice&password=x&pad=" + pad)},
		{"multipart form", mw.FormDataContentType(), bytes.NewReader(mp.Bytes())},
	}
	forwarded := 0
	for _, tc := range cases {
		before := up.count()
		resp, err := http.Post(gw+"/login", tc.ct, tc.body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if up.count() > before {
			forwarded++
		}
	}
	evs := ms.wait(t, "every attempt recorded", func(evs []*event.Event) bool {
		return len(byAction(evs, event.ActionLoginFail))+len(byAction(evs, event.ActionInputValidationFail)) >= len(cases)
	})
	named := 0
	for _, ev := range byAction(evs, event.ActionLoginFail) {
		if ev.UserName != "alice" {
			t.Errorf("failed login recorded with user %q", ev.UserName)
		} else {
			named++
		}
	}
	if named != forwarded {
		t.Errorf("%d logins forwarded, %d failures recorded with their user", forwarded, named)
	}
}

// TestUserDecisionAnyCase: a user-name ban covers the name in any case
// and with spaces around it (review, MEDIUM, network: the ban of
// alice@example.com let Alice@Example.com through, which MySQL's default
// collations, e-mail logins and most user stores take for the same
// account).
func TestUserDecisionAnyCase(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	p, gw, _ := gateway(t, Config{Routes: []Route{{Upstream: up.URL}},
		Logins: []Login{{Path: "/login", User: "json:user"}}})
	p.Apply("test", Update{New: []Decision{{Type: "ban", Scope: "Username", Value: "alice@example.com", Duration: "1h"}}})
	for _, name := range []string{"Alice@Example.com", "ALICE@EXAMPLE.COM", " alice@example.com "} {
		resp, err := http.Post(gw+"/login", "application/json", strings.NewReader(`{"user":"`+name+`","password":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("login as %q: %d, want 403", name, resp.StatusCode)
		}
		req, _ := http.NewRequest("GET", gw+"/api", nil)
		req.SetBasicAuth(name, "pw")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("Basic user %q: %d, want 403", name, resp.StatusCode)
		}
	}
	if n := up.count(); n != 0 {
		t.Errorf("%d requests of the banned user reached the upstream", n)
	}
}

// TestLoginRecordedUserIsTheUpstreams: the user a failed login is recorded
// under is the one the upstream may have checked (review, MEDIUM, network:
// user=decoy&user=victim was recorded as decoy while PHP and Express check
// victim, and {"User":"victim"} as no user while Go's encoding/json binds
// it, so a botnet guessing victim's password was never grouped under it).
// A body naming two different users is refused.
func TestLoginRecordedUserIsTheUpstreams(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	_, gw, ms := gateway(t, Config{Routes: []Route{{Upstream: up.URL}},
		Logins: []Login{{Path: "/login", User: "json:user"}}})
	for _, tc := range []struct{ ct, body string }{
		{"application/x-www-form-urlencoded", "user=decoy&user=victim&password=x"},
		{"application/json", `{"user":"decoy","USER":"victim","password":"x"}`},
		{"application/json", `{"User":"victim","password":"x"}`},
		{"application/x-www-form-urlencoded", "User=victim&password=x"},
	} {
		resp, err := http.Post(gw+"/login", tc.ct, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	evs := ms.wait(t, "four attempts recorded", func(evs []*event.Event) bool {
		return len(byAction(evs, event.ActionLoginFail))+len(byAction(evs, event.ActionInputValidationFail)) >= 4
	})
	for _, ev := range byAction(evs, event.ActionLoginFail) {
		if ev.UserName != "victim" {
			t.Errorf("failed login recorded under user %q, want victim", ev.UserName)
		}
	}
	if n, refused := up.count(), len(byAction(evs, event.ActionInputValidationFail)); n != 2 || refused != 2 {
		t.Errorf("%d forwarded and %d refused, want the two bodies naming one user forwarded and the two naming two refused", n, refused)
	}
}

// TestUserDecisionQueryPairs: a user-name ban on a login route whose user
// is a query parameter holds for the pair shapes Go's url.ParseQuery
// skips and upstreams read (review, MEDIUM, network): Rack's query
// strings and Python's parse_qsl before 3.9.2 split on ';'.
func TestUserDecisionQueryPairs(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	p, gw, _ := gateway(t, Config{Routes: []Route{{Upstream: up.URL}},
		Logins: []Login{{Method: "GET", Path: "/login", User: "query:user"}}})
	p.Apply("test", Update{New: []Decision{{Type: "ban", Scope: "Username", Value: "alice", Duration: "1h", Scenario: "account_lock"}}})
	for _, q := range []string{"user=alice", "user=alice;password=x", "password=x;user=alice", "user=%61lice;z=%"} {
		resp, err := http.Get(gw + "/login?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("?%s: %d, the banned user's login was forwarded", q, resp.StatusCode)
		}
	}
	// Other users log in; a ';' that makes two names (PHP reads
	// "bob;password=y", Rack "bob") is refused like a repeated field.
	for q, want := range map[string]int{"user=bob&password=y": 200, "user=bob;password=y": 400, "user=b%ZZob": 200} {
		resp, err := http.Get(gw + "/login?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("bob's login ?%s: %d, want %d", q, resp.StatusCode, want)
		}
	}
}

// TestUserDecisionNFKC: a user-name ban covers the name written with
// compatibility characters that NFKC turns into it (review, MEDIUM,
// network: Django's login form normalises the user name with NFKC, so
// ａｌｉｃｅ logged in as alice, and kept guessing alice's password, past
// a ban of alice). A ban written so covers the plain name too, and other
// names, non-ASCII ones included, still log in.
func TestUserDecisionNFKC(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	p, gw, _ := gateway(t, Config{Routes: []Route{{Upstream: up.URL}},
		Logins: []Login{{Path: "/login", User: "json:user"}}})
	p.Apply("test", Update{New: []Decision{
		{Type: "ban", Scope: "Username", Value: "alice@example.com", Duration: "1h"},
		{Type: "ban", Scope: "Username", Value: "ｍａｌｌｏｒｙ", Duration: "1h"},
	}})
	login := func(name string) int {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"user": name, "password": "x"})
		resp, err := http.Post(gw+"/login", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, name := range []string{
		"ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", // fullwidth
		"𝐚𝐥𝐢𝐜𝐞@𝐞𝐱𝐚𝐦𝐩𝐥𝐞.𝐜𝐨𝐦", // mathematical bold
		"ⓐⓛⓘⓒⓔ@example.com", // circled
		"ＡＬＩＣＥ@example.com", // fullwidth capitals
		"alice@example.com", // plain
		"mallory",
	} {
		if code := login(name); code != http.StatusForbidden {
			t.Errorf("login as %q: %d, want 403", name, code)
		}
	}
	for _, name := range []string{"bob", "jöhn", "ａｌｉｃｅ2"} {
		if code := login(name); code != 200 {
			t.Errorf("login as %q: %d, want 200", name, code)
		}
	}
	if n := up.count(); n != 3 {
		t.Errorf("%d logins reached the upstream, want the 3 of other users", n)
	}
}
