//go:build linux

package ledger

import (
	"errors"
	"io"
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

// seekData is lseek(2)'s SEEK_DATA (linux/fs.h).
const seekData = 3

// skipHole moves f's offset past the hole it is in, if it is in one, and
// reports whether any data is left after it: holes read as zeros, so a
// reader that only needs to know that the rest of a file is zeros need not
// read them (a sparse file can claim a tebibyte at the cost of an inode).
// Where the file system cannot tell, it reports data left.
func skipHole(f *os.File) bool {
	cur, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return true
	}
	_, err = f.Seek(cur, seekData)
	if errors.Is(err, syscall.ENXIO) {
		return false // only holes from cur to the end
	}
	if err != nil {
		f.Seek(cur, io.SeekStart) // (where it was: SEEK_DATA unsupported)
	}
	return true
}
