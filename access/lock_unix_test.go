//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package access

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/stalltest"
)

// TestHeldLockDoesNotHangChecks: a token command stopped while it holds
// the store's lock (Ctrl-Z) must not hang the collector: its own change
// fails after lockWait, and token checks go on meanwhile.
func TestHeldLockDoesNotHangChecks(t *testing.T) {
	old := lockWait
	lockWait = 300 * time.Millisecond
	defer func() { lockWait = old }()
	path := filepath.Join(t.TempDir(), "tokens.json")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := s.Create("reader", RoleRead)
	if err != nil {
		t.Fatal(err)
	}
	fh, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	watch := stalltest.Start(t)
	start := time.Now()
	go func() { _, _, err := s.Create("other", RoleRead); done <- err }()
	s.statEvery = 0 // every check looks at the file
	for time.Since(start) < 200*time.Millisecond {
		if _, err := s.Check(secret); err != nil {
			t.Fatalf("check while another process holds the lock: %v", err)
		}
	}
	// Within 5 s (lockWait is 300 ms), or as late as a stall of this
	// process made it (a loaded machine stops it for seconds): Await waits
	// again when it stalled.
	err, took, stalled, ok := stalltest.Await(done, watch, 5*time.Second)
	if !ok {
		t.Fatalf("Create still waiting for the lock %v after the checks (stalled %v)", took, stalled)
	}
	if err == nil {
		t.Fatal("Create went on while another process held the lock")
	}
}
