// Package flock takes exclusive advisory locks on files, so that two
// processes (a running collector and a rebuild, two token commands) do not
// change the same files at once.
package flock

import "errors"

// ErrBusy is returned by Lock when another holder kept the lock for the
// whole wait.
var ErrBusy = errors.New("held by another process")
