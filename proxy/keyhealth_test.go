package proxy

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/server"
)

// TestRevokedKeysSayWhatToFix: a gateway whose ingest token and bouncer
// key the collector no longer accepts (revoked, as when they are rotated)
// says, for each, that the collector rejected it and which setting to fix —
// never that the collector is unreachable. The collector limits an address
// after failed token checks, so the shipper's later answers are 429s: those
// too point at the token. Before, the decision stream's 401 and the
// shipper's 429 were both reported as "unreachable".
func TestRevokedKeysSayWhatToFix(t *testing.T) {
	testenv.Long(t) // the shipping alert is raised after shipAlertAfter (3 s) of failures
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	sc := server.Defaults()
	sc.DataDir = t.TempDir()
	col, err := server.New(sc, quiet)
	if err != nil {
		t.Fatal(err)
	}
	_, ingest, err := col.Tokens().Create("gw", "ingest")
	if err != nil {
		t.Fatal(err)
	}
	_, bouncer, err := col.Tokens().Create("gw-bouncer", "bouncer")
	if err != nil {
		t.Fatal(err)
	}
	col.Tokens().Revoke("gw")
	col.Tokens().Revoke("gw-bouncer")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- col.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	var logs lockedBuf
	g, err := Open(Config{DataDir: t.TempDir(), Routes: []Route{{Upstream: up.URL}},
		Collector: Collector{URL: "http://" + ln.Addr().String(), Token: ingest, BouncerKey: bouncer}},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gctx, gcancel := context.WithCancel(context.Background())
	gdone := make(chan error, 1)
	go func() { gdone <- g.Serve(gctx, gln, nil) }()
	defer func() { gcancel(); <-gdone }()
	get(t, "http://"+gln.Addr().String()+"/orders")
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(logs.String(), "spooling events") || !strings.Contains(logs.String(), "keeping last decisions"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no shipping and decision alerts in 20 s; log:\n%s", logs.String())
		}
	}
	out := logs.String()
	if strings.Contains(out, "unreachable") || !strings.Contains(out, "rejected the bouncer key") || !strings.Contains(out, "--bouncer-key") ||
		!(strings.Contains(out, "rejected the ingest token") || strings.Contains(out, "check the token, --token")) {
		t.Fatalf("the alerts do not say which key to fix:\n%s", out)
	}
}
