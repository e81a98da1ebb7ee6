package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStartChildDiesWithTest: a test binary (a real process of this one)
// starts a child with StartChild from a goroutine whose thread then ends,
// and is killed with SIGKILL. The child must outlive the thread that
// started it (the parent-death signal fires when that thread exits: a
// child forked from it directly was killed in mid-test), must hold none
// of the descriptors the test binary inherited (here a file on descriptor
// 3, as flock(1) passes its lock), and must die with the test binary.
func TestStartChildDiesWithTest(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStartChildOrphan$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), "TRAILGUARD_TESTENV_ORPHAN=1")
	marker := PassFile(t, cmd)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := StartChild(t, cmd); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if n, ok := strings.CutPrefix(sc.Text(), "child "); ok {
				p, _ := strconv.Atoi(n)
				pid <- p
			}
		}
	}()
	var child Proc
	select {
	case p := <-pid:
		var ok bool
		if child, ok = LookProc(p); !ok {
			t.Fatalf("the child %d is gone before the test binary was killed", p)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the test binary did not start its child within 30 s")
	}
	if !child.Running() {
		t.Fatal("the child died when the thread that started it ended")
	}
	if child.Holds(marker) {
		t.Fatalf("the child holds %s, which the test binary inherited", marker)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.WaitEnded(t, 10*time.Second, "its test binary was killed")
}

// The main thread never ends: a goroutine that locks it and returns leaves
// it wedged. Kept by the main goroutine in TestStartChildOrphan's binary,
// the starting goroutine runs on another thread, which ends with it.
func init() {
	if os.Getenv("TRAILGUARD_TESTENV_ORPHAN") == "1" {
		runtime.LockOSThread()
	}
}

// TestStartChildOrphan is TestStartChildDiesWithTest's test binary: it
// starts sleep from a goroutine that locks its thread and returns, so that
// the thread ends, waits until it has, says the child's pid, and waits to
// be killed (60 s at the most).
func TestStartChildOrphan(t *testing.T) {
	if os.Getenv("TRAILGUARD_TESTENV_ORPHAN") != "1" {
		t.Skip("started by TestStartChildDiesWithTest")
	}
	cmd := exec.Command("sleep", "60")
	tid := make(chan int, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread ends with this goroutine
		if err := StartChild(t, cmd); err != nil {
			t.Error(err)
		}
		tid <- syscall.Gettid()
	}()
	task := filepath.Join("/proc/self/task", strconv.Itoa(<-tid))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(task); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the starting goroutine's thread %s did not end", task)
		}
	}
	fmt.Printf("child %d\n", cmd.Process.Pid)
	time.Sleep(60 * time.Second)
}
