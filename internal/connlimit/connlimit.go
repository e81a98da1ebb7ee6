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
//
// One client address must not take every slot either: it held them all
// with idle connections (no token needed) and every other client waited
// in the listen queue until the attacker let go. PerAddress caps what one
// address (an IPv6 /64: one host's usual allocation) holds; connections
// beyond are closed at once. On a server that authenticates, connections
// on which no request has yet presented a valid token (Vouch) are held to
// a lower cap than those on which one has.
package connlimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/trailguard/trailguard/internal/throttle"
)

// warnEvery is how often a Limiter warns while connections wait, or are
// refused: a flood of connections must not become a flood of lines.
const warnEvery = time.Minute

// Limiter counts the connections of one or more listeners against one cap.
type Limiter struct {
	slots   chan struct{}
	log     *slog.Logger
	what    string
	waitLog throttle.Gate // the "limit reached" warnings
	waits   atomic.Uint64
	waiting atomic.Int64 // Dials waiting for a slot now

	// Per address (PerAddress); perAddr 0: no cap.
	perAddr, unvouched int
	exempt             []netip.Prefix
	mu                 sync.Mutex
	addrs              map[netip.Addr]*held // only addresses with connections open
	refused            atomic.Uint64
	refusalLog         throttle.Gate // the refusal warnings
}

// held is what one address holds open.
type held struct{ total, unvouched int }

// New returns a Limiter of n connections (at least 1). log (nil: none)
// receives a warning, at most once a minute, while connections wait;
// what names them in it (e.g. "client connections").
func New(n int, log *slog.Logger, what string) *Limiter {
	return &Limiter{slots: make(chan struct{}, max(n, 1)), log: log, what: what,
		waitLog: throttle.Gate{Every: warnEvery}, refusalLog: throttle.Gate{Every: warnEvery}}
}

// Max is the cap.
func (l *Limiter) Max() int { return cap(l.slots) }

// PerAddress caps the connections one client address holds open at n,
// of which at most unvouched before a request on them was vouched for
// (Vouch: it presented a valid token); 0 or less: no cap. Both are
// lowered to half of Max, so that one address never holds the rest from
// everyone else. IPv6 addresses count by their /64. Peers in exempt (a
// load balancer or reverse proxy in front, whose connections carry many
// clients) are not capped. Call it before the Limiter's listeners accept.
func (l *Limiter) PerAddress(n, unvouched int, exempt []netip.Prefix) *Limiter {
	if n <= 0 {
		l.perAddr = 0
		return l
	}
	half := max(l.Max()/2, 1)
	l.perAddr = min(n, half)
	l.unvouched = min(max(unvouched, 1), l.perAddr)
	l.exempt = exempt
	l.addrs = make(map[netip.Addr]*held)
	return l
}

// PerAddressCaps are the caps PerAddress set (0, 0: none).
func (l *Limiter) PerAddressCaps() (total, unvouched int) { return l.perAddr, l.unvouched }

// Refused counts the connections closed at once because their address
// held its cap.
func (l *Limiter) Refused() uint64 { return l.refused.Load() }

// addrKey is the address a connection counts against: IPv4 (also when
// mapped into IPv6) as it is, IPv6 by its /64.
func addrKey(a net.Addr) (netip.Addr, bool) {
	var ap netip.AddrPort
	switch t := a.(type) {
	case *net.TCPAddr:
		ap = t.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.Addr{}, false
		}
	}
	ip := ap.Addr().Unmap().WithZone("")
	if !ip.IsValid() {
		return netip.Addr{}, false
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		ip = p.Addr()
	}
	return ip, true
}

// admit counts a new connection from key, or reports that key holds its
// cap.
func (l *Limiter) admit(key netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.addrs[key]
	if h == nil {
		h = &held{}
		l.addrs[key] = h
	}
	if h.total >= l.perAddr || h.unvouched >= l.unvouched {
		return false
	}
	h.total++
	h.unvouched++
	return true
}

func (l *Limiter) warnRefused(key netip.Addr) {
	l.refused.Add(1)
	if l.log == nil {
		return
	}
	if _, ok := l.refusalLog.Note(time.Now(), 1); !ok {
		return
	}
	var h held
	l.mu.Lock()
	if p := l.addrs[key]; p != nil {
		h = *p
	}
	l.mu.Unlock()
	l.log.Warn("connection from an address at its cap closed at once (max_connections_per_address; raise it, or exempt a proxy in front)",
		"what", l.what, "address", key.String(), "open", h.total, "without_token", h.unvouched,
		"max_per_address", l.perAddr, "max_without_token", l.unvouched, "refused_total", l.refused.Load())
}

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
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		cc := &conn{Conn: c, l: l}
		if l.perAddr > 0 {
			key, ok := addrKey(c.RemoteAddr())
			if ok && !l.isExempt(key) {
				if !l.admit(key) {
					// Closed at once, its slot kept for the next: waiting
					// would hold everyone behind this address.
					l.warnRefused(key)
					c.Close()
					continue
				}
				cc.key, cc.counted = key, true
			}
		}
		return cc, nil
	}
}

func (l *Limiter) isExempt(a netip.Addr) bool {
	for _, p := range l.exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (ln *listener) Close() error {
	ln.close.Do(func() { close(ln.done) })
	return ln.Listener.Close()
}

func (l *Limiter) warn() {
	if l.log == nil {
		return
	}
	if _, ok := l.waitLog.Note(time.Now(), 1); !ok {
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
	// Per address, under l.mu.
	key              netip.Addr
	counted, vouched bool
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.counted {
			l := c.l
			l.mu.Lock()
			h := l.addrs[c.key]
			h.total--
			if !c.vouched {
				h.unvouched--
			}
			if h.total == 0 {
				delete(l.addrs, c.key)
			}
			c.counted = false
			l.mu.Unlock()
		}
		<-c.l.slots
	})
	return err
}

func (c *conn) vouch() {
	l := c.l
	l.mu.Lock()
	if c.counted && !c.vouched {
		c.vouched = true
		l.addrs[c.key].unvouched--
	}
	l.mu.Unlock()
}

type connKey struct{}

// ConnContext is an http.Server's ConnContext that lets Vouch find the
// connection of a request.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// Vouch marks the connection of the request whose context is ctx (its
// server's ConnContext is ConnContext) as used by a client that presented
// a valid token: it counts against its address's cap of connections, no
// longer the lower cap of those without one. Anything else: nothing.
func Vouch(ctx context.Context) {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	for c != nil {
		if cc, ok := c.(*conn); ok {
			cc.vouch()
			return
		}
		u, ok := c.(interface{ NetConn() net.Conn }) // *tls.Conn, withWriteTimeout's
		if !ok {
			return
		}
		c = u.NetConn()
	}
}

// NetConn returns the connection counted (as *tls.Conn's NetConn).
func (c *conn) NetConn() net.Conn { return c.Conn }

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
