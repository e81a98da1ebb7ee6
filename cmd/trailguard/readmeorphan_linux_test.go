package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// TestReadmeServeDiesWithTest: a test binary (a real process of this one)
// that runs the README's collector block, its `trailguard serve` started in
// the background and ready, is killed with SIGKILL, as a timeout or an
// impatient developer does. The collector must die with it: the shell died
// (its parent-death signal) but the collector, its child, was orphaned and
// kept running, with its port, its data directory and the descriptors the
// test binary inherited (here a file on descriptor 3, as flock(1) passes
// the lock shared-run holds), which it must not hold even while it runs.
func TestReadmeServeDiesWithTest(t *testing.T) {
	t.Parallel()
	testenv.Tool(t, "bash", "apt-get install bash")
	testenv.Tool(t, "curl", "apt-get install curl")
	testenv.KillHost(t, "TestReadmeServeOrphan", "TRAILGUARD_README_ORPHAN="+t.TempDir(), 60*time.Second, nil)
}

// TestReadmeServeOrphan is TestReadmeServeDiesWithTest's test binary: it
// runs the README's collector block with runScript up to the collector's
// readiness check, in the directory TRAILGUARD_README_ORPHAN names (the
// killing test's, which removes it), and names the collector
// (testenv.HostChild).
func TestReadmeServeOrphan(t *testing.T) {
	dir := os.Getenv("TRAILGUARD_README_ORPHAN")
	if dir == "" {
		t.Skip("started by TestReadmeServeDiesWithTest")
	}
	bash := testenv.Tool(t, "bash", "apt-get install bash")
	// Everything in the killing test's directory, which it removes; the
	// binary's wrapper too (TestMain does not run when this one is killed).
	script, env := collectorBlock(t, dir, testenv.FreeAddr(t))
	os.RemoveAll(cliDir)
	var lines []string
	for l := range strings.Lines(script) {
		lines = append(lines, l)
		if strings.Contains(l, "/healthz") {
			break
		}
	}
	if len(lines) < 2 || !strings.Contains(lines[0], "serve") || !strings.Contains(lines[0], "SERVE=$!") {
		t.Fatalf("the README's collector block no longer starts with serve in the background, then its readiness check:\n%s", script)
	}
	pidFile := filepath.Join(dir, "serve.pid")
	script = strings.Join(lines, "") + fmt.Sprintf("echo $SERVE > %s\nsleep 60\n", pidFile)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		out, err := runScript(t, ctx, bash, dir, env, script)
		fmt.Fprintf(os.Stderr, "the README's collector block ended before this test binary was killed: %v\n%s", err, out)
	}()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			testenv.HostChild(pid)
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the collector did not start within 60 s")
		}
	}
}
