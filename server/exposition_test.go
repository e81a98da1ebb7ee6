package server

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/alerting"
	"github.com/trailguard/trailguard/forward"
	"github.com/trailguard/trailguard/internal/testenv"
)

// TestMetricsExposition: a collector with every source of labelled
// series (two notifiers, an output) and some traffic serves a /metrics
// that Prometheus's own checker (promtool check metrics: the parser a
// scrape uses, and its lint) accepts. The label values are written with
// Go's %q, which agrees with the text format only for plain words: the
// names are checked at load for that (TestServeNotifierConfigAtLoad), and
// the checker is first shown a value %q quotes otherwise, which it must
// refuse, so that this test cannot pass on a checker that accepts
// anything.
func TestMetricsExposition(t *testing.T) {
	promtool := testenv.Tool(t, "promtool", "apt-get install prometheus")
	check := func(text string) (string, error) {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	bad := fmt.Sprintf("# HELP m A metric.\n# TYPE m counter\nm_total{notifier=%q} 1\n", "ops\x01")
	if out, err := check(bad); err == nil {
		t.Fatalf("promtool accepted %q:\n%s", bad, out)
	}

	centre := startServer(t, t.TempDir(), nil)
	dir := t.TempDir()
	key := filepath.Join(dir, "webhook.key")
	tokenFile := filepath.Join(dir, "central.token")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte(centre.ingest+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, dir, func(c *Config) {
		detectionOn(c)
		// Receivers nobody listens on: their failures are series too.
		c.Notifiers = []alerting.NotifierConfig{
			{Name: "soar", Type: "webhook", URL: "http://127.0.0.1:9/hook", SecretFile: key},
			{Name: "ops.chat", Type: "slack", URL: "http://127.0.0.1:9/slack"},
		}
		c.Outputs = []forward.Config{{Name: "central", Type: "elasticsearch", URL: centre.url, Index: "logs-trailguard-edge", TokenFile: tokenFile}}
	})
	var body strings.Builder
	for i := range 20 {
		fmt.Fprintf(&body, `{"event":{"action":"authn_login_fail","outcome":"failure","category":["authentication"]},"source":{"ip":"203.0.113.9"},"user_agent":{"original":"sqlmap/1.7 %d"},"url":{"original":"/login?id=1%%27%%20OR%%201=1"}}`+"\n", i)
	}
	if code, out := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(body.String())); code != 200 {
		t.Fatalf("ingest: %d %s", code, out)
	}
	code, metrics := ts.do(t, "GET", "/metrics", ts.read, nil)
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, metrics)
	}
	for _, want := range []string{`trailguard_notifier_sent_total{notifier="ops.chat",type="slack"}`, `trailguard_forward_`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metrics)
		}
	}
	if out, err := check(string(metrics)); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\n/metrics:\n%s", err, out, metrics)
	}
}
