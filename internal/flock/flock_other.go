//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package flock

import (
	"os"
	"time"
)

// Lock only opens (creating it) the file at path on systems without
// flock: there, keeping two writers apart is the operator's job.
func Lock(path string, wait time.Duration) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}
