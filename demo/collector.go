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
	"github.com/trailguard/trailguard/server"
)

// startCollector runs a collector on a loopback port. stop shuts it down
// gracefully (final checkpoint) and may be called more than once.
func startCollector(dir string, logw io.Writer) (*server.Server, string, func() error, error) {
	cfg := server.Defaults()
	cfg.DataDir = dir
	cfg.Origin = "demo.trailguard.local/ledger"
	cfg.Retention = "pci-dss"
	cfg.MetricsPublic = true
	col, err := server.New(cfg, slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return nil, "", nil, fmt.Errorf("demo: collector: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		col.Close()
		return nil, "", nil, fmt.Errorf("demo: collector: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- col.Serve(ctx, ln) }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			stopErr = <-done
		})
		return stopErr
	}
	return col, "http://" + ln.Addr().String(), stop, nil
}

// queryCollector asks the collector, through its HTTP API with a read
// token, what an analyst would: how many 401s, and who failed to log in
// most.
func queryCollector(col *server.Server, base string) (Collector, error) {
	c := Collector{URL: base, DataDir: filepath.Dir(col.Ledger().Dir()), VerifierKey: col.VerifierKeyPath}
	_, readToken, err := col.Tokens().Create("demo-analyst", access.RoleRead)
	if err != nil {
		return c, fmt.Errorf("demo: %w", err)
	}
	// The index follows the ledger; let it catch up before asking.
	for i := 0; i < 200 && col.IndexLag() > 0; i++ {
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
	if err := get("/v1/stats?interval=1m&from=1h&q="+url.QueryEscape("http.response.status_code:401"), &stats); err != nil {
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
	if err := get("/v1/stats?top=client.ip&n=3&from=1h&q="+url.QueryEscape("event.action:authn_login_fail"), &top); err != nil {
		return c, err
	}
	for _, t := range top.Top {
		c.TopAttackers = append(c.TopAttackers, fmt.Sprintf("%s (%d)", t.Value, t.Count))
	}
	c.LedgerSize = col.Ledger().Size()
	return c, nil
}
