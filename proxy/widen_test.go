package proxy

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestGatewayBlocksWidenedBan: behind a trusted balancer, an attacker
// holding an IPv6 /48 fails logins from 16 of its /64s at a single-node
// gateway; detection bans each /64, then the /48 (decisions.widen_at), and
// the gateway refuses the attacker's next /64 before it tries anything.
// Before, each /64 was banned alone: a fresh /64 passed, and 65,536 of them
// filled the table of bans.
func TestGatewayBlocksWidenedBan(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/login" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	_, gw, _ := serveGateway(t, Config{DataDir: t.TempDir(), TrailDir: t.TempDir(), ServiceName: "shop",
		Routes: []Route{{Upstream: up.URL}}, TrustedProxies: []string{"127.0.0.1"},
		Logins: []Login{{Path: "/login", User: "json:user"}}})
	status := func(path, from string) int {
		req, _ := http.NewRequest("POST", gw+path, nil)
		req.Header.Set("X-Forwarded-For", from)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for h := range 16 {
		for range 10 {
			status("/login", fmt.Sprintf("2001:db8:77:%x::1", h))
		}
	}
	next := "2001:db8:77:ffff::9"
	deadline := time.Now().Add(15 * time.Second)
	for status("/", next) != http.StatusForbidden {
		if time.Now().After(deadline) {
			t.Fatalf("the /48's next /64 (%s) still passes 15 s after its 16 /64s' brute force", next)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c := status("/", "2001:db8:78::1"); c != http.StatusOK {
		t.Errorf("another /48: %d", c)
	}
}
