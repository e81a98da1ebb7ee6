//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// dirState lists every file under dir with its size and modification time:
// a process that did anything to the data directory changes it.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestServeSigtermAtAnyTime sends SIGTERM to a real `trailguard serve` at
// delays spread over its start-up (opening and recovering the ledger,
// catching up the index, recording "collector started") and just after.
// Whenever it arrives, the process must either stop cleanly (status 0,
// "final checkpoint written", a ledger whose last checkpoint is the
// shutdown's over every record) or have died before touching the data
// directory at all (a signal during the Go runtime's own start, which no
// program can catch). Before, SIGTERM was caught only after the start: one
// during it killed the process after "collector started" was appended
// and not checkpointed (or mid-append: a torn tail), without a stop message.
func TestServeSigtermAtAnyTime(t *testing.T) {
	testenv.Long(t)
	t.Parallel()
	s := newShutdownServe(t, 4*time.Second)
	// A first run, so that later starts open an existing ledger and index.
	start := time.Now()
	startServe(t, s.bin, s.cfgPath).stop(t)
	startup := time.Since(start)
	const n = 8
	for i := range n {
		before := dirState(t, s.data)
		delay := time.Duration(i) * startup * 3 / 2 / n
		cmd := exec.Command(s.bin, "serve", "--config", s.cfgPath)
		cmd.Env = append(os.Environ(), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("SIGTERM %v after the start: no exit in 60 s\n%s", delay, stderr.String())
		}
		ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
		switch {
		case ws.Signaled():
			if after := dirState(t, s.data); after != before {
				t.Fatalf("SIGTERM %v after the start killed serve (%v) after it touched the data directory, without a clean stop\nstdout:\n%s\nstderr:\n%s\nbefore:\n%s\nafter:\n%s",
					delay, cmd.ProcessState, stdout.String(), stderr.String(), before, after)
			}
			t.Logf("SIGTERM %v after the start: died in the Go runtime's start, data untouched", delay)
		case ws.ExitStatus() != 0 || !strings.Contains(stdout.String(), "final checkpoint written"):
			t.Fatalf("SIGTERM %v after the start: exit %d without the clean stop message\nstdout:\n%s\nstderr:\n%s", delay, ws.ExitStatus(), stdout.String(), stderr.String())
		default:
			t.Logf("SIGTERM %v after the start: clean stop", delay)
		}
		verifyFinal(t, s.bin, s.data, 0)
	}
}
