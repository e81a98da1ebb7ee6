package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
	cmd := exec.Command(os.Args[0], "-test.run=^TestReadmeServeOrphan$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), "TRAILGUARD_README_ORPHAN="+t.TempDir())
	marker := testenv.PassFile(t, cmd)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.StartChild(t, cmd); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	started := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if n, ok := strings.CutPrefix(sc.Text(), "serve "); ok {
				pid, _ := strconv.Atoi(n)
				started <- pid
			}
		}
	}()
	var serve testenv.Proc
	select {
	case pid := <-started:
		var ok bool
		if serve, ok = testenv.LookProc(pid); !ok || !serve.Running() {
			t.Fatalf("the collector %d is gone before its test binary was killed", pid)
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the test binary did not start the README's collector within 60 s")
	}
	if serve.Holds(marker) {
		t.Errorf("the collector holds %s, which its test binary inherited", marker)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	serve.WaitEnded(t, 10*time.Second, "its test binary was killed")
}

// TestReadmeServeOrphan is TestReadmeServeDiesWithTest's test binary: it
// runs the README's collector block with runScript up to the collector's
// readiness check, in the directory TRAILGUARD_README_ORPHAN names (the
// killing test's, which removes it), says the collector's pid, and waits to
// be killed (60 s at the most).
func TestReadmeServeOrphan(t *testing.T) {
	dir := os.Getenv("TRAILGUARD_README_ORPHAN")
	if dir == "" {
		t.Skip("started by TestReadmeServeDiesWithTest")
	}
	bash := testenv.Tool(t, "bash", "apt-get install bash")
	// Everything in the killing test's directory, which it removes; the
	// binary's wrapper too (TestMain does not run when this one is killed).
	script, env := collectorBlock(t, dir)
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
			fmt.Printf("serve %s", b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the collector did not start within 60 s")
		}
	}
	time.Sleep(60 * time.Second)
}
