//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package access

import (
	"fmt"
	"os"
	"syscall"
)

// lockStore takes an exclusive flock on path (next to the store), waiting
// for another process's change to end: a change is a read, a change and
// a rename, done in milliseconds. The kernel releases it if the process
// dies.
func lockStore(path string) (unlock func(), err error) {
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("access: lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX); err != nil {
		fh.Close()
		return nil, fmt.Errorf("access: lock %s: %w", path, err)
	}
	return func() { fh.Close() }, nil
}
