//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package access

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockWait bounds the wait for another process's change to end: a change
// is a read, a change and a rename, done in milliseconds.
var lockWait = 5 * time.Second

// lockStore takes an exclusive flock on path (next to the store). The
// kernel releases it if the process dies; a process stopped while holding
// it makes the change fail after lockWait rather than wait for ever.
func lockStore(path string) (unlock func(), err error) {
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("access: lock %s: %w", path, err)
	}
	deadline := time.Now().Add(lockWait)
	for {
		err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { fh.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			fh.Close()
			return nil, fmt.Errorf("access: lock %s (another token change in progress?): %w", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
