package ui_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/trailguard/trailguard/internal/testenv"
)

// axeSource finds axe-core's axe.min.js: $TRAILGUARD_AXE (.ci/run installs
// the npm package into its cache and sets it), else the cache .ci/run uses.
func axeSource(t *testing.T) string {
	t.Helper()
	paths := []string{os.Getenv("TRAILGUARD_AXE")}
	if home, err := os.UserHomeDir(); err == nil {
		m, _ := filepath.Glob(filepath.Join(home, ".cache/trailguard-ci/npm-axe-core-*/node_modules/axe-core/axe.min.js"))
		paths = append(paths, m...)
	}
	for _, p := range paths {
		if p == "" {
			continue
		}
		if b, err := os.ReadFile(p); err == nil {
			return string(b)
		}
	}
	testenv.Require(t, false, "axe-core not found (npm install axe-core; .ci/run sets TRAILGUARD_AXE)")
	return ""
}

// axeViolation is what the test reports of one violation.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// TestBrowserAccessibility runs axe-core on every page (signed out and
// signed in, with data, details open) and fails on serious or critical
// violations.
func TestBrowserAccessibility(t *testing.T) {
	testenvLong(t)
	axe := axeSource(t)
	c := seeded(t)
	b := newBrowser(t, 1366, 768)
	// axe is injected by DevTools; the page's CSP (Trusted Types) would
	// refuse some of what axe does to measure, so this browser bypasses
	// it. The pages themselves are the same.
	b.run(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.SetBypassCSP, page.SetBypassCSPParams{Enabled: true})
		return err
	}))
	run := func(name string) {
		t.Helper()
		b.run(chromedp.Evaluate[chromedp.Void](axe))
		vs := eval[[]axeViolation](b, `axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations.map(v => ({id: v.id, impact: v.impact || "", help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))})))`)
		for _, v := range vs {
			if v.Impact == "serious" || v.Impact == "critical" {
				t.Errorf("%s: %s (%s): %s at %s", name, v.ID, v.Impact, v.Help, strings.Join(v.Nodes, "; "))
			} else {
				t.Logf("%s: %s (%s): %s", name, v.ID, v.Impact, v.Help)
			}
		}
	}
	b.open(c.url+"/ui/signin", `!!document.querySelector("#token")`)
	run("sign-in")
	b.signIn(c.url, c.admin)
	pages := []struct{ name, path, ready, then string }{
		{"overview", "/ui/?from=1h", `!!document.querySelector(".grid[data-loaded]")`, ""},
		{"search", "/ui/search?from=1h&q=event.outcome:failure", `!!document.querySelector(".results[data-loaded]")`,
			`document.querySelector("tr.ev-row button.expand").click(); document.querySelector("details.columns").open = true`},
		{"event", "", "", ""},
		{"trace", "/ui/trace?from=1h&trace_id=", `!!document.querySelector(".trace-body .state")`, ""},
		{"alerts", "/ui/alerts?status=all", `!!document.querySelector(".alert-cards")`, `document.querySelector(".alert-card .alert-actions button.link").click()`},
		{"blocks", "/ui/blocks", `!!document.querySelector("table.decisions")`, ""},
		{"integrity", "/ui/integrity", `!!document.querySelector(".sig[data-verdict]")`, ""},
		{"reports", "/ui/reports?from=2h", `!!document.querySelector("#generate")`, `document.getElementById("generate").click()`},
	}
	for _, p := range pages {
		if p.name == "event" {
			id := eval[string](b, `fetch("/ui/api/v1/events?q=event.action:authn_login_fail&from=1h&limit=1").then(r => r.json()).then(j => j.hits[0].event.event.id)`)
			p.path, p.ready = "/ui/event?id="+id, `!!document.querySelector(".event-detail")`
		}
		b.open(c.url+p.path, p.ready)
		if p.then != "" {
			b.run(chromedp.Evaluate[chromedp.Void](p.then))
			b.run(waitFor(`!document.querySelector("main .loading")`))
		}
		run(p.name)
	}
	// Shortcut help, and a phone-width page.
	b.run(chromedp.Evaluate[chromedp.Void](`document.getElementById("shortcuts").hidden = false`))
	run("shortcuts")
	b.run(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	b.open(c.url+"/ui/search?from=1h", `!!document.querySelector(".results[data-loaded]")`)
	run("search on a phone")
}
