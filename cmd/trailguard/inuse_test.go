package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/index"
	"github.com/trailguard/trailguard/internal/flock"
	"github.com/trailguard/trailguard/ship"
)

// TestDataDirInUse: serve or proxy started on a data directory another
// process runs on says what to do, not only that a lock is held ("ledger:
// open …: locked by another process: held by another process").
// serve's and proxy's --data default to the same directory, so this is
// what a second command started in the same place meets.
func TestDataDirInUse(t *testing.T) {
	const hint = "another trailguard serve or proxy is running on the data directory"
	for _, tt := range []struct {
		name string
		lock string // the file another process holds
		run  runner
		args []string
	}{
		{"serve", "ledger/lock", runServe, []string{"--listen", "127.0.0.1:0"}},
		{"proxy single node", "ledger/lock", runProxy, []string{"--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9"}},
		{"proxy with a collector", "spool/lock", runProxy, []string{"--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9",
			"--collector", "http://127.0.0.1:9", "--token", "tg_x"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, tt.lock)), 0o700); err != nil {
				t.Fatal(err)
			}
			held, err := flock.Lock(filepath.Join(dir, tt.lock), 0)
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			_, errOut, code := call(tt.run, append([]string{"--data", dir}, tt.args...)...)
			if code != 1 || !strings.Contains(errOut, hint+" "+dir) || !strings.Contains(errOut, "--data DIR") {
				t.Errorf("exit %d, want 1 and what to do:\n%s", code, errOut)
			}
		})
	}
	// Other errors are left as they are.
	for _, err := range []error{fmt.Errorf("x: %w", flock.ErrBusy), fmt.Errorf("y: %w", index.ErrInUse), fmt.Errorf("z: %w", ship.ErrLocked)} {
		if got := inUse(err, "D"); !errors.Is(got, err) || !strings.Contains(got.Error(), hint+" D") {
			t.Errorf("inUse(%v) = %v", err, got)
		}
	}
	if err := errors.New("disk full"); inUse(err, "D") != err {
		t.Errorf("inUse changed an unrelated error")
	}
}
