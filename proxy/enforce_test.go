package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/stalltest"
)

func TestRateLimitsAndSampledRefusals(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	p, gw, ms := gateway(t, Config{
		Routes: []Route{
			{Path: "/", Upstream: up.URL},
			{Path: "/search", Upstream: up.URL, RateLimit: &RateLimit{Rate: 0.001, Burst: 2, Per: "route"}},
		},
		RateLimit:         &RateLimit{Rate: 0.001, Burst: 5},
		RefusalsPerMinute: 3,
	})
	// Per route: two requests, then 429 (all clients together).
	for i, want := range []int{200, 200, 429} {
		resp := get(t, gw+"/search")
		if resp.StatusCode != want {
			t.Fatalf("search %d: %d, want %d", i, resp.StatusCode, want)
		}
		if want == 429 {
			ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || ra < 1 {
				t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
			}
		}
	}
	// Per client: 5 in all were allowed by the client bucket (the 429 above
	// took one as well), then a flood is refused and only 3 refusals are
	// recorded one by one.
	for range 2 {
		get(t, gw+"/")
	}
	before := up.count()
	for range 50 {
		if resp := get(t, gw+"/"); resp.StatusCode != 429 {
			t.Fatalf("flood: %d, want 429", resp.StatusCode)
		}
	}
	if up.count() != before {
		t.Fatal("a rate-limited request reached the upstream")
	}
	st := p.Stats()
	if st.RateLimited != 51 || st.Unrecorded != 48 {
		t.Errorf("stats %+v: want 51 limited, 48 unrecorded", st)
	}
	p.Close() // summarises the window
	evs := ms.events(t)
	if n := len(byAction(evs, ActionRateLimited)); n != 3 {
		t.Errorf("%d refusals recorded, want 3 (the per-address budget)", n)
	}
	access429 := 0
	for _, ev := range byAction(evs, event.ActionHTTPRequest) {
		if ev.StatusCode == 429 {
			access429++
		}
	}
	if access429 != 3 {
		t.Errorf("%d access events of refused requests, want 3", access429)
	}
	sum := byAction(evs, ActionAuditUnrecorded)
	if len(sum) != 1 {
		t.Fatalf("%d summaries, want 1", len(sum))
	}
	var attrs struct {
		Unrecorded int `json:"unrecorded"`
		Top        []struct {
			Address    string
			Unrecorded int
			Reasons    map[string]int
		}
	}
	json.Unmarshal(sum[0].Attrs, &attrs)
	if attrs.Unrecorded != 48 || len(attrs.Top) != 1 || attrs.Top[0].Address != "127.0.0.1" || attrs.Top[0].Reasons[ActionRateLimited] != 48 {
		t.Errorf("summary %s", sum[0].Attrs)
	}
}

func TestBlocklist(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b := NewBlocklist(clock)
	_, _, err := b.Apply("a", Update{New: []Decision{
		{Type: "ban", Scope: "Ip", Value: "192.0.2.1", Duration: "10m", Scenario: "brute"},
		{Type: "ban", Scope: "Range", Value: "198.51.100.0/24", Duration: "1h"},
		{Type: "ban", Scope: "ip", Value: "2001:db8::1", Duration: "1h"},
		{Type: "captcha", Scope: "Ip", Value: "192.0.2.2", Duration: "1h"},
		{Type: "ban", Scope: "Username", Value: "bob", Duration: "1h"},
		{Type: "ban", Scope: "Ip", Value: "not-an-ip", Duration: "1h"},
	}})
	if err == nil {
		t.Error("unenforceable decisions not reported")
	}
	check := func(addr string, want bool) {
		t.Helper()
		if _, _, _, got := b.Blocked(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s blocked=%v, want %v", addr, got, want)
		}
	}
	check("192.0.2.1", true)
	check("::ffff:192.0.2.1", true)
	check("198.51.100.77", true)
	check("2001:db8::1", true)
	check("192.0.2.2", false)
	check("203.0.113.1", false)
	mu.Lock()
	now = now.Add(11 * time.Minute)
	mu.Unlock()
	check("192.0.2.1", false) // expired
	b.Apply("a", Update{Deleted: []Decision{{Scope: "Range", Value: "198.51.100.0/24"}}})
	check("198.51.100.77", false)
	// Another source's decisions survive a full refresh of this one.
	b.Apply("b", Update{New: []Decision{{Type: "ban", Scope: "Ip", Value: "192.0.2.9", Duration: "1h"}}})
	b.Apply("a", Update{Full: true})
	check("2001:db8::1", false)
	check("192.0.2.9", true)
}

// lapi is a real HTTP server speaking CrowdSec's bouncer protocol, as the
// collector serves it: GET /v1/decisions/stream with X-Api-Key.
type lapi struct {
	*httptest.Server
	mu       sync.Mutex
	down     bool
	pending  []Decision // sent on the next poll
	all      []Decision // sent on startup
	startups int
	polls    int
}

func newLAPI(t *testing.T, key string) *lapi {
	l := &lapi{}
	l.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.down {
			http.Error(w, "down", 503)
			return
		}
		if r.URL.Path != "/v1/decisions/stream" || r.Header.Get("X-Api-Key") != key {
			http.Error(w, "forbidden", 403)
			return
		}
		l.polls++
		out := map[string]any{"new": l.pending, "deleted": nil}
		if r.URL.Query().Get("startup") == "true" {
			l.startups++
			out["new"] = l.all
		}
		l.pending = nil
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(l.Close)
	return l
}

func (l *lapi) decide(d Decision) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, d)
	l.all = append(l.all, d)
}

func (l *lapi) setDown(v bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = v
}

func TestDecisionStreamEnforcedFailOpen(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	l := newLAPI(t, "bouncer-key")
	l.all = []Decision{{Type: "ban", Scope: "Ip", Value: "192.0.2.50", Duration: "1h"}}
	_, gw, ms := gateway(t, Config{
		Routes:         []Route{{Upstream: up.URL}},
		TrustedProxies: []string{"127.0.0.1"},
		Sources:        []Source{&StreamSource{URL: l.URL, APIKey: "bouncer-key", Interval: 20 * time.Millisecond}},
	})
	// waitStatus waits (generously: it must come) for want and says how
	// long it took and how long this process stalled meanwhile (a loaded
	// machine stops it for seconds, the gateway's poll with it).
	watch := stalltest.Start(t)
	waitStatus := func(xff string, want int) (took, stalled time.Duration) {
		t.Helper()
		watch.Reset()
		start := time.Now()
		for {
			if resp := get(t, gw+"/", "X-Forwarded-For", xff); resp.StatusCode == want {
				return time.Since(start), watch.Worst()
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("%s: no %d within 30 s", xff, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitStatus("192.0.2.50", 403) // from the startup list
	if got := get(t, gw+"/", "X-Forwarded-For", "192.0.2.51"); got.StatusCode != 200 {
		t.Fatalf("unblocked client: %d", got.StatusCode)
	}
	l.decide(Decision{Type: "ban", Scope: "Ip", Value: "192.0.2.51", Duration: "1h", Scenario: "trailguard/brute-force", Origin: "trailguard"})
	if d, stalled := waitStatus("192.0.2.51", 403); d > time.Second+stalled {
		t.Errorf("decision applied after %v (stalled %v), want within a second", d, stalled)
	}
	n := up.count()
	// The collector goes away: traffic flows, the last decisions hold, and
	// an alert is recorded.
	l.setDown(true)
	ms.wait(t, "the fail-open alert", hasAction(ActionMonitorDisabled, 1))
	if get(t, gw+"/", "X-Forwarded-For", "192.0.2.51").StatusCode != 403 || get(t, gw+"/", "X-Forwarded-For", "192.0.2.60").StatusCode != 200 {
		t.Error("with the collector down the gateway must keep its decisions and keep serving")
	}
	if up.count() != n+1 {
		t.Errorf("upstream saw %d requests, want %d", up.count(), n+1)
	}
	l.decide(Decision{Type: "ban", Scope: "Range", Value: "192.0.2.64/26", Duration: "1h"})
	l.setDown(false)
	ms.wait(t, "the recovery event", hasAction(ActionMonitorEnabled, 1))
	// After the outage the full list is fetched again, so a decision made
	// while the gateway could not see it is enforced.
	waitStatus("192.0.2.70", 403)
	l.mu.Lock()
	startups := l.startups
	l.mu.Unlock()
	if startups < 2 {
		t.Errorf("%d startup polls, want a new one after the outage", startups)
	}
	// (A request in flight when a decision came has its answer withheld
	// instead: response_withheld.)
	evs := ms.wait(t, "refusal and decisions events", func(evs []*event.Event) bool {
		return len(byAction(evs, ActionBlocked))+len(byAction(evs, ActionWithheld)) >= 3
	})
	for _, ev := range byAction(evs, ActionBlocked) {
		if ev.ClientIP == "192.0.2.51" && ev.Reason != "blocked by decision trailguard/brute-force (trailguard)" {
			t.Errorf("refusal reason %q", ev.Reason)
		}
	}
	alert := byAction(evs, ActionMonitorDisabled)[0]
	if alert.Kind != event.KindAlert || alert.ErrorMessage == "" {
		t.Errorf("fail-open alert %+v", alert)
	}
	if len(byAction(evs, ActionDecisionsApplied)) < 3 {
		t.Error("decision changes not recorded")
	}
}

// TestBlockNotEvadedByForgedHeaders: a blocked client that is not behind a
// trusted proxy cannot claim another address.
func TestBlockNotEvadedByForgedHeaders(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	p, gw, _ := gateway(t, Config{Routes: []Route{{Upstream: up.URL}}})
	p.Apply("test", Update{New: []Decision{{Type: "ban", Scope: "Range", Value: "127.0.0.0/8", Duration: "1h"}}})
	for _, h := range [][]string{
		{"X-Forwarded-For", "203.0.113.1"},
		{"Forwarded", "for=203.0.113.1"},
		{"X-Real-IP", "203.0.113.1"},
	} {
		if resp := get(t, gw+"/", h...); resp.StatusCode != 403 {
			t.Errorf("%s: %d, want 403", h[0], resp.StatusCode)
		}
	}
	if up.count() != 0 {
		t.Fatal("the upstream was reached")
	}
}

// TestBlockNotEvadedBehindTrustedProxy: behind a trusted load balancer a
// banned client cannot name another address in the forwarding header the
// balancer does not write (it passes the client's copy on as sent). Before,
// Forwarded was believed whenever present, behind balancers that append
// only to X-Forwarded-For (nginx, AWS, ...) too: a client sending
// "Forwarded: for=<any address>" was never blocked and could have anyone
// banned. The upstream is told the address recorded, in both headers.
func TestBlockNotEvadedBehindTrustedProxy(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	for _, tc := range []struct {
		header          string
		banned, forged  []string // the balancer's header, the client's own copy of the other
		wantXFF, wantFw string   // the upstream's headers start so
	}{
		{"", []string{"X-Forwarded-For", "203.0.113.60"}, []string{"Forwarded", "for=198.51.100.1"},
			"203.0.113.60, 127.0.0.1", "for=203.0.113.60, for=127.0.0.1;"},
		{"Forwarded", []string{"Forwarded", "for=203.0.113.60"}, []string{"X-Forwarded-For", "198.51.100.1"},
			"203.0.113.60, 127.0.0.1", "for=203.0.113.60, for=127.0.0.1;"},
	} {
		p, gw, _ := gateway(t, Config{Routes: []Route{{Upstream: up.URL}}, TrustedProxies: []string{"127.0.0.1"}, ForwardedHeader: tc.header})
		hdr := append(append([]string{}, tc.banned...), tc.forged...)
		if resp := get(t, gw+"/", hdr...); resp.StatusCode != 200 {
			t.Fatalf("%q before the ban: %d", tc.header, resp.StatusCode)
		}
		in := up.last().Header
		if got := in.Get("X-Forwarded-For"); got != tc.wantXFF {
			t.Errorf("%q: upstream got X-Forwarded-For %q, want %q", tc.header, got, tc.wantXFF)
		}
		if got := in.Get("Forwarded"); !strings.HasPrefix(got, tc.wantFw) {
			t.Errorf("%q: upstream got Forwarded %q, want it to start %q", tc.header, got, tc.wantFw)
		}
		p.Apply("test", Update{New: []Decision{{Type: "ban", Scope: "Ip", Value: "203.0.113.60", Duration: "1h"}}})
		before := up.count()
		if resp := get(t, gw+"/", hdr...); resp.StatusCode != 403 {
			t.Errorf("%q: the banned client naming another address: %d, want 403", tc.header, resp.StatusCode)
		}
		if up.count() != before {
			t.Errorf("%q: the upstream was reached", tc.header)
		}
	}
}

func TestLimitKeyGroupsIPv6By64(t *testing.T) {
	t.Parallel()
	l := newLimiter(&RateLimit{Rate: 0.001, Burst: 2}, 1000)
	now := time.Now()
	// An attacker rotating addresses inside its /64 shares one bucket.
	for i, a := range []string{"2001:db8:1:2::1", "2001:db8:1:2::ffff", "2001:db8:1:2:abcd::9"} {
		ok, _ := l.allow(limitKey(netip.MustParseAddr(a)), now)
		if ok != (i < 2) {
			t.Errorf("%s: allowed=%v", a, ok)
		}
	}
	if ok, _ := l.allow(limitKey(netip.MustParseAddr("2001:db8:1:3::1")), now); !ok {
		t.Error("another /64 shares the bucket")
	}
	if ok, _ := l.allow(limitKey(netip.MustParseAddr("::ffff:192.0.2.1")), now); !ok {
		t.Error("v4-mapped address")
	}
}

// FuzzDecisions: whatever a decision stream sends, applying it never
// panics, and a ban in force covers exactly the address or range it names.
func FuzzDecisions(f *testing.F) {
	f.Add("Ip", "192.0.2.1", "1h", "ban", "192.0.2.1")
	f.Add("Range", "2001:db8::/32", "4h", "ban", "2001:db8::5")
	f.Add("range", "::ffff:10.0.0.0/104", "10m", "ban", "10.1.2.3")
	f.Add("Ip", "x", "-1h", "captcha", "0.0.0.0")
	f.Fuzz(func(t *testing.T, scope, value, dur, typ, probe string) {
		b := NewBlocklist(nil)
		d := Decision{Scope: scope, Value: value, Duration: dur, Type: typ}
		added, _, aerr := b.Apply("f", Update{New: []Decision{d}})
		p, perr := d.prefix()
		// A decision taken without complaint is one the gateway enforces:
		// a ban it counted but could never match is a silent hole.
		if added > 0 && !isUserScope(scope) && (perr != nil || !p.IsValid()) {
			t.Fatalf("%+v taken (added %d, %v) with prefix %v, %v", d, added, aerr, p, perr)
		}
		a, err := netip.ParseAddr(probe)
		if err != nil {
			return
		}
		_, _, _, blocked := b.Blocked(a)
		in := perr == nil && p.Contains(a.Unmap().WithZone(""))
		if blocked && !in {
			t.Fatalf("%+v blocks %s", d, a)
		}
		// Both ways: a ban in force blocks every address of its prefix,
		// whichever way the client's address is spelt (mapped, zoned).
		if added > 0 && aerr == nil && in && !blocked {
			t.Fatalf("%+v in force, but %s (in %v) passes", d, a, p)
		}
		b.Apply("f", Update{Deleted: []Decision{d}})
		if _, _, _, still := b.Blocked(a); still {
			t.Fatalf("%+v still blocks %s after its deletion", d, a)
		}
	})
}

// TestLimiterBounded: a flood of distinct addresses cannot grow the
// buckets past the bound, and idle buckets make room again.
func TestLimiterBounded(t *testing.T) {
	t.Parallel()
	l := newLimiter(&RateLimit{Rate: 1000, Burst: 1}, 64)
	now := time.Now()
	for i := range 10000 {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	n := 0
	for i := range l.shards {
		n += len(l.shards[i].buckets)
	}
	if n > 64 || l.overflw.Load() == 0 {
		t.Fatalf("%d buckets (bound 64), %d overflowed", n, l.overflw.Load())
	}
	// Later every bucket has refilled: the idle ones are swept and new
	// clients get room (up to the bound of their shard).
	before := l.overflw.Load()
	for i := range 16 {
		l.allow(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), now.Add(10*time.Millisecond))
	}
	tracked := 0
	for i := range l.shards {
		for a := range l.shards[i].buckets {
			if a.As4()[0] == 192 {
				tracked++
			}
		}
	}
	if tracked == 0 || tracked+int(l.overflw.Load()-before) != 16 {
		t.Fatalf("idle buckets were not swept: %d new clients tracked, %d overflowed", tracked, l.overflw.Load()-before)
	}
}

// TestUserDecisions: a decision of scope Username refuses the requests
// that carry that user (Basic auth, a login route's body) without
// touching the upstream; other users pass with their bodies intact.
func TestUserDecisions(t *testing.T) {
	t.Parallel()
	var got []string
	var mu sync.Mutex
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
	})
	p, gw, ms := gateway(t, Config{Routes: []Route{{Upstream: up.URL}},
		Logins: []Login{{Path: "/login", User: "json:user"}}})
	p.Apply("test", Update{New: []Decision{{Type: "ban", Scope: "Username", Value: "alice", Duration: "1h", Scenario: "account_lock"}}})
	basic := func(user string) int {
		req, _ := http.NewRequest("GET", gw+"/api", nil)
		req.SetBasicAuth(user, "pw")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	login := func(body string) int {
		resp, err := http.Post(gw+"/login", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := basic("alice"); c != 403 {
		t.Errorf("blocked Basic user: %d", c)
	}
	if c := login(`{"user":"alice","password":"x"}`); c != 403 {
		t.Errorf("blocked login user: %d", c)
	}
	if up.count() != 0 {
		t.Fatal("a blocked user's request reached the upstream")
	}
	if c := basic("bob"); c != 200 {
		t.Errorf("other Basic user: %d", c)
	}
	bob := `{"user":"bob","password":"y","pad":"` + strings.Repeat("z", 3000) + `"}`
	if c := login(bob); c != 200 {
		t.Errorf("other login user: %d", c)
	}
	mu.Lock()
	if len(got) != 2 || got[1] != bob {
		t.Errorf("the upstream got %d requests, login body intact: %v", len(got), len(got) == 2 && got[1] == bob)
	}
	mu.Unlock()
	evs := ms.wait(t, "two refusals", hasAction(ActionBlocked, 2))
	for _, ev := range byAction(evs, ActionBlocked) {
		if ev.Reason != "user alice blocked by decision account_lock" {
			t.Errorf("refusal reason %q", ev.Reason)
		}
	}
}

// A client blocked while its request is in flight does not get the
// upstream's answer (it may be the one a brute force was waiting for): it
// gets the refusal, the refusal is recorded with the answer it replaced,
// and what happened at the upstream (a failed login) is recorded too.
func TestAnswerWithheldWhenBlockedInFlight(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.Header().Set("Set-Cookie", "session=upstream-secret")
		http.Error(w, "no", http.StatusUnauthorized)
	})
	p, gw, ms := gateway(t, Config{Routes: []Route{{Upstream: up.URL}}, TrustedProxies: []string{"127.0.0.1"}})
	type answer struct {
		status int
		cookie string
	}
	got := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, gw+"/basic-auth/admin/secret", nil)
		req.SetBasicAuth("admin", "guess")
		req.Header.Set("X-Forwarded-For", "192.0.2.66")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- answer{}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got <- answer{resp.StatusCode, resp.Header.Get("Set-Cookie")}
	}()
	<-arrived
	p.Apply("test", Update{New: []Decision{{Type: "ban", Scope: "Ip", Value: "192.0.2.66", Duration: "1h", Scenario: "brute"}}})
	close(release)
	a := <-got
	if a.status != http.StatusForbidden || a.cookie != "" {
		t.Fatalf("client blocked in flight got %d (cookie %q), want the refusal and nothing of the upstream's answer", a.status, a.cookie)
	}
	if st := p.Stats(); st.Withheld != 1 || st.Blocked != 0 {
		t.Fatalf("stats %+v: want 1 withheld, none blocked before reaching the upstream", st)
	}
	evs := ms.wait(t, "the refusal and the failed login", func(evs []*event.Event) bool {
		return len(byAction(evs, ActionWithheld)) == 1 && len(byAction(evs, event.ActionLoginFail)) == 1
	})
	if len(byAction(evs, ActionBlocked)) != 0 {
		t.Error("a request that reached the upstream was recorded as blocked before it")
	}
	if r := byAction(evs, ActionWithheld)[0].Reason; !strings.Contains(r, "withheld") || !strings.Contains(r, "401") {
		t.Errorf("refusal reason %q does not say the upstream's 401 was withheld", r)
	}
	for _, ev := range byAction(evs, event.ActionHTTPRequest) {
		if ev.StatusCode != http.StatusForbidden {
			t.Errorf("access event status %d, want the 403 the client got", ev.StatusCode)
		}
	}
	// Other clients' answers pass.
	go func() { <-arrived }()
	if resp := get(t, gw+"/other", "X-Forwarded-For", "192.0.2.67"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("another client got %d, want the upstream's 401", resp.StatusCode)
	}
}
