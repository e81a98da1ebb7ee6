package main

import (
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/server"
)

// runner is the signature of every subcommand's entry point.
type runner func(args []string, stdout, stderr io.Writer) int

var runners = map[string]runner{
	"serve": runServe, "token": runToken, "demo": runDemo, "reindex": runReindex,
	"keygen": runKeygen, "verify": runVerify, "prove": runProve, "proxy": runProxy,
	"detect": runDetect, "tiles": runTiles,
}

func call(f runner, args ...string) (stdout, stderr string, code int) {
	var o, e strings.Builder
	code = f(args, &o, &e)
	return o.String(), e.String(), code
}

// TestHelp: every command answers --help on standard output with exit 0,
// lists its flags with their types, names the data directory --data and
// hides the older --data-dir.
func TestHelp(t *testing.T) {
	for name := range commands {
		if runners[name] == nil {
			t.Errorf("command %s is not covered by this test", name)
		}
	}
	for name, f := range runners {
		for _, h := range []string{"--help", "-h"} {
			out, errOut, code := call(f, h)
			if code != 0 || !strings.Contains(out, "usage: trailguard "+name) || errOut != "" {
				t.Errorf("%s %s: exit %d, stdout %q, stderr %q", name, h, code, out, errOut)
			}
			if name != "token" && !strings.Contains(out, "--data") {
				t.Errorf("%s --help does not mention --data:\n%s", name, out)
			}
			if strings.Contains(out, "--data-dir") {
				t.Errorf("%s --help shows the hidden --data-dir", name)
			}
		}
	}
	out, _, _ := call(runServe, "--help")
	for _, want := range []string{"--data DIR (string, default ./trailguard-data)", "--retention PROFILE (string, default keep everything)",
		"--checkpoint-interval DURATION (duration, default 1s)", "env TRAILGUARD_DATA"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --help lacks %q", want)
		}
	}
	for _, sub := range []string{"create", "list", "revoke"} {
		out, _, code := call(runToken, sub, "--help")
		if code != 0 || !strings.Contains(out, "usage: trailguard token "+sub) || !strings.Contains(out, "--data DIR (string") {
			t.Errorf("token %s --help: %d %s", sub, code, out)
		}
	}
	if out, _, _ := call(runToken, "create", "--help"); !strings.Contains(out, "--quiet (bool)") || !strings.Contains(out, "--init (bool)") {
		t.Errorf("token create --help: %s", out)
	}
	if _, errOut, code := call(runToken); code != 2 || !strings.Contains(errOut, "usage: trailguard token create") {
		t.Errorf("token without a subcommand: %d %s", code, errOut)
	}
}

func TestVersionLine(t *testing.T) {
	line := versionLine()
	if !regexp.MustCompile(`^trailguard \S+ \(commit \S+, go1\.\d+`).MatchString(line) {
		t.Errorf("version line %q", line)
	}
	version, commit = "v1.2.3", "0123456789abcdef0123"
	defer func() { version, commit = "", "" }()
	if line := versionLine(); !strings.HasPrefix(line, "trailguard v1.2.3 (commit 0123456789ab, go1.") {
		t.Errorf("with -ldflags values: %q", line)
	}
}

var tokenLine = regexp.MustCompile(`^tg_[a-z2-7]{8}_[a-z2-7]{32}\n$`)

// TestTokenCommand: create refuses a data directory that does not exist
// (unless --init), prints the token alone on stdout for $(…), and names
// what is missing.
func TestTokenCommand(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TRAILGUARD_DATA", "")
	t.Setenv("TRAILGUARD_DATA_DIR", "")
	dir := filepath.Join(tmp, "data")

	_, errOut, code := call(runToken, "create", "--data", dir, "--role", "ingest", "--name", "shipper-1")
	if code != 1 || !strings.Contains(errOut, "no data directory at") || !strings.Contains(errOut, "--init") {
		t.Fatalf("create in a missing directory: %d %q", code, errOut)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the refused create left %s behind: %v", dir, err)
	}
	// A data directory without tokens lists none, and says how to make
	// one aside (it printed nothing at all).
	empty := filepath.Join(tmp, "empty")
	os.Mkdir(empty, 0o700)
	if out, errOut, code := call(runToken, "list", "--data", empty); code != 0 || out != "" || !strings.Contains(errOut, "no tokens in "+filepath.Join(empty, "tokens.json")+" yet: trailguard token create --data "+empty) {
		t.Errorf("list of none: %d stdout %q stderr %q", code, out, errOut)
	}
	out, errOut, code := call(runToken, "create", "--data", dir, "--role", "ingest", "--name", "shipper-1", "--init")
	if code != 0 || !tokenLine.MatchString(out) || !strings.Contains(errOut, "shown once") {
		t.Fatalf("create --init: %d stdout %q stderr %q", code, out, errOut)
	}
	// The environment names the directory as --data does; --quiet is silent
	// but for the token; the older flag name still works.
	t.Setenv("TRAILGUARD_DATA", dir)
	out, errOut, code = call(runToken, "create", "--role", "read", "--name", "analyst", "--quiet")
	if code != 0 || !tokenLine.MatchString(out) || errOut != "" {
		t.Fatalf("create --quiet via TRAILGUARD_DATA: %d %q %q", code, out, errOut)
	}
	out, _, code = call(runToken, "list", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "shipper-1") || !strings.Contains(out, "analyst") {
		t.Fatalf("list: %d %s", code, out)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "--role", "read"}, "missing --name"},
		{[]string{"create", "--name", "x"}, "missing --role"},
		{[]string{"create", "--name", "x", "--role", "root"}, "unknown role"},
		{[]string{"revoke"}, "missing the NAME"},
		{[]string{"frobnicate"}, "unknown subcommand"},
		{[]string{"list", "--bogus"}, "trailguard token list: unknown flag --bogus"},
	} {
		if _, errOut, code := call(runToken, tt.args...); code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("token %q: exit %d, want 2 and %q in %q", tt.args, code, tt.want, errOut)
		}
	}
	if out, _, code := call(runToken, "revoke", "analyst"); code != 0 || !strings.Contains(out, `revoked "analyst"`) {
		t.Errorf("revoke: %d %s", code, out)
	}
}

// TestServeListensFirst: a port in use is reported before any data
// directory or key is created.
func TestServeListensFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := filepath.Join(t.TempDir(), "data")
	_, errOut, code := call(runServe, "--data", dir, "--listen", ln.Addr().String())
	if code != 1 || !strings.Contains(errOut, "cannot listen on "+ln.Addr().String()) || !strings.Contains(errOut, "--listen") {
		t.Fatalf("serve on a busy port: %d %q", code, errOut)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("serve on a busy port created %s: %v", dir, err)
	}
	// A data directory that cannot be made names the setting to change.
	if _, errOut, code := call(runServe, "--data", "/dev/null/data", "--listen", "127.0.0.1:0"); code != 1 || !strings.Contains(errOut, "point --data") {
		t.Errorf("serve with an impossible data directory: %d %q", code, errOut)
	}
	if _, errOut, code := call(runServe, "--data", dir, "stray"); code != 2 || !strings.Contains(errOut, `unexpected argument "stray"`) {
		t.Fatalf("serve with an argument: %d %q", code, errOut)
	}
}

// TestTLSFilesCheckedFirst: a missing or unreadable certificate is
// reported, naming the flags to fix, before serve or proxy announce an
// address or create a data directory.
func TestTLSFilesCheckedFirst(t *testing.T) {
	tmp := t.TempDir()
	garbage := filepath.Join(tmp, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(tmp, "missing.pem")
	for _, files := range [][2]string{{missing, missing}, {garbage, garbage}} {
		for name, args := range map[string][]string{
			"serve": {"--listen", "127.0.0.1:0"},
			"proxy": {"--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:1"},
		} {
			dir := filepath.Join(tmp, name+"-data")
			out, errOut, code := call(runners[name], append(args, "--data", dir, "--tls-cert", files[0], "--tls-key", files[1])...)
			if code != 2 || out != "" || !strings.Contains(errOut, "--tls-cert "+files[0]) || !strings.Contains(errOut, "PEM certificate") {
				t.Errorf("%s with TLS files %s: %d %q %q", name, files[0], code, out, errOut)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s with a bad certificate created %s: %v", name, dir, err)
			}
		}
	}
}

// TestVerifyFromDataDir: verify and prove find the ledger and the key in the
// collector's data directory, still take an explicit ledger path, and name
// the missing flag when there is no key.
func TestVerifyFromDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := server.Defaults()
	cfg.DataDir, cfg.Origin = dir, "test.example/trailguard"
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil { // its start and stop events are in the ledger
		t.Fatal(err)
	}
	t.Setenv("TRAILGUARD_DATA", "")
	for _, args := range [][]string{{"--data", dir}, {dir}, {filepath.Join(dir, "ledger")}, {filepath.Join(dir, "ledger"), "--key", filepath.Join(dir, "keys", "signer.pub")}} {
		out, errOut, code := call(runVerify, args...)
		if code != 0 || !strings.HasPrefix(out, "OK") {
			t.Errorf("verify %q: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	t.Setenv("TRAILGUARD_DATA", dir)
	if out, errOut, code := call(runProve, "--index", "0"); code != 0 || !strings.Contains(out, "inclusion of record 0") {
		t.Errorf("prove via TRAILGUARD_DATA: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := call(runProve, dir); code != 2 || !strings.Contains(errOut, "missing exactly one of --index N") {
		t.Errorf("prove without a mode: %d %q", code, errOut)
	}
	// No key anywhere: say which flag is missing.
	os.Remove(filepath.Join(dir, "keys", "signer.pub"))
	if _, errOut, code := call(runVerify, dir); code != 2 || !strings.Contains(errOut, "missing --key FILE") {
		t.Errorf("verify without a key: %d %q", code, errOut)
	}
	// No data directory: say where it looked.
	if _, errOut, code := call(runVerify, "--data", filepath.Join(dir, "nope")); code != 2 || !strings.Contains(errOut, "no data directory at") {
		t.Errorf("verify of a missing data directory: %d %q", code, errOut)
	}
}

// TestHelpFlagsDocumented: every flag a command's --help lists is named in
// README.md or docs/ (a serve setting by its flag or its YAML key, which
// --help also shows), and every trailguard flag the documents name is one
// some command's --help lists: a flag nobody can read about, or one the
// documents promise that does not exist, is a defect.
func TestHelpFlagsDocumented(t *testing.T) {
	var text strings.Builder
	docs, _ := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	for _, name := range append(docs, filepath.Join("..", "..", "README.md")) {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		text.Write(data)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("--[a-z][a-z0-9-]*").FindAllString(text.String(), -1) {
		documented[m] = true
	}
	keys := map[string]bool{}
	for _, m := range regexp.MustCompile("`([a-z][a-z0-9_.]*)").FindAllStringSubmatch(text.String(), -1) {
		keys[m[1]] = true
	}
	flagLine := regexp.MustCompile(`(?m)^  (--[a-z][a-z0-9-]*)`)
	helps := map[string][]string{}
	for name, f := range runners {
		if name == "token" {
			continue
		}
		out, _, _ := call(f, "--help")
		helps[name] = []string{out}
	}
	for _, sub := range []string{"create", "list", "revoke"} {
		out, _, _ := call(runToken, sub, "--help")
		helps["token "+sub] = []string{out}
	}
	existing := map[string]bool{"--help": true, "--version": true}
	for name, outs := range helps {
		for _, m := range flagLine.FindAllStringSubmatch(outs[0], -1) {
			flag := m[1]
			existing[flag] = true
			key := strings.ReplaceAll(strings.TrimPrefix(flag, "--"), "-", "_")
			if !documented[flag] && !(name == "serve" && keys[key]) {
				t.Errorf("trailguard %s %s is in --help but in neither README.md nor docs/", name, flag)
			}
		}
	}
	// Flags of the other programs the documents show (curl).
	for _, other := range []string{"--data-binary", "--data-urlencode"} {
		existing[other] = true
	}
	for flag := range documented {
		if !existing[flag] {
			t.Errorf("the documents name %s, which no trailguard command's --help lists", flag)
		}
	}
}
