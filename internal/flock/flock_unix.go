//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package flock

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// Lock opens (creating it) the file at path and takes an exclusive flock
// on it, trying again every 10 ms for up to wait while another holder has
// it (ErrBusy after that). Closing the file releases the lock. flock
// belongs to the open file description, so it also excludes a second
// opener in the same process, and the kernel releases it when the process
// dies: no stale lock after a crash. A lock just released can still be
// held for a moment by a child the holder is forking (the descriptor is
// shared until the child's exec closes it), hence the wait.
func Lock(path string, wait time.Duration) (*os.File, error) {
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return fh, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			fh.Close()
			return nil, err
		}
		if wait <= 0 || time.Now().After(deadline) {
			fh.Close()
			return nil, ErrBusy
		}
		time.Sleep(10 * time.Millisecond)
	}
}
