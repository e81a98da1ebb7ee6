//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package flock

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
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

// TestLockReleasedWhileForking: a lock closed while the process starts
// other programs is taken again within Lock's wait. A child being started
// holds copies of the process's descriptors until its exec closes them
// (close-on-exec) and flock belongs to the open file description, so the
// lock outlives its Close for that moment: Linux wakes the parent (vfork)
// before the new program's close-on-exec, so not even syscall.ForkLock
// covers it. Without a wait, hundreds of 2,000 attempts failed here; the
// ledger's lock had none ("locked by another process" in
// TestZeroTailAtOpen, while parallel tests started crash children).
func TestLockReleasedWhileForking(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	testenv.KeepForking(t)
	for i := range 2000 {
		f, err := Lock(path, time.Second)
		if err != nil {
			t.Fatalf("lock %d: %v", i, err)
		}
		f.Close()
	}
}
