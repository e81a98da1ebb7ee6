package main

import (
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
	}
	for _, tt := range tests {
		_, errOut, code := call(runners[tt.cmd], tt.args...)
		first, _, _ := strings.Cut(errOut, "\n")
		if code != 2 || !strings.HasPrefix(first, tt.want) {
			t.Errorf("trailguard %s %s: exit %d, first line %q, want %q", tt.cmd, strings.Join(tt.args, " "), code, first, tt.want)
		}
	}
}
