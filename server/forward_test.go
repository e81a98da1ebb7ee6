package server

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestForwardToCollector configures an elasticsearch output in YAML that
// points at a second collector's _bulk (its Elasticsearch-compatible API):
// every event ingested at the edge, and the edge's own audit events, arrive
// at the centre with their event.id and ledger position, and the edge shows
// the output's progress on /v1/outputs and /metrics.
func TestForwardToCollector(t *testing.T) {
	t.Parallel()
	centre := startServer(t, t.TempDir(), nil)
	edgeDir := t.TempDir()
	tokenFile := filepath.Join(edgeDir, "central.token")
	os.WriteFile(tokenFile, []byte(centre.ingest+"\n"), 0o600)
	yml := filepath.Join(edgeDir, "serve.yaml")
	os.WriteFile(yml, fmt.Appendf(nil, `outputs:
  - name: central
    type: elasticsearch
    url: %s
    index: logs-trailguard-edge
    token_file: %s
    flush_interval: 50ms
    max_backoff: 200ms
`, centre.url, tokenFile), 0o600)
	cfg, err := LoadConfig([]string{"--config", yml, "--data", edgeDir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Outputs) != 1 || cfg.Outputs[0].FlushInterval != 50*time.Millisecond {
		t.Fatalf("outputs from YAML: %+v", cfg.Outputs)
	}
	edge := startServer(t, edgeDir, func(c *Config) { c.Outputs = cfg.Outputs; c.Origin = "edge.example/trailguard" })
	var body strings.Builder
	for i := range 50 {
		fmt.Fprintf(&body, `{"@timestamp":"2026-11-29T10:00:00Z","event":{"id":"edge-%03d","action":"authn_login_fail","outcome":"failure","category":["authentication"]},"source":{"ip":"203.0.113.9"}}`+"\n", i)
	}
	if code, out := edge.do(t, "POST", "/v1/events", edge.ingest, strings.NewReader(body.String())); code != 200 {
		t.Fatalf("ingest at the edge: %d %s", code, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		size := edge.ledger.Size()
		var out struct {
			Outputs []struct{ Cursor, LagRecords uint64 }
		}
		code, b := edge.do(t, "GET", "/v1/outputs", edge.read, nil)
		json.Unmarshal(b, &out)
		if code == 200 && len(out.Outputs) == 1 && out.Outputs[0].Cursor >= size && size >= 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge output: %d %s (ledger %d)", code, b, size)
		}
		time.Sleep(50 * time.Millisecond)
	}
	centre.waitIndexed(t)
	for _, id := range []string{"edge-000", "edge-049"} {
		code, b := centre.do(t, "GET", "/v1/events/"+id, centre.read, nil)
		if code != 200 || !strings.Contains(string(b), `"edge.example/trailguard"`) || !strings.Contains(string(b), "trailguard.ledger.index") {
			t.Errorf("event %s at the centre: %d %s", id, code, b)
		}
	}
	// The edge's own audit trail (its start, the requests above) went too.
	code, b := centre.do(t, "GET", "/v1/events?q="+urlQuery(`event.action:sys_startup and service.name:trailguard-collector`), centre.read, nil)
	if code != 200 || strings.Count(string(b), "edge.example/trailguard") == 0 {
		t.Errorf("edge's startup event at the centre: %d %.300s", code, b)
	}
	_, metrics := edge.do(t, "GET", "/metrics", edge.read, nil)
	for _, want := range []string{`trailguard_forward_records_total{output="central",type="elasticsearch"}`, `trailguard_forward_lag_records{output="central"`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
