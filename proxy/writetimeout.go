package proxy

import (
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/trailguard/trailguard/internal/sockio"
)

// The write timeout (timeouts.write, nginx's send_timeout): a write to a
// client that makes no progress for that long fails, which ends the
// connection, its request's upstream exchange and its handler — a client
// that never reads its answer would otherwise hold a goroutine, buffers
// and an upstream connection without limit. It is not a bound on the
// whole answer: long downloads, SSE and WebSocket streams to a reader that
// keeps reading go on.
//
// Every connection of the gateway's listener is a wtConn: before a write
// it makes sure the connection's write deadline is at least the timeout
// away (halfRenewal: a clock read per write, a deadline change, a runtime
// timer and no system call, every timeout/2). A write that starts at t
// thus fails between t+timeout and t+1.5×timeout if it makes no progress
// by then; a single write is at most the copy buffer (32 KiB) or the
// front end's 4 KiB buffer, so a reader that takes more than the timeout
// to read that much is cut too.

// wtConn is a client connection with the write timeout.
type wtConn struct {
	net.Conn
	wt halfRenewal
	// ext is a write deadline someone else set (UnixNano; 0: none): a
	// cut (aLongTimeAgo), a TLS handshake's. It wins over ours until
	// cleared.
	ext atomic.Int64
	rc  syscall.RawConn // Conn's, if it has one (sockio.Write)
}

func newWTConn(c net.Conn, d time.Duration) net.Conn {
	if d <= 0 {
		return c
	}
	wc := &wtConn{Conn: c, rc: sockio.RawConn(c)}
	wc.wt.d = d
	return wc
}

func (c *wtConn) Write(p []byte) (int, error) {
	if c.ext.Load() != 0 {
		return sockio.Write(c.Conn, c.rc, p)
	}
	if dl, ok := c.wt.due(time.Now()); ok {
		c.Conn.SetWriteDeadline(dl)
		if e := c.ext.Load(); e != 0 {
			// Set meanwhile (a cut): it stays.
			c.Conn.SetWriteDeadline(time.Unix(0, e))
		}
	}
	return sockio.Write(c.Conn, c.rc, p)
}

// SetWriteDeadline: a deadline set by the server (a cut, a handshake)
// is kept as given; clearing it (net/http clears the write deadline after
// every request, and at a hijack) brings the write timeout back, from the
// next write, without a deadline change now.
func (c *wtConn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() {
		if c.ext.Swap(0) != 0 {
			c.wt.reset()
		}
		return nil
	}
	c.ext.Store(t.UnixNano())
	return c.Conn.SetWriteDeadline(t)
}

func (c *wtConn) SetDeadline(t time.Time) error {
	err := c.Conn.SetReadDeadline(t)
	if e2 := c.SetWriteDeadline(t); err == nil {
		err = e2
	}
	return err
}

// CloseWrite lets net/http half-close the connection (after a 431), as
// it does with a *net.TCPConn.
func (c *wtConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// wtListener gives net/http its connections as wtConns.
type wtListener struct {
	net.Listener
	d time.Duration
}

func (l wtListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newWTConn(c, l.d), nil
}

// withWriteTimeout wraps ln so that its connections have the write
// timeout d (none if d ≤ 0).
func withWriteTimeout(ln net.Listener, d time.Duration) net.Listener {
	if d <= 0 {
		return ln
	}
	return wtListener{ln, d}
}

// netHTTPServer is the plain listener served by net/http
// (http1: net/http), with the write timeout on its connections.
type netHTTPServer struct {
	*http.Server
	writeTimeout time.Duration
}

func (s netHTTPServer) Serve(ln net.Listener) error {
	return s.Server.Serve(withWriteTimeout(ln, s.writeTimeout))
}
