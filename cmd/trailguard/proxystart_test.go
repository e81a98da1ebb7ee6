package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/proxy"
)

// TestProxyStartSays: what trailguard proxy prints on start answers
// where its data goes (absolute, so it is found from any directory),
// where the --trail-dir file is, where to look at the events and how to
// stop it. Before, the trail file went unmentioned, the data directory
// was shown as given, and neither a way to look nor to stop was said.
func TestProxyStartSays(t *testing.T) {
	t.Chdir(t.TempDir())
	wd, _ := os.Getwd()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stop := fmt.Sprintf("  stop:       Ctrl-C or SIGTERM to pid %d", os.Getpid())
	for _, tt := range []struct {
		name   string
		cfg    proxy.Config
		single bool
		api    net.Listener
		want   []string
		not    string // a line it must not have
	}{
		{name: "single node", cfg: proxy.Config{DataDir: "gw"}, single: true, want: []string{
			"  data:       " + filepath.Join(wd, "gw") + " (ledger, index and keys: single node)",
			"  look:       --api ADDR serves the collector API while it runs; offline: trailguard verify --data gw",
			stop}},
		{name: "single node with --api and --trail-dir", cfg: proxy.Config{DataDir: "gw", TrailDir: "trails"}, single: true, api: ln, want: []string{
			"  trail file: " + filepath.Join(wd, "trails", "trail.jsonl") + " (JSON lines, rotated)",
			"  look:       collector API on http://" + ln.Addr().String() + " (tokens: trailguard token create --data gw)",
			stop}},
		{name: "behind a collector", cfg: proxy.Config{DataDir: "/var/lib/gw", Collector: proxy.Collector{URL: "http://127.0.0.1:8600", Token: "tg_i", BouncerKey: "tg_b"}}, want: []string{
			"  data:       shipped to http://127.0.0.1:8600, spooled in /var/lib/gw/spool",
			"  look:       the collector's API and web UI at http://127.0.0.1:8600",
			stop}, not: "blocks:"},
		{name: "behind a collector, no bouncer key", cfg: proxy.Config{DataDir: "/var/lib/gw", Collector: proxy.Collector{URL: "http://127.0.0.1:8600", Token: "tg_i"}}, want: []string{
			"  blocks:     none: without --bouncer-key KEY",
			stop}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			printProxyStart(&out, tt.cfg, tt.single, tt.api)
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("start message lacks %q:\n%s", w, out.String())
				}
			}
			if tt.not != "" && strings.Contains(out.String(), tt.not) {
				t.Errorf("start message has %q:\n%s", tt.not, out.String())
			}
		})
	}
}

// TestProxyTokenMissing: a gateway given --collector without a token
// asks for it as it can be given, by the flag or the variable (and the
// key, for a file), exit 2 before its data directory is made. Without a
// --config file it said "collector.token (--token TOKEN, or
// TRAILGUARD_PROXY_TOKEN) is needed with collector.url": the YAML keys of
// a file the user never wrote. With a file, the file's keys are said.
func TestProxyTokenMissing(t *testing.T) {
	bin := buildTrailguard(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "gw")
	cfg := filepath.Join(dir, "proxy.yml")
	if err := os.WriteFile(cfg, []byte("routes:\n  - upstream: http://127.0.0.1:9\ncollector:\n  url: http://127.0.0.1:9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--upstream", "http://127.0.0.1:9", "--collector", "http://127.0.0.1:9"},
			"trailguard proxy: --collector needs --token TOKEN (or TRAILGUARD_PROXY_TOKEN, or collector.token in --config FILE): an ingest token of that collector (trailguard token create --role ingest --name gateway-1 there)\n"},
		{[]string{"--config", cfg},
			"trailguard proxy: " + cfg + ": collector.token (--token TOKEN, or TRAILGUARD_PROXY_TOKEN) is needed with collector.url"},
	} {
		cmd := exec.Command(bin, append([]string{"proxy", "--listen", "127.0.0.1:0", "--data", data}, tt.args...)...)
		cmd.Env = append(os.Environ(), "TRAILGUARD_PROXY_TOKEN=")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.HasPrefix(stderr.String(), tt.want) {
			t.Errorf("proxy %q: exit %d, stderr %q\nwant exit 2, %q", tt.args, code, stderr.String(), tt.want)
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Errorf("proxy %q made its data directory: %v", tt.args, err)
		}
	}
}
