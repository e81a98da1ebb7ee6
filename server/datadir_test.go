package server

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/trailguard/trailguard/internal/testenv"
)

// TestDataDirMode: a data directory made beforehand with the usual umask
// (0755) left the ledger and the index readable by every local user. The
// collector now sets a directory that lets others in (or group members
// write) to 0700 and warns; 0700 and 0750 (a backup group) stay as they
// are; a directory whose mode cannot be changed is refused with what to
// run.
func TestDataDirMode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode, want os.FileMode
	}{
		{0o700, 0o700},
		{0o750, 0o750},
		{0o755, 0o700},
		{0o705, 0o700},
		{0o701, 0o700},
		{0o770, 0o700},
		{0o777, 0o700},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "data")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			// Chmod, not Mkdir's mode: the umask must not decide the case.
			if err := os.Chmod(dir, tc.mode); err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			cfg := Defaults()
			cfg.DataDir = dir
			cfg.Detection.Disabled = true
			s, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatalf("mode %#o: %v", tc.mode, err)
			}
			s.Close()
			fi, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != tc.want {
				t.Errorf("mode %#o: the collector left it %#o, want %#o", tc.mode, got, tc.want)
			}
			warned := strings.Contains(logs.String(), "data directory was open to other users")
			if warned != (tc.mode != tc.want) {
				t.Errorf("mode %#o: warned %v; logs:\n%s", tc.mode, warned, logs.String())
			}
		})
	}
	t.Run("cannot be changed", func(t *testing.T) {
		t.Parallel()
		dir := testenv.SmallDisk(t, "1m")
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			t.Fatalf("remount read-only: %v", err)
		}
		cfg := Defaults()
		cfg.DataDir = dir
		cfg.Detection.Disabled = true
		s, err := New(cfg, slog.New(slog.DiscardHandler))
		if err == nil {
			s.Close()
			t.Fatal("started on a directory open to others that it could not close")
		}
		if !strings.Contains(err.Error(), "has mode 0755") || !strings.Contains(err.Error(), "run chmod 0700 "+dir) {
			t.Errorf("the error does not say what is wrong and what to run: %v", err)
		}
	})
}
