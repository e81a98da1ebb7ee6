package proxy

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/stalltest"
)

// TestRangeBansAtCap: a gateway fed the collector's cap of bans
// (decisions.max_active, 100,000), all of them ranges (an IPv6 host's ban
// is its /64), enforces the full list within seconds and checks a request
// against it in a few map look-ups. Before, the ranges were a list: each
// request looked at every one (~1 ms of a core per request at 100,000),
// and the startup list took 16 s to apply (each range compared with all
// before it) with the blocklist's lock held, every request waiting.
func TestRangeBansAtCap(t *testing.T) {
	t.Parallel()
	const n = 100_000
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	l := newLAPI(t, "bouncer-key")
	for i := range n {
		l.all = append(l.all, Decision{Type: "ban", Scope: "Range", Value: fmt.Sprintf("2001:db8:%x:%x::/64", i>>16, i&0xffff), Duration: "1h", Origin: "trailguard"})
	}
	l.all = append(l.all, Decision{Type: "ban", Scope: "Range", Value: "198.51.100.0/24", Duration: "1h"})
	watch := stalltest.Start(t)
	start := time.Now()
	p, gw, _ := gateway(t, Config{
		Routes:         []Route{{Upstream: up.URL}},
		TrustedProxies: []string{"127.0.0.1"},
		Sources:        []Source{&StreamSource{URL: l.URL, APIKey: "bouncer-key", Interval: 50 * time.Millisecond}},
	})
	for get(t, gw+"/", "X-Forwarded-For", "2001:db8:1:869f::77").StatusCode != 403 {
		if time.Since(start) > 120*time.Second {
			t.Fatal("the last /64 of the startup list is not enforced after 120 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	took, stalled := time.Since(start), watch.Worst()
	t.Logf("%d ranges enforced after %v (stalled %v)", n+1, took, stalled)
	if took > 15*time.Second+stalled {
		t.Errorf("the startup list of %d ranges took %v to enforce (stalled %v), want < 15 s", n+1, took, stalled)
	}
	for _, tc := range []struct {
		xff  string
		want int
	}{
		{"2001:db8::1", 403},
		{"2001:db8:0:ffff:1:2:3:4", 403},
		{"2001:db8:1:86a0::1", 200}, // the next /64 after the last
		{"2001:db9::1", 200},
		{"198.51.100.200", 403},
		{"198.51.101.1", 200},
	} {
		if got := get(t, gw+"/", "X-Forwarded-For", tc.xff).StatusCode; got != tc.want {
			t.Errorf("%s: %d, want %d", tc.xff, got, tc.want)
		}
	}
	// The per-request check, alone: a few map look-ups whatever the count.
	b := p.Blocklist()
	if got := b.Len(); got != n+1 {
		t.Fatalf("%d decisions held, want %d", got, n+1)
	}
	free := netip.MustParseAddr("2001:db9::1")
	const lookups = 2000
	t0 := time.Now()
	for range lookups {
		if _, _, _, ok := b.Blocked(free); ok {
			t.Fatal("2001:db9::1 blocked")
		}
	}
	per := time.Since(t0) / lookups
	t.Logf("one check against %d ranges: %v", n+1, per)
	if per > 50*time.Microsecond {
		t.Errorf("one check against %d ranges took %v, want a few map look-ups (< 50 µs)", n+1, per)
	}
}
