//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sockio

import (
	"errors"
	"net"
	"syscall"
)

// IdleQuiet cannot peek without waiting here: a pool trusts an idle
// connection (the gateway's exchange that meets an unsolicited answer on a
// reused one still fails and is sent again on a new one when it is
// garbled).
func IdleQuiet(net.Conn) bool { return true }

// QuietFD is never called here (RawConn gives no raw connection).
func QuietFD(uintptr) bool { return true }

// RawConn gives no raw connection here: callers write, then read the
// answer, through the connection.
func RawConn(net.Conn) syscall.RawConn { return nil }

// ReadFD and PeekFD are never called here (no raw connections: the
// gateway's lean front end hands every connection to net/http).
func ReadFD(uintptr, []byte) (int, bool, error) { return 0, false, errors.ErrUnsupported }

// PeekFD: see ReadFD.
func PeekFD(uintptr) (more, gone bool) { return false, false }

// Read and Write are conn's Read and Write here (no raw connections).
func Read(conn net.Conn, _ syscall.RawConn, p []byte) (int, error) { return conn.Read(p) }

// Write: see Read.
func Write(conn net.Conn, _ syscall.RawConn, p []byte) (int, error) { return conn.Write(p) }

// Writer writes to a connection.
type Writer struct {
	Conn net.Conn
	RC   syscall.RawConn
}

// Write is the connection's own Write here, so callers are the same on
// every platform.
func (w Writer) Write(p []byte) (int, error) { return w.Conn.Write(p) }

// Listener returns ln as it is here.
func Listener(ln net.Listener) net.Listener { return ln }
