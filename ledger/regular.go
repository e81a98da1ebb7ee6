package ledger

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// Files of a ledger directory are read as regular files only, and whole
// only up to a bound. Whoever can write the directory (or hands an auditor
// a copy) could otherwise plant a FIFO, on whose open or read verify would
// wait for ever, or a link to /dev/zero or a sparse file of terabytes,
// which a whole-file read would take into memory until the process dies.
// What is read is still checked against the signed tree: this only keeps
// the reading itself bounded.

// errNotRegular: a ledger file is a FIFO, device, socket or directory.
var errNotRegular = errors.New("not a regular file")

// errTooLarge: a ledger file is larger than any the ledger writes.
var errTooLarge = errors.New("larger than any such file the ledger writes")

// openRegular opens path for reading, following links, and refuses
// anything but a regular file. O_NONBLOCK makes the open of a FIFO return
// at once (it has no effect on a regular file's reads).
func openRegular(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w: %s", path, errNotRegular, fileKind(st.Mode()))
	}
	return f, st, nil
}

// fileKind names what a file that is not regular is.
func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeDevice != 0:
		return "a device"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	}
	return "mode " + m.String()
}

// readRegular reads a whole regular file of at most max bytes. A larger
// one is errTooLarge, with its first max bytes (what a caller that reads
// a log up to its first bad frame still uses).
func readRegular(path string, max int64) ([]byte, error) {
	f, st, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n := min(st.Size(), max)
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if st.Size() > max {
		return b, fmt.Errorf("%s: %d bytes, %w (%d)", path, st.Size(), errTooLarge, max)
	}
	return b, nil
}
