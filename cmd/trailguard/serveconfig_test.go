package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// TestServeConfigBeforeDisk: a mistake anywhere in serve's configuration
// is reported, naming the key (and the file, for what only a file sets),
// before anything is written: no data directory, no keys. What the
// configuration says alone is refused with it (exit 2, "config: …");
// files it names that cannot be used (keys, secrets, rules directories),
// by server.New before it writes anything (exit 1, "server: config: …"),
// since trailguard report reads the same configuration on machines that
// need not hold them. Before, only the top-level
// settings were checked first; a bad outputs: entry (and a notifier, an
// allowlist entry, a missing rules directory, an unknown retention
// profile or redact_mode, a signer_key that is not there) was found by
// server.New after it had made the data directory and generated the
// checkpoint keys, with exit 1.
func TestServeConfigBeforeDisk(t *testing.T) {
	tests := []struct {
		name string
		yaml string   // the --config file's text ("" for none)
		args []string // more flags
		want []string // in the error
		file bool     // found when the files it names are read (exit 1)
	}{
		{name: "output name", yaml: "outputs:\n  - name: _vl\n    type: victorialogs\n    url: http://127.0.0.1:9428\n",
			want: []string{"serve.yaml: outputs[0] (_vl): name \"_vl\""}},
		{name: "output type", yaml: "outputs:\n  - name: vl\n    url: http://127.0.0.1:9428\n",
			want: []string{"serve.yaml: outputs[0] (vl): type \"\": want elasticsearch"}},
		{name: "output api key file", yaml: "outputs:\n  - name: es\n    type: elasticsearch\n    url: http://127.0.0.1:9200\n    api_key_file: /nonexistent/key\n",
			want: []string{"outputs[0] (es): api_key_file: open /nonexistent/key"}, file: true},
		{name: "two outputs one name", yaml: "outputs:\n  - name: vl\n    type: victorialogs\n    url: http://127.0.0.1:9428\n  - name: vl\n    type: victorialogs\n    url: http://127.0.0.1:9429\n",
			want: []string{"serve.yaml: outputs[1] (vl): a second output named \"vl\""}},
		{name: "notifier", yaml: "notifiers:\n  - type: slack\n",
			want: []string{"serve.yaml: notifiers[0]: notifier slack: url is missing"}},
		{name: "notifier secret file", yaml: "notifiers:\n  - name: wh\n    type: webhook\n    url: https://hooks.example.com/tg\n    secret_file: /nonexistent/secret\n",
			want: []string{"notifiers[0]: notifier wh: open /nonexistent/secret: no such file"}, file: true},
		{name: "allowlist", yaml: "decisions:\n  allowlist: [10.0.0.0/8, not-an-ip]\n",
			want: []string{"serve.yaml: decisions.allowlist[1]: "}},
		{name: "rules directory", yaml: "detection:\n  rules: [/nonexistent/rules]\n",
			want: []string{"detection.rules[0]: the detection rules directory /nonexistent/rules: no such file"}, file: true},
		{name: "retention", args: []string{"--retention", "pcidss"}, want: []string{`retention: unknown profile "pcidss"`}},
		{name: "redact mode", args: []string{"--redact-mode", "scramble"}, want: []string{`redact_mode: `, `"scramble"`}},
		{name: "signer key", args: []string{"--signer-key", "/nonexistent/signer.key"}, want: []string{"signer_key /nonexistent/signer.key: no such file"}, file: true},
		{name: "every mistake at once", yaml: "retention: forever\noutputs:\n  - name: vl\n    url: http://127.0.0.1:9428\n",
			want: []string{"retention: unknown profile", "serve.yaml: outputs[0] (vl): type"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			args := append([]string{"--data", data, "--listen", "127.0.0.1:0"}, tt.args...)
			if tt.yaml != "" {
				if err := os.WriteFile(filepath.Join(dir, "serve.yaml"), []byte(tt.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
				// Relative, as a user gives it, so that the error shows it so.
				t.Chdir(dir)
				args = append(args, "--config", "serve.yaml")
			}
			_, errOut, code := call(runServe, args...)
			wantCode, prefix := 2, "trailguard serve: config: "
			if tt.file {
				wantCode, prefix = 1, "trailguard serve: server: config: "
			}
			if code != wantCode || !strings.HasPrefix(errOut, prefix) {
				t.Errorf("serve %q: exit %d, want %d and %q…; stderr:\n%s", args, code, wantCode, prefix, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("serve %q: stderr does not say %q:\n%s", args, w, errOut)
				}
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				ents, _ := os.ReadDir(data)
				t.Errorf("serve %q wrote the data directory before refusing its configuration (%v): %v", args, err, ents)
			}
		})
	}
}

// TestServeNotifierConfigAtLoad: a notifier whose configuration cannot
// work, by its text alone, is refused when serve loads the configuration
// (exit 2, the file, the notifier and the key), before the data
// directory is made. Before, a url of the wrong scheme or none, or a
// syslog address without a port, was accepted: the collector started and
// each alert's delivery failed.
func TestServeNotifierConfigAtLoad(t *testing.T) {
	bin := buildTrailguard(t)
	for _, tt := range []struct{ name, notifier, want string }{
		{"no url", "name: ops\n    type: slack", "notifier ops: url is missing"},
		{"url without a scheme", "name: ops\n    type: slack\n    url: hooks.slack.com/services/T0/B0/x",
			`notifier ops: url "hooks.slack.com/services/T0/B0/x": want an http:// or https:// URL with a host`},
		{"url of another scheme", "name: am\n    type: alertmanager\n    url: ftp://am.example.com:9093",
			`notifier am: url "ftp://am.example.com:9093": want an http:// or https:// URL with a host`},
		{"url without a host", "name: hook\n    type: webhook\n    url: https://\n    secret_file: /nonexistent/secret",
			`notifier hook: url "https://": want an http:// or https:// URL with a host`},
		{"syslog without a port", "type: syslog\n    url: tcp://syslog.example.com",
			`notifier syslog: url "tcp://syslog.example.com": want tcp://host:port, tls://host:port or udp://host:port`},
		{"webhook without secret_file", "name: hook\n    type: webhook\n    url: https://hooks.example.com/tg",
			"notifier hook: a webhook needs secret_file"},
		{"min_level", "name: ops\n    type: slack\n    url: https://hooks.example.com/tg\n    min_level: loud",
			`notifier ops: min_level "loud": want informational`},
		// A name is a metrics label value: a quote or line break in it broke
		// the exposition (Go's %q is not the Prometheus text format's).
		{"name with a quote", "name: 'ops\"x'\n    type: slack\n    url: https://hooks.example.com/tg",
			`notifier slack: name "ops\"x": want up to 64 letters`},
		{"two of one name", "type: slack\n    url: https://hooks.example.com/a\n  - type: slack\n    url: https://hooks.example.com/b",
			"notifiers[1]: notifier slack: notifiers[0] has that name too"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			cfg := filepath.Join(dir, "serve.yaml")
			if err := os.WriteFile(cfg, []byte("notifiers:\n  - "+tt.notifier+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "serve", "--config", cfg, "--data", data, "--listen", "127.0.0.1:0")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := testenv.StartChild(t, cmd); err != nil {
				t.Fatal(err)
			}
			exitWithin(t, cmd, 60*time.Second, "serve started with the notifier", func() string { return stdout.String() + stderr.String() })
			want := "trailguard serve: config: " + cfg + ": notifiers[0]: " + tt.want
			if strings.HasPrefix(tt.want, "notifiers[") {
				want = "trailguard serve: config: " + cfg + ": " + tt.want
			}
			if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.HasPrefix(stderr.String(), want) {
				t.Errorf("exit %d, stderr %q\nwant exit 2, %q…", code, stderr.String(), want)
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Errorf("the data directory was made before the configuration was refused: %v", err)
			}
		})
	}
}
