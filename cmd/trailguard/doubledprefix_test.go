package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoDoubledPrefix: every command's error, for a bad flag value, a bad
// configuration file or a directory it cannot use, names each thing once
// and in the user's terms. "trailguard proxy --upstream ftp://x" said
// "trailguard proxy: proxy: config: routes[0] (default): …": the command
// twice, and a route the user never wrote where the flag was meant; a
// file's mistake did not name the file, and a gateway whose data
// directory could not be made said "trailguard proxy: proxy: server: …".
func TestNoDoubledPrefix(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badRoutes := write("proxy.yml", "routes:\n  - name: api\n    upstream: ftp://x\n    path: api\n")
	badKey := write("proxy-key.yml", "routes:\n  - upstream: http://127.0.0.1:1\nbogus: 1\n")
	badOutputs := write("serve.yml", "outputs:\n  - name: _vl\n    url: http://127.0.0.1:1\n")
	notKey := write("not.pub", "x\n")
	empty := filepath.Join(dir, "empty")
	os.MkdirAll(filepath.Join(empty, "ledger"), 0o700)
	unwritable := "/proc/trailguard-no-such/dir" // never creatable, whoever runs the test
	tests := []struct {
		cmd  string
		args []string
		want string // in the first line
		not  string // nowhere in standard error
	}{
		{"proxy", []string{"--upstream", "ftp://x"}, `trailguard proxy: --upstream "ftp://x": want http://host:port`, "(default)"},
		{"proxy", []string{"--upstream", "127.0.0.1:9000"}, `trailguard proxy: --upstream "127.0.0.1:9000": want http://host:port or https://host:port (the scheme is missing`, "routes["},
		{"proxy", []string{"--upstream", "http://127.0.0.1:1", "--collector", "collector:8600", "--token", "t"}, `trailguard proxy: --collector "collector:8600": want http://`, "collector.url"},
		{"proxy", []string{"--upstream", "http://127.0.0.1:1", "--tls-cert", "c.pem"}, `trailguard proxy: --tls-cert and --tls-key`, ""},
		{"proxy", []string{"--config", badRoutes}, `trailguard proxy: ` + badRoutes + `: routes[0] (api): upstream "ftp://x": want http://`, ""},
		{"proxy", []string{"--config", badKey}, `trailguard proxy: ` + badKey + `: `, ""},
		{"proxy", []string{"--config", filepath.Join(dir, "none.yml")}, `trailguard proxy: --config ` + filepath.Join(dir, "none.yml") + `: no such file`, ""},
		{"proxy", []string{"--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0", "--data", unwritable}, `trailguard proxy: cannot create the data directory ` + unwritable + ` (point --data, data_dir or TRAILGUARD_GATEWAY_DATA`, ""},
		{"serve", []string{"--config", badOutputs, "--data", filepath.Join(dir, "d1"), "--listen", "127.0.0.1:0"}, `trailguard serve: config: ` + badOutputs + `: outputs[0] (_vl): name "_vl"`, ""},
		{"serve", []string{"--retention", "pcidss", "--data", filepath.Join(dir, "d2"), "--listen", "127.0.0.1:0"}, `trailguard serve: config: retention: unknown profile "pcidss"`, ""},
		{"serve", []string{"--data", unwritable, "--listen", "127.0.0.1:0"}, `trailguard serve: server: cannot create the data directory`, ""},
		{"report", []string{"--standard", "pcidss"}, `trailguard report: --standard "pcidss"`, ""},
		{"report", []string{"--standard", "pci-dss", "--data", empty}, `trailguard report: `, ""},
		{"token", []string{"create", "--role", "auditor", "--name", "x", "--data", empty}, `trailguard token: `, ""},
		{"token", []string{"revoke", "nobody", "--data", empty}, `trailguard token: `, ""},
		{"verify", []string{empty, "--key", notKey}, `trailguard verify: `, ""},
		{"verify", []string{empty, "--key", filepath.Join(dir, "none.pub")}, `trailguard verify: `, ""},
		{"prove", []string{empty, "--index", "1"}, `trailguard prove: `, ""},
		{"tiles", []string{empty, "--out", filepath.Join(dir, "tiles")}, `trailguard tiles: `, ""},
		{"reindex", []string{"--data", empty}, `trailguard reindex: `, ""},
		{"keygen", []string{"--name", "x", "--out", unwritable + "/k"}, `trailguard keygen: `, ""},
		{"detect", []string{"--rules", filepath.Join(dir, "none"), "--check"}, `trailguard detect: --rules `, ""},
	}
	for _, tt := range tests {
		_, errOut, code := call(runners[tt.cmd], tt.args...)
		first, _, _ := strings.Cut(errOut, "\n")
		if code == 0 || !strings.HasPrefix(first, tt.want) {
			t.Errorf("trailguard %s %q: exit %d, first line %q, want it to begin %q", tt.cmd, tt.args, code, first, tt.want)
		}
		if tt.not != "" && strings.Contains(errOut, tt.not) {
			t.Errorf("trailguard %s %q says %q:\n%s", tt.cmd, tt.args, tt.not, errOut)
		}
		for _, line := range strings.Split(strings.TrimSpace(errOut), "\n") {
			if d := doubled(line); d != "" {
				t.Errorf("trailguard %s %q: %q says %q twice", tt.cmd, tt.args, line, d)
			}
		}
	}
}

// doubled returns a prefix a line repeats ("proxy" in "trailguard proxy:
// proxy: config: …", "config" in "config: config: …"), or "".
func doubled(line string) string {
	parts := strings.Split(line, ": ")
	for i := 0; i+1 < len(parts); i++ {
		a, b := parts[i], parts[i+1]
		if b == "" || strings.ContainsAny(b, " \"") {
			continue // a sentence, not a prefix
		}
		if a == b || strings.HasSuffix(a, " "+b) {
			return b
		}
	}
	return ""
}
