package ui_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// xssPayloads would each run __pwned (a DevTools binding: a call reaches
// the test) if a page ever parsed a logged value as markup or followed it as
// a link.
var xssPayloads = []string{
	`<script>__pwned("script")</script>`,
	`<img src=x onerror="__pwned('img')">`,
	`javascript:__pwned("js")`,
	`"><svg onload=__pwned("svg")>`,
	`</pre><iframe srcdoc="<script>parent.__pwned('iframe')</script>"></iframe>`,
}

// xssTraffic plants every payload in user agents, paths, user names, a
// request id and a trace id, in events the detection rules alert on (XSS
// in the URI, brute force per address), through the collector's API.
func xssTraffic(now time.Time, round int) []map[string]any {
	var out []map[string]any
	for i, p := range xssPayloads {
		for j := range 12 {
			at := now.Add(-10*time.Minute + time.Duration(i*12+j)*time.Second)
			ip := fmt.Sprintf("198.18.0.%d", 10+i)
			out = append(out, map[string]any{
				"@timestamp": ts(at),
				"event":      map[string]any{"kind": "event", "category": []string{"authentication"}, "type": []string{"start"}, "action": "authn_login_fail", "outcome": "failure", "id": fmt.Sprintf("%04d%04d-0000-7000-8000-%012d", round, i, j), "reason": p},
				"user":       map[string]any{"name": p},
				"source":     map[string]any{"ip": ip}, "client": map[string]any{"ip": ip},
				"url":        map[string]any{"path": "/login/" + p, "original": "/login/" + url.PathEscape(p)},
				"user_agent": map[string]any{"original": p},
				"service":    map[string]any{"name": "xss-" + fmt.Sprint(i)},
			})
		}
		out = append(out, map[string]any{
			"@timestamp": ts(now.Add(-time.Minute + time.Duration(i)*time.Second)),
			"event":      map[string]any{"kind": "event", "category": []string{"web"}, "type": []string{"access"}, "action": "http_request", "outcome": "failure", "id": fmt.Sprintf("1111%04d-%04d-7000-8000-000000000000", i, round), "duration": 1000000},
			"http":       map[string]any{"request": map[string]any{"id": p, "method": "GET", "referrer": p}, "response": map[string]any{"status_code": 400}},
			"url":        map[string]any{"path": "/search/" + p, "original": "/search?q=" + p, "query": "q=" + p},
			"source":     map[string]any{"ip": "198.18.1.1"}, "client": map[string]any{"ip": "198.18.1.1"},
			"user_agent": map[string]any{"original": p}, "user": map[string]any{"name": p},
			"service": map[string]any{"name": p},
			"trace":   map[string]any{"id": "4bf92f3577b34da6a3ce929d0e0e473" + fmt.Sprint(i)},
			"message": p,
		})
	}
	return out
}

// TestBrowserXSS plants <script>, <img onerror>, <svg onload>, iframe srcdoc
// and javascript: payloads in every field a page shows, and opens every page
// that shows them: nothing may run (the binding is never called, no global
// is set), no CSP violation may occur (so nothing even tried to run or
// load), no link may lead to javascript:, no element may carry an event
// handler attribute, and the payloads must be on screen as text.
func TestBrowserXSS(t *testing.T) {
	testenvLong(t)
	c := startCollector(t, t.TempDir(), nil)
	c.send(t, xssTraffic(time.Now(), 0))
	// Every alert the pages below show: the XSS probe's and the brute
	// force of each payload address. Waiting for the first two only let a
	// loaded collector's detection raise the rest after the alerts page
	// was drawn, which then never had the evidence of three alerts.
	waitAPI(t, c, "/v1/alerts?status=open", func(b []byte) bool {
		var res struct {
			Alerts []struct {
				Rule   string            `json:"rule_name"`
				Fields map[string]string `json:"fields"`
			} `json:"alerts"`
		}
		if json.Unmarshal(b, &res) != nil {
			return false
		}
		raised := map[string]bool{}
		for _, a := range res.Alerts {
			raised[a.Rule+" "+a.Fields["client.ip"]] = true
		}
		want := []string{"trailguard_web_xss 198.18.1.1"}
		for i := range xssPayloads {
			want = append(want, fmt.Sprintf("trailguard_brute_force_source 198.18.0.%d", 10+i))
		}
		for _, w := range want {
			if !raised[w] {
				return false
			}
		}
		return true
	})
	b := newBrowser(t, 1366, 768)
	b.signIn(c.url, c.admin)

	check := func(where string) {
		t.Helper()
		// Handlers such as onerror fire asynchronously: give them time.
		time.Sleep(150 * time.Millisecond)
		if p := b.pwned(); len(p) > 0 {
			t.Fatalf("%s: a payload ran: %v", where, p)
		}
		if v := eval[bool](b, `typeof window.__xss !== "undefined"`); v {
			t.Fatalf("%s: a payload set a global", where)
		}
		if csp := eval[[]string](b, `window.__tgCSP || []`); len(csp) > 0 {
			t.Fatalf("%s: CSP violations (something tried to run or load): %v", where, csp)
		}
		if n := count(b, `a[href^="javascript:" i], [src^="javascript:" i], iframe, object, embed, main img`); n > 0 {
			t.Fatalf("%s: %d elements that payloads would create", where, n)
		}
		if n := eval[int](b, `[...document.querySelectorAll("*")].filter(el => [...el.attributes].some(a => /^on/i.test(a.name))).length`); n > 0 {
			t.Fatalf("%s: %d elements carry an event handler attribute", where, n)
		}
	}
	shown := func(where string, wants ...string) {
		t.Helper()
		body := eval[string](b, `document.body.innerText`)
		for _, w := range wants {
			if !strings.Contains(body, w) {
				t.Errorf("%s: payload %q is not shown as text", where, w)
			}
		}
	}

	// Overview: the rankings hold payload user names.
	b.open(c.url+"/ui/?from=1h", `!!document.querySelector(".grid[data-loaded]")`)
	check("overview")
	shown("overview", xssPayloads[0], xssPayloads[1])

	// Search, with the columns that hold payloads, every row expanded.
	cols := "@timestamp,user.name,user_agent.original,url.path,http.request.id,service.name,message"
	b.open(c.url+"/ui/search?from=1h&q="+url.QueryEscape("event.outcome:failure and not service.name:trailguard-collector")+"&cols="+url.QueryEscape(cols),
		`!!document.querySelector(".results[data-loaded]")`)
	b.run(chromedp.Evaluate[chromedp.Void](`document.querySelectorAll("table.events tr.ev-row button.expand").forEach(b => b.click())`),
		waitFor(`document.querySelectorAll(".event-detail pre.json").length > 10`))
	check("search")
	shown("search", xssPayloads...)
	// A filter from a payload value goes into the query box, as text.
	// The results drawn for the new query, not the old ones still on
	// screen (the URL had a q= before the click too): the old table is
	// marked, and the check waits for one without the mark.
	b.run(chromedp.Evaluate[chromedp.Void](`document.querySelector(".results").dataset.before = "1"`),
		chromedp.Click(chromedp.CSS(`.event-detail table.fields button.icon`)),
		waitFor(`!!document.querySelector(".results[data-loaded]:not([data-before])") && location.search.includes("q=")`))
	check("search filtered by a payload")

	// The event page and its proof.
	b.open(c.url+"/ui/event?id=11110000-0000-7000-8000-000000000000", `!!document.querySelector(".event-detail")`)
	b.run(chromedp.Click(chromedp.CSS("button.prove")), waitFor(`!!document.querySelector(".prove-result .verdict")`))
	check("event")
	shown("event", xssPayloads[0])

	// A trace whose request id, service and path are payloads.
	for _, p := range xssPayloads[:2] {
		b.open(c.url+"/ui/trace?from=1h&request_id="+url.QueryEscape(p), `!!document.querySelector("svg.timeline") || !!document.querySelector(".trace-body .state.empty")`)
		if count(b, "svg.timeline") != 1 {
			t.Fatalf("trace of payload request id %q: %s", p, text(b, "main"))
		}
		b.run(chromedp.Click(chromedp.CSS("svg.timeline g.span")), waitFor(`!!document.querySelector(".trace-detail .event-detail")`))
		check("trace")
	}

	// Alerts (the XSS rule's alerts carry the payload URIs), evidence open.
	b.open(c.url+"/ui/alerts?status=all", `!!document.querySelector(".alert-cards")`)
	b.run(chromedp.Evaluate[chromedp.Void](`document.querySelectorAll(".alert-card .alert-actions button.link").forEach(b => b.click())`),
		waitFor(`document.querySelectorAll(".evidence table").length >= 3`),
		chromedp.Evaluate[chromedp.Void](`document.querySelectorAll(".evidence button.expand").forEach(b => b.click())`))
	check("alerts")

	// Blocks: the brute-force decisions for the payload addresses.
	b.open(c.url+"/ui/blocks", `!!document.querySelector("table.decisions") || !!document.querySelector(".state.empty")`)
	check("blocks")

	// Live tail: payloads arriving while the page listens.
	b.open(c.url+"/ui/search?q="+url.QueryEscape("service.name:*"), `!!document.querySelector(".results[data-loaded]")`)
	// The tail streams from the ledger's size when its request arrives, so
	// the traffic is sent once the stream is open (its "open" event: the
	// collector has answered), not after a fixed wait that a loaded machine
	// outlasts (the events then came before the tail and never showed).
	b.run(chromedp.Evaluate[chromedp.Void](`(() => {
		window.EventSource = class extends EventSource {
			constructor(...a) { super(...a); this.addEventListener("open", () => { window.__tgTailOpen = true; }); }
		};
	})()`))
	b.run(chromedp.Click(chromedp.CSS("#tail")), waitFor(`document.getElementById("tail").getAttribute("aria-pressed") === "true" && window.__tgTailOpen === true`))
	c.send(t, xssTraffic(time.Now(), 1)[:13])
	b.run(waitFor(`document.querySelectorAll("table.events tr.new").length >= 13`))
	check("live tail")
	shown("live tail", xssPayloads[0])

	// Nothing reached the collector's CSP report endpoint either.
	_, metrics := c.api(t, "GET", "/metrics", c.read, nil)
	if !strings.Contains(string(metrics), "trailguard_ui_csp_violations_total 0\n") {
		t.Fatalf("CSP reports reached the collector: %s", grepLine(string(metrics), "trailguard_ui_csp"))
	}
}

func grepLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
