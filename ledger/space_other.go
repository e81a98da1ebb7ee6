//go:build !linux

package ledger

import (
	"errors"
	"syscall"
)

func freeBytes(string) int64 { return -1 }

func isNoSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) }
