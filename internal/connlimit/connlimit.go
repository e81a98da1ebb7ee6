// Package connlimit bounds how many client connections a server holds
// open at once. Anyone who can reach a listener can open connections
// without a token, and each one holds a file descriptor and memory until
// a timeout ends it: without a bound, a client opening idle connections
// took every descriptor the process had, and the ledger, unable to open
// its next segment or checkpoint log, failed until restarted (the audit
// trail stopped by anyone who can connect). A Limiter keeps the count
// under a cap that leaves room for the process's own files; past it,
// Accept waits for a connection to close (the kernel's listen queue holds
// the newcomers, as net/http's would while it is busy).
package connlimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Limiter counts the connections of one or more listeners against one cap.
type Limiter struct {
	slots    chan struct{}
	log      *slog.Logger
	what     string
	lastWarn atomic.Int64 // Unix ns of the last "limit reached" warning
	waits    atomic.Uint64
	waiting  atomic.Int64 // Dials waiting for a slot now
}

// New returns a Limiter of n connections (at least 1). log (nil: none)
// receives a warning, at most once a minute, while connections wait;
// what names them in it (e.g. "client connections").
func New(n int, log *slog.Logger, what string) *Limiter {
	return &Limiter{slots: make(chan struct{}, max(n, 1)), log: log, what: what}
}

// Max is the cap.
func (l *Limiter) Max() int { return cap(l.slots) }

// Open is the number of connections open now.
func (l *Limiter) Open() int { return len(l.slots) }

// Waits counts the accepts and dials that waited for a connection to
// close.
func (l *Limiter) Waits() uint64 { return l.waits.Load() }

// Crowded reports whether a Dial waits for a slot now: a connection that
// would be kept idle for reuse is better closed.
func (l *Limiter) Crowded() bool { return l.waiting.Load() > 0 }

// Listener returns ln with its connections counted: Accept waits while
// the cap is reached, and a connection's slot is freed by its Close.
func (l *Limiter) Listener(ln net.Listener) net.Listener {
	return &listener{Listener: ln, l: l, done: make(chan struct{})}
}

type listener struct {
	net.Listener
	l     *Limiter
	done  chan struct{}
	close sync.Once
}

func (ln *listener) Accept() (net.Conn, error) {
	l := ln.l
	select {
	case l.slots <- struct{}{}:
	default:
		l.waits.Add(1)
		l.warn()
		select {
		case l.slots <- struct{}{}:
		case <-ln.done:
			return nil, net.ErrClosed
		}
	}
	c, err := ln.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &conn{Conn: c, l: l}, nil
}

func (ln *listener) Close() error {
	ln.close.Do(func() { close(ln.done) })
	return ln.Listener.Close()
}

func (l *Limiter) warn() {
	if l.log == nil {
		return
	}
	now := time.Now().UnixNano()
	last := l.lastWarn.Load()
	if now-last < int64(time.Minute) || !l.lastWarn.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn("connection limit reached: new "+l.what+" wait until one closes (many idle clients, or raise max_connections and the open-file limit)",
		"max", l.Max())
}

// ErrFull is Dial's error when no slot freed within its wait.
var ErrFull = errors.New("connection limit reached")

// Dial makes a connection with dial, counted against the cap: while the
// cap is reached it waits for a connection to close, as long as ctx lasts
// and at most wait, calling full once first (to close idle connections
// kept for reuse, say); then it fails with ErrFull, as it does at once
// when as many dials wait as the cap. The connection frees its slot at
// its first Close.
func (l *Limiter) Dial(ctx context.Context, wait time.Duration, full func(), dial func(context.Context, string, string) (net.Conn, error), network, addr string) (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		l.waits.Add(1)
		if l.waiting.Add(1) > int64(l.Max()) {
			// As many wait as there are slots: fail at once, so that
			// what waits (an HTTP/2 stream each, 250 a client
			// connection) stays bounded too.
			l.waiting.Add(-1)
			l.warn()
			return nil, fmt.Errorf("%s %s: %w: %d %s open, as many waiting", network, addr, ErrFull, l.Max(), l.what)
		}
		defer l.waiting.Add(-1)
		l.warn()
		if full != nil {
			full()
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case l.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			return nil, fmt.Errorf("%s %s: %w: %d %s open", network, addr, ErrFull, l.Max(), l.what)
		}
	}
	c, err := dial(ctx, network, addr)
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &conn{Conn: c, l: l}, nil
}

// conn frees its slot once, at its first Close. It passes on what
// servers look for in a *net.TCPConn: the raw socket (the gateway's
// lean front end reads it directly), half-closes, and the copy
// shortcuts (sendfile, splice).
type conn struct {
	net.Conn
	l    *Limiter
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.l.slots })
	return err
}

func (c *conn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, syscall.EINVAL
}

func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *conn) CloseRead() error {
	if cr, ok := c.Conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return nil
}

func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *conn) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := c.Conn.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, struct{ io.Reader }{c.Conn})
}

// Fit returns want lowered, if need be, so that want connections of
// perConn file descriptors each (a gateway's client connection may hold
// one to its upstream too) fit within the process's open-file limit
// while an eighth of it, and at least 64, stays for the process's own
// files (ledger segments, index, spool, outputs). limit is the open-file
// limit (0 where it is not known: want is returned).
func Fit(want, perConn int) (n int, limit uint64) {
	limit = fileLimit()
	if limit == 0 || perConn < 1 {
		return want, limit
	}
	keep := max(limit/8, 64)
	if limit <= keep {
		return 1, limit
	}
	return int(min(uint64(want), max((limit-keep)/uint64(perConn), 1))), limit
}
