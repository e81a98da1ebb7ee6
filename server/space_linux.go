//go:build linux

package server

import "syscall"

// freeBytes returns the space available to the collector on the file
// system holding dir (statfs f_bavail), or -1 if it cannot tell.
func freeBytes(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}
