//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package ship

import (
	"errors"
	"fmt"
	"os"
)

// ErrLocked is returned by New when another Shipper has the spool directory
// open. Systems without flock cannot tell; there it is never returned.
var ErrLocked = errors.New("ship: spool is in use")

// lockFile only creates path on systems without flock: there, keeping two
// shippers off one spool is the operator's job.
func lockFile(path string) (*os.File, error) {
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ship: lock %s: %w", path, err)
	}
	return fh, nil
}
