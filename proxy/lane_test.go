package proxy

import (
	"io"
	"iter"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/decision"
	"github.com/trailguard/trailguard/detect"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
)

// noEntries is an empty ledger for a decision store that catches up from
// nothing.
type noEntries struct{}

func (noEntries) Entries(uint64) iter.Seq2[ledger.Entry, error] {
	return func(func(ledger.Entry, error) bool) {}
}

// laneGateway is a gateway whose events pass through a request lane over
// the built-in rules, with a real decision store for the lane's targets
// and allowlist, but no detection following a ledger: any block it
// enforces comes from the lane alone.
func laneGateway(t *testing.T, allow []netip.Prefix, now func() time.Time) (*Proxy, string, *decision.Store) {
	t.Helper()
	st, err := decision.Open(decision.Options{Path: filepath.Join(t.TempDir(), "decisions.json"), Allowlist: allow}, noEntries{})
	if err != nil {
		t.Fatal(err)
	}
	eng, errs := detect.NewEngine(detect.Builtin(), detect.Options{})
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	lane := newRequestLane(eng.Rules(), st.Target)
	if lane == nil {
		t.Fatal("no lane over the built-in rules")
	}
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/basic-auth/") {
			http.Error(w, "no", http.StatusUnauthorized)
		}
	})
	cfg := Config{Routes: []Route{{Upstream: up.URL}}, TrustedProxies: []string{"127.0.0.1"}, Now: now,
		Sink: laneSink{Sink: &memSink{}, lane: lane}}
	p, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	// As Open does.
	p.gate = newAnswerGate(func() uint64 { return p.audit.Stats().Enqueued }, lane.seen.Load)
	lane.gate.Store(p.gate)
	lane.p.Store(p)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(p, cfg, nil)
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	return p, "http://" + ln.Addr().String(), st
}

// bruteForce sends n failed Basic-auth logins from client.
func bruteForce(t *testing.T, gw, client string, n int) {
	t.Helper()
	for i := range n {
		req, _ := http.NewRequest(http.MethodGet, gw+"/basic-auth/admin/secret", nil)
		req.SetBasicAuth("admin", "guess-"+string(rune('a'+i%26)))
		req.Header.Set("X-Forwarded-For", client)
		req.Header.Set("User-Agent", "curl/8")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want the upstream's 401", i+1, resp.StatusCode)
		}
	}
}

func statusFrom(t *testing.T, gw, client string) int {
	t.Helper()
	return get(t, gw+"/get", "X-Forwarded-For", client, "User-Agent", "curl/8").StatusCode
}

// The failed login that completes a brute force is enough for the gateway
// to refuse the attacker: the lane enforces the block the rule asks for
// without waiting for detection's decision (here there is no detection at
// all). Detection's decision replaces the lane's block when it comes, and
// an operator lifting that decision lifts the block; a lane block no
// decision confirms lapses; allowlisted clients are never blocked.
func TestBlockBeforeDetectionDecides(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	p, gw, st := laneGateway(t, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, now)

	bruteForce(t, gw, "192.0.2.7", 10)
	waitFor(t, "192.0.2.7 refused", func() bool { return statusFrom(t, gw, "192.0.2.7") == http.StatusForbidden })
	if len(st.Active()) != 0 {
		t.Fatal("the decision store decided: the block did not come from the lane")
	}
	if st := p.Stats(); st.EarlyBlocks != 1 || st.Blocked+st.Withheld == 0 {
		t.Fatalf("stats %+v: want one early block and refusals", st)
	}
	if statusFrom(t, gw, "192.0.2.8") != http.StatusOK {
		t.Fatal("another client was refused")
	}

	// Detection's decision arrives: it takes over the block (even one
	// shorter than the lane's), and lifting it lifts the block at once
	// (nothing of the lane's is left).
	p.Apply("detection", Update{New: []Decision{{Type: "ban", Scope: "Ip", Value: "192.0.2.7", Duration: "5s", Scenario: "trailguard_brute_force_source"}}})
	if statusFrom(t, gw, "192.0.2.7") != http.StatusForbidden {
		t.Fatal("not refused under detection's decision")
	}
	p.Apply("detection", Update{Deleted: []Decision{{Scope: "Ip", Value: "192.0.2.7"}}})
	if statusFrom(t, gw, "192.0.2.7") != http.StatusOK {
		t.Fatal("still refused after detection's decision was lifted: the lane's block outlived it")
	}

	// Unconfirmed, a lane block lapses.
	bruteForce(t, gw, "192.0.2.9", 10)
	waitFor(t, "192.0.2.9 refused", func() bool { return statusFrom(t, gw, "192.0.2.9") == http.StatusForbidden })
	mu.Lock()
	clock = clock.Add(laneTTL + time.Second)
	mu.Unlock()
	if statusFrom(t, gw, "192.0.2.9") != http.StatusOK {
		t.Fatal("a lane block no decision confirmed did not lapse")
	}

	// The decision store's allowlist holds for the lane.
	bruteForce(t, gw, "198.51.100.20", 12)
	time.Sleep(50 * time.Millisecond)
	if statusFrom(t, gw, "198.51.100.20") != http.StatusOK || p.Stats().EarlyBlocks != 2 {
		t.Fatalf("an allowlisted client was blocked (stats %+v)", p.Stats())
	}
}

// A batch the storage failed to take is handed to the lane again as is:
// its events are not counted twice.
func TestLaneCountsRetriedBatchOnce(t *testing.T) {
	t.Parallel()
	p, _, st := laneGateway(t, nil, nil)
	lane := newRequestLane(mustRules(t), st.Target)
	lane.p.Store(p)
	batch := func(from int) [][]byte {
		var recs [][]byte
		for i := from; i < from+5; i++ {
			ev := &event.Event{Timestamp: time.Now(), Kind: event.KindEvent, Category: []string{event.CategoryAuthentication},
				Type: []string{event.TypeStart}, Action: event.ActionLoginFail, Outcome: event.OutcomeFailure,
				Dataset: event.DatasetAudit, ClientIP: "203.0.113.5", UserName: "admin"}
			ev.SetNewID()
			recs = append(recs, ev.AppendJSON(nil))
		}
		return recs
	}
	first := batch(0)
	lane.observe(first, nil, nil)
	lane.observe(first, nil, nil) // the retry
	if _, _, _, ok := p.Blocklist().Blocked(netip.MustParseAddr("203.0.113.5")); ok {
		t.Fatal("5 failed logins, handed over twice, were counted as 10")
	}
	lane.observe(batch(5), nil, nil)
	if _, _, _, ok := p.Blocklist().Blocked(netip.MustParseAddr("203.0.113.5")); !ok {
		t.Fatal("10 failed logins did not block")
	}
}

func mustRules(t *testing.T) []*detect.Rule {
	t.Helper()
	eng, errs := detect.NewEngine(detect.Builtin(), detect.Options{})
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	return eng.Rules()
}

// A brute force sends its guesses in bursts. The failure that completes
// it is answered; the answers to the rest of its burst, in flight at the
// same time, are not given before the lane has seen the failures before
// them, and then are withheld: of 16 concurrent guesses the attacker
// learns the result of exactly the 10 the rule needed to block it.
func TestBurstAfterThresholdWithheld(t *testing.T) {
	t.Parallel()
	p, gw, _ := laneGateway(t, nil, nil)
	const burst = 16
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: burst}}
	statuses := make(chan int, burst)
	var wg sync.WaitGroup
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, gw+"/basic-auth/admin/secret", nil)
			req.SetBasicAuth("admin", "guess-"+string(rune('a'+i)))
			req.Header.Set("X-Forwarded-For", "192.0.2.44")
			req.Header.Set("User-Agent", "curl/8")
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(statuses)
	got := map[int]int{}
	for s := range statuses {
		got[s]++
	}
	if got[http.StatusUnauthorized] != 10 || got[http.StatusForbidden] != burst-10 {
		t.Fatalf("answers %v: want the upstream's 401 for the 10 guesses before the block, 403 for the other %d", got, burst-10)
	}
	// Those that reached the gateway after the block were refused before
	// the upstream instead.
	if st := p.Stats(); st.Withheld+st.Blocked != burst-10 || st.EarlyBlocks != 1 {
		t.Fatalf("stats %+v: want %d answers withheld or refused after one early block", st, burst-10)
	}
	// Another client is not held back by the attacker's failures.
	if statusFrom(t, gw, "192.0.2.45") != http.StatusOK {
		t.Fatal("another client was refused")
	}
	// The gate's two counts agree once the queue is drained (were the
	// lane to see fewer records than the queue accepted, every held
	// answer would wait out gateMaxHold).
	waitFor(t, "events written", func() bool {
		st := p.Stats().Events
		return st.Queued == 0 && st.Written == st.Enqueued
	})
	if seen, n := p.gate.observed(), p.Stats().Events.Enqueued; seen != n {
		t.Fatalf("the lane saw %d records, the queue accepted %d", seen, n)
	}
}
