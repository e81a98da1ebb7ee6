//go:build linux

package ledger

import (
	"errors"
	"os"
	"syscall"
)

// fallocate(2) modes (linux/falloc.h).
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
)

// punchHole frees the blocks of f's byte range [off, off+n) without
// changing its size: reads of the range return zeros. A file system that
// cannot punch holes keeps the bytes (errPunchUnsupported).
func punchHole(f *os.File, off, n int64) error {
	err := syscall.Fallocate(int(f.Fd()), fallocPunchHole|fallocKeepSize, off, n)
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
		return errPunchUnsupported
	}
	return err
}
