//go:build !linux

package testenv

import (
	"net"
	"time"
)

// listening is whether anyone accepts connections on addr: without /proc
// the listener's owner is unknown, and a port taken meanwhile shows only
// in the program's output.
func listening(_ int, addr string) listenState {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return listenNone
	}
	c.Close()
	return listenOurs
}
