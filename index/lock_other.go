//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package index

import (
	"fmt"
	"os"
)

// lockFile only creates path on systems without flock: there, keeping a
// rebuild away from a running collector is the operator's job.
func lockFile(path string) (*os.File, error) {
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("index: lock %s: %w", path, err)
	}
	return fh, nil
}
