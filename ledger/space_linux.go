//go:build linux

package ledger

import (
	"errors"
	"syscall"
)

// FreeBytes returns the space available to unprivileged writers on the
// file system holding dir (statfs f_bavail), or -1 if it cannot tell. The
// collector uses it to keep its disk reserve, the ledger to refuse a
// compressed copy that would eat into it.
func FreeBytes(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// isNoSpace reports whether err means the file system is full or the
// writer's quota is exhausted: the write did not happen and can be undone.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
