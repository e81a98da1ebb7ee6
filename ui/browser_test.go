package ui_test

import (
	"testing"
	"time"
)

func TestBrowserSmoke(t *testing.T) {
	c := startCollector(t, t.TempDir(), nil)
	c.send(t, traffic(time.Now(), 1))
	b := newBrowser(t, 1366, 768)
	b.signIn(c.url, c.admin)
	b.run(waitFor(`!!document.querySelector(".grid[data-loaded]")`))
	t.Log(b.screenshot("overview", true))
	for _, p := range []string{"search", "trace", "alerts", "blocks", "integrity", "reports"} {
		b.open(c.url+"/ui/"+p, `!document.querySelector("main .loading")`)
		time.Sleep(300 * time.Millisecond)
		t.Log(b.screenshot(p, false))
	}
	t.Log(b.exceptions())
}
