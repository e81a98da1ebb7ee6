package testenv

import (
	"os/exec"
	"runtime"
	"sync"
	"testing"
)

// StartChild starts cmd, a program that runs beside the test (an upstream,
// a collector, a crash child), so that it cannot outlive the test binary
// however that ends: on Linux the kernel kills it (SIGKILL) when the test
// binary dies, a timeout's panic or a kill -9 included; it runs in a process
// group of its own, which the test's end kills with whatever it started;
// and it inherits no descriptor beyond cmd's own (stdin, stdout, stderr,
// ExtraFiles). An orphaned child kept its port and its files, and, through
// the descriptors it inherited, the file locks of whatever ran the tests
// (flock(1) without -o passes the lock's descriptor to its command, and
// from there it reached every child: see closeInheritedOnExec).
//
// Cleanups the caller registers after StartChild (a SIGTERM and a check of
// the exit, say) run before the group is killed. The caller still Waits
// for cmd as it would after cmd.Start.
func StartChild(t testing.TB, cmd *exec.Cmd) error {
	t.Helper()
	forkerOnce.Do(startForker)
	tieToParent(cmd)
	errc := make(chan error, 1)
	forks <- func() { errc <- cmd.Start() }
	if err := <-errc; err != nil {
		return err
	}
	t.Cleanup(func() { killGroup(cmd) })
	return nil
}

var (
	forkerOnce sync.Once
	forks      = make(chan func())
)

// startForker starts the goroutine every child is started from. The
// kernel's parent-death signal fires when the thread that forked the child
// exits, not the process, and the Go runtime ends a thread whenever a
// goroutine that locked it returns without unlocking: a child forked from
// any other goroutine could be killed in mid-test, when its thread ended.
// This goroutine locks its thread and never returns, so no other goroutine
// runs on it and it ends only with the process.
func startForker() {
	closeInheritedOnExec()
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		close(ready)
		for f := range forks {
			f()
		}
	}()
	<-ready
}
