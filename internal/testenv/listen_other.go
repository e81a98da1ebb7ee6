//go:build !linux

package testenv

import (
	"net"
	"time"
)

// exitWatch never reports an exit: without /proc, a child that exited
// and one that runs look alike until waited for, which StartServer leaves
// to its caller. A program that fails shows it in its output, or by not
// listening within ListenWait.
func exitWatch(int) func() bool { return func() bool { return false } }

// listening is whether anyone accepts connections on addr: without /proc
// the listener's owner is unknown, and a port taken meanwhile shows only
// in the program's output.
func listening(_ int, _ bool, addr string) listenState {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return listenNone
	}
	c.Close()
	return listenOurs
}
