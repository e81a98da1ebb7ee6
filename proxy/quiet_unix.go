//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package proxy

import (
	"net"
	"syscall"
)

// idleQuiet reports whether nothing came on an idle connection since its last
// answer: no bytes and no end. It peeks without waiting (one system call),
// so that the pool never hands out a connection with an unsolicited answer
// on it, nor one the upstream has closed.
func idleQuiet(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	ok = false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // no wait for readiness: the answer is now
	})
	return ok && err == nil
}
