package sink

import (
	"errors"
	"fmt"
	"os"

	"github.com/trailguard/trailguard/internal/flock"
)

// lockFile takes an exclusive lock on path, at once or not at all (a second
// sink on the same trail, in this process or another, gets ErrLocked).
func lockFile(path string) (*os.File, error) {
	fh, err := flock.Lock(path, 0)
	if errors.Is(err, flock.ErrBusy) {
		err = ErrLocked
	}
	if err != nil {
		return nil, fmt.Errorf("sink: lock %s: %w", path, err)
	}
	return fh, nil
}
