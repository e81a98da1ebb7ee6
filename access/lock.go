package access

import (
	"fmt"
	"time"

	"github.com/trailguard/trailguard/internal/flock"
)

// lockWait bounds the wait for another process's change to end: a change
// is a read, a change and a rename, done in milliseconds.
var lockWait = 5 * time.Second

// lockStore takes an exclusive lock on path (next to the store). The
// kernel releases it if the process dies; a process stopped while holding
// it makes the change fail after lockWait rather than wait for ever.
func lockStore(path string) (unlock func(), err error) {
	fh, err := flock.Lock(path, lockWait)
	if err != nil {
		return nil, fmt.Errorf("access: lock %s (another token change in progress?): %w", path, err)
	}
	return func() { fh.Close() }, nil
}
