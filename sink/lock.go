package sink

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/trailguard/trailguard/internal/flock"
)

// lockWait is how long OpenFile waits for a lock just released: a child that
// another goroutine of this process is forking shares the descriptor (and
// so the lock) until its exec closes it. Short, so that a trail really in
// use is reported at once for practical purposes.
const lockWait = 250 * time.Millisecond

// lockFile takes an exclusive lock on path, waiting at most lockWait (a second
// sink on the same trail, in this process or another, gets ErrLocked).
func lockFile(path string) (*os.File, error) {
	fh, err := flock.Lock(path, lockWait)
	if errors.Is(err, flock.ErrBusy) {
		err = ErrLocked
	}
	if err != nil {
		return nil, fmt.Errorf("sink: lock %s: %w", path, err)
	}
	return fh, nil
}
