//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sink

import (
	"fmt"
	"os"
)

// lockFile only creates path on systems without flock: there, keeping two
// sinks off one trail is the operator's job.
func lockFile(path string) (*os.File, error) {
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sink: lock %s: %w", path, err)
	}
	return fh, nil
}
