//go:build !linux

package ledger

import (
	"errors"
	"os"
)

func datasync(f *os.File) error { return f.Sync() }

func openDirect(string) (*os.File, error) { return nil, errors.ErrUnsupported }

// oNoFollow: O_EXCL alone refuses a symbolic link at the name here.
const oNoFollow = 0
