//go:build linux

package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/internal/testenv"
)

// TestSingleNodeEventLossShown: a single-node gateway whose ledger fails
// (its real file system filled below the reserve the ledger keeps for
// checkpoints, so appends fail) goes on serving requests (fail-open, as
// documented) and their events wait in the queue; once the queue is
// full they are lost. That loss must not be silent: /metrics counts it
// and shows the store failing, the log says so, and once the disk has
// room again the trail holds an alert saying how many events were lost
// and when. Before, the counts stayed in httpaudit's Stats, which
// nothing showed: an outage of the trail read as a quiet period.
func TestSingleNodeEventLossShown(t *testing.T) {
	old := eventQueueSize
	eventQueueSize = 16
	defer func() { eventQueueSize = old }()
	dir := testenv.SmallDisk(t, "160m")
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	var out lockedBuf
	logger := slog.New(slog.NewTextHandler(&out, nil))
	g, gw, stop := serveGatewayLog(t, Config{DataDir: dir, Routes: []Route{{Upstream: up.URL}}}, logger)
	col := g.Collector()
	_, token, err := col.Tokens().Create("reader", access.RoleRead)
	if err != nil {
		t.Fatal(err)
	}
	metrics := func() string {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		col.Handler().ServeHTTP(rec, req)
		return rec.Body.String()
	}
	request := func(path string) {
		t.Helper()
		resp, err := http.Get(gw + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	request("/before")
	filler := testenv.Fill(t, dir, 16<<20) // under the ledger's 64 MiB reserve
	waitFor(t, "the store failing", func() bool {
		request("/during")
		return strings.Contains(metrics(), "trailguard_gateway_event_store_failing 1\n")
	})
	for range 3 * eventQueueSize {
		request("/during") // served: fail-open
	}
	m := metrics()
	if strings.Contains(m, "trailguard_gateway_events_lost_total 0\n") || !strings.Contains(m, "trailguard_gateway_events_lost_total ") {
		t.Fatalf("no loss in /metrics after %d requests past a queue of %d:\n%s", 3*eventQueueSize, eventQueueSize, m)
	}
	waitFor(t, "the loss logged", func() bool { return strings.Contains(out.String(), "proxy: events lost") })
	if !strings.Contains(out.String(), "proxy: the event store is failing") {
		t.Errorf("no log line saying the store fails:\n%s", out.String())
	}
	os.Remove(filler)
	waitFor(t, "the store writing again", func() bool {
		request("/after")
		return strings.Contains(metrics(), "trailguard_gateway_event_store_failing 0\n")
	})
	time.Sleep(time.Second) // the watcher's next look (every 500 ms)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	lost := byAction(ledgerEvents(t, dir+"/ledger"), ActionEventsLost)
	if len(lost) == 0 {
		t.Fatalf("no %s alert in the trail after the outage; log:\n%s", ActionEventsLost, out.String())
	}
	if !strings.Contains(lost[0].Message, "events were lost between") {
		t.Errorf("alert: %q", lost[0].Message)
	}
}
