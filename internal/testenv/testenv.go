// Package testenv lets tests that need a real third-party program (rsyslog,
// Node.js, Alertmanager, Chromium, VictoriaLogs…) or a privilege (mounting a
// small tmpfs to fill a disk) find it, and decides what happens when it is
// missing: on a developer's machine the test is skipped with the command that
// would install it; under CI (TRAILGUARD_CI=1, set by .ci/run, which installs
// everything) a missing program is a failure, so a test can never pass in CI
// by not running. It also starts such programs (StartChild) so that none
// outlives the test binary, however that dies.
package testenv

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// CI reports whether the tests run under .ci/run, where every tool a test
// needs has been installed and a skip would hide a failure.
func CI() bool { return os.Getenv("TRAILGUARD_CI") == "1" }

// Tool returns the path of the program name. Directories listed in
// TRAILGUARD_TOOLS (colon-separated; .ci/run puts the tools it builds there)
// are searched before PATH. If the program is missing, the test is skipped,
// or failed under CI; install says how to get it.
func Tool(t testing.TB, name, install string) string {
	t.Helper()
	if p := Find(name); p != "" {
		return p
	}
	missing(t, name+" not found ("+install+")")
	return ""
}

// Find returns the path of the program name, searching TRAILGUARD_TOOLS then
// PATH, or "" if it is not installed.
func Find(name string) string {
	for _, dir := range filepath.SplitList(os.Getenv("TRAILGUARD_TOOLS")) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

// Require skips the test (or fails it under CI) unless ok, with why.
func Require(t testing.TB, ok bool, why string) {
	t.Helper()
	if !ok {
		missing(t, why)
	}
}

// Long skips tests that take more than a few seconds under -short.
// .ci/run runs them.
func Long(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("long test; run without -short")
	}
}

// Seed returns the seed for a test's random choices (kill moments, batch
// sizes…) and logs it, so that a failure can be replayed: TRAILGUARD_SEED,
// when set, is used instead of a new one.
func Seed(t testing.TB) uint64 {
	t.Helper()
	if s := os.Getenv("TRAILGUARD_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TRAILGUARD_SEED=%q: %v", s, err)
		}
		t.Logf("seed %d (from TRAILGUARD_SEED)", v)
		return v
	}
	v := rand.Uint64()
	t.Logf("seed %d (replay with TRAILGUARD_SEED=%d)", v, v)
	return v
}

func missing(t testing.TB, why string) {
	t.Helper()
	if CI() {
		t.Fatalf("required under CI (TRAILGUARD_CI=1): %s", why)
	}
	t.Skip(why)
}

// Count returns the positive whole number in the environment variable name
// (how many events, kills, seconds a longer run uses), or def when it is
// unset; anything else fails the test rather than running it with nothing.
func Count(t testing.TB, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive whole number", name, s)
	}
	return n
}
