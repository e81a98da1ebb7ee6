//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sockio

import (
	"io"
	"net"
	"os"
	"syscall"
)

// IdleQuiet reports whether nothing came on an idle connection since its
// last answer: no bytes and no end. It peeks without waiting (one system
// call), so that a pool never hands out a connection with an unsolicited
// answer on it, nor one its peer has closed. A connection without a raw
// connection is taken as quiet.
func IdleQuiet(conn net.Conn) bool {
	rc := RawConn(conn)
	if rc == nil {
		return true
	}
	ok := false
	err := rc.Read(func(fd uintptr) bool {
		ok = QuietFD(fd)
		return true // no wait for readiness: the answer is now
	})
	return ok && err == nil
}

// QuietFD is IdleQuiet on a socket: a peek that does not wait.
func QuietFD(fd uintptr) bool {
	_, e := sysPeek(fd)
	return e == syscall.EAGAIN || e == syscall.EWOULDBLOCK
}

// RawConn returns conn's raw connection, or nil.
func RawConn(conn net.Conn) syscall.RawConn {
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

// ReadFD reads from a socket without waiting; again: nothing there yet.
func ReadFD(fd uintptr, p []byte) (n int, again bool, err error) {
	n, e := sysRead(fd, p)
	if e != 0 {
		return 0, e == syscall.EAGAIN || e == syscall.EWOULDBLOCK, e
	}
	return n, false, nil
}

// PeekFD looks at a socket without waiting: more, bytes wait to be read;
// gone, its peer closed it (or it failed).
func PeekFD(fd uintptr) (more, gone bool) {
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

// Read is conn.Read through its raw connection rc (the socket calls of
// rawio_linux.go), with conn.Read's results: io.EOF at the end, errors as
// *net.OpError (a deadline's is a net.Error whose Timeout is true and
// wraps os.ErrDeadlineExceeded). Without rc, conn.Read.
func Read(conn net.Conn, rc syscall.RawConn, p []byte) (int, error) {
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

// Write is conn.Write through its raw connection rc: all of p, or an
// error (*net.OpError, as conn.Write's). Without rc, conn.Write.
func Write(conn net.Conn, rc syscall.RawConn, p []byte) (int, error) {
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

// Writer writes to Conn with Write (RC is Conn's raw connection, or nil).
type Writer struct {
	Conn net.Conn
	RC   syscall.RawConn
}

// Write is this package's Write, so a bufio.Writer or io.Copy over w
// gets its one-syscall writes without knowing of the raw connection.
func (w Writer) Write(p []byte) (int, error) { return Write(w.Conn, w.RC, p) }

// Conn is a TCP connection whose Read and Write are this package's: the
// rest (deadlines, Close, half-closes, the sendfile and splice shortcuts
// of ReadFrom and WriteTo, SyscallConn) is the *net.TCPConn's.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
}

// Read is this package's Read, in place of the *net.TCPConn's, for code
// that takes a net.Conn (net/http, crypto/tls).
func (c *Conn) Read(p []byte) (int, error) { return Read(c.TCPConn, c.rc, p) }

// Write is this package's Write: see Read.
func (c *Conn) Write(p []byte) (int, error) { return Write(c.TCPConn, c.rc, p) }

// NetConn returns the TCP connection under c (as *tls.Conn's NetConn).
func (c *Conn) NetConn() net.Conn { return c.TCPConn }

// Listener returns ln with each TCP connection it accepts made a *Conn
// (an HTTP server's reads of requests and writes of answers then do not
// wake the runtime's monitor); other connections pass as they are.
func Listener(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (ln listener) Accept() (net.Conn, error) {
	c, err := ln.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && err == nil {
		if rc, rerr := tc.SyscallConn(); rerr == nil {
			return &Conn{TCPConn: tc, rc: rc}, nil
		}
	}
	return c, err
}
