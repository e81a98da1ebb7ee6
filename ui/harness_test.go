package ui_test

// The browser tests' harness: a real collector on 127.0.0.1 (package
// server, the same code as trailguard serve), events ingested through its
// API, and Debian's Chromium driven by chromedp.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/server"
)

// collector is a running collector with tokens of every role.
type collector struct {
	*server.Server
	url                  string
	admin, read, ingest_ string
	cancel               context.CancelFunc
	done                 chan error
}

func startCollector(t testing.TB, dir string, mod func(*server.Config)) *collector {
	t.Helper()
	cfg := server.Defaults()
	cfg.DataDir = dir
	cfg.Origin = "ui-test.example/trailguard"
	cfg.CheckpointInterval = 100 * time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{Server: srv, url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- srv.Serve(ctx, ln) }()
	mk := func(name string, role access.Role) string {
		srv.Tokens().Revoke(name) // a reused data directory (benchmarks) has them
		_, secret, err := srv.Tokens().Create(name, role)
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	c.admin, c.read, c.ingest_ = mk("soc-admin", access.RoleAdmin), mk("analyst", access.RoleRead), mk("shipper", access.RoleIngest)
	t.Cleanup(func() {
		c.cancel()
		if err := <-c.done; err != nil {
			t.Errorf("collector: %v", err)
		}
	})
	return c
}

// api calls the collector's API with a token.
func (c *collector) api(t testing.TB, method, path, token string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// send ingests events through POST /v1/events and waits until they are
// indexed (read-your-writes with after_index).
func (c *collector) send(t testing.TB, events []map[string]any) {
	t.Helper()
	for len(events) > 0 {
		n := min(len(events), 5000)
		var buf bytes.Buffer
		for _, e := range events[:n] {
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(b)
			buf.WriteByte('\n')
		}
		events = events[n:]
		code, b := c.api(t, "POST", "/v1/events", c.ingest_, buf.Bytes())
		if code != 200 {
			t.Fatalf("ingest: %d %s", code, b)
		}
		var res struct {
			First    uint64 `json:"first_index"`
			Accepted uint64 `json:"accepted"`
			Rejected int    `json:"rejected"`
		}
		json.Unmarshal(b, &res)
		if res.Rejected > 0 {
			t.Fatalf("ingest rejected events: %s", b)
		}
		if code, b := c.api(t, "GET", fmt.Sprintf("/v1/events?limit=1&after_index=%d&timeout=30s", res.First+res.Accepted), c.read, nil); code != 200 {
			t.Fatalf("wait for the index: %d %s", code, b)
		}
	}
}

// ts formats a time with fixed-width nanoseconds, so strings sort as times.
func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000Z07:00") }

// traffic makes an hour of a small shop's traffic ending at now: requests
// through a gateway and an API (one http.request.id across both, and a
// trace.id), logins that succeed and fail, a few 403s, and a password
// guessing run from one address with a 401 wave at the end.
func traffic(now time.Time, seed uint64) []map[string]any {
	rng := rand.New(rand.NewPCG(seed, 1))
	var out []map[string]any
	users := []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	addrs := []string{"198.51.100.10", "198.51.100.11", "198.51.100.12", "203.0.113.7", "192.0.2.44"}
	paths := []string{"/api/orders", "/api/cart", "/api/products/42", "/api/users/me", "/api/login"}
	id := 0
	uuid := func() string {
		id++
		return fmt.Sprintf("01a2%04x-c08f-7%03x-b475-%012x", id%0xffff, rng.IntN(0xfff), rng.Uint64()&0xffffffffffff)
	}
	for i := range 600 {
		at := now.Add(-time.Hour + time.Duration(i)*6*time.Second + time.Duration(rng.IntN(3000))*time.Millisecond)
		u, ip, p := users[rng.IntN(len(users))], addrs[rng.IntN(len(addrs))], paths[rng.IntN(len(paths))]
		status := 200
		switch r := rng.IntN(100); {
		case r < 4:
			status = 403
		case r < 8:
			status = 404
		}
		rid, tid := uuid(), fmt.Sprintf("%032x", rng.Uint64())
		method := "GET"
		if p == "/api/orders" && rng.IntN(2) == 0 {
			method = "POST"
		}
		outcome := "success"
		if status >= 400 {
			outcome = "failure"
		}
		for _, svc := range []string{"edge-gateway", "shop-api"} {
			start := at
			dur := int64(2+rng.IntN(30)) * int64(time.Millisecond)
			if svc == "shop-api" {
				start = at.Add(time.Millisecond)
				dur /= 2
			}
			out = append(out, map[string]any{
				"@timestamp": ts(start),
				"event":      map[string]any{"kind": "event", "category": []string{"web"}, "type": []string{"access"}, "action": "http_request", "outcome": outcome, "id": uuid(), "duration": dur},
				"http":       map[string]any{"request": map[string]any{"id": rid, "method": method}, "response": map[string]any{"status_code": status}},
				"url":        map[string]any{"path": p},
				"source":     map[string]any{"ip": ip},
				"client":     map[string]any{"ip": ip},
				"user":       map[string]any{"name": u},
				"user_agent": map[string]any{"original": "Mozilla/5.0 (X11; Linux x86_64) shop-web/3.2"},
				"service":    map[string]any{"name": svc},
				"trace":      map[string]any{"id": tid},
			})
		}
		if status == 403 {
			out = append(out, map[string]any{
				"@timestamp": ts(at.Add(2 * time.Millisecond)),
				"event":      map[string]any{"kind": "event", "category": []string{"iam"}, "type": []string{"denied"}, "action": "authz_fail", "outcome": "failure", "id": uuid(), "reason": "role viewer may not " + method + " " + p},
				"http":       map[string]any{"request": map[string]any{"id": rid}},
				"url":        map[string]any{"path": p}, "source": map[string]any{"ip": ip}, "client": map[string]any{"ip": ip},
				"user": map[string]any{"name": u}, "service": map[string]any{"name": "shop-api"},
			})
		}
		if i%5 == 0 {
			ok := rng.IntN(10) > 0
			out = append(out, login(at.Add(3*time.Millisecond), uuid(), u, ip, ok))
		}
	}
	// The attacker: failed logins for many names from one address, then a
	// wave of 401s over the last two minutes.
	for i := range 40 {
		at := now.Add(-2*time.Minute + time.Duration(i)*2*time.Second)
		out = append(out, login(at, uuid(), users[i%len(users)], "203.0.113.66", false))
		out = append(out, map[string]any{
			"@timestamp": ts(at.Add(time.Millisecond)),
			"event":      map[string]any{"kind": "event", "category": []string{"web"}, "type": []string{"access"}, "action": "http_request", "outcome": "failure", "id": uuid(), "duration": 1500000},
			"http":       map[string]any{"request": map[string]any{"id": uuid(), "method": "POST"}, "response": map[string]any{"status_code": 401}},
			"url":        map[string]any{"path": "/api/login"}, "source": map[string]any{"ip": "203.0.113.66"}, "client": map[string]any{"ip": "203.0.113.66"},
			"user_agent": map[string]any{"original": "python-requests/2.32.3"}, "service": map[string]any{"name": "shop-api"},
		})
	}
	slices.SortStableFunc(out, func(a, b map[string]any) int {
		return strings.Compare(a["@timestamp"].(string), b["@timestamp"].(string))
	})
	return out
}

func login(at time.Time, id, user, ip string, ok bool) map[string]any {
	action, outcome, reason := "authn_login_success", "success", ""
	if !ok {
		action, outcome, reason = "authn_login_fail", "failure", "bad password"
	}
	ev := map[string]any{"kind": "event", "category": []string{"authentication"}, "type": []string{"start"}, "action": action, "outcome": outcome, "id": id}
	if reason != "" {
		ev["reason"] = reason
	}
	return map[string]any{"@timestamp": ts(at), "event": ev, "url": map[string]any{"path": "/api/login"},
		"source": map[string]any{"ip": ip}, "client": map[string]any{"ip": ip}, "user": map[string]any{"name": user},
		"service": map[string]any{"name": "shop-api"}}
}

// browser is a headless Chromium (Debian's) with a fresh profile.
type browser struct {
	t   testing.TB
	ctx context.Context

	mu       sync.Mutex
	bindings []string // calls of the __pwned binding (the XSS canary)
	console  []string // uncaught exceptions
}

// cspListener records every CSP violation the page sees, installed before
// any script of the page runs (DevTools scripts are not subject to CSP).
const cspListener = `document.addEventListener("securitypolicyviolation", (e) => {
  window.__tgCSP = (window.__tgCSP || []).concat([e.effectiveDirective + " " + e.blockedURI + " " + (e.sample || "")]);
});`

// chromiumFlags are the headless flags research.md found to work here, on
// top of chromedp's defaults.
func chromiumFlags(t testing.TB, exe string, width, height int) []chromedp.ExecAllocatorOption {
	opts := append([]chromedp.ExecAllocatorOption{}, chromedp.DefaultExecAllocatorOptions[:]...)
	return append(opts,
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		chromedp.WindowSize(width, height),
	)
}

func newBrowser(t testing.TB, width, height int64) *browser {
	t.Helper()
	exe := testenv.Tool(t, "chromium", "apt-get install chromium")
	actx, acancel := chromedp.NewExecAllocator(context.Background(), chromiumFlags(t, exe, int(width), int(height))...)
	b := &browser{t: t}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventBindingCalled:
			if ev.Name == "__pwned" {
				b.bindings = append(b.bindings, ev.Payload)
			}
		case *runtime.EventExceptionThrown:
			b.console = append(b.console, exceptionText(ev.ExceptionDetails))
		}
	}))
	b.ctx = ctx
	t.Cleanup(func() {
		cancel()
		acancel()
	})
	// The first Do starts the browser and binds it to the context it gets:
	// this one, without the per-action deadlines of run.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b.run(
		chromedp.EmulateViewport(width, height),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if _, err := cdp.Call(ctx, tg, runtime.AddBinding, runtime.AddBindingParams{Name: "__pwned"}); err != nil {
				return err
			}
			_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspListener})
			return err
		}),
	)
	return b
}

func exceptionText(d *runtime.ExceptionDetails) string {
	s := d.Text
	if d.Exception != nil {
		s += " " + d.Exception.Description
	}
	return s
}

// run runs actions with a deadline; on failure it saves a screenshot and
// says where the page was and what it showed.
func (b *browser) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail(err)
	}
}

func (b *browser) fail(err error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if shot, _ := chromedp.Run(ctx, chromedp.CaptureScreenshot()); len(shot) > 0 {
		p := filepath.Join(artifactDir(b.t), "failure-"+sanitize(b.t.Name())+".png")
		os.WriteFile(p, shot, 0o644)
		b.t.Logf("screenshot of the failure: %s", p)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("main") ? document.getElementById("main").innerText.slice(0, 2000) : ""`))
	b.t.Fatalf("browser: %v\nat %s\npage text: %s\nexceptions: %v", err, loc, body, b.exceptions())
}

// eval evaluates an expression (promises awaited) and decodes its value.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.fail(err)
	}
	return v
}

func (b *browser) exceptions() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

func (b *browser) pwned() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.bindings...)
}

// signIn signs in through the sign-in page.
func (b *browser) signIn(base, token string) {
	b.t.Helper()
	b.run(
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("form.signin button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#nav a")),
	)
}

// open navigates to a UI path and waits until ready (a JavaScript
// condition) holds.
func (b *browser) open(url, ready string) {
	b.t.Helper()
	b.run(chromedp.Navigate(url), waitFor(ready))
}

// waitFor polls a JavaScript condition.
func waitFor(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))
}

var artifactDirs sync.Map // test name → directory

// artifactDir is where screenshots go: $TRAILGUARD_UI_ARTIFACTS (.ci/run
// keeps them in artifacts/), else a directory under the test's t.TempDir.
func artifactDir(t testing.TB) string {
	if d := os.Getenv("TRAILGUARD_UI_ARTIFACTS"); d != "" {
		os.MkdirAll(d, 0o755)
		return d
	}
	if d, ok := artifactDirs.Load(t.Name()); ok {
		return d.(string)
	}
	d := filepath.Join(t.TempDir(), "artifacts")
	os.MkdirAll(d, 0o755)
	artifactDirs.Store(t.Name(), d)
	return d
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

// screenshot saves the page as PNG artifacts/<name>.png.
func (b *browser) screenshot(name string, full bool) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	act := chromedp.CaptureScreenshot()
	if full {
		act = chromedp.FullScreenshot(100)
	}
	buf, err := chromedp.Run(ctx, act)
	if err != nil {
		b.fail(err)
	}
	p := filepath.Join(artifactDir(b.t), name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return p
}
