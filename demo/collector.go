package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/proxy"
	"github.com/trailguard/trailguard/server"
)

// startCollector runs a collector on a loopback port, with detection,
// block decisions, a witness directory and the web UI. stop shuts it down
// gracefully (final checkpoint) and may be called more than once.
func startCollector(dir string, logw io.Writer) (*server.Server, string, func() error, error) {
	cfg := server.Defaults()
	cfg.DataDir = dir
	cfg.Origin = "demo.trailguard.local/ledger"
	cfg.Retention = "pci-dss"
	cfg.MetricsPublic = true
	// Checkpoints are copied as they are made to a directory the
	// collector's writer does not own: what an auditor keeps (PCI DSS
	// 10.3.3).
	cfg.Witness = []string{filepath.Join(filepath.Dir(dir), "witness")}
	col, err := server.New(cfg, slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		return nil, "", nil, fmt.Errorf("demo: collector: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		col.Close()
		return nil, "", nil, fmt.Errorf("demo: collector: %w", err)
	}
	stop := serveInBackground(func(ctx context.Context) error { return col.Serve(ctx, ln) })
	return col, "http://" + ln.Addr().String(), stop, nil
}

// serveInBackground runs serve until the returned stop cancels its
// context; stop waits for serve to return, and returns its error however
// often it is called.
func serveInBackground(serve func(context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	var once sync.Once
	var stopErr error
	return func() error {
		once.Do(func() {
			cancel()
			stopErr = <-done
		})
		return stopErr
	}
}

// startGateway runs `trailguard proxy` in front of the API: it records
// every request, ships to the collector and enforces the collector's
// block decisions (CrowdSec bouncer stream).
func startGateway(dir, upstream, collector, ingest, bouncer string, logw io.Writer) (*proxy.Gateway, string, func() error, error) {
	cfg := proxy.Config{
		DataDir:        dir,
		ServiceName:    "demo-gateway",
		TrustedProxies: []string{"127.0.0.1"}, // the simulated clients say who they are in X-Forwarded-For
		Routes:         []proxy.Route{{Name: "shop", Path: "/", Upstream: upstream}},
		UpstreamAudits: true, // the shop records its own logins and refusals
		Collector:      proxy.Collector{URL: collector, Token: ingest, BouncerKey: bouncer, PollInterval: 50 * time.Millisecond},
	}
	g, err := proxy.Open(cfg, slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		return nil, "", nil, fmt.Errorf("demo: gateway: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		g.Close()
		return nil, "", nil, fmt.Errorf("demo: gateway: %w", err)
	}
	stop := serveInBackground(func(ctx context.Context) error { return g.Serve(ctx, ln, nil) })
	return g, "http://" + ln.Addr().String(), stop, nil
}

// queryCollector asks the collector, through its HTTP API with a read
// token, what an analyst would: how many 401s, and who failed to log in
// most.
func queryCollector(col *server.Server, base, readToken string) (Collector, error) {
	c := Collector{URL: base, DataDir: filepath.Dir(col.Ledger().Dir()), VerifierKey: col.VerifierKeyPath}
	// The index follows the ledger; let it catch up before asking.
	for i := 0; i < 400 && col.IndexLag() > 0; i++ {
		time.Sleep(25 * time.Millisecond)
	}
	get := func(path string, v any) error {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+readToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("demo: GET %s: %w", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("demo: GET %s: %d %s", path, resp.StatusCode, body)
		}
		return json.Unmarshal(body, v)
	}
	var stats struct{ Buckets []struct{ Count int64 } }
	if err := get("/v1/stats?interval=1m&from=1h&q="+url.QueryEscape("http.response.status_code:401 and service.name:demo-shop and event.kind:event"), &stats); err != nil {
		return c, err
	}
	for _, b := range stats.Buckets {
		c.Failures401 += b.Count
	}
	var top struct {
		Top []struct {
			Value string
			Count int64
		}
	}
	if err := get("/v1/stats?top=client.ip&n=3&from=1h&q="+url.QueryEscape("event.action:authn_login_fail and event.kind:event"), &top); err != nil {
		return c, err
	}
	for _, t := range top.Top {
		c.TopAttackers = append(c.TopAttackers, fmt.Sprintf("%s (%d)", t.Value, t.Count))
	}
	c.LedgerSize = col.Ledger().Size()
	return c, nil
}

// tokens are the demo's API tokens.
type tokens struct {
	shop, gateway, bouncer, read, admin string
}

func makeTokens(col *server.Server) (tokens, error) {
	var t tokens
	var err error
	for _, x := range []struct {
		name string
		role access.Role
		dst  *string
	}{{"demo-shop", access.RoleIngest, &t.shop}, {"demo-gateway", access.RoleIngest, &t.gateway},
		{"demo-gateway-bouncer", access.RoleBouncer, &t.bouncer}, {"demo-analyst", access.RoleRead, &t.read},
		{"demo-admin", access.RoleAdmin, &t.admin}} {
		col.Tokens().Revoke(x.name) // a data directory used before: start afresh
		if _, *x.dst, err = col.Tokens().Create(x.name, x.role); err != nil {
			return t, fmt.Errorf("demo: %w", err)
		}
	}
	return t, nil
}
