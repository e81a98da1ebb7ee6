// Package regfile opens and reads files that someone else may have put in
// place: ledger files, report cache files, saved settings. Whoever can
// write such a directory (or hands an auditor a copy of it) could plant a
// FIFO, on whose open or read the reader would wait for ever, or a link to
// /dev/zero or a sparse file of terabytes, which a whole-file read would
// take into memory until the process dies. Open accepts regular files
// only; Read reads one whole only up to a bound, and ReadHead reads at
// most the bound's first bytes of one, each allocating no more than the
// file's size or the bound, whichever is smaller.
//
// Links are followed: it is what a link points to that must be a regular
// file. What is read still has to be checked by its caller (against a
// signed tree, a signature, a version): this only keeps the reading itself
// bounded.
package regfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// ErrNotRegular is wrapped by the error Open, Read and ReadHead return for
// a FIFO, device, socket or directory.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is what a *TooLargeError is (errors.Is).
var ErrTooLarge = errors.New("larger than the bound")

// TooLargeError is the error Read and ReadHead return for a regular file
// larger than its bound. Callers word it in their own terms (what kind of
// file it is, why the bound is what it is) from Size and Max.
type TooLargeError struct {
	Path      string
	Size, Max int64
}

// Error names the file, its size and the bound.
func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: %d bytes, %s (%d)", e.Path, e.Size, ErrTooLarge, e.Max)
}

// Is reports whether target is ErrTooLarge.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// Open opens path for reading, following links, and refuses anything but
// a regular file with an error that wraps ErrNotRegular and names what the
// file is. O_NONBLOCK makes the open of a FIFO return at once (it has no
// effect on a regular file's reads). The FileInfo is the open file's.
func Open(path string) (*os.File, os.FileInfo, error) {
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
		return nil, nil, fmt.Errorf("%s: %w: %s", path, ErrNotRegular, kind(st.Mode()))
	}
	return f, st, nil
}

// kind names what a file that is not regular is.
func kind(m os.FileMode) string {
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

// Read reads a whole regular file (Open) of at most max bytes: as many as
// its size when opened, so a file that grows meanwhile is read as it was
// then, and one that shrinks is an error. A larger file is not read: it
// is a *TooLargeError, and costs no allocation.
func Read(path string, max int64) ([]byte, error) {
	return read(path, max, false)
}

// ReadHead is Read, except that a file larger than max gives its first
// max bytes with the *TooLargeError: what a caller that reads a log up to
// its first bad frame still uses.
func ReadHead(path string, max int64) ([]byte, error) {
	return read(path, max, true)
}

func read(path string, max int64, head bool) ([]byte, error) {
	f, st, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var big error
	if st.Size() > max {
		big = &TooLargeError{Path: path, Size: st.Size(), Max: max}
		if !head {
			return nil, big
		}
	}
	b := make([]byte, min(st.Size(), max))
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, big
}
