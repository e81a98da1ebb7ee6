package ui_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"
)

// TestBrowserOverviewSlowTops: when the top lists must be counted over the
// index (one service's, or a range older than the hours the collector
// keeps them for: seconds at millions of events), the Overview draws its
// charts as soon as they are in and shows the top lists loading; the page
// says it is loaded only once they are on screen too. The browser holds
// the top-list requests until the test has seen that.
func TestBrowserOverviewSlowTops(t *testing.T) {
	testenvLong(t)
	c := seeded(t)
	b := newBrowser(t, 1366, 768)
	b.signIn(c.url, c.admin)

	paused := make(chan fetch.RequestID, 8)
	if err := chromedp.Listen(b.ctx, func(ev any) {
		if ev, ok := ev.(*fetch.EventRequestPaused); ok {
			paused <- ev.RequestID
		}
	}); err != nil {
		t.Fatal(err)
	}
	b.run(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*/ui/api/v1/stats?*top=*"}}})
		return err
	}))
	b.run(chromedp.Navigate(c.url+"/ui/?from=1h&service=shop-api"),
		waitFor(`document.querySelectorAll("svg.ts path.line").length >= 5`))
	var held []fetch.RequestID
	for len(held) < 2 {
		select {
		case id := <-paused:
			held = append(held, id)
		case <-time.After(30 * time.Second):
			t.Fatalf("%d top-list requests held, want 2", len(held))
		}
	}
	page := text(b, "main")
	if !strings.Contains(page, "Loading the top addresses, counted over the index") || !strings.Contains(page, "Loading the top users, counted over the index") {
		t.Errorf("charts drawn, top lists not shown loading:\n%s", page)
	}
	if eval[bool](b, `!!document.querySelector(".grid[data-loaded]")`) {
		t.Errorf("the page says it is loaded while its top lists are not")
	}
	b.screenshot("overview-tops-loading", false)
	b.run(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		for _, id := range held {
			if _, err := cdp.Call(ctx, tg, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: id}); err != nil {
				return err
			}
		}
		return nil
	}), waitFor(`!!document.querySelector(".grid[data-loaded]")`))
	page = text(b, "main")
	if strings.Contains(page, "counted over the index") || !strings.Contains(page, attacker) || !strings.Contains(page, "alice") {
		t.Errorf("top lists after their answers:\n%s", page)
	}
	if ex := b.exceptions(); len(ex) > 0 {
		t.Errorf("exceptions: %q", ex)
	}
}
