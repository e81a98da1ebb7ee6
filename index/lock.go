package index

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/trailguard/trailguard/internal/flock"
)

// lockWait is how long a lock held elsewhere is waited for.
const lockWait = 500 * time.Millisecond

// lockFile takes an exclusive lock on path (ErrInUse while another Index,
// in this process or another, holds it).
func lockFile(path string) (*os.File, error) {
	fh, err := flock.Lock(path, lockWait)
	if errors.Is(err, flock.ErrBusy) {
		err = ErrInUse
	}
	if err != nil {
		return nil, fmt.Errorf("index: lock %s: %w", path, err)
	}
	return fh, nil
}
