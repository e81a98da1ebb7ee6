package proxy

import (
	"fmt"
	"io"
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
//
// Not parallel: the bound is the CPU time the process uses until the
// last range is enforced (all of it this test's then), not the wall
// clock, which a loaded machine stretches without a stall to show for it
// (at load 14-20 on two cores, 29-117 s for the ~5 s of CPU it takes).
func TestRangeBansAtCap(t *testing.T) {
	const n = 100_000
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	l := newLAPI(t, "bouncer-key")
	for i := range n {
		l.all = append(l.all, Decision{Type: "ban", Scope: "Range", Value: fmt.Sprintf("2001:db8:%x:%x::/64", i>>16, i&0xffff), Duration: "1h", Origin: "trailguard"})
	}
	l.all = append(l.all, Decision{Type: "ban", Scope: "Range", Value: "198.51.100.0/24", Duration: "1h"})
	const bound = 15 * time.Second
	start, cpu0 := time.Now(), stalltest.ProcessCPU()
	p, gw, _ := gateway(t, Config{
		Routes:         []Route{{Upstream: up.URL}},
		TrustedProxies: []string{"127.0.0.1"},
		Sources:        []Source{&StreamSource{URL: l.URL, APIKey: "bouncer-key", Interval: 50 * time.Millisecond}},
	})
	// A request waits while the list is applied under the blocklist's
	// lock: each try is cut after a second, so that CPU spent past the
	// bound is seen while it is spent.
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequest("GET", gw+"/", nil)
		req.Header.Set("X-Forwarded-For", "2001:db8:1:869f::77")
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 403 {
				break
			}
		}
		if cpu := stalltest.ProcessCPU() - cpu0; cpu > bound {
			t.Fatalf("the last /64 of the startup list of %d ranges is not enforced after %v of CPU time (%v)", n+1, cpu, time.Since(start))
		}
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("the last /64 of the startup list is not enforced after %v (%v of CPU time)", time.Since(start), stalltest.ProcessCPU()-cpu0)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d ranges enforced after %v of CPU time (%v)", n+1, stalltest.ProcessCPU()-cpu0, time.Since(start))
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
	var blocked bool
	cpu, _ := stalltest.RunCPU(func() {
		for range lookups {
			_, _, _, ok := b.Blocked(free)
			blocked = blocked || ok
		}
	}, time.Minute)
	if blocked {
		t.Fatal("2001:db9::1 blocked")
	}
	per := cpu / lookups
	t.Logf("one check against %d ranges: %v", n+1, per)
	if per > 50*time.Microsecond {
		t.Errorf("one check against %d ranges took %v, want a few map look-ups (< 50 µs)", n+1, per)
	}
}
