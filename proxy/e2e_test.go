package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/ledger"
)

// startProcess starts a real program, waits for a line on its stdout that
// starts with ready, and kills it (SIGKILL) when the test ends, or when
// the test binary dies (testenv.StartChild). It returns that line and the
// program's pid.
func startProcess(t *testing.T, ready string, name string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &syncWriter{b: &strings.Builder{}}
	if err := testenv.StartChild(t, cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
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
		return l, cmd.Process.Pid
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not print %q within 20s; stderr:\n%s", name, ready, cmd.Stderr.(*syncWriter).String())
	}
	return "", 0
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
	line, _ := startProcess(t, "listening ", py, "testdata/flaskapp/app.py")
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

// startHTTPBin starts go-httpbin (built by .ci/run from the Go module
// proxy) on a free port of 127.0.0.1 and returns its URL and a function
// returning what it logged so far (one line per request).
func startHTTPBin(t *testing.T) (string, func() string) {
	t.Helper()
	bin := testenv.Tool(t, "go-httpbin", "go install github.com/mccutchen/go-httpbin/v2/cmd/go-httpbin@v2.26.0; .ci/run builds it")
	var out *syncWriter // the last attempt's
	hb := testenv.StartServer(t, "go-httpbin", func(addr string) *exec.Cmd {
		_, port, _ := net.SplitHostPort(addr)
		cmd := exec.Command(bin, "-host", "127.0.0.1", "-port", port)
		out = &syncWriter{b: &strings.Builder{}}
		cmd.Stdout, cmd.Stderr = out, out
		return cmd
	})
	t.Cleanup(func() { hb.Cmd.Process.Kill(); hb.Cmd.Wait() })
	url := "http://" + hb.Addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/status/204")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("go-httpbin did not start: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return url, out.String
}

// alerts returns the alert documents in a ledger, decoded loosely.
func alerts(t *testing.T, dir string) []map[string]any {
	t.Helper()
	l, err := ledger.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out []map[string]any
	for i := range l.Size() {
		e, err := l.Read(i)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(e.Data, []byte(`"kind":"alert"`)) {
			continue
		}
		var doc map[string]any
		if err := json.Unmarshal(e.Data, &doc); err != nil {
			t.Fatal(err)
		}
		out = append(out, doc)
	}
	return out
}

func ruleName(doc map[string]any) string {
	r, _ := doc["rule"].(map[string]any)
	s, _ := r["name"].(string)
	return s
}

// TestHydraBlocked: hydra brute-forces go-httpbin's Basic-auth page
// through a single-node gateway. The embedded detection raises an alert
// (with the built-in rules, for hydra's own user agent at its first
// request; without that rule, for the brute force at the 10th failed
// login), the gateway blocks the address, nothing hydra sends after the
// block reaches go-httpbin, and none of the passwords it tried is
// anywhere on disk.
func TestHydraBlocked(t *testing.T) {
	testenv.Long(t)
	t.Parallel()
	hydra := testenv.Tool(t, "hydra", "apt-get install hydra")
	// The built-in rules without the attack-tool one, as an operator who
	// lets scanners in would run them.
	noTool := t.TempDir()
	files, _ := filepath.Glob("../detect/rules/*.yml")
	for _, f := range files {
		if strings.HasSuffix(f, ".test.yml") || strings.HasSuffix(f, "web_attack_tools.yml") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(noTool, filepath.Base(f)), b, 0o600)
	}
	for _, tc := range []struct {
		name, alert string
		detection   Detection
		minFails    int
	}{
		{"built-in rules", "Attack tool user agent", Detection{}, 1},
		{"without the attack-tool rule", "Brute force from one address", Detection{NoBuiltin: true, Rules: noTool}, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hydraBlocked(t, hydra, tc.detection, tc.alert, tc.minFails)
		})
	}
}

func hydraBlocked(t *testing.T, hydra string, det Detection, wantAlert string, minFails int) {
	upURL, upLog := startHTTPBin(t)
	dir, trail := t.TempDir(), t.TempDir()
	_, gw, stop := serveGateway(t, Config{DataDir: dir, TrailDir: trail, ServiceName: "httpbin",
		Routes: []Route{{Upstream: upURL}}, Detection: det})
	u, _ := url.Parse(gw)

	work := t.TempDir()
	var list bytes.Buffer
	var passwords []string
	for i := range 300 {
		pw := fmt.Sprintf("hydra-tried-%04d-%x", i, time.Now().UnixNano()&0xffffff)
		passwords = append(passwords, pw)
		list.WriteString(pw + "\n")
	}
	if err := os.WriteFile(filepath.Join(work, "passwords.txt"), list.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, hydra, "-l", "admin", "-P", "passwords.txt", "-s", u.Port(), "-I", "-t", "4",
		"127.0.0.1", "http-get", "/basic-auth/admin/secret")
	cmd.Dir = work
	out, _ := cmd.CombinedOutput() // hydra's exit status says nothing we need
	t.Logf("hydra: %s", lastLines(string(out), 3))
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	evs := ledgerEvents(t, dir+"/ledger")
	var applied time.Time
	for _, ev := range byAction(evs, ActionDecisionsApplied) {
		if strings.Contains(string(ev.Attrs), `"127.0.0.1"`) {
			applied = ev.Timestamp
			break
		}
	}
	names := map[string]int{}
	for _, a := range alerts(t, dir+"/ledger") {
		names[ruleName(a)]++
	}
	if applied.IsZero() {
		t.Fatalf("127.0.0.1 was never blocked (%d events, alerts %v)", len(evs), names)
	}
	if names[wantAlert] == 0 {
		t.Errorf("no %q alert in the ledger: %v", wantAlert, names)
	}
	forwarded, refused, fails := 0, 0, 0
	for _, ev := range evs {
		if ev.Kind != event.KindEvent {
			continue
		}
		switch {
		case ev.Action == event.ActionHTTPRequest && ev.StatusCode == 401:
			forwarded++
			if !ev.Timestamp.Before(applied) {
				t.Errorf("request %s started at %s, after the block at %s, and reached the upstream", ev.RequestID, ev.Timestamp, applied)
			}
		case ev.Action == ActionBlocked:
			refused++
		case ev.Action == ActionWithheld:
			// Forwarded before the block, answered after it: the
			// client got a refusal instead of the answer (hydra takes
			// any answer but 401 as a hit and stops there).
			forwarded++
			refused++
		case ev.Action == event.ActionLoginFail:
			fails++
		}
	}
	upstream := strings.Count(upLog(), "uri=/basic-auth/admin/secret")
	if upstream != forwarded {
		t.Errorf("go-httpbin served %d attempts, the trail recorded %d forwarded: something reached it unrecorded, or after the block", upstream, forwarded)
	}
	if refused == 0 || fails < minFails || forwarded >= len(passwords) {
		t.Errorf("forwarded %d, failed logins %d, refusals recorded %d: hydra was not stopped", forwarded, fails, refused)
	}
	t.Logf("%d attempts reached go-httpbin before the block, %d refusals recorded; alerts %v", forwarded, refused, names)
	for _, pw := range passwords {
		for _, d := range []string{dir, trail} {
			if err := grepDir(d, pw); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestSQLMapAlerts: sqlmap probes go-httpbin through the gateway; the
// injection probes and the tool are detected.
func TestSQLMapAlerts(t *testing.T) {
	testenv.Long(t)
	t.Parallel()
	sqlmap := testenv.Tool(t, "sqlmap", "apt-get install sqlmap")
	upURL, _ := startHTTPBin(t)
	dir := t.TempDir()
	_, gw, stop := serveGateway(t, Config{DataDir: dir, Routes: []Route{{Upstream: upURL}}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	work := t.TempDir()
	cmd := exec.CommandContext(ctx, sqlmap, "-u", gw+"/get?id=1", "--batch", "--technique=BEU", "--level=1", "--risk=1",
		"--threads=2", "--timeout=5", "--retries=0", "--flush-session", "--disable-coloring", "--output-dir", work)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "HOME="+work)
	out, err := cmd.CombinedOutput()
	t.Logf("sqlmap (%v): %s", err, lastLines(string(out), 4))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for _, a := range alerts(t, dir+"/ledger") {
		names[ruleName(a)]++
	}
	t.Logf("alerts: %v", names)
	if names["SQL injection probe in the request"] == 0 {
		t.Errorf("no SQL injection alert: %v", names)
	}
	if names["Attack tool user agent"] == 0 {
		t.Errorf("sqlmap's user agent not detected: %v", names)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}
