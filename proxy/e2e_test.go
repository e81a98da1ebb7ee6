package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/testenv"
)

// startProcess starts a real program, waits for a line on its stdout that
// starts with ready, and kills it (SIGKILL) when the test ends. It returns
// that line.
func startProcess(t *testing.T, ready string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &syncWriter{b: &strings.Builder{}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), ready) {
				lines <- sc.Text()
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case l := <-lines:
		return l
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not print %q within 20s; stderr:\n%s", name, ready, cmd.Stderr.(*syncWriter).String())
	}
	return ""
}

type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// flaskPython returns a python3 that can import Flask (Debian's
// python3-flask installs it for /usr/bin/python3).
func flaskPython(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", testenv.Find("python3")} {
		if py != "" && exec.Command(py, "-c", "import flask").Run() == nil {
			return py
		}
	}
	testenv.Require(t, false, "python3 with Flask (apt-get install python3-flask)")
	return ""
}

// TestFlaskAppBehindGateway: a Flask API that knows nothing of trailguard,
// behind a single-node gateway configured with its login route and its
// role-change route. Logins, refusals and the role change are recorded in
// the ledger with the users involved; no password reaches the disk.
func TestFlaskAppBehindGateway(t *testing.T) {
	testenv.Long(t)
	t.Parallel()
	py := flaskPython(t)
	line := startProcess(t, "listening ", py, "testdata/flaskapp/app.py")
	app := "http://127.0.0.1:" + strings.TrimPrefix(line, "listening ")

	dir := t.TempDir()
	_, gw, stop := serveGateway(t, Config{
		DataDir:     dir,
		ServiceName: "flask-api",
		Routes:      []Route{{Upstream: app}},
		Logins:      []Login{{Method: "POST", Path: "/login", User: "json:username"}},
		Sensitive:   []Sensitive{{Method: "PUT", Path: "/api/users/{id}/role", Action: event.ActionUserRoleChange, TargetUser: "id"}},
	})
	do := func(method, path, ct, body, token string) (int, map[string]string) {
		t.Helper()
		req, _ := http.NewRequest(method, gw+path, strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]string
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	passwords := []string{"wonderland-7", "builder-9", "wonderland-8-typo", "letmein-mallory"}
	if code, _ := do("POST", "/login", "application/json", `{"username":"alice","password":"wonderland-8-typo"}`, ""); code != 401 {
		t.Fatalf("alice's typo: %d, want 401", code)
	}
	code, out := do("POST", "/login", "application/json", `{"username":"alice","password":"wonderland-7"}`, "")
	if code != 200 {
		t.Fatalf("alice login: %d", code)
	}
	alice := out["token"]
	code, out = do("POST", "/login", "application/x-www-form-urlencoded", "username=bob&password=builder-9", "")
	if code != 200 {
		t.Fatalf("bob form login: %d", code)
	}
	bob := out["token"]
	if code, _ := do("POST", "/login", "application/x-www-form-urlencoded", "username=mallory&password=letmein-mallory", ""); code != 401 {
		t.Fatalf("mallory: %d", code)
	}
	if code, _ := do("PUT", "/api/users/alice/role", "application/json", `{"role":"viewer"}`, bob); code != 403 {
		t.Fatalf("bob demotes alice: %d, want 403", code)
	}
	if code, _ := do("PUT", "/api/users/bob/role", "application/json", `{"role":"admin"}`, alice); code != 200 {
		t.Fatalf("alice promotes bob: %d", code)
	}
	if code, _ := do("GET", "/api/users/bob", "", "", ""); code != 401 {
		t.Fatalf("anonymous profile read: %d, want 401", code)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	evs := ledgerEvents(t, dir+"/ledger")
	type rec struct{ action, outcome, user, target, path string }
	var got []rec
	for _, ev := range evs {
		if ev.ServiceName != "flask-api" || ev.Action == event.ActionHTTPRequest || ev.Dataset != event.DatasetAuth && ev.Dataset != event.DatasetAudit || ev.Path == "" {
			continue
		}
		got = append(got, rec{ev.Action, ev.Outcome, ev.UserName, ev.TargetUserID, ev.Path})
	}
	want := []rec{
		{event.ActionLoginFail, event.OutcomeFailure, "alice", "", "/login"},
		{event.ActionLoginSuccess, event.OutcomeSuccess, "alice", "", "/login"},
		{event.ActionLoginSuccess, event.OutcomeSuccess, "bob", "", "/login"},
		{event.ActionLoginFail, event.OutcomeFailure, "mallory", "", "/login"},
		{event.ActionAuthzFail, event.OutcomeFailure, "", "", "/api/users/alice/role"},
		{event.ActionUserRoleChange, event.OutcomeFailure, "", "alice", "/api/users/alice/role"},
		{event.ActionUserRoleChange, event.OutcomeSuccess, "", "bob", "/api/users/bob/role"},
		{event.ActionLoginFail, event.OutcomeFailure, "", "", "/api/users/bob"},
	}
	if len(got) != len(want) {
		t.Fatalf("recorded %d auth/audit events, want %d:\n%+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, ev := range evs {
		if ev.Action == event.ActionUserRoleChange && ev.Outcome == event.OutcomeSuccess &&
			(ev.Audit == nil || string(ev.Audit.After) != `{"role":"admin"}`) {
			t.Errorf("role change without its new state: %+v", ev.Audit)
		}
	}
	// Not a password, not a session token, anywhere in the data directory
	// (ledger, index, keys).
	for _, secret := range append(passwords, alice, bob, url.QueryEscape("letmein-mallory")) {
		if err := grepDir(dir, secret); err != nil {
			t.Error(err)
		}
	}
}
