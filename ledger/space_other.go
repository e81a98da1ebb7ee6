//go:build !linux

package ledger

import (
	"errors"
	"syscall"
)

// FreeBytes cannot tell the free space on this platform: -1. The reserve
// is then kept by the disk-full handling of writes alone.
func FreeBytes(string) int64 { return -1 }

func isNoSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) }
