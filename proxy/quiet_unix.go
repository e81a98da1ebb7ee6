//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package proxy

import (
	"net"
	"syscall"
)

// idleQuiet reports whether nothing came on an idle connection since its last
// answer: no bytes and no end. It peeks without waiting (one system call),
// so that the pool never hands out a connection with an unsolicited answer
// on it, nor one the upstream has closed. (For connections without a raw
// connection; the others are looked at by h1Conn.send.)
func idleQuiet(conn net.Conn) bool {
	rc := rawConnOf(conn)
	if rc == nil {
		return true
	}
	ok := false
	err := rc.Read(func(fd uintptr) bool {
		ok = quietFD(fd)
		return true // no wait for readiness: the answer is now
	})
	return ok && err == nil
}

// quietFD is idleQuiet on a socket: a peek that does not wait.
func quietFD(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
}

// rawConnOf returns conn's raw connection, or nil.
func rawConnOf(conn net.Conn) syscall.RawConn {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// readFD reads from a socket without waiting; again: nothing there yet.
func readFD(fd uintptr, p []byte) (n int, again bool, err error) {
	n, err = syscall.Read(int(fd), p)
	if n < 0 {
		n = 0
	}
	return n, err == syscall.EAGAIN || err == syscall.EWOULDBLOCK, err
}

// peekFD looks at a socket without waiting: more, bytes wait to be read;
// gone, its peer closed it (or it failed).
func peekFD(fd uintptr) (more, gone bool) {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case n > 0:
		return true, false
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR:
		return false, false
	}
	return false, true
}
