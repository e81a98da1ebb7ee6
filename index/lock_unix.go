//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package index

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on path. flock belongs to the open file
// description, so it also excludes a second opener in the same process, and
// the kernel releases it when the process dies: no stale lock after a crash.
func lockFile(path string) (*os.File, error) {
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("index: lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fh.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("index: lock %s: %w", path, ErrInUse)
		}
		return nil, fmt.Errorf("index: lock %s: %w", path, err)
	}
	return fh, nil
}
