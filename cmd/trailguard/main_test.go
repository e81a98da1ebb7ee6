package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// asCLI, set in a process's environment, makes this test binary run as the
// trailguard command (main) instead of running tests.
const asCLI = "TRAILGUARD_TEST_AS_CLI"

// TestMain lets tests start the real command as a separate process without
// building it: the test binary re-runs itself as trailguard.
func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		os.Unsetenv(asCLI) // not inherited by anything the command starts
		main()
		os.Exit(0)
	}
	code := m.Run()
	if cliDir != "" {
		os.RemoveAll(cliDir)
	}
	os.Exit(code)
}

var (
	cliOnce sync.Once
	cliDir  string
	cliPath string
	cliErr  error
)

// buildTrailguard returns the path of an executable that is the trailguard
// command: a two-line script that runs this test binary as main, so that
// shells, exec and kill see one process (the script execs) with this build
// of the code, race detector included.
func buildTrailguard(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		self, err := os.Executable()
		if err != nil {
			cliErr = err
			return
		}
		if cliDir, cliErr = os.MkdirTemp("", "trailguard-cli-"); cliErr != nil {
			return
		}
		cliPath = filepath.Join(cliDir, "trailguard")
		script := fmt.Sprintf("#!/bin/sh\n%s=1 exec '%s' \"$@\"\n", asCLI, self)
		cliErr = os.WriteFile(cliPath, []byte(script), 0o755)
	})
	if cliErr != nil {
		t.Fatalf("trailguard command for tests: %v", cliErr)
	}
	return cliPath
}

// exitWithin waits for cmd, started, to exit and returns Wait's error.
// When it is still running after d it is killed and t fails with
// running (what its running means) and what it printed (out): a command
// that should have refused to start, or stopped on a signal, must not
// hang the test until go test's own timeout.
func exitWithin(t *testing.T, cmd *exec.Cmd, d time.Duration, running string, out func() string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s (still running %v after it began to)\n%s", running, d, out())
		return nil
	}
}
