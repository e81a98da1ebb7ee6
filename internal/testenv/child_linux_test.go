package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
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
	KillHost(t, "TestStartChildOrphan", "TRAILGUARD_TESTENV_ORPHAN=1", 30*time.Second, nil)
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
// the thread ends, waits until it has, and names the child (HostChild).
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
	HostChild(cmd.Process.Pid)
}
