//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package ship

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrLocked is returned by New when another Shipper, in this process or
// another, has the spool directory open: two senders would ship every
// record twice and race over the cursor.
var ErrLocked = errors.New("ship: spool is in use")

// lockFile takes an exclusive flock on path; the kernel releases it when the
// process dies, so a crash leaves no stale lock.
func lockFile(path string) (*os.File, error) {
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ship: lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fh.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("ship: lock %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("ship: lock %s: %w", path, err)
	}
	return fh, nil
}
