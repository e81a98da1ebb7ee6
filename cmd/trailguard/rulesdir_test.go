package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRulesDirMissing: serve and proxy given a detection rules directory
// that is not there (a typo, a volume not mounted) refuse to start and
// name it, rather than run without those rules; a rules directory that
// exists (even empty) starts as before (TestServeCrash et al. start with
// none configured, the built-in rules only).
func TestRulesDirMissing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	t.Parallel()
	bin := buildTrailguard(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-rules")
	file := filepath.Join(dir, "rules.yml")
	if err := os.WriteFile(file, []byte("title: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cmd, cfg, rules string
	}{
		{"serve missing", "serve", "detection: {rules: [%s]}\n", missing},
		{"serve file", "serve", "detection: {rules: [%s]}\n", file},
		{"proxy missing", "proxy", "detection: {rules: %s}\n", missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			data := filepath.Join(d, "data")
			cfgPath := filepath.Join(d, "cfg.yaml")
			cfg := fmt.Sprintf(tc.cfg, tc.rules)
			args := []string{tc.cmd, "--config", cfgPath}
			if tc.cmd == "serve" {
				cfg += fmt.Sprintf("data_dir: %s\nlisten: 127.0.0.1:0\n", data)
			} else {
				args = append(args, "--upstream", "http://127.0.0.1:9", "--listen", "127.0.0.1:0", "--data", data)
			}
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("%s started with rules directory %s (killed after 60 s):\n%s", tc.cmd, tc.rules, out)
			}
			if err == nil || !strings.Contains(string(out), "detection rules directory "+tc.rules) {
				t.Fatalf("%s with rules directory %s: %v\n%s", tc.cmd, tc.rules, err, out)
			}
			t.Logf("%v: %s", err, out)
		})
	}
}
