package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/trailguard/trailguard/internal/h1"
	"github.com/trailguard/trailguard/internal/sockio"
)

// h1Transport is the gateway's client to plain-HTTP upstreams. The requests
// most APIs see most — no body, no protocol upgrade, a method that may be
// sent again (GET, HEAD, OPTIONS) — are written and their answers
// read on the handler's own goroutine, over pooled keep-alive connections.
// net/http's Transport hands each exchange between the caller and two
// goroutines per connection (a writer and a reader); on a gateway that is
// CPU-bound by such hand-offs and their wake-ups, doing the exchange in
// place costs noticeably less CPU per request. Everything else (request
// bodies, WebSocket upgrades, TLS and HTTP/2 upstreams) goes to std.
//
// It parses answers with net/http's own ReadResponse and writes requests
// with Request.Write, as Transport does; what it adds is the pool, the
// timeouts, cancellation and the retry of a request that met a keep-alive
// connection the upstream had just closed. The one exception is the fast
// path's common answer to the lean front end (leanAnswer): parsed by
// internal/h1 into a list of fields that goes to the client without ever
// being a header map. (The same parser making a map, for every caller,
// cost the same per answer as ReadResponse: the map is most of the cost,
// there and in the writer.)
type h1Transport struct {
	std        *http.Transport
	dial       func(ctx context.Context, network, addr string) (net.Conn, error)
	header     time.Duration // response header timeout (0: none)
	idle       time.Duration // how long a connection may wait in the pool
	maxIdle    int           // idle connections kept per upstream address
	maxHeader  int64         // response header bytes
	readBuf    int
	writeBuf   int
	now        func() time.Time
	sentHook   func()      // tests: called once a request is written, before the wait for its answer
	crowded    func() bool // a dial waits for an upstream connection to close: pool none
	mu         sync.Mutex
	pools      map[string][]*h1Conn // idle connections by host:port, most recent last
	sweepArmed bool
	closed     bool
}

// h1Conn is one upstream connection of an h1Transport.
type h1Conn struct {
	conn   net.Conn
	lr     limitedConn
	br     *bufio.Reader
	bw     *bufio.Writer
	addr   string
	idleAt time.Time
	reused bool

	// rc is conn's raw connection (nil where there is none): send then
	// looks at the idle connection, writes the request and waits for
	// its answer in one read operation (sendStep, bound once as step).
	rc   syscall.RawConn
	step func(fd uintptr) bool
	// sendStep's state, for the exchange in progress.
	write       func(*bufio.Writer) error
	sent, stale bool
	werr        error
	sentHook    func() // the transport's
}

// limitedConn bounds what the response header may read from the
// connection (a misbehaving upstream must not make the gateway buffer
// without limit); the body is read without that bound.
type limitedConn struct {
	c  net.Conn
	rc syscall.RawConn // c's, if it has one (sockio.Read)
	n  int64
}

var errHeaderTooLarge = errors.New("upstream response header too large")

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := sockio.Read(l.c, l.rc, p)
	l.n -= int64(n)
	return n, err
}

const noLimit = 1<<63 - 1

func newH1Transport(std *http.Transport, dial func(context.Context, string, string) (net.Conn, error)) *h1Transport {
	maxHeader := std.MaxResponseHeaderBytes
	if maxHeader <= 0 {
		maxHeader = 10 << 20 // Transport's default
	}
	return &h1Transport{std: std, dial: dial, header: std.ResponseHeaderTimeout, idle: std.IdleConnTimeout,
		maxIdle: std.MaxIdleConnsPerHost, maxHeader: maxHeader, readBuf: std.ReadBufferSize, writeBuf: std.WriteBufferSize,
		now: time.Now, pools: map[string][]*h1Conn{}}
}

// takes reports whether the exchange is done in place: a plain-HTTP
// upstream, no body to stream, no upgrade, and a method a request may be
// sent again with if the connection it met was closed under it.
func (t *h1Transport) takes(req *http.Request) bool {
	if req.URL.Scheme != "http" || (req.Body != nil && req.Body != http.NoBody) || req.Close {
		return false
	}
	if _, up := req.Header["Upgrade"]; up {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true // (TRACE never comes here: serve answers it 405)
	}
	return false
}

// RoundTrip implements http.RoundTripper.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.takes(req) {
		return t.std.RoundTrip(req)
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	var got1xx func(int, textproto.MIMEHeader) error
	if trace := httptrace.ContextClientTrace(req.Context()); trace != nil {
		got1xx = trace.Got1xxResponse
	}
	return t.do(req.Context(), addr, req, func(bw *bufio.Writer) error { return req.Write(bw) }, got1xx, nil)
}

// do exchanges one request in place over a pooled connection to addr:
// write puts the request on the connection (flushed by do), req gives
// the answer's parser its method and becomes Response.Request, and
// got1xx (if not nil) is told of each informational answer. With la not
// nil, a final answer ParseResponse takes is read into la (see
// leanAnswer), and do returns a nil response and no error.
func (t *h1Transport) do(ctx context.Context, addr string, req *http.Request, write func(*bufio.Writer) error,
	got1xx func(int, textproto.MIMEHeader) error, la *leanAnswer) (*http.Response, error) {
	for attempt := 0; ; {
		c, err := t.get(ctx, addr, attempt > 0)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(ctx, c, req, write, got1xx, la)
		if err == nil {
			return resp, nil
		}
		c.conn.Close()
		if err == errStale {
			// Nothing was sent on it: the next idle connection, or a
			// new one once the pool is empty.
			continue
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("upstream %s: %w", addr, context.Cause(ctx))
		}
		// A kept-alive connection the upstream closed while it was idle
		// fails before any answer (or, if the upstream left bytes on it,
		// with a garbled one): the request, of a method that may be sent
		// again, goes once more on a new connection, as Transport does.
		// Not after a timeout: that would double the wait.
		var ne net.Error
		if c.reused && attempt == 0 && !(errors.As(err, &ne) && ne.Timeout()) {
			attempt++
			continue
		}
		return nil, err
	}
}

// get returns an idle connection to addr, or a new one (always a new one
// when fresh is set). An idle connection is looked at (send) before the
// request is written on it.
func (t *h1Transport) get(ctx context.Context, addr string, fresh bool) (*h1Conn, error) {
	if !fresh {
		if c := t.idleConn(addr); c != nil {
			c.reused = true
			return c, nil
		}
	}
	conn, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &h1Conn{conn: conn, addr: addr, sentHook: t.sentHook}
	c.lr.c = conn
	c.lr.rc = sockio.RawConn(conn)
	c.br = bufio.NewReaderSize(&c.lr, max(t.readBuf, 4096))
	c.bw = bufio.NewWriterSize(sockio.Writer{Conn: conn, RC: c.lr.rc}, max(t.writeBuf, 4096))
	if c.rc = sockio.RawConn(conn); c.rc != nil {
		c.step = c.sendStep
	}
	return c, nil
}

// errStale is an idle connection found with bytes waiting on it, or
// closed by the upstream: nothing was sent on it.
var errStale = errors.New("upstream connection not quiet while idle")

// send puts the request on c and waits until its answer begins to come.
// On a connection that was idle it first makes sure that nothing came on
// it meanwhile (errStale otherwise): bytes there are an answer nobody
// asked for (an upstream that wrote past its Content-Length, or read a
// request as two), which would be taken for this request's answer,
// another client's; net/http's Transport drops a connection that speaks
// while idle, and so does the pool. That look costs one system call,
// which is also the one a read of the answer makes before it waits (it
// finds nothing yet): looking, writing and waiting are one read operation
// on the connection, so the answer's first read finds it there.
func (c *h1Conn) send(write func(*bufio.Writer) error) error {
	if c.rc == nil {
		if c.reused && !sockio.IdleQuiet(c.conn) {
			return errStale
		}
		if err := write(c.bw); err != nil {
			return fmt.Errorf("upstream %s: write request: %w", c.addr, err)
		}
		if err := c.bw.Flush(); err != nil {
			return fmt.Errorf("upstream %s: write request: %w", c.addr, err)
		}
		return nil
	}
	c.write, c.sent, c.stale, c.werr = write, false, false, nil
	err := c.rc.Read(c.step)
	c.write = nil
	switch {
	case c.stale:
		return errStale
	case c.werr != nil:
		return fmt.Errorf("upstream %s: write request: %w", c.addr, c.werr)
	case err != nil:
		// The wait for the answer ended: a deadline (the response
		// header timeout, or a cancellation), or the connection closed.
		return readError(c.addr, err)
	}
	return nil
}

// sendStep is send's read operation: its first call looks at the idle
// connection and writes the request, and asks to wait (false) for the
// answer; the next, once the connection is readable, ends it. The
// operation began (the poller's readiness reset) before the request was
// written, so an answer that comes at once is not missed.
func (c *h1Conn) sendStep(fd uintptr) bool {
	if c.sent {
		return true
	}
	c.sent = true
	if c.reused && !sockio.QuietFD(fd) {
		c.stale = true
		return true
	}
	c.werr = c.write(c.bw)
	if c.werr == nil {
		c.werr = c.bw.Flush()
	}
	if c.sentHook != nil {
		c.sentHook()
	}
	return c.werr != nil
}

// idleConn takes the most recently pooled connection to addr that has not
// been idle for too long (closing those that have), or returns nil.
func (t *h1Transport) idleConn(addr string) *h1Conn {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	pool := t.pools[addr]
	defer func() { t.pools[addr] = pool }()
	for len(pool) > 0 {
		c := pool[len(pool)-1]
		pool[len(pool)-1] = nil
		pool = pool[:len(pool)-1]
		if now.Sub(c.idleAt) < t.idle || t.idle <= 0 {
			return c
		}
		c.conn.Close()
	}
	return nil
}

// put returns a connection whose exchange ended cleanly to the pool.
func (t *h1Transport) put(c *h1Conn) {
	c.idleAt = t.now()
	t.mu.Lock()
	if t.closed || len(t.pools[c.addr]) >= t.maxIdle || t.crowded != nil && t.crowded() {
		t.mu.Unlock()
		c.conn.Close()
		return
	}
	t.pools[c.addr] = append(t.pools[c.addr], c)
	if !t.sweepArmed && t.idle > 0 {
		t.sweepArmed = true
		time.AfterFunc(t.idle, t.sweep)
	}
	t.mu.Unlock()
}

// sweep closes the connections idle for longer than t.idle, so that a
// quiet gateway does not keep upstream connections (and file
// descriptors) forever.
func (t *h1Transport) sweep() {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweepArmed = false
	n := 0
	for addr, pool := range t.pools {
		kept := pool[:0]
		for _, c := range pool {
			if now.Sub(c.idleAt) >= t.idle {
				c.conn.Close()
			} else {
				kept = append(kept, c)
			}
		}
		clear(pool[len(kept):])
		if len(kept) == 0 {
			delete(t.pools, addr)
		} else {
			t.pools[addr] = kept
		}
		n += len(kept)
	}
	if n > 0 && !t.closed {
		t.sweepArmed = true
		time.AfterFunc(t.idle, t.sweep)
	}
}

// CloseIdleConnections closes the pooled connections of both transports.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	for addr, pool := range t.pools {
		for _, c := range pool {
			c.conn.Close()
		}
		delete(t.pools, addr)
	}
	t.mu.Unlock()
	t.std.CloseIdleConnections()
}

// close closes the pooled connections and pools no more.
func (t *h1Transport) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.CloseIdleConnections()
}

// max1xx bounds the informational answers (103 Early Hints, …) before the
// final one, as Transport does.
const max1xx = 5

// exchange writes req on c and reads the answer's header. The response body, once read to its end, returns c to the pool; closed
// early, it closes c.
func (t *h1Transport) exchange(ctx context.Context, c *h1Conn, req *http.Request, write func(*bufio.Writer) error,
	got1xx func(int, textproto.MIMEHeader) error, la *leanAnswer) (resp *http.Response, err error) {
	// Cancellation (the client went away, the gateway shuts down) and the
	// response header timeout both end a blocked read or write through
	// the connection's deadline.
	stop := watchCancel(ctx, c)
	fail := func(err error) (*http.Response, error) {
		stop.stop()
		return nil, err
	}
	if stop.slot != nil && ctx.Err() != nil {
		// Ended before c was in the slot (its AfterFunc found none).
		return fail(context.Cause(ctx))
	}
	if t.header > 0 {
		c.conn.SetReadDeadline(t.now().Add(t.header))
	}
	if err := c.send(write); err != nil {
		return fail(err)
	}
	c.lr.n = t.maxHeader
	for n := 0; ; n++ {
		if la != nil && la.read(c.br, req.Method) {
			t.leanBody(c, la, stop)
			return nil, nil
		}
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			return fail(readError(c.addr, err))
		}
		code := resp.StatusCode
		if code < 100 || code >= 200 || code == http.StatusSwitchingProtocols {
			break
		}
		if n == max1xx {
			return fail(fmt.Errorf("upstream %s: more than %d informational responses", c.addr, max1xx))
		}
		if got1xx != nil {
			if err := got1xx(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}
	c.lr.n = noLimit
	if t.header > 0 && (resp.ContentLength < 0 || int64(c.br.Buffered()) < resp.ContentLength) {
		// The body is read from the connection: without the header's
		// deadline. (One that is all in the buffer is not: the deadline
		// stays until the connection's next exchange sets its own.)
		c.conn.SetReadDeadline(time.Time{})
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// Not asked for (upgrades go to std): nothing after it is HTTP.
		stop.stop()
		resp.Body.Close()
		return nil, errors.New("upstream switched protocols unasked")
	}
	if resp.Body == http.NoBody || resp.Body == nil {
		if !stop.stop() || resp.Close || c.br.Buffered() > 0 {
			c.conn.Close()
		} else {
			t.put(c)
		}
		return resp, nil
	}
	resp.Body = &h1Body{t: t, c: c, body: resp.Body, stop: stop, keep: !resp.Close}
	return resp, nil
}

// leanAnswer is the fast path's common answer for the lean front end
// (HTTP/1.1, a final status other than 204 and 304, one Content-Length,
// keep-alive, not to HEAD: h1.ParseResponse), read without a header map:
// its fields as a list, and its body. It is the lean front end's
// connection's, reused for each of its requests (the list is written to
// the client only when the response ends, after the handler returned).
type leanAnswer struct {
	head   h1.ResponseHead
	body   io.ReadCloser
	fixed  h1.FixedBody
	h1body h1Body
}

// read reads the answer's head from br if ParseResponse takes it, and
// reports whether it did. It only peeks: an answer it declines (1xx,
// chunked, no length, close, obs-fold, two Content-Lengths, a head longer
// than the buffer, ...) is read by http.ReadResponse from the same bytes.
func (la *leanAnswer) read(br *bufio.Reader, method string) bool {
	if _, err := br.Peek(1); err != nil {
		return false // http.ReadResponse meets the error again
	}
	for {
		b, _ := br.Peek(br.Buffered())
		h, res := h1.ParseResponse(b, method, la.head.Fields)
		la.head.Fields = h.Fields[:0] // the buffer, kept
		if res == h1.OK {
			la.head = h
			br.Discard(h.Len)
			return true
		}
		if res == h1.Decline || br.Buffered() == br.Size() {
			return false
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return false
		}
	}
}

// leanBody ends exchange for an answer read into la: as for any other
// answer, the body read to its end returns c to the pool.
func (t *h1Transport) leanBody(c *h1Conn, la *leanAnswer, stop cancelWatch) {
	c.lr.n = noLimit
	n := la.head.ContentLength
	if t.header > 0 && int64(c.br.Buffered()) < n {
		c.conn.SetReadDeadline(time.Time{}) // as exchange, below
	}
	if n == 0 {
		la.body = http.NoBody
		if !stop.stop() || c.br.Buffered() > 0 {
			c.conn.Close()
		} else {
			t.put(c)
		}
		return
	}
	la.fixed.Reset(c.br, n)
	b := &la.h1body
	b.t, b.c, b.body, b.stop, b.keep, b.done = t, c, &la.fixed, stop, true, false
	la.body = b
}

// upSlot is a lean front end's connection's hold on the upstream
// connection its request is exchanged on (Proxy.connContext): the end of
// the connection's context (the client went away, a cut at shutdown)
// fails that upstream connection's I/O, as a context.AfterFunc for each
// exchange would, with one AfterFunc for all the connection's requests
// (they are served one at a time).
type upSlot struct{ c atomic.Pointer[h1Conn] }

type upSlotKey struct{}

// fire is the connection context's AfterFunc.
func (s *upSlot) fire() {
	if c := s.c.Swap(nil); c != nil {
		c.conn.SetDeadline(aLongTimeAgo)
	}
}

// cancelWatch ends c's blocked I/O when an exchange's context ends, until
// stop, which reports whether it had not (c's deadlines are then its
// own: it may be pooled).
type cancelWatch struct {
	slot *upSlot
	c    *h1Conn
	fn   func() bool
}

func watchCancel(ctx context.Context, c *h1Conn) cancelWatch {
	if s, _ := ctx.Value(upSlotKey{}).(*upSlot); s != nil {
		s.c.Store(c)
		return cancelWatch{slot: s, c: c}
	}
	return cancelWatch{fn: context.AfterFunc(ctx, func() { c.conn.SetDeadline(aLongTimeAgo) })}
}

func (w cancelWatch) stop() bool {
	if w.slot != nil {
		return w.slot.c.CompareAndSwap(w.c, nil)
	}
	return w.fn()
}

// aLongTimeAgo is a deadline that fails pending and future I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

func readError(addr string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("upstream %s closed the connection before answering: %w", addr, err)
	}
	return fmt.Errorf("upstream %s: read response: %w", addr, err)
}

// h1Body is an answer's body: read to its end, it returns its connection
// to the pool (and reads nothing more from it); closed before, it closes
// the connection, without reading the rest (it may be an endless stream).
type h1Body struct {
	t    *h1Transport
	c    *h1Conn
	body io.ReadCloser
	stop cancelWatch
	keep bool
	mu   sync.Mutex
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.done = true
		if b.stop.stop() && b.keep && b.c.br.Buffered() == 0 {
			b.t.put(b.c)
		} else {
			b.c.conn.Close()
		}
		b.c = nil
	} else if err != nil {
		b.done = true
		b.stop.stop()
		b.c.conn.Close()
		b.c = nil
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return nil
	}
	b.done = true
	b.stop.stop()
	err := b.c.conn.Close()
	b.c = nil
	return err
}
