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
// (testenv.HostChild) once the collector itself listens on its address.
// When it could not listen because another process took the port after
// FreeAddr (the readiness check may even have found that process), the
// block runs again on another port (testenv.OnFreeAddr).
func TestReadmeServeOrphan(t *testing.T) {
	dir := os.Getenv("TRAILGUARD_README_ORPHAN")
	if dir == "" {
		t.Skip("started by TestReadmeServeDiesWithTest")
	}
	bash := testenv.Tool(t, "bash", "apt-get install bash")
	var serve int
	testenv.OnFreeAddr(t, "the README's collector block", func(addr string) error {
		// Everything in the killing test's directory, which it removes.
		sub, err := os.MkdirTemp(dir, "block-")
		if err != nil {
			t.Fatal(err)
		}
		script, env := collectorBlock(t, sub, addr)
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
		pidFile := filepath.Join(sub, "serve.pid")
		script = strings.Join(lines, "") + fmt.Sprintf("echo $SERVE > %s\nsleep 60\n", pidFile)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		ended := make(chan string, 1)
		go func() {
			out, err := runScript(t, ctx, bash, sub, env, script)
			ended <- fmt.Sprintf("%v\n%s", err, out)
		}()
		// The block's end, cut short: what it printed, the collector's
		// complaint included.
		stop := func() string { cancel(); return <-ended }
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			select {
			case out := <-ended:
				cancel()
				return fmt.Errorf("the block ended before the collector was ready: %s", out)
			default:
			}
			b, err := os.ReadFile(pidFile)
			if err != nil || !strings.HasSuffix(string(b), "\n") {
				if time.Now().After(deadline) {
					return fmt.Errorf("the collector did not start within 60 s:\n%s", stop())
				}
				continue
			}
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			p, ok := testenv.LookProc(pid)
			switch {
			case ok && p.Listens(addr):
				serve = pid
				go func() {
					fmt.Fprintf(os.Stderr, "the README's collector block ended before this test binary was killed: %s", <-ended)
				}()
				return nil
			case !ok || !p.Running():
				out := stop()
				if strings.Contains(out, "cannot listen on "+addr) && testenv.PortTakenIn(out) {
					return fmt.Errorf("serve: %w\n%s", testenv.ErrPortTaken, out)
				}
				return fmt.Errorf("the collector exited:\n%s", out)
			case time.Now().After(deadline):
				return fmt.Errorf("the collector does not listen on %s after 60 s:\n%s", addr, stop())
			}
		}
	})
	// TestMain does not run when this binary is killed: the wrapper of
	// the binary goes now.
	os.RemoveAll(cliDir)
	testenv.HostChild(serve)
}
