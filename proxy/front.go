package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/trailguard/trailguard/internal/h1"
	"github.com/trailguard/trailguard/internal/sockio"
)

// The lean front end serves the gateway's plain-HTTP listener. net/http's
// HTTP/1 server costs a noticeable share of a proxied request's CPU: the
// parse into textproto's maps, a background read goroutine per request
// with its deadlines (to notice a client that goes away), several read
// deadlines per request for the header and idle timeouts, a context per
// request. The front end owns each connection: it reads a request head
// with a strict parser (internal/h1) and, when it is one the gateway's
// fast path takes (GET, HEAD or OPTIONS without a body to a plain-HTTP
// upstream), runs the gateway's handler for it on the connection's own
// goroutine, with a response writer that writes what net/http would.
// Anything else — an h2c preface, an upgrade, a body, a head the parser
// declines, a request for ReverseProxy — and the connection from then on
// go to the http.Server, with the bytes already read replayed first.
//
// A connection is served in one read operation on it (syscall.RawConn's
// Read, readStep): its reads are made by the front end, which waits for
// the connection to become readable only when it has read all that was
// there. Between two requests a client has sent nothing new, and the
// read that a net.Conn makes before each wait (and that finds nothing) is
// saved; the operation's readiness was reset once, at its start, so
// bytes that come while a request is served are never missed.
//
// Timeouts are kept by a sweeper that looks at every connection every
// sweepEvery rather than by deadlines set for each request: a head not
// complete within the read-header timeout (slowloris) or a connection
// idle for longer than the idle timeout is closed, as net/http closes
// them (but not one whose next request already waits in its socket: its
// goroutine is only late, see cutIdle). Each state is stamped with the
// time it began (the monotonic clock, in µs), so a timeout d is never
// cut short and ends at the first sweep after d: within d + sweepEvery
// when the sweeper runs on time, and at its next run when load delays
// it (it does not count its ticks, which a busy machine drops: a 2 s
// idle timeout took 3 s that way). A client that goes away while its
// request is at the upstream is noticed, as net/http notices it, by the
// end of its connection — looked for (a peek that does not wait) by the
// sweeper at each sweep for the requests that have taken longer than a
// sweep, so that the many that take less cost nothing; it cancels the
// request's context, and so the upstream exchange. A request answered
// before that (10 to 20 ms, then within a sweep) is answered as if its
// client were still there, and recorded with the upstream's status.

// sweepEvery is the sweeper's period: how late a timeout may be; a
// request is looked at for its client's departure after it has run for
// two, then at each sweep.
const sweepEvery = 10 * time.Millisecond

// front is the lean front end of one listener.
type front struct {
	h          http.Handler
	takes      func(*http.Request) bool
	connCtx    func(context.Context) context.Context // its requests' context, from the connection's (nil: that)
	srv        *http.Server                          // everything the front end does not serve
	hand       *handoff
	maxHead    int
	readHeader time.Duration
	idle       time.Duration
	// writeTimeout: a write that makes no progress for this long fails
	// (timeouts.write; its connections are wtConns).
	writeTimeout time.Duration
	errLog       *log.Logger

	epoch time.Time // the connections' clock (now) counts from here
	// skew moves the clock forward (tests: a sweeper held up by load).
	skew atomic.Int64
	// served counts the requests the front end served, handed the
	// connections it gave to the http.Server.
	served, handed atomic.Uint64
	// idleHook, when set (tests only, before Serve), runs on a
	// connection's goroutine when it went idle after an answer, before it
	// waits for the next request: a goroutine late to its next read, as
	// on a loaded machine (parked in the poller, or not yet scheduled),
	// which the sweeper sees the same way.
	idleHook func(*leanConn)
	// looked counts the bytes looked at for the end of a head (by the
	// parser, or by the scan for a line end before it): linear in what
	// clients send, however they split it (TestLeanFrontTrickledHeadCost).
	looked   atomic.Uint64
	shutting atomic.Bool
	mu       sync.Mutex
	conns    map[*leanConn]struct{}
	ln       net.Listener
	active   sync.WaitGroup
	stop     chan struct{}
	stopOnce sync.Once
}

// connection states (leanConn.state, with the time it began, f.now, in
// the high bits).
const (
	stHeader   = iota // reading a head
	stServing         // handler running (looked at after two sweeps)
	stMore            // handler running, the client sent more: no longer looked at
	stIdle            // between requests
	stClosed          // closed, or being closed (sweeper, shutdown), or handed over
	stIdleSeen        // between requests, looked at for the client's end (see sweep)
)

func packState(st int, at int64) int64 { return at<<3 | int64(st) }

// now is the connections' clock: µs since the front end started.
func (f *front) now() int64 {
	return int64(time.Since(f.epoch)/time.Microsecond) + f.skew.Load()
}

// age is how long ago state st began, at now.
func stateAge(now, st int64) time.Duration { return time.Duration(now-st>>3) * time.Microsecond }

// leanConn is a connection the front end serves.
type leanConn struct {
	f      *front
	c      net.Conn
	buf    []byte // read buffer: buf[r:w] not yet parsed
	r, w   int
	bw     *bufio.Writer
	werr   error
	ctx    context.Context
	cancel context.CancelFunc
	tmpl   *http.Request // fields every request of the connection shares
	resp   leanResponse
	state  atomic.Int64
	date   [32]byte
	status [8]byte

	rc   syscall.RawConn
	step func(fd uintptr) bool // lc.readStep, bound once
	// The serve loop's state (readStep runs it).
	limit     int // the most a head may take
	known     int // how much of buf[r:w] holds no end of a head (see readStep)
	servedOne bool
	exit      int // why readStep ended the read operation
}

// readStep's ends (leanConn.exit).
const (
	exitClose   = iota // the connection is done
	exitHandOff        // to net/http, with what was read
	exitDecline        // a head the parser declines: to net/http, unless a late HTTP/2 preface
)

// connWriter notes the first write error (as net/http's
// checkConnErrorWriter), which ends the connection.
type connWriter struct{ lc *leanConn }

func (cw connWriter) Write(p []byte) (int, error) {
	n, err := cw.lc.c.Write(p)
	if err != nil && cw.lc.werr == nil {
		cw.lc.werr = err
		cw.lc.cancel()
	}
	return n, err
}

// broken ends a connection whose write failed (net/http closes it): its
// reads and writes fail at once from now on, and its goroutine closes it.
// (A Close here would wait for the read operation the request runs in.)
func (lc *leanConn) broken() {
	lc.c.SetDeadline(aLongTimeAgo)
}

func newFront(h http.Handler, takes func(*http.Request) bool, srv *http.Server) *front {
	maxHeader := srv.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = http.DefaultMaxHeaderBytes
	}
	idle := srv.IdleTimeout
	if idle == 0 {
		idle = srv.ReadTimeout
	}
	rh := srv.ReadHeaderTimeout
	if rh == 0 {
		rh = srv.ReadTimeout
	}
	return &front{h: h, takes: takes, srv: srv, epoch: time.Now(), maxHead: maxHeader + 4096, readHeader: rh, idle: idle,
		errLog: srv.ErrorLog, conns: map[*leanConn]struct{}{}, stop: make(chan struct{}),
		hand: &handoff{conns: make(chan net.Conn), done: make(chan struct{})}}
}

func (f *front) logf(format string, args ...any) {
	if f.errLog != nil {
		f.errLog.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

// Serve accepts connections on ln until Shutdown or Close, as
// http.Server.Serve does.
func (f *front) Serve(ln net.Listener) error {
	f.mu.Lock()
	f.ln = ln
	f.hand.addr = ln.Addr()
	f.mu.Unlock()
	go f.srv.Serve(f.hand)
	go f.sweep()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.shutting.Load() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// EMFILE and the like: wait and try again, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			f.logf("http: Accept error: %v; retrying in %v", err, delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		f.serveConn(c)
	}
}

var leanBufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

var leanWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}

var leanBodyWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 2048) }}

func (f *front) serveConn(c net.Conn) {
	lc := &leanConn{f: f, c: newWTConn(c, f.writeTimeout), rc: sockio.RawConn(c)}
	ctx := context.WithValue(context.Background(), http.ServerContextKey, f.srv)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, c.LocalAddr())
	lc.ctx, lc.cancel = context.WithCancel(ctx)
	reqCtx := lc.ctx
	if f.connCtx != nil {
		reqCtx = f.connCtx(lc.ctx)
	}
	lc.tmpl = (&http.Request{Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Body: http.NoBody,
		RemoteAddr: c.RemoteAddr().String()}).WithContext(reqCtx)
	lc.state.Store(packState(stHeader, f.now()))
	f.mu.Lock()
	if f.shutting.Load() { // set under f.mu
		f.mu.Unlock()
		c.Close()
		return
	}
	f.conns[lc] = struct{}{}
	f.active.Add(1)
	f.mu.Unlock()
	go lc.serve()
}

// forget removes lc from the sweeper's connections.
func (f *front) forget(lc *leanConn) {
	f.mu.Lock()
	delete(f.conns, lc)
	f.mu.Unlock()
	f.active.Done()
}

func (lc *leanConn) serve() {
	f := lc.f
	bp := leanBufs.Get().(*[]byte)
	lc.buf = *bp
	lc.bw = leanWriters.Get().(*bufio.Writer)
	lc.bw.Reset(connWriter{lc})
	lc.resp.lc = lc
	lc.resp.header = make(http.Header)
	lc.resp.snap = make(http.Header)
	lc.resp.w = leanBodyWriters.Get().(*bufio.Writer)
	lc.resp.cw.res = &lc.resp
	handed := false
	defer func() {
		lc.cancel()
		if !handed {
			lc.bw.Flush()
			lc.drain()
			lc.c.Close()
		}
		lc.state.Store(packState(stClosed, 0))
		lc.bw.Reset(nil)
		leanWriters.Put(lc.bw)
		lc.resp.w.Reset(nil)
		leanBodyWriters.Put(lc.resp.w)
		if cap(lc.buf) == 4096 {
			*bp = lc.buf[:4096]
			leanBufs.Put(bp)
		}
		lc.buf = nil
		f.forget(lc)
	}()
	if lc.rc == nil {
		// No raw connection (a listener of another kind): net/http's.
		handed = lc.handOff()
		return
	}
	lc.limit = f.maxHead
	lc.step = lc.readStep
	if err := lc.rc.Read(lc.step); err != nil {
		// The wait ended: closed by the sweeper (a timeout) or at
		// shutdown, or the connection failed.
		return
	}
	switch lc.exit {
	case exitHandOff:
		handed = lc.handOff()
	case exitDecline:
		if lc.servedOne && lc.lateH2Preface() {
			// net/http looks for the cleartext HTTP/2 preface only
			// at the start of a connection; handed over here it would
			// switch a connection that has been HTTP/1.1 to HTTP/2.
			return
		}
		handed = lc.handOff()
	}
}

// drainMax bounds what drain reads: a client that keeps sending gets its
// reset (as from net/http) rather than a goroutine reading for it.
const drainMax = 64 << 10

// drain reads and drops what the client sent that was not read (at most
// drainMax) before the front end closes the connection: a socket closed
// with unread bytes is reset (RST) by the kernel instead of ended, and a
// client may then lose the answer it has not read yet (a request
// pipelined while the one before was served, then cut; junk after a late
// HTTP/2 preface). It does not wait: bytes that come after it get the
// reset. Raw reads, as the connection's deadline may be past (a cut).
func (lc *leanConn) drain() {
	if lc.rc == nil || len(lc.buf) == 0 {
		return
	}
	lc.rc.Control(func(fd uintptr) {
		for n := 0; n < drainMax; {
			m, _, err := sockio.ReadFD(fd, lc.buf)
			if m <= 0 || err != nil {
				return
			}
			n += m
		}
	})
}

// readStep serves the connection, within the read operation serve began
// on it: it is called at once, and again each time the connection became
// readable since it last asked to wait (false). It reads what the
// connection holds, serves each request the front end takes, and asks to
// wait only when the connection has nothing more to give: after a read
// that did not fill the buffer, the connection's next bytes make it
// readable again. It ends the operation (true) with lc.exit saying why.
func (lc *leanConn) readStep(fd uintptr) bool {
	f := lc.f
	// Called first, or after the connection became readable: bytes may
	// wait to be read.
	mustRead := true
	for {
		// known: how much of buf[r:w] holds no end of a head (after an
		// Incomplete). A head that comes in many small reads is parsed
		// once it is complete, not again from its start at every read:
		// that cost grows with the square of its length (a 64 KiB head
		// sent in 8-byte writes kept a core busy for a while), net/http's
		// does not.
		b := lc.buf[lc.r:lc.w]
		var h h1.Head
		res := h1.Incomplete
		if lc.known == 0 || len(b) >= lc.limit || headEnds(b, lc.known) {
			f.looked.Add(uint64(len(b)))
			h, res = h1.Parse(b, lc.limit)
		} else {
			f.looked.Add(uint64(len(b) - lc.known))
		}
		switch res {
		case h1.Incomplete:
			if len(b) >= len("OPTIONS /") {
				// The method is known to be one the parser takes (it
				// declines any other at once).
				lc.known = len(b)
			}
			if !mustRead && lc.w == lc.r {
				return false // wait: all that came has been read
			}
			// Part of a head is here: read on until nothing is. The
			// client's end may have come with those bytes, before the
			// read that took them, and no readiness comes for it after
			// that read: waiting, the connection would sit out the
			// read-header timeout, where net/http answers 400 at once.
			// (A head that comes whole costs no extra read.)
			n, again, err := lc.readFD(fd)
			switch {
			case again:
				return false
			case n > 0:
				// A read that filled the buffer may have left more.
				mustRead = lc.w == len(lc.buf)
				continue
			case err == syscall.EINTR:
				continue
			}
			lc.exit = exitClose
			if err == nil && lc.w > lc.r {
				// A head cut short by the client's end: net/http's to
				// answer (400).
				lc.exit = exitHandOff
			}
			return true
		case h1.Decline:
			lc.exit = exitDecline
			return true
		}
		if h.Len > detachAbove {
			detach(&h)
		}
		r := new(http.Request)
		*r = *lc.tmpl
		r.Method, r.URL, r.Header, r.Host, r.RequestURI = h.Method, h.URL, h.Header, h.Host, h.RequestURI
		if f.shutting.Load() || !f.takes(r) {
			lc.exit = exitHandOff
			return true
		}
		if !lc.setState(stServing) {
			lc.exit = exitClose // closed by the sweeper or the shutdown meanwhile
			return true
		}
		lc.r += h.Len
		lc.known = 0
		f.served.Add(1)
		lc.servedOne = true
		if !lc.serveOne(r) {
			lc.exit = exitClose
			return true
		}
		// net/http reads up to 4 KiB of a kept-alive connection's next
		// request before it starts counting its head against the limit.
		lc.limit = f.maxHead + 4096
		next := stHeader // pipelined: the next head is already here
		if lc.r == lc.w {
			lc.r, lc.w = 0, 0
			if len(lc.buf) > 4096 {
				lc.buf = lc.buf[:4096]
			}
			next = stIdle
		}
		if !lc.setState(next) {
			lc.exit = exitClose
			return true
		}
		if next == stIdle && f.idleHook != nil {
			f.idleHook(lc)
		}
	}
}

// setState moves the connection to state st, unless it was closed (by
// the sweeper, or at shutdown): false then.
func (lc *leanConn) setState(st int) bool {
	for {
		old := lc.state.Load()
		if int(old&7) == stClosed {
			return false
		}
		if lc.state.CompareAndSwap(old, packState(st, lc.f.now())) {
			return true
		}
	}
}

// closeIdle closes a connection that waits for a request (the state it
// was seen in is st), unless it has moved on: the sweeper's and the
// shutdown's way, which need not wait for the connection's goroutine.
// The goroutine's wait fails at once, and it closes the connection.
func (lc *leanConn) closeIdle(st int64) {
	if lc.state.CompareAndSwap(st, packState(stClosed, 0)) {
		lc.c.SetReadDeadline(aLongTimeAgo)
	}
}

// detachAbove is the longest head whose strings may stay pieces of one
// string (internal/h1 cuts them out of the head, which saves an allocation
// per field). A request's event keeps some of them (path, query, user
// agent, recorded headers) while it waits to be written, and
// httpaudit's MaxQueueBytes counts those strings' lengths: a piece of a
// long head would keep the whole head alive, so that a client sending
// large junk fields with every request made 8192 waiting events hold 8192
// heads (half a gigabyte at the default max_header_bytes), uncounted. A
// longer head's strings are copied apart, as net/http's are.
const detachAbove = 2 << 10

// detach gives h's strings their own memory.
func detach(h *h1.Head) {
	h.RequestURI = strings.Clone(h.RequestURI)
	if u, err := url.ParseRequestURI(h.RequestURI); err == nil { // as the parser did
		h.URL = u
	} else {
		u := *h.URL
		u.Path, u.RawPath, u.RawQuery = strings.Clone(u.Path), strings.Clone(u.RawPath), strings.Clone(u.RawQuery)
		h.URL = &u
	}
	h.Host = strings.Clone(h.Host)
	hdr := make(http.Header, len(h.Header))
	for k, vv := range h.Header {
		cv := make([]string, len(vv))
		for i, v := range vv {
			cv[i] = strings.Clone(v)
		}
		hdr[strings.Clone(k)] = cv
	}
	h.Header = hdr
}

// headEnds reports whether b holds an empty line (the end of a head, also
// with bare LFs, which the parser declines) that starts after b[:from-2],
// which was looked at before.
func headEnds(b []byte, from int) bool {
	for i := max(from, 1); i < len(b); i++ {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return false
		}
		i += j
		if b[i-1] == '\n' || b[i-1] == '\r' && i >= 2 && b[i-2] == '\n' {
			return true
		}
	}
	return false
}

// room makes room in the buffer for a read.
func (lc *leanConn) room() {
	if lc.r > 0 {
		lc.w = copy(lc.buf, lc.buf[lc.r:lc.w])
		lc.r = 0
	}
	if lc.w == len(lc.buf) {
		// A head larger than the buffer: grow it, up to the most a head
		// may take (the parser declines more).
		nb := make([]byte, min(2*len(lc.buf), lc.f.maxHead+4096))
		copy(nb, lc.buf[:lc.w])
		lc.buf = nb
	}
}

// got notes n bytes read.
func (lc *leanConn) got(n int) {
	for {
		st := lc.state.Load()
		if s := int(st & 7); s != stIdle && s != stIdleSeen {
			break
		}
		// A CAS: a close by the sweeper meanwhile stays (its look,
		// stIdleSeen, does not: the head's timeout starts now).
		if lc.state.CompareAndSwap(st, packState(stHeader, lc.f.now())) {
			break
		}
	}
	lc.w += n
}

// readFD reads more into the buffer from fd without waiting (readStep's
// reads); again: nothing there yet.
func (lc *leanConn) readFD(fd uintptr) (n int, again bool, err error) {
	lc.room()
	n, again, err = sockio.ReadFD(fd, lc.buf[lc.w:])
	if n > 0 {
		lc.got(n)
	}
	return n, again, err
}

// fill reads more of a head into the buffer, outside readStep's
// operation; false: the connection ended (or timed out).
func (lc *leanConn) fill() bool {
	lc.room()
	n, err := lc.c.Read(lc.buf[lc.w:])
	if n > 0 {
		lc.got(n)
		return true
	}
	return err == nil
}

// serveOne runs the handler for r and ends its response; false: the
// connection is to be closed.
func (lc *leanConn) serveOne(r *http.Request) (keep bool) {
	w := &lc.resp
	w.reset(r)
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				lc.f.logf("http: panic serving %v: %v\n%s", r.RemoteAddr, p, buf)
			}
			keep = false
		}
	}()
	lc.f.h.ServeHTTP(w, r)
	keep = w.finish()
	// A failed write ends the connection (finish: lc.werr); a client that
	// went away (lc.look: its end, which cancelled ctx) does not: net/http
	// too reads on after its background read found the end, and answers
	// what the client sent before it (the rest of a head cut short: 400;
	// a pipelined request: with ctx cancelled, 499) before it finds the
	// end itself. Closing here dropped those answers whenever a request
	// outlasted two sweeps (an upstream slower than 20 ms, or a loaded
	// machine).
	return keep && !lc.f.shutting.Load()
}

// look peeks at the connection of a request served for a while (the
// sweeper's): its end (or a reset) means the client went away, which
// cancels the request, as net/http's background read does; bytes (the
// client's next request) end the looking, as they end net/http's read.
// The peek does not wait, and it does not contend with the connection's
// read operation: it holds a reference to the descriptor, not its lock.
func (lc *leanConn) look(st int64) {
	var more, gone bool
	lc.rc.Control(func(fd uintptr) { more, gone = sockio.PeekFD(fd) })
	if gone {
		lc.cancel()
	} else if more {
		lc.state.CompareAndSwap(st, packState(stMore, st>>3))
	}
}

// lookIdle peeks once at a connection idle for a while (the sweeper's):
// its end (or a reset) closes it, as net/http's read finds it and closes.
// The read that emptied the buffer did not see an end that came with the
// last request's bytes (a client that sends its request and shuts its
// side down at once), and no readiness comes for it after that read: the
// connection would wait for the idle timeout. A later end makes it
// readable, and readStep's read finds it; so one look per idle period.
func (lc *leanConn) lookIdle(st int64) {
	var gone bool
	lc.rc.Control(func(fd uintptr) { _, gone = sockio.PeekFD(fd) })
	if gone {
		lc.closeIdle(st)
	} else {
		lc.state.CompareAndSwap(st, packState(stIdleSeen, st>>3))
	}
}

// cutIdle closes a connection past its idle timeout (the sweeper's; the
// state it was seen in is st), unless the client's next request already
// waits in its socket (a peek that does not wait): then the connection's
// goroutine is only late to read it (parked in the poller, or not yet
// scheduled, on a loaded machine), and net/http's server would read bytes
// that came before its idle deadline. Such a connection reads a head from
// now on, under the read-header timeout, so a client that sends a byte and
// stalls is still cut, at that timeout.
func (lc *leanConn) cutIdle(st, now int64) {
	var more bool
	lc.rc.Control(func(fd uintptr) { more, _ = sockio.PeekFD(fd) })
	if more {
		lc.state.CompareAndSwap(st, packState(stHeader, now))
		return
	}
	lc.closeIdle(st)
}

// h2Start is how a cleartext HTTP/2 connection with prior knowledge
// starts: net/http's http.Server looks for it (then for the rest of the
// preface) at the start of every connection it accepts.
const h2Start = "PRI * HTTP/2.0"

// lateH2Preface reports whether the bytes after the requests served on
// the connection start an HTTP/2 preface (reading more while they may),
// which a connection handed to net/http must not carry: it would take
// them for a new connection's and switch protocols mid-stream, where
// net/http serving the connection from its start reads them as one more
// HTTP/1 request. Such a connection is closed instead.
func (lc *leanConn) lateH2Preface() bool {
	for {
		p := lc.buf[lc.r:lc.w]
		n := min(len(p), len(h2Start))
		if string(p[:n]) != h2Start[:n] {
			return false
		}
		if n == len(h2Start) {
			return true
		}
		if !lc.fill() {
			return false
		}
	}
}

// handOff gives the connection to the http.Server, the bytes read so far
// first; false if the server is gone (the connection is then closed).
func (lc *leanConn) handOff() bool {
	rest := append([]byte(nil), lc.buf[lc.r:lc.w]...)
	if err := lc.bw.Flush(); err != nil {
		return false
	}
	for {
		st := lc.state.Load()
		if int(st&7) == stClosed {
			return false // closed by the sweeper or the shutdown meanwhile
		}
		if lc.state.CompareAndSwap(st, packState(stClosed, 0)) {
			break
		}
	}
	lc.f.handed.Add(1)
	return lc.f.hand.give(&replayConn{Conn: lc.c, pre: rest})
}

// sweep closes connections past their header or idle timeout and starts
// the watch of requests that take longer than a sweep.
func (f *front) sweep() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	var conns []*leanConn
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		now := f.now()
		conns = conns[:0]
		f.mu.Lock()
		for lc := range f.conns {
			conns = append(conns, lc)
		}
		f.mu.Unlock()
		for _, lc := range conns {
			st := lc.state.Load()
			age := stateAge(now, st)
			switch int(st & 7) {
			case stHeader:
				if f.readHeader > 0 && age > f.readHeader {
					lc.closeIdle(st)
				}
			case stIdle, stIdleSeen:
				if f.shutting.Load() {
					lc.closeIdle(st) // whatever waits: net/http's Shutdown closes them too
				} else if f.idle > 0 && age > f.idle {
					lc.cutIdle(st, now)
				} else if int(st&7) == stIdle && age >= 2*sweepEvery {
					lc.lookIdle(st)
				}
			case stServing:
				// Two sweeps: the requests that take less cost no look.
				if age >= 2*sweepEvery {
					lc.look(st)
				}
			}
		}
		clear(conns)
	}
}

// Shutdown stops accepting, closes idle connections, waits for the
// requests in flight until ctx ends (then cuts them), and shuts the
// http.Server down for the connections handed to it, as
// http.Server.Shutdown does.
func (f *front) Shutdown(ctx context.Context) error {
	f.stopAccepting()
	f.closeConns(false)
	done := make(chan struct{})
	go func() { f.active.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		f.closeConns(true)
	}
	err = errors.Join(err, f.srv.Shutdown(ctx))
	f.stopOnce.Do(func() { close(f.stop) })
	return err
}

// Close closes the listener and every connection at once.
func (f *front) Close() error {
	f.stopAccepting()
	f.closeConns(true)
	err := f.srv.Close()
	f.stopOnce.Do(func() { close(f.stop) })
	return err
}

// stopAccepting marks the front end shutting down (under f.mu, which
// serveConn takes to add a connection) and closes its listener.
func (f *front) stopAccepting() {
	f.mu.Lock()
	f.shutting.Store(true)
	ln := f.ln
	f.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
}

// closeConns closes the connections waiting for a request (all of them
// if busy too).
func (f *front) closeConns(busy bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for lc := range f.conns {
		st := lc.state.Load()
		switch int(st & 7) {
		case stIdle, stIdleSeen, stHeader:
			lc.closeIdle(st)
		case stServing, stMore:
			if busy {
				// Cut: the request is cancelled (its upstream exchange
				// with it), and the connection's reads and writes fail
				// at once; its goroutine then closes it. (A Close would
				// wait for the read operation the request runs in.)
				lc.cancel()
				lc.c.SetDeadline(aLongTimeAgo)
			}
		}
	}
}

// handoff is the listener the http.Server accepts the front end's
// handed-over connections from.
type handoff struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  net.Addr
}

func (l *handoff) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		c.Close()
		return false
	}
}

func (l *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoff) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoff) Addr() net.Addr { return l.addr }

// replayConn is a handed-over connection: what the front end had read of
// it comes first.
type replayConn struct {
	net.Conn
	pre []byte
}

// CloseWrite lets net/http half-close the connection before it closes
// it (after a 431, so that the client reads the answer), as it does with
// a *net.TCPConn.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
