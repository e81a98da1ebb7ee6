//go:build unix

package connlimit

import "syscall"

// fileLimit is the process's open-file limit (its soft RLIMIT_NOFILE,
// which Go raises to the hard one at start).
func fileLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur >= 1<<62 { // (unlimited)
		return 0
	}
	return uint64(r.Cur)
}
