//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package flock

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestLock: a second opener (here in the same process: flock belongs to the
// open file description) waits out its bound and gets ErrBusy; once the
// first closes, it gets the lock.
func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	first, err := Lock(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := Lock(path, 50*time.Millisecond); !errors.Is(err, ErrBusy) {
		t.Fatalf("second lock while held: %v, want ErrBusy", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("second lock gave up after %v, before its wait", d)
	}
	first.Close()
	second, err := Lock(path, 0)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	second.Close()
}
