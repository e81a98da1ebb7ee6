package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/stalltest"
)

// The gate holds a client's answers while a failure of that client is not
// yet evaluated by the lane, releases them when it is (withholding them if
// the client is blocked by then), never holds other clients, and never
// holds an answer longer than gateMaxHold, even behind a flood of
// failures the lane never sees.
func TestAnswerGate(t *testing.T) {
	t.Parallel()
	var enqueued, observed atomic.Uint64
	g := newAnswerGate(enqueued.Load, observed.Load)
	attacker, other := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	var isBlocked atomic.Bool
	blocked := func() bool { return isBlocked.Load() }

	withhold, e := g.pass(attacker, http.StatusUnauthorized, blocked)
	if withhold || e == nil {
		t.Fatal("a first failure was not let through and noted")
	}
	enqueued.Store(7) // its events, and others before them, are queued
	g.end(e)

	// Another client is not held: answered well within gateMaxHold, or
	// as late as a stall of this process made it (a loaded machine stops
	// it for seconds); the wait for the answer itself is generous.
	watch := stalltest.Start(t)
	var withheld bool
	took, stalled, ok := stalltest.Run(func() { withheld, _ = g.pass(other, http.StatusOK, blocked) }, watch, 30*time.Second)
	if !ok {
		t.Fatalf("another client's answer held: none after %v", took)
	}
	if withheld || took > gateMaxHold/2+stalled {
		t.Fatalf("another client's answer held %v, stalled %v (withheld %v)", took, stalled, withheld)
	}
	// The attacker's next answer waits for the lane, which blocks.
	done := make(chan bool)
	go func() {
		w, _ := g.pass(attacker, http.StatusOK, blocked)
		done <- w
	}()
	select {
	case <-done:
		t.Fatal("answer given before the lane saw the failure before it")
	case <-time.After(20 * time.Millisecond):
	}
	isBlocked.Store(true)
	observed.Store(7)
	g.notify()
	if w, _, _, ok := stalltest.Await(done, watch, 30*time.Second); !ok {
		t.Fatal("answer still held after the lane saw the failure")
	} else if !w {
		t.Fatal("answer given to a client the lane blocked meanwhile")
	}

	// A flood of failures the lane never sees: each answer waits at most
	// gateMaxHold.
	isBlocked.Store(false)
	watch.Reset()
	var wg sync.WaitGroup
	var slowest, late atomic.Int64
	// The machine's share: how late goroutines waking from a timer of
	// the same length run, alongside the flood (on a loaded 2-core
	// machine, over 100 ms). The bound grows by it, not by a guess: a
	// gate holding an answer longer than gateMaxHold is as late as that
	// plus its own excess, which the bound still catches. A stall of the
	// whole process (the Watch) delays timers and the gate alike.
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			<-time.After(gateMaxHold)
			storeMax(&late, int64(time.Since(start)-gateMaxHold))
		}()
	}
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, e := g.pass(attacker, http.StatusUnauthorized, blocked)
			if e != nil {
				enqueued.Add(1)
				g.end(e)
			}
			storeMax(&slowest, int64(time.Since(start)))
		}()
	}
	wg.Wait()
	if d, late, stalled := time.Duration(slowest.Load()), time.Duration(late.Load()), watch.Worst(); d > gateMaxHold+gateMaxHold/2+max(late, stalled) {
		t.Fatalf("an answer was held %v behind failures the lane never saw (bound %v; timers ran %v late, stalled %v)", d, gateMaxHold, late, stalled)
	}
}

// TestGateConnectionMark: on the lean front end, a connection's requests
// share one gate mark (Proxy.connContext), taken afresh by each: a
// failure's mark must not be ended again by a later request on the same
// connection that never reached the upstream (a refusal), or the gate
// would count one failure fewer in flight than there are, and let a
// burst's answers out before the lane has seen them.
func TestGateConnectionMark(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	cfg := Config{Routes: []Route{{Upstream: up.URL}}, Sink: &memSink{}}
	p, err := New(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	var observed atomic.Uint64
	observed.Store(1 << 40) // the lane has seen everything: nothing waits
	p.gate = newAnswerGate(func() uint64 { return 0 }, observed.Load)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := listen(p, cfg, ln)
	t.Cleanup(func() { srv.Close(); p.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for _, tc := range []struct {
		raw    string
		status int
	}{
		{"GET /login HTTP/1.1\r\nHost: a\r\n\r\n", http.StatusUnauthorized},
		{"GET /x HTTP/1.1\r\nHost: a\r\nX-Original-URL: /admin\r\n\r\n", http.StatusBadRequest},
		{"GET /y HTTP/1.1\r\nHost: a\r\nX-Original-URL: /admin\r\n\r\n", http.StatusBadRequest},
	} {
		io.WriteString(c, tc.raw)
		c.SetReadDeadline(time.Now().Add(30 * time.Second)) // must come: a long wait
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != tc.status {
			t.Fatalf("%q: %d, want %d", tc.raw, resp.StatusCode, tc.status)
		}
	}
	if f := srv.(*front); f.served.Load() != 3 {
		t.Fatalf("the front end served %d requests, want 3 (on one connection)", f.served.Load())
	}
	p.gate.mu.Lock()
	defer p.gate.mu.Unlock()
	for client, e := range p.gate.clients {
		if e.inflight != 0 {
			t.Errorf("client %v: %d failures in flight after all were answered, want 0", client, e.inflight)
		}
	}
}

// storeMax raises m to v if v is larger.
func storeMax(m *atomic.Int64, v int64) {
	for old := m.Load(); v > old && !m.CompareAndSwap(old, v); old = m.Load() {
	}
}
