package ledger

import (
	"errors"
	"fmt"

	"github.com/trailguard/trailguard/internal/regfile"
)

// Files of a ledger directory are read as regular files only, and whole
// only up to a bound (regfile says why). What is read is still checked
// against the signed tree: this only keeps the reading itself bounded.

// errNotRegular: a ledger file is a FIFO, device, socket or directory.
var errNotRegular = regfile.ErrNotRegular

// errTooLarge: a ledger file is larger than any the ledger writes.
var errTooLarge = errors.New("larger than any such file the ledger writes")

// readRegular reads a whole regular file of at most max bytes. A larger
// one is errTooLarge, with its first max bytes (what a caller that reads
// a log up to its first bad frame still uses).
func readRegular(path string, max int64) ([]byte, error) {
	b, err := regfile.ReadHead(path, max)
	if big, ok := errors.AsType[*regfile.TooLargeError](err); ok {
		return b, fmt.Errorf("%s: %d bytes, %w (%d)", path, big.Size, errTooLarge, max)
	}
	return b, err
}
