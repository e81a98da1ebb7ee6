//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package proxy

import (
	"errors"
	"net"
	"syscall"
)

// idleQuiet cannot peek without waiting here: the pool trusts an idle
// connection (an exchange that meets an unsolicited answer on a reused
// one still fails and is sent again on a new one when it is garbled).
func idleQuiet(net.Conn) bool { return true }

// quietFD is never called here (rawConnOf gives no raw connection).
func quietFD(uintptr) bool { return true }

// rawConnOf gives no raw connection here: h1Conn.send writes, then the
// answer is read.
func rawConnOf(net.Conn) syscall.RawConn { return nil }

// readFD and peekFD are never called here (no raw connections: the lean
// front end hands every connection to net/http).
func readFD(uintptr, []byte) (int, bool, error) { return 0, false, errors.ErrUnsupported }

func peekFD(uintptr) (more, gone bool) { return false, false }

// sockRead and sockWrite are conn's Read and Write here (no raw
// connections).
func sockRead(conn net.Conn, _ syscall.RawConn, p []byte) (int, error) { return conn.Read(p) }

func sockWrite(conn net.Conn, _ syscall.RawConn, p []byte) (int, error) { return conn.Write(p) }

// sockWriter writes to a connection.
type sockWriter struct {
	conn net.Conn
	rc   syscall.RawConn
}

func (w sockWriter) Write(p []byte) (int, error) { return w.conn.Write(p) }
