//go:build linux

package ledger

import (
	"os"
	"syscall"
)

// datasync flushes a file's data (and the metadata needed to read it back,
// such as its size) to stable storage: fdatasync(2).
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// openDirect opens a segment for direct writes (O_DIRECT: they complete
// once the device has the data, in its cache; flushDirect makes them
// durable).
func openDirect(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT|syscall.O_NOFOLLOW, 0)
}

// oNoFollow makes an open fail on a symbolic link at the name itself.
const oNoFollow = syscall.O_NOFOLLOW
