//go:build !linux

package main

import "io"

// isTerminal is false where the terminal check is not built: binary output
// goes where it is sent.
func isTerminal(io.Writer) bool { return false }
