package ui_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// attacker is the address of the password-guessing run in traffic().
const attacker = "203.0.113.66"

// seeded is a collector holding an hour of traffic, with the detection
// engine's alerts and block decisions for the attack in it.
func seeded(t *testing.T) *collector {
	t.Helper()
	c := startCollector(t, t.TempDir(), nil)
	c.send(t, traffic(time.Now(), 1))
	waitAPI(t, c, "/v1/decisions", func(b []byte) bool { return strings.Contains(string(b), attacker) })
	waitAPI(t, c, "/v1/alerts?status=open", func(b []byte) bool { return strings.Contains(string(b), "trailguard_401_rate_of_rise") })
	return c
}

// waitAPI polls a read endpoint until ok holds (detection runs behind the
// ledger, like the index).
func waitAPI(t testing.TB, c *collector, path string, ok func([]byte) bool) []byte {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // generous: the poll ends when ok holds
	for {
		code, b := c.api(t, "GET", path, c.admin, nil)
		if code == 200 && ok(b) {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %s: condition not met within 60 s", path, code, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// count evaluates document.querySelectorAll(sel).length.
func count(b *browser, sel string) int {
	return eval[int](b, fmt.Sprintf(`document.querySelectorAll(%q).length`, sel))
}

func text(b *browser, sel string) string {
	return eval[string](b, fmt.Sprintf(`(document.querySelector(%q) || {}).innerText || ""`, sel))
}

// TestBrowserUI walks every page as an admin would: sign in, the overview's
// charts with data, a search with suggestions, an event proven in the
// browser, a request traced across two services, an alert acknowledged, an
// address unblocked, the ledger verified, sign-out; and saves a screenshot
// of each page at 1366×768 and on a phone.
func TestBrowserUI(t *testing.T) {
	testenvLong(t)
	c := seeded(t)
	b := newBrowser(t, 1366, 768)

	// Signing in: the cookie is not readable by scripts.
	b.open(c.url+"/", `!!document.querySelector("#token")`)
	b.screenshot("signin", false)
	b.signIn(c.url, c.admin)
	if ck := eval[string](b, `document.cookie`); strings.Contains(ck, "tg_session") {
		t.Fatalf("the session cookie is visible to scripts: %q", ck)
	}

	// Overview: every chart drew lines from data, the rate-of-rise chart
	// has its band and the detector's firing points, the rankings and the
	// alert and block lists name the attacker.
	b.open(c.url+"/ui/?from=1h", `!!document.querySelector(".grid[data-loaded]")`)
	if n := count(b, "svg.ts path.line"); n < 5 {
		t.Errorf("overview: %d chart lines, want ≥ 5 (events, 401, 403, success, failure)", n)
	}
	if n := count(b, "svg.ts path.band"); n != 2 {
		t.Errorf("overview: %d baseline bands, want 2", n)
	}
	if n := count(b, "svg.ts circle.marker"); n < 1 {
		t.Errorf("overview: no firing point of the 401 rate-of-rise rule")
	}
	nonFlat := eval[bool](b, `[...document.querySelectorAll("svg.ts path.line.s-events")].some(p => /L[\d.]+,(?!\s*$)/.test(p.getAttribute("d")) && new Set(p.getAttribute("d").split(/[ML]/).filter(Boolean).map(x => x.split(",")[1])).size > 3)`)
	if !nonFlat {
		t.Errorf("overview: the events chart is flat")
	}
	page := text(b, "main")
	for _, want := range []string{attacker, "Top failing users", "alice", "Rising rate of 401 responses"} {
		if !strings.Contains(page, want) {
			t.Errorf("overview does not show %q", want)
		}
	}
	if !strings.Contains(text(b, ".block-list"), attacker) {
		t.Errorf("active blocks do not list %s: %q", attacker, text(b, ".block-list"))
	}
	b.screenshot("overview", false)
	// Auto-refresh: the panels fill again by themselves.
	b.open(c.url+"/ui/?from=1h&refresh=1", `!!document.querySelector(".grid[data-loaded]")`)
	first := eval[string](b, `document.querySelector(".grid").dataset.loaded`)
	b.run(waitFor(fmt.Sprintf(`document.querySelector(".grid").dataset.loaded !== %q`, first)))

	// Keyboard: g then s goes to the search page, / focuses the query.
	b.run(chromedp.KeyEvent("g"), chromedp.KeyEvent("s"), waitFor(`location.pathname === "/ui/search" && !!document.querySelector(".results[data-loaded]")`),
		chromedp.KeyEvent("/"), waitFor(`document.activeElement && document.activeElement.id === "q"`))

	// Search: suggestions for a field, then for its values.
	b.open(c.url+"/ui/search?from=1h", `!!document.querySelector(".results[data-loaded]")`)
	b.run(chromedp.Click(chromedp.CSS("#q")), chromedp.SendKeys(chromedp.CSS("#q"), "event.act"), waitFor(`!document.getElementById("q-suggest").hidden`))
	if s := text(b, "#q-suggest"); !strings.Contains(s, "event.action") {
		t.Fatalf("suggestions for event.act: %q", s)
	}
	b.run(chromedp.SendKeys(chromedp.CSS("#q"), kb.Tab), waitFor(`(document.getElementById("q") || {}).value === "event.action:"`),
		waitFor(`document.getElementById("q-suggest").innerText.includes("authn_login_fail")`))
	b.run(chromedp.SendKeys(chromedp.CSS("#q"), "authn_login_f"), waitFor(`document.querySelectorAll("#q-suggest li").length === 1`),
		chromedp.SendKeys(chromedp.CSS("#q"), kb.Enter), waitFor(`(document.getElementById("q") || {}).value === "event.action:authn_login_fail"`),
		chromedp.SendKeys(chromedp.CSS("#q"), kb.Enter),
		waitFor(`location.search.includes("q=event.action%3Aauthn_login_fail") && !!document.querySelector(".results[data-loaded]")`))
	rows := count(b, "table.events tr.ev-row")
	actions := eval[[]string](b, `[...document.querySelectorAll("table.events td.c-event_action")].map(td => td.innerText)`)
	if rows == 0 || len(actions) != rows {
		t.Fatalf("search: %d rows, %d actions", rows, len(actions))
	}
	for _, a := range actions {
		if a != "authn_login_fail" {
			t.Fatalf("search for failed logins shows %q", a)
		}
	}
	b.run(waitFor(`!!document.querySelector(".hist-box[data-loaded]")`))
	if n := count(b, "svg.hist rect.bar"); n < 10 {
		t.Errorf("histogram: %d bars", n)
	}
	// The URL holds the query: another search, then Back restores it.
	b.run(chromedp.Evaluate[chromedp.Void](`document.getElementById("q").value = "user.name:alice"`),
		chromedp.SendKeys(chromedp.CSS("#q"), kb.Enter),
		waitFor(`location.search.includes("user.name") && !!document.querySelector(".results[data-loaded]")`),
		chromedp.NavigateBack(),
		waitFor(`document.getElementById("q") && (document.getElementById("q") || {}).value === "event.action:authn_login_fail" && !!document.querySelector(".results[data-loaded]")`))
	// Event detail and its proof, checked in the browser.
	b.run(chromedp.Click(chromedp.CSS("table.events tr.ev-row button.expand")), waitFor(`!!document.querySelector(".event-detail pre.json")`),
		chromedp.Click(chromedp.CSS(".event-detail button.prove")), waitFor(`!!document.querySelector(".prove-result .verdict")`))
	if v := eval[string](b, `document.querySelector(".prove-result .verdict").dataset.verdict`); v != "ok" {
		t.Fatalf("inclusion proof in the browser: %s: %s", v, text(b, ".prove-result"))
	}
	if s := text(b, ".prove-result"); !strings.Contains(s, "Ed25519 signature") {
		t.Errorf("the checkpoint signature was not checked with Ed25519: %s", s)
	}
	b.screenshot("search", false)
	evID := eval[string](b, `JSON.parse(document.querySelector(".event-detail pre.json").innerText).event.id`)
	b.open(c.url+"/ui/event?id="+url.QueryEscape(evID), `!!document.querySelector(".event-detail")`)
	b.screenshot("event", false)

	// Request trace: a request through the gateway and the API.
	rid := eval[string](b, `fetch("/ui/api/v1/events?q=event.action:http_request+and+service.name:edge-gateway+and+http.response.status_code:403&from=1h&limit=1").then(r => r.json()).then(j => j.hits[0].event.http.request.id)`)
	b.open(c.url+"/ui/trace?request_id="+url.QueryEscape(rid), `!!document.querySelector("svg.timeline") || !!document.querySelector(".trace-body .state.empty")`)
	if n := count(b, "svg.timeline .lane-label"); n != 2 {
		t.Fatalf("trace of %s: %d lanes, want 2 (edge-gateway, shop-api): %s", rid, n, text(b, "main"))
	}
	if n := count(b, "table.trace-table tbody tr"); n != 3 {
		t.Errorf("trace: %d events, want 3 (two access events, one authz_fail)", n)
	}
	b.run(chromedp.Click(chromedp.CSS("svg.timeline g.span")), waitFor(`!!document.querySelector(".trace-detail .event-detail")`))
	b.screenshot("trace", false)

	// Alerts: the brute force is open; acknowledge it from the page.
	b.open(c.url+"/ui/alerts", `!!document.querySelector(".alert-cards")`)
	ackID := eval[string](b, `[...document.querySelectorAll(".alert-card")].find(li => li.innerText.includes("Brute force from one address") && li.innerText.includes("203.0.113.66") && li.querySelector("button.ack")).dataset.id`)
	b.run(chromedp.Click(chromedp.CSS("#alert-"+ackID+" button.link")), waitFor(`!!document.querySelector("#alert-`+ackID+` .evidence table")`))
	if n := count(b, "#alert-"+ackID+" .evidence tbody tr"); n < 10 {
		t.Errorf("alert evidence: %d events, want ≥ 10 failed logins", n)
	}
	b.screenshot("alerts", false)
	b.run(chromedp.SendKeys(chromedp.CSS("#alert-"+ackID+" input.note-in"), "looking into it"),
		chromedp.Click(chromedp.CSS("#alert-"+ackID+" button.ack")),
		waitFor(`!document.getElementById("alert-`+ackID+`")`))
	body := waitAPI(t, c, "/v1/alerts/"+ackID, func(b []byte) bool { return strings.Contains(string(b), `"status":"acknowledged"`) })
	if !strings.Contains(string(body), `"updated_by":"soc-admin"`) || !strings.Contains(string(body), "looking into it") {
		t.Errorf("acknowledged alert: %s", body)
	}

	// Blocks: unblock the attacker (two clicks: ask, confirm).
	b.open(c.url+"/ui/blocks", `!!document.querySelector("table.decisions")`)
	sel := fmt.Sprintf(`tr[data-value=%q] button.unblock`, attacker)
	b.screenshot("blocks", false)
	b.run(chromedp.Click(chromedp.CSS(sel)), waitFor(fmt.Sprintf(`document.querySelector(%q).innerText === "Confirm unblock"`, sel)),
		chromedp.Click(chromedp.CSS(sel)), waitFor(fmt.Sprintf(`!document.querySelector('tr[data-value=%q]')`, attacker)))
	code, list := c.api(t, "GET", "/v1/decisions", c.admin, nil)
	if code != 200 || strings.Contains(string(list), attacker) {
		t.Fatalf("after unblock, /v1/decisions: %d %s", code, list)
	}

	// Integrity: the signature checked here, a verification with progress.
	b.open(c.url+"/ui/integrity", `!!document.querySelector(".sig[data-verdict]")`)
	if v := eval[string](b, `document.querySelector(".sig").dataset.verdict`); v != "ok" {
		t.Fatalf("checkpoint signature in the browser: %s", text(b, ".sig"))
	}
	b.run(chromedp.Click(chromedp.CSS("#verify-run")), waitFor(`!!document.querySelector(".verify .verdict[data-verdict]")`))
	if v := eval[string](b, `document.querySelector(".verify .verdict[data-verdict]").dataset.verdict`); v != "ok" {
		t.Fatalf("verification: %s", text(b, ".verify"))
	}
	b.screenshot("integrity", false)

	// Reports: a PCI DSS report, its signature checked in the browser, then
	// the PDF form.
	b.open(c.url+"/ui/reports?from=2h", `!!document.querySelector("#generate")`)
	b.run(chromedp.Click(chromedp.CSS("#generate")), waitFor(`document.querySelector(".report-out").dataset.loaded === "json"`))
	if v := eval[string](b, `(document.querySelector(".report-out .verdict") || {dataset: {}}).dataset.verdict || ""`); v != "ok" {
		t.Fatalf("report signature in the browser: %q: %s", v, text(b, ".report-out"))
	}
	if n := count(b, "table.report-items tbody tr"); n < 5 {
		t.Errorf("report: %d requirements shown", n)
	}
	b.screenshot("reports", false)
	b.run(chromedp.SetValue(chromedp.CSS("#format"), "pdf"), chromedp.Click(chromedp.CSS("#generate")),
		waitFor(`document.querySelector(".report-out").dataset.loaded === "pdf"`))
	if href := eval[string](b, `document.getElementById("report-download").getAttribute("href")`); !strings.HasPrefix(href, "blob:"+c.url+"/") {
		t.Errorf("PDF download link %q", href)
	}

	// Phone: every page fits the width (no horizontal scrolling).
	b.run(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	for _, p := range []struct{ path, ready, name string }{
		{"/ui/?from=1h", `!!document.querySelector(".grid[data-loaded]")`, "overview-phone"},
		{"/ui/search?from=1h&q=event.outcome:failure", `!!document.querySelector(".results[data-loaded]")`, "search-phone"},
		{"/ui/alerts?status=all", `!!document.querySelector(".alert-cards")`, "alerts-phone"},
		{"/ui/integrity", `!!document.querySelector(".sig[data-verdict]")`, "integrity-phone"},
	} {
		b.open(c.url+p.path, p.ready)
		if over := eval[int](b, `document.documentElement.scrollWidth - window.innerWidth`); over > 1 {
			t.Errorf("%s on a phone: %d px wider than the screen", p.path, over)
		}
		b.screenshot(p.name, false)
	}
	b.run(chromedp.EmulateViewport(1366, 768))

	// Sign-out: back to the sign-in page, and the session is gone.
	b.open(c.url+"/ui/", `!!document.querySelector("#signout")`)
	b.run(chromedp.Click(chromedp.CSS("#signout")), waitFor(`location.pathname === "/ui/signin"`))
	if st := eval[int](b, `fetch("/ui/api/v1/events").then(r => r.status)`); st != 401 {
		t.Fatalf("API after sign-out: %d, want 401", st)
	}
	if ex := b.exceptions(); len(ex) > 0 {
		t.Errorf("uncaught exceptions in the pages: %v", ex)
	}
	if csp := eval[[]string](b, `window.__tgCSP || []`); len(csp) > 0 {
		t.Errorf("CSP violations: %v", csp)
	}
}

// TestBrowserSessionEnds: a read-only user sees no admin actions, and a
// session that expires sends the page back to sign-in with a message.
func TestBrowserReadOnlyAndExpiry(t *testing.T) {
	testenvLong(t)
	c := seeded(t)
	b := newBrowser(t, 1366, 768)
	b.signIn(c.url, c.read)
	b.open(c.url+"/ui/alerts", `!!document.querySelector(".alert-cards")`)
	if n := count(b, "button.ack, button.resolve"); n != 0 {
		t.Errorf("read-only user sees %d lifecycle buttons", n)
	}
	b.open(c.url+"/ui/blocks", `!!document.querySelector("table.decisions")`)
	if n := count(b, "button.unblock"); n != 0 {
		t.Errorf("read-only user sees %d unblock buttons", n)
	}
	// A forged change with the read session is refused by the API's role
	// check even with the right CSRF value.
	st := eval[int](b, `fetch("/ui/api/session").then(r => r.json()).then(s => fetch("/ui/api/v1/decisions/1", {method: "DELETE", headers: {"X-CSRF-Token": s.csrf}})).then(r => r.status)`)
	if st != 403 {
		t.Errorf("DELETE a decision with a read session: %d, want 403", st)
	}
	// Expiry: end the session on the server; the next request sends the
	// page to sign-in, which says why.
	if _, err := c.Tokens().Revoke("analyst"); err != nil {
		t.Fatal(err)
	}
	b.run(chromedp.Click(chromedp.CSS(`#nav a[href="/ui/search"]`)), waitFor(`location.pathname === "/ui/signin"`))
}

func testenvLong(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test; run without -short")
	}
}

// hits is a search answer.
type hits struct {
	Hits []struct {
		Event json.RawMessage `json:"event"`
	} `json:"hits"`
}
