//go:build linux

package main

import (
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
// its stop message, a ledger whose last checkpoint is the shutdown's over
// every record) or have died before touching the data directory at all (a
// signal during the Go runtime's own start, which no program can catch).
// Before, SIGTERM was caught only after the start: one during it killed
// the process after "collector started" was appended and not checkpointed
// (or mid-append: a torn tail), without a stop message.
func TestServeSigtermAtAnyTime(t *testing.T) {
	testenv.Long(t)
	t.Parallel()
	s := newShutdownServe(t, 4*time.Second)
	sigtermAtAnyTime(t, s.bin, s.data, "trailguard collector on ", "final checkpoint written", "serve", "--config", s.cfgPath)
}

// TestProxySigtermAtAnyTime is TestServeSigtermAtAnyTime for a single-node
// `trailguard proxy --data` (its own ledger, index and detection).
func TestProxySigtermAtAnyTime(t *testing.T) {
	testenv.Long(t)
	t.Parallel()
	bin := buildTrailguard(t)
	data := filepath.Join(t.TempDir(), "data")
	sigtermAtAnyTime(t, bin, data, "trailguard proxy on ", "trailguard proxy stopped",
		"proxy", "--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9", "--data", data)
}

func sigtermAtAnyTime(t *testing.T, bin, data, banner, stopped string, args ...string) {
	var startup time.Duration // from exec to the banner, in the first run
	run := func(delay time.Duration, waitBanner bool) {
		t.Helper()
		began := time.Now()
		before := ""
		if _, err := os.Stat(data); err == nil {
			before = dirState(t, data)
		}
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
		var stdout, stderr lockedBuffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := testenv.StartChild(t, cmd); err != nil {
			t.Fatal(err)
		}
		if waitBanner {
			for deadline := time.Now().Add(60 * time.Second); !strings.Contains(stdout.String(), banner); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					t.Fatalf("no start in 60 s\n%s", stderr.String())
				}
			}
			startup = time.Since(began)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGTERM)
		exitWithin(t, cmd, 60*time.Second, fmt.Sprintf("SIGTERM %v after the start: no exit", delay), stderr.String)
		ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
		switch {
		case ws.Signaled() && !waitBanner && before != "" && dirState(t, data) == before:
			t.Logf("SIGTERM %v after the start: died in the Go runtime's start, data untouched", delay)
		case ws.Signaled():
			t.Fatalf("SIGTERM %v after the start (banner seen: %v) killed the process (%v) without a clean stop\nstdout:\n%s\nstderr:\n%s",
				delay, waitBanner, cmd.ProcessState, stdout.String(), stderr.String())
		case ws.ExitStatus() != 0 || !strings.Contains(stdout.String(), stopped):
			t.Fatalf("SIGTERM %v after the start: exit %d without %q\nstdout:\n%s\nstderr:\n%s", delay, ws.ExitStatus(), stopped, stdout.String(), stderr.String())
		default:
			t.Logf("SIGTERM %v after the start: clean stop", delay)
		}
		verifyFinal(t, bin, data, 0)
	}
	// The first run creates the data directory; SIGTERM as soon as the
	// address is announced (a supervisor's quick stop).
	run(0, true)
	const n = 10
	for i := range n {
		run(time.Duration(i)*startup*3/2/n, false)
	}
}
