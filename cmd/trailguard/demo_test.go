package main

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// lockedBuffer is a bytes.Buffer a test reads while a process writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDemoKeepRunningStopsOnSIGTERM: `demo --keep-running` stops as it
// does on Ctrl-C when sent SIGTERM (kill, a closing terminal): it closes
// and verifies the collector's ledger and exits 0, instead of dying.
func TestDemoKeepRunningStopsOnSIGTERM(t *testing.T) {
	testenv.Long(t)
	bin := buildTrailguard(t)
	var out lockedBuffer
	cmd := exec.Command(bin, "demo", "--keep-running", "--duration", "200ms", "--data", filepath.Join(t.TempDir(), "demo"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := testenv.StartChild(t, cmd); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(out.String(), "keeps running until") {
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not come up:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The API line it prints works as pasted: the token reads the alerts.
	m := regexp.MustCompile(`curl -H 'Authorization: Bearer (\S+)' (\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no API line printed:\n%s", out.String())
	}
	req, _ := http.NewRequest("GET", m[2], nil)
	req.Header.Set("Authorization", "Bearer "+m[1])
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("the printed API line: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		after := out.String()[strings.Index(out.String(), "keeps running until"):]
		if err != nil || !strings.Contains(after, "stopping") || !strings.Contains(after, "verify it:") {
			t.Fatalf("after SIGTERM: %v\n%s", err, after)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the demo did not stop within 60 s of SIGTERM:\n%s", out.String())
	}
}

// TestDemoUsedData: `demo --data DIR` over an earlier run's directory
// stops at once with one plain message (an earlier run's blocks would be
// in force and its story told again), and DIR is left as it was.
func TestDemoUsedData(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "report-pci-dss.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	code := runDemo([]string{"--data", dir, "--duration", "1ms"}, &out, &errOut)
	want := "trailguard demo: " + dir + " is not empty (an earlier run?): give a new or empty directory, or remove it\n"
	if code != 1 || errOut.String() != want {
		t.Fatalf("exit %d, stderr %q, want %q", code, errOut.String(), want)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("the directory changed: %v", ents)
	}
	if code := runDemo([]string{"extra"}, &out, &errOut); code != 2 {
		t.Fatalf("an argument: exit %d", code)
	}
}

// TestDemoUnusableData: `demo --data DIR` where DIR cannot hold a run (a
// file, a path under a file, an earlier run's directory) fails with one
// line on standard error, exit 1 as for any directory it cannot use, and
// nothing on standard output: the banner came first, then the error from
// within the run.
func TestDemoUnusableData(t *testing.T) {
	bin := buildTrailguard(t)
	top := t.TempDir()
	file := filepath.Join(top, "a-file")
	used := filepath.Join(top, "used")
	for _, f := range []string{file, filepath.Join(used, "report-pci-dss.json")} {
		os.MkdirAll(filepath.Dir(f), 0o700)
		if err := os.WriteFile(f, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct{ dir, want string }{
		{file, file + " is not a directory: give a new or empty directory"},
		{filepath.Join(file, "demo"), "cannot create " + filepath.Join(file, "demo") + ": mkdir " + file + ": not a directory: give a new or empty directory where you can write"},
		{used, used + " is not empty (an earlier run?): give a new or empty directory, or remove it"},
	} {
		cmd := exec.Command(bin, "demo", "--duration", "1ms", "--data", tt.dir)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != 1 || stdout.Len() != 0 || stderr.String() != "trailguard demo: "+tt.want+"\n" {
			t.Errorf("demo --data %s: exit %d (%v)\nstdout %q\nstderr %q\nwant exit 1, no stdout, stderr %q", tt.dir, code, err, stdout.String(), stderr.String(), "trailguard demo: "+tt.want+"\n")
		}
	}
	if st, err := os.Stat(file); err != nil || st.Size() != 2 {
		t.Errorf("the file given as --data changed: %v %v", st, err)
	}
}
