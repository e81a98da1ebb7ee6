package ship

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/trailguard/trailguard/internal/flock"
)

// ErrLocked is returned by New when another Shipper, in this process or
// another, has the spool directory open: two senders would ship every
// record twice and race over the cursor. Systems without flock cannot
// tell; there it is never returned.
var ErrLocked = errors.New("ship: spool is in use")

// lockWait is how long New waits for a lock just released: a child that
// another goroutine of this process is forking shares the descriptor (and
// so the lock) until its exec closes it. Short, so that a spool really in
// use is reported at once for practical purposes.
const lockWait = 250 * time.Millisecond

// lockFile takes an exclusive lock on path, waiting at most lockWait; the
// kernel releases it when the process dies, so a crash leaves no stale lock.
func lockFile(path string) (*os.File, error) {
	fh, err := flock.Lock(path, lockWait)
	if errors.Is(err, flock.ErrBusy) {
		err = ErrLocked
	}
	if err != nil {
		return nil, fmt.Errorf("ship: lock %s: %w", path, err)
	}
	return fh, nil
}
