package testenv

import (
	"os/exec"
	"testing"
)

// KeepForking starts other programs (/bin/true) one after another until
// the test ends. A child being started holds copies of the process's
// descriptors until its exec closes them, so a file lock (flock) taken on
// a descriptor outlives its Close for that moment: tests of the locks that
// must survive this (internal/flock, the ledger's) run beside it.
func KeepForking(t testing.TB) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			exec.Command("/bin/true").Run()
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}
