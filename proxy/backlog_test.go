package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestBacklogBoundsUndurableAnswers: while the single node's ledger is
// stalled (a write that does not return: a starved writer, a slow
// fdatasync), the gateway stops serving new requests once the oldest
// pending event is older than maxUndurable, and serves them again when the
// ledger catches up, so that a crash then loses only what was answered
// within that bound. Without the backlog a request is answered at once
// however far behind the ledger is (TestProxyCrashLosesOnlyTheGap lost
// 449 ms of answers so under load).
func TestBacklogBoundsUndurableAnswers(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	g, err := Open(Config{DataDir: t.TempDir(), Routes: []Route{{Upstream: up.URL}}}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	stall := stallLedger(t, g)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(ctx, ln, nil) }()
	defer func() {
		stall.unblock()
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	base := "http://" + ln.Addr().String()
	get := func(path string) error {
		resp, err := http.Get(base + path)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	if err := get("/before"); err != nil {
		t.Fatal(err)
	}
	stall.arm(t)
	// Answered at once: the ledger is not behind yet. Its event's write
	// stalls.
	if err := get("/first"); err != nil {
		t.Fatal(err)
	}
	stall.waitStalled(t, "/first's event")
	time.Sleep(maxUndurable + 20*time.Millisecond)
	// Under load /first itself may have waited for /before's or the
	// start's events (a slow ledger): count from here.
	waits := g.Proxy.Stats().LedgerWaits
	answered := make(chan error, 1)
	go func() { answered <- get("/held") }()
	select {
	case err := <-answered:
		t.Fatalf("a request was served (%v) while the ledger was %v behind its answers: a crash now loses more than maxUndurable (%v) of answers",
			err, maxUndurable+20*time.Millisecond, maxUndurable)
	case <-time.After(300 * time.Millisecond):
	}
	stall.unblock()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the held request was not served once the ledger caught up")
	}
	if n := g.Proxy.Stats().LedgerWaits - waits; n != 1 {
		t.Errorf("Stats().LedgerWaits grew by %d, want the one request held", n)
	}
}
