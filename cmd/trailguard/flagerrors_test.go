package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestFlagErrors: a mistyped command line is answered, on the first line
// of standard error and with exit status 2, in the help's own terms — the
// command, the flag with two dashes, and for a value that does not parse
// what the flag takes. Before, the flag package's words came alone
// ("invalid value "5" for flag -duration: parse error", "flag provided
// but not defined: -bogus"), and serve said "trailguard serve: serve:".
func TestFlagErrors(t *testing.T) {
	tests := []struct {
		cmd  string
		args []string
		want string
	}{
		{"demo", []string{"--duration", "5"}, `trailguard demo: --duration "5": want a duration such as 500ms, 30s, 5m or 2h`},
		{"prove", []string{"--index", "x"}, `trailguard prove: --index "x": want a whole number`},
		{"verify", []string{"--json=maybe"}, `trailguard verify: --json "maybe": want true or false`},
		{"verify", []string{"--data"}, `trailguard verify: --data needs a value: --data DIR`},
		{"detect", []string{"--test"}, `trailguard detect: --test needs a value: --test DIR`},
		{"proxy", []string{"--bogus"}, `trailguard proxy: unknown flag --bogus`},
		{"report", []string{"-bogus"}, `trailguard report: unknown flag --bogus`},
		{"token", []string{"list", "--bogus"}, `trailguard token list: unknown flag --bogus`},
		{"serve", []string{"--bogus"}, `trailguard serve: unknown flag --bogus (see trailguard serve --help)`},
		{"serve", []string{"--listen"}, `trailguard serve: a value is missing after --listen (see trailguard serve --help)`},
		// Values report checks itself: refused as the flag package's are,
		// before the data directory is looked at or a note is printed
		// (--standard pcidss was found after both, with exit 1 when no
		// data directory was there; --from and --to exited 1).
		// detect's --test DIR that is not there, as its --rules DIR (it
		// said "stat .: no such file or directory", exit 1).
		{"detect", []string{"--test", "no-such-tests"}, `trailguard detect: --test no-such-tests: not a directory`},
		{"report", []string{"--standard", "pcidss"}, `trailguard report: --standard "pcidss": want pci-dss, soc2 or hipaa`},
		{"report", []string{"--standard", "pci-dss", "--from", "yesterday"}, `trailguard report: --from "yesterday": want an RFC 3339 time`},
		{"report", []string{"--standard", "soc2", "--to", "-1h"}, `trailguard report: --to "-1h": want an RFC 3339 time`},
		{"report", []string{"--standard", "soc2", "--format", "doc"}, `trailguard report: --format "doc": want json, html or pdf`},
	}
	for _, tt := range tests {
		_, errOut, code := call(runners[tt.cmd], tt.args...)
		first, _, _ := strings.Cut(errOut, "\n")
		if code != 2 || !strings.HasPrefix(first, tt.want) {
			t.Errorf("trailguard %s %s: exit %d, first line %q, want %q", tt.cmd, strings.Join(tt.args, " "), code, first, tt.want)
		}
	}
}

// TestHelpConsistent: each command's --help states a flag's default once
// (prove and tiles said "--to SIZE (int, default 0)" over "(default: the
// newest)"), its usage line names each flag's value as the flag list
// does (demo's "[--duration D]" was "--duration DURATION" below), and
// its examples use only flags it has.
func TestHelpConsistent(t *testing.T) {
	helps := map[string]string{}
	for name, f := range runners {
		if name != "token" && name != "serve" { // serve's help is its own (server.Usage), token's per subcommand
			helps[name], _, _ = call(f, "--help")
		}
	}
	for _, sub := range []string{"create", "list", "revoke"} {
		helps["token "+sub], _, _ = call(runToken, sub, "--help")
	}
	flagHead := regexp.MustCompile(`(?m)^  --([a-z][a-z0-9-]*)(?: ([A-Z][A-Z_]*))? \(([^)]*)\)\n      (.*)$`)
	inUsage := regexp.MustCompile(`--([a-z][a-z0-9-]*) ([A-Z][A-Z_]*)\b`)
	for name, h := range helps {
		arg := map[string]string{}
		for _, m := range flagHead.FindAllStringSubmatch(h, -1) {
			arg[m[1]] = m[2]
			if strings.Contains(m[3], "default") && strings.Contains(m[4], "(default") {
				t.Errorf("%s --help: --%s states its default twice: (%s) and %q", name, m[1], m[3], m[4])
			}
		}
		if len(arg) == 0 {
			t.Errorf("%s --help lists no flags:\n%s", name, h)
		}
		// Its examples use only its own flags.
		if _, ex, ok := strings.Cut(h, "\nexamples:\n"); ok {
			for _, l := range strings.Split(strings.TrimSpace(ex), "\n") {
				l, _, _ = strings.Cut(l, " #")
				_, cmdLine, ok := strings.Cut(l, "trailguard "+strings.Fields(name)[0]+" ")
				if !ok {
					t.Errorf("%s --help: example %q does not run trailguard %s", name, l, name)
					continue
				}
				for _, m := range regexp.MustCompile(`(?:^|\s)--([a-z][a-z0-9-]*)`).FindAllStringSubmatch(cmdLine, -1) {
					if _, ok := arg[m[1]]; !ok {
						t.Errorf("%s --help: example %q gives --%s, which is not among its flags", name, l, m[1])
					}
				}
			}
		}
		usage, _, _ := strings.Cut(h, "\n\n")
		for _, m := range inUsage.FindAllStringSubmatch(usage, -1) {
			if a, ok := arg[m[1]]; ok && a != m[2] {
				t.Errorf("%s --help: the usage line has --%s %s, the flag list --%s %s", name, m[1], m[2], m[1], a)
			}
		}
	}
}

// TestNoLedgerThere: a LEDGER_DIR that does not exist is said to be
// missing, exit 2, by every command that takes one — verify without
// --key asked for the verifier key of a ledger that was never there (a
// mistyped path), and prove and tiles failed with "stat DIR/seg".
func TestNoLedgerThere(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-copy")
	for _, args := range [][]string{{"verify", missing}, {"prove", missing, "--index", "1"}, {"tiles", missing, "--out", t.TempDir()}} {
		_, errOut, code := call(runners[args[0]], args[1:]...)
		if want := "trailguard " + args[0] + ": no ledger at " + missing; code != 2 || !strings.HasPrefix(errOut, want) {
			t.Errorf("trailguard %s: exit %d, stderr %q; want 2 and %q", strings.Join(args, " "), code, errOut, want)
		}
	}
}

// TestNoLedgerInDir: a directory that is there but holds no ledger (a
// data directory that is not a collector's, an empty ledger/, a file) is
// said to hold none, with the flag or argument that names one, by every
// command that reads a ledger (reindex, prove, tiles, verify, report,
// detect --replay). Before, they said "ledger: open DIR: stat DIR/seg: no
// such file or directory", verify without --key asked for the verifier key
// of a ledger that was not there, and report for the signer key. Exit
// statuses are each command's for a ledger it cannot find: 2, and 1 for
// reindex, report and detect (as for a data directory that is not there).
func TestNoLedgerInDir(t *testing.T) {
	bin := buildTrailguard(t)
	top := t.TempDir()
	empty := filepath.Join(top, "empty")     // a data directory, not a collector's
	bare := filepath.Join(top, "bare")       // holding an empty ledger/
	file := filepath.Join(top, "a-file")     // not a directory at all
	absent := filepath.Join(empty, "ledger") // what --data empty points at
	for _, d := range []string{empty, filepath.Join(bare, "ledger")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	byData := ": point --data (or TRAILGUARD_DATA) at the data directory `trailguard serve` uses, or name the ledger directory as an argument"
	byArg := ": name a ledger directory (one holding seg/) or a data directory holding ledger/ (or give --data DIR instead)"
	byReplay := ": --replay takes an NDJSON file (- for standard input), a ledger directory (one holding seg/) or a data directory holding ledger/"
	out := filepath.Join(top, "tiles")
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"reindex", "--data", empty}, 1, "no ledger in " + absent + ": point --data (or TRAILGUARD_DATA) at the data directory `trailguard serve` uses, or --ledger at a ledger directory"},
		{[]string{"reindex", "--data", bare, "--ledger", empty}, 1, "no ledger in " + empty + ": point --ledger at a ledger directory (one holding seg/), or --data at the data directory `trailguard serve` uses"},
		{[]string{"prove", "--data", empty, "--index", "1"}, 2, "no ledger in " + absent + byData},
		{[]string{"tiles", "--data", empty, "--out", out}, 2, "no ledger in " + absent + byData},
		{[]string{"verify", "--data", empty}, 2, "no ledger in " + absent + byData},
		{[]string{"prove", empty, "--index", "1"}, 2, "no ledger in " + empty + byArg},
		{[]string{"tiles", bare, "--out", out}, 2, "no ledger in " + filepath.Join(bare, "ledger") + byArg},
		{[]string{"verify", bare}, 2, "no ledger in " + filepath.Join(bare, "ledger") + byArg},
		{[]string{"verify", file}, 2, "no ledger in " + file + byArg},
		// report asked for the signer key of a collector that was not there.
		{[]string{"report", "--standard", "pci-dss", "--data", empty}, 1, "no ledger in " + absent + ": point --data (or TRAILGUARD_DATA) at the data directory `trailguard serve` uses"},
		// detect said "ledger: open DIR: stat DIR/seg: no such file or directory".
		{[]string{"detect", "--replay", empty}, 1, "no ledger in " + empty + byReplay},
		{[]string{"detect", "--replay", bare}, 1, "no ledger in " + filepath.Join(bare, "ledger") + byReplay},
	} {
		cmd := exec.Command(bin, tt.args...)
		cmd.Env = append(os.Environ(), "TRAILGUARD_DATA=", "TRAILGUARD_DATA_DIR=")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Run()
		want := "trailguard " + tt.args[0] + ": " + tt.want + "\n"
		if code := cmd.ProcessState.ExitCode(); code != tt.code || stderr.String() != want {
			t.Errorf("trailguard %s: exit %d, stderr %q\nwant exit %d, %q", strings.Join(tt.args, " "), code, stderr.String(), tt.code, want)
		}
	}
	if _, err := os.Stat(filepath.Join(empty, "index.db")); !os.IsNotExist(err) {
		t.Errorf("reindex made an index from no ledger: %v", err)
	}
}
