//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package index

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockWait is how long a lock held elsewhere is waited for.
const lockWait = 500 * time.Millisecond

// lockFile takes an exclusive flock on path. flock belongs to the open file
// description, so it also excludes a second opener in the same process, and
// the kernel releases it when the process dies: no stale lock after a crash.
func lockFile(path string) (*os.File, error) {
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("index: lock %s: %w", path, err)
	}
	// A lock just released can still be held for a moment by a child this
	// process is forking (the descriptor is shared until the child's exec
	// closes it), so a busy lock is tried again for a short while.
	deadline := time.Now().Add(lockWait)
	for {
		err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return fh, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			fh.Close()
			return nil, fmt.Errorf("index: lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			fh.Close()
			return nil, fmt.Errorf("index: lock %s: %w", path, ErrInUse)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
