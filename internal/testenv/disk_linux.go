//go:build linux

package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// SmallDisk mounts a tmpfs of the given size (e.g. "6m") on a new
// temporary directory, for disk-full tests that fill a real file system.
// It needs root; without it the test skips, and fails under CI.
func SmallDisk(t testing.TB, size string) string {
	t.Helper()
	Require(t, os.Geteuid() == 0, "mounting a tmpfs to fill a disk needs root on Linux")
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		Require(t, false, "mount tmpfs: "+err.Error())
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a file in dir until about leave bytes are free on its file
// system (0: none at all), and returns the file's path; deleting the file
// frees the space again. Writes start at 64 KiB and halve down to 512 bytes
// as the space runs out, so a full disk is full to the last few blocks.
func Fill(t testing.TB, dir string, leave int64) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if leave > 0 && FreeBytes(dir)-int64(len(chunk)) < leave {
			if len(chunk) > 512 {
				chunk = chunk[:len(chunk)/2]
				continue
			}
			return p
		}
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			if len(chunk) > 512 {
				chunk = chunk[:len(chunk)/2]
				continue
			}
			return p
		}
	}
}

// FreeBytes is the space available on the file system holding dir, or -1.
func FreeBytes(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}
