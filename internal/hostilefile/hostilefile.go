//go:build unix

// Package hostilefile plants, for tests, what someone who can write a
// data directory puts at a name a program reads whole: a FIFO (an open
// waits for a writer for ever), a link to /dev/zero (a read never ends)
// and a sparse file of a tebibyte (a read takes all the memory there is).
// It is for tests; regfile is what the programs use against them.
package hostilefile

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/regfile"
)

// Plants are the hostile files by name, each made at path p.
var Plants = map[string]func(p string) error{
	"a FIFO":              func(p string) error { return syscall.Mkfifo(p, 0o600) },
	"a link to /dev/zero": func(p string) error { return os.Symlink("/dev/zero", p) },
	"a sparse TiB": func(p string) error {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			return err
		}
		return os.Truncate(p, 1<<40)
	},
}

// Refused plants each of Plants at path (removing what was there) and
// fails t unless read(path) returns within 10 s an error that regfile
// refused it: not a regular file, or too large.
func Refused(t testing.TB, path string, read func(path string) error) {
	t.Helper()
	for name, plant := range Plants {
		os.Remove(path)
		if err := plant(path); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- read(path) }()
		select {
		case err := <-done:
			if !errors.Is(err, regfile.ErrNotRegular) && !errors.Is(err, regfile.ErrTooLarge) {
				t.Errorf("%s: %v, want it refused as not a regular file or too large", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the read did not return in 10 s", name)
		}
	}
	os.Remove(path)
}
