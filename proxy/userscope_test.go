package proxy

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/server"
)

// TestCollectorUsernameBanEnforced: a ban of scope Username made at the
// collector (POST /v1/decisions, README) is enforced by a gateway that
// polls the collector's decision stream (review, MEDIUM: the stream
// serves Ip and Range unless asked for other scopes, and the gateway
// never asked, so an account ban reached no gateway in collector mode,
// silently; the single node enforced it).
func TestCollectorUsernameBanEnforced(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	sc := server.Defaults()
	sc.DataDir = t.TempDir()
	col, err := server.New(sc, quiet)
	if err != nil {
		t.Fatal(err)
	}
	_, admin, _ := col.Tokens().Create("admin", access.RoleAdmin)
	_, ingest, _ := col.Tokens().Create("gw", access.RoleIngest)
	_, bouncer, _ := col.Tokens().Create("gw-bouncer", access.RoleBouncer)
	cln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- col.Serve(ctx, cln) }()
	t.Cleanup(func() { cancel(); <-served })
	base := "http://" + cln.Addr().String()

	_, gw, _ := serveGateway(t, Config{DataDir: t.TempDir(), Routes: []Route{{Upstream: up.URL}},
		Collector: Collector{URL: base, Token: ingest, BouncerKey: bouncer}})
	req, _ := http.NewRequest("POST", base+"/v1/decisions", strings.NewReader(`{"scope":"Username","value":"alice","duration":"1h","reason":"account takeover"}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("ban: %d", resp.StatusCode)
	}
	as := func(user string) int {
		req, _ := http.NewRequest("GET", gw+"/account", nil)
		req.SetBasicAuth(user, "pw")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Whether the ban comes at all, not how soon (the stream's latency is
	// bounded elsewhere): a loaded machine stalls the test for seconds.
	deadline := time.Now().Add(30 * time.Second)
	for as("alice") != http.StatusForbidden {
		if time.Now().After(deadline) {
			t.Fatal("the collector's ban of user alice was not enforced by the gateway within 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c := as("bob"); c != http.StatusOK {
		t.Errorf("another user: %d", c)
	}
}
