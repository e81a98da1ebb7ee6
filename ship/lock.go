package ship

import (
	"errors"
	"fmt"
	"os"

	"github.com/trailguard/trailguard/internal/flock"
)

// ErrLocked is returned by New when another Shipper, in this process or
// another, has the spool directory open: two senders would ship every
// record twice and race over the cursor. Systems without flock cannot
// tell; there it is never returned.
var ErrLocked = errors.New("ship: spool is in use")

// lockFile takes an exclusive lock on path, at once or not at all; the
// kernel releases it when the process dies, so a crash leaves no stale lock.
func lockFile(path string) (*os.File, error) {
	fh, err := flock.Lock(path, 0)
	if errors.Is(err, flock.ErrBusy) {
		err = ErrLocked
	}
	if err != nil {
		return nil, fmt.Errorf("ship: lock %s: %w", path, err)
	}
	return fh, nil
}
