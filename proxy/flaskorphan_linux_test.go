package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// TestFlaskUpstreamDiesWithTest: a proxy test binary (a real process of
// this one) that runs the Flask upstream is killed with SIGKILL, as a
// timeout or an impatient developer does. The Flask process must die with
// it: orphaned, it kept running, with its port and with the descriptors
// the test binary inherited, among them the lock that shared-run's flock
// holds for the whole run (here a file on descriptor 3), which it must
// not hold even while it runs.
func TestFlaskUpstreamDiesWithTest(t *testing.T) {
	testenv.Long(t)
	t.Parallel()
	flaskPython(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestFlaskUpstreamOrphan$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), "TRAILGUARD_PROXY_FLASK_ORPHAN=1")
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
	started := make(chan [2]int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var pid, port int
			if _, err := fmt.Sscanf(sc.Text(), "flask %d %d", &pid, &port); err == nil {
				started <- [2]int{pid, port}
			}
		}
	}()
	var flask testenv.Proc
	var port int
	select {
	case s := <-started:
		var ok bool
		if flask, ok = testenv.LookProc(s[0]); !ok || !flask.Running() {
			t.Fatalf("the Flask upstream %d is gone before its test binary was killed", s[0])
		}
		port = s[1]
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the test binary did not start the Flask upstream within 30 s")
	}
	// It is the upstream, serving: a profile read without a session is
	// refused by the app.
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/api/users/alice")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the Flask upstream answers %d, want 401", resp.StatusCode)
	}
	if flask.Holds(marker) {
		t.Errorf("the Flask upstream holds %s, which its test binary inherited", marker)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	flask.WaitEnded(t, 10*time.Second, "its test binary was killed")
}

// TestFlaskUpstreamOrphan is TestFlaskUpstreamDiesWithTest's test binary:
// it starts the Flask upstream as the proxy tests do, says its pid and
// port, and waits to be killed (60 s at the most).
func TestFlaskUpstreamOrphan(t *testing.T) {
	if os.Getenv("TRAILGUARD_PROXY_FLASK_ORPHAN") != "1" {
		t.Skip("started by TestFlaskUpstreamDiesWithTest")
	}
	line, pid := startProcess(t, "listening ", flaskPython(t), "testdata/flaskapp/app.py")
	fmt.Printf("flask %d %s\n", pid, strings.TrimPrefix(line, "listening "))
	time.Sleep(60 * time.Second)
}
