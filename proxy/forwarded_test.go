package proxy

import (
	"net/http"
	"testing"

	"github.com/trailguard/trailguard/event"
)

// TestForwardedCarriesXFF: behind a trusted load balancer that speaks only
// X-Forwarded-For, the upstream's Forwarded header names the client too,
// not this gateway, and a Forwarded the client sent itself is not passed
// on (a recipient reading Forwarded would believe it).
func TestForwardedCarriesXFF(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(http.ResponseWriter, *http.Request) {})
	_, gw, _ := gateway(t, Config{Routes: []Route{{Upstream: up.URL}}, TrustedProxies: []string{"127.0.0.1"}})
	for _, c := range []struct{ xff, fwd, want string }{
		{"203.0.113.66", "", "for=203.0.113.66, for=127.0.0.1;"},
		{"198.51.100.1, 10.0.0.2", "", "for=198.51.100.1, for=10.0.0.2, for=127.0.0.1;"},
		{"2001:db8::1", "", `for="[2001:db8::1]", for=127.0.0.1;`},
		{"203.0.113.66", "for=192.0.2.9", "for=203.0.113.66, for=127.0.0.1;"}, // the client's own Forwarded dropped
		{"", "for=192.0.2.9", "for=127.0.0.1;"},
		{"", "", "for=127.0.0.1;"},
		// A zone's text is kept as sent by netip: quoted as a node, not
		// written bare inside the quotes of an address.
		{`fe80::1%"x`, "", `for="fe80::1%\"x", for=127.0.0.1;`},
	} {
		hdr := []string{}
		if c.xff != "" {
			hdr = append(hdr, "X-Forwarded-For", c.xff)
		}
		if c.fwd != "" {
			hdr = append(hdr, "Forwarded", c.fwd)
		}
		get(t, gw+"/", hdr...).Body.Close()
		got := up.last().Header.Get("Forwarded")
		if len(got) < len(c.want) || got[:len(c.want)] != c.want {
			t.Errorf("X-Forwarded-For %q, Forwarded %q: upstream got Forwarded %q, want it to start %q", c.xff, c.fwd, got, c.want)
		}
	}
}

// TestUpstreamAudits: with upstream_audits, a 401 or 403 of the upstream is
// an access event only (the upstream recorded the attempt itself); without
// it, the gateway infers the failed login and the refusal.
func TestUpstreamAudits(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/login" {
			w.WriteHeader(401)
		} else {
			w.WriteHeader(403)
		}
	})
	for _, own := range []bool{false, true} {
		_, gw, ms := gateway(t, Config{Routes: []Route{{Upstream: up.URL}}, UpstreamAudits: own})
		get(t, gw+"/login").Body.Close()
		get(t, gw+"/admin").Body.Close()
		evs := ms.wait(t, "two access events", func(evs []*event.Event) bool { return len(byAction(evs, event.ActionHTTPRequest)) == 2 })
		inferred := len(byAction(evs, event.ActionLoginFail)) + len(byAction(evs, event.ActionAuthzFail))
		if want := map[bool]int{false: 2, true: 0}[own]; inferred != want {
			t.Errorf("upstream_audits %v: %d inferred events, want %d", own, inferred, want)
		}
	}
}
