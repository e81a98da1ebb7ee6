package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostLine starts the line on which HostChild names the child to KillHost.
const hostLine = "testenv host child "

// KillHost checks that a child started by a test binary dies with it. It
// runs the test named test in a new process of this test binary, the host,
// with env ("NAME=value") added to its environment (the host test skips
// unless it is set) and a new file open on descriptor 3, as
// flock(1) passes the lock it holds to its command. The host starts its child
// and names it with HostChild. Within d of the start, KillHost fails the
// test unless that child runs and holds no descriptor on the passed file;
// it calls check (unless nil) with the child and the words HostChild was
// given after the pid, kills the host with SIGKILL, as a timeout or an
// impatient developer does, and fails the test unless the child ends
// within 10 s.
func KillHost(t testing.TB, test, env string, d time.Duration, check func(child Proc, more []string)) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), env)
	marker := passFile(t, cmd)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := StartChild(t, cmd); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	named := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), hostLine); ok {
				named <- strings.Fields(rest)
			}
		}
	}()
	var child Proc
	var more []string
	select {
	case words := <-named:
		pid, err := strconv.Atoi(words[0])
		if err != nil {
			t.Fatalf("the host %s named its child %q", test, words)
		}
		var ok bool
		if child, ok = LookProc(pid); !ok || !child.Running() {
			t.Fatalf("the child %d of the host %s is gone before the host was killed", pid, test)
		}
		more = words[1:]
	case <-time.After(d):
		t.Fatalf("the host %s did not name its child within %v", test, d)
	}
	if child.Holds(marker) {
		t.Errorf("the child %d (%s) holds %s, which its host inherited", child.Pid, child.name(), marker)
	}
	if check != nil {
		check(child, more)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.WaitEnded(t, 10*time.Second, "its host was killed")
}

// HostChild is the host's side of KillHost: it names the child the host
// started, with more words for KillHost's check, and waits 60 s to be
// killed.
func HostChild(pid int, more ...string) {
	fmt.Println(hostLine + strings.Join(append([]string{strconv.Itoa(pid)}, more...), " "))
	time.Sleep(60 * time.Second)
}

// passFile opens a new file and gives it to cmd on descriptor 3, open
// across exec, as flock(1) gives its command the lock it holds. It
// returns the file's path, for Holds: a child of cmd's must not hold it.
func passFile(t testing.TB, cmd *exec.Cmd) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "inherited.lock")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	cmd.ExtraFiles = append([]*os.File{f}, cmd.ExtraFiles...)
	return path
}
