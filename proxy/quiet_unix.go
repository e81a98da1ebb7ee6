//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package proxy

import (
	"io"
	"net"
	"os"
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
	_, e := sysPeek(fd)
	return e == syscall.EAGAIN || e == syscall.EWOULDBLOCK
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
	n, e := sysRead(fd, p)
	if e != 0 {
		return 0, e == syscall.EAGAIN || e == syscall.EWOULDBLOCK, e
	}
	return n, false, nil
}

// peekFD looks at a socket without waiting: more, bytes wait to be read;
// gone, its peer closed it (or it failed).
func peekFD(fd uintptr) (more, gone bool) {
	n, e := sysPeek(fd)
	switch {
	case e == 0 && n > 0:
		return true, false
	case e == syscall.EAGAIN || e == syscall.EWOULDBLOCK || e == syscall.EINTR:
		return false, false
	}
	return false, true
}

// maxRW is the most one read or write asks for (internal/poll's bound).
const maxRW = 1 << 30

// sockRead is conn.Read through its raw connection rc (the socket calls of
// rawio_linux.go), with conn.Read's results: io.EOF at the end, errors as
// *net.OpError (a deadline's is a net.Error whose Timeout is true and
// wraps os.ErrDeadlineExceeded). Without rc, conn.Read.
func sockRead(conn net.Conn, rc syscall.RawConn, p []byte) (int, error) {
	if rc == nil {
		return conn.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	var n int
	var e syscall.Errno
	err := rc.Read(func(fd uintptr) bool {
		for {
			n, e = sysRead(fd, p)
			if e != syscall.EINTR {
				return e != syscall.EAGAIN && e != syscall.EWOULDBLOCK
			}
		}
	})
	switch {
	case err != nil:
		n, err = 0, rawErr(err)
	case e != 0:
		n, err = 0, os.NewSyscallError("read", e)
	case n == 0:
		return 0, io.EOF
	}
	if err != nil {
		return 0, &net.OpError{Op: "read", Net: conn.LocalAddr().Network(), Source: conn.LocalAddr(), Addr: conn.RemoteAddr(), Err: err}
	}
	return n, nil
}

// sockWrite is conn.Write through its raw connection rc: all of p, or an
// error (*net.OpError, as conn.Write's). Without rc, conn.Write.
func sockWrite(conn net.Conn, rc syscall.RawConn, p []byte) (int, error) {
	if rc == nil {
		return conn.Write(p)
	}
	var n int
	var e syscall.Errno
	short := false
	err := rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			q := p[n:]
			if len(q) > maxRW {
				q = q[:maxRW]
			}
			m, errno := sysWrite(fd, q)
			switch {
			case errno == syscall.EINTR:
				continue
			case errno == syscall.EAGAIN || errno == syscall.EWOULDBLOCK:
				return false // wait until it takes more
			case errno != 0:
				e = errno
				return true
			case m == 0:
				short = true // as internal/poll: not a loop without end
				return true
			}
			n += m
		}
		return true
	})
	switch {
	case err != nil:
		err = rawErr(err)
	case e != 0:
		err = os.NewSyscallError("write", e)
	case short:
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return n, &net.OpError{Op: "write", Net: conn.LocalAddr().Network(), Source: conn.LocalAddr(), Addr: conn.RemoteAddr(), Err: err}
	}
	return n, nil
}

// rawErr is what a raw connection's error wraps (net's own "raw-read" or
// "raw-write" *net.OpError around the poller's: a deadline, a closed
// connection), for an *net.OpError as the connection's Read and Write make.
func rawErr(err error) error {
	if oe, ok := err.(*net.OpError); ok {
		return oe.Err
	}
	return err
}

// sockWriter writes to a connection with sockWrite.
type sockWriter struct {
	conn net.Conn
	rc   syscall.RawConn
}

func (w sockWriter) Write(p []byte) (int, error) { return sockWrite(w.conn, w.rc, p) }
