package doccheck

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClusterScriptCleansUp: deploy/victorialogs/cluster.sh, which
// docs/scale-out.md runs in the background and stops with kill, removes
// the temporary directory it made and stops its four nodes on every way
// out: SIGTERM, Ctrl-C, and a node that ends by itself (a port in use).
// A directory the user named is kept. Before, its trap stopped the nodes
// but left vlcluster.XXXXXX behind in $TMPDIR every time, and with one
// node gone the script waited on the other three for good.
//
// The nodes are a stand-in program (VICTORIA_LOGS), which records its pid
// and sleeps, or exits at once when its arguments name STANDIN_FAIL: what
// is tested is the script's handling of its nodes and directory, not
// VictoriaLogs.
func TestClusterScriptCleansUp(t *testing.T) {
	script, err := filepath.Abs(filepath.Join(root, "deploy", "victorialogs", "cluster.sh"))
	if err != nil {
		t.Fatal(err)
	}
	standin := filepath.Join(t.TempDir(), "victoria-logs")
	if err := os.WriteFile(standin, []byte("#!/bin/sh\necho $$ > \"$STANDIN_PIDS/$$\"\ncase \"$*\" in *\"$STANDIN_FAIL\"*) exit 3;; esac\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		signal  syscall.Signal // 0: none, a node fails
		fail    string         // the node that exits at once
		userDir bool           // DIR given as the argument
	}{
		{name: "SIGTERM", signal: syscall.SIGTERM},
		{name: "Ctrl-C", signal: syscall.SIGINT},
		{name: "a node fails", fail: "-httpListenAddr=127.0.0.1:9492"},
		{name: "DIR given, SIGTERM", signal: syscall.SIGTERM, userDir: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp, pids := t.TempDir(), t.TempDir()
			args := []string{script}
			userDir := filepath.Join(t.TempDir(), "cluster")
			if tt.userDir {
				if err := os.MkdirAll(filepath.Join(userDir, "storage-1"), 0o755); err != nil {
					t.Fatal(err)
				}
				args = append(args, userDir)
			}
			cmd := exec.Command("bash", args...)
			fail := tt.fail
			if fail == "" {
				fail = "no node fails"
			}
			cmd.Env = append(os.Environ(), "VICTORIA_LOGS="+standin, "TMPDIR="+tmp, "STANDIN_PIDS="+pids, "STANDIN_FAIL="+fail)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			// Nodes left running hold its standard error open.
			cmd.WaitDelay = 5 * time.Second
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				// The banner first, then the rest of standard output,
				// so that the script never blocks on a full pipe.
				sc := bufio.NewScanner(out)
				banner := false
				for sc.Scan() {
					if strings.HasPrefix(sc.Text(), "VictoriaLogs cluster in ") && !banner {
						banner = true
						done <- nil
					}
				}
				if !banner {
					done <- errors.New("no banner")
				}
			}()
			select {
			case err := <-done:
				if err != nil {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("cluster.sh: %v; stderr:\n%s", err, stderr.String())
				}
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("cluster.sh printed no banner in 60 s; stderr:\n%s", stderr.String())
			}
			if tt.signal != 0 {
				// Every node has started before the signal.
				waitFiles(t, pids, 4)
				if err := cmd.Process.Signal(tt.signal); err != nil {
					t.Fatal(err)
				}
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				for _, p := range waitFiles(t, pids, 0) {
					syscall.Kill(p, syscall.SIGKILL)
				}
				cmd.Process.Kill()
				<-exited
				t.Fatalf("cluster.sh did not end within 30 s (signal %v, failed node %q); stderr:\n%s", tt.signal, tt.fail, stderr.String())
			}
			// A node stopped before it wrote its pid is gone too: with
			// a node failing, the script may stop the others that soon.
			for _, p := range waitFiles(t, pids, 0) {
				if err := syscall.Kill(p, 0); !errors.Is(err, syscall.ESRCH) {
					syscall.Kill(p, syscall.SIGKILL)
					t.Errorf("node pid %d still runs after cluster.sh ended (%v)", p, err)
				}
			}
			left, _ := filepath.Glob(filepath.Join(tmp, "vlcluster.*"))
			if len(left) > 0 {
				t.Errorf("cluster.sh left its temporary directory behind: %q", left)
			}
			if _, err := os.Stat(filepath.Join(userDir, "storage-1")); tt.userDir && err != nil {
				t.Errorf("cluster.sh removed the directory the user gave: %v", err)
			}
		})
	}
}

// waitFiles waits (30 s at most) until dir holds n files, each named by a
// pid, and returns the pids.
func waitFiles(t *testing.T, dir string, n int) []int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) >= n || time.Now().After(deadline) {
			var pids []int
			for _, e := range ents {
				if p, err := strconv.Atoi(e.Name()); err == nil {
					pids = append(pids, p)
				}
			}
			if len(pids) < n {
				t.Fatalf("%d of %d nodes started", len(pids), n)
			}
			return pids
		}
		time.Sleep(20 * time.Millisecond)
	}
}
