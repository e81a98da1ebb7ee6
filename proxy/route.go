package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/httpaudit"
	"github.com/trailguard/trailguard/internal/connlimit"
)

// route is a compiled Route with its reverse proxy.
type route struct {
	name         string
	host         string // lower case; "" any; "*.x" a wildcard
	prefix       string
	target       *url.URL
	strip        bool
	preserveHost bool
	capture      int
	limit        *limiter
	perRoute     bool
	rp           *httputil.ReverseProxy
	addr         string // host:port of a plain-HTTP upstream (the fast path); "" otherwise
}

func (rt *route) hostRank() int {
	switch {
	case rt.host == "":
		return 0
	case strings.HasPrefix(rt.host, "*."):
		return 1
	}
	return 2
}

func (p *Proxy) newRoute(c Route, transport http.RoundTripper, pool httputil.BufferPool) (*route, error) {
	target, err := parseUpstream(c.Upstream)
	if err != nil {
		return nil, err
	}
	rt := &route{name: c.Name, host: strings.ToLower(c.Host), prefix: c.Path, target: target,
		strip: c.StripPrefix, preserveHost: c.PreserveHost, capture: c.CaptureBody}
	if rt.prefix == "" {
		rt.prefix = "/"
	}
	if rt.name == "" {
		rt.name = rt.host + rt.prefix
	}
	if target.Scheme == "http" {
		rt.addr = target.Host
		if target.Port() == "" {
			rt.addr = net.JoinHostPort(target.Hostname(), "80")
		}
	}
	if c.RateLimit != nil {
		rt.limit = newLimiter(c.RateLimit, maxLimitKeys)
		rt.perRoute = c.RateLimit.Per == "route"
	}
	rt.rp = &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { p.rewrite(rt, pr) },
		Transport:      transport,
		BufferPool:     pool,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.upstreamError,
		ErrorLog:       nil,
	}
	return rt, nil
}

// route finds the route of a request (nil also for a path matchPath
// refuses).
func (p *Proxy) route(r *http.Request) *route {
	path, err := matchPath(r.URL)
	if err != nil {
		return nil
	}
	return p.routeFor(r, path)
}

// routeFor finds the route of a request whose matchPath is path.
func (p *Proxy) routeFor(r *http.Request, path string) *route {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, rt := range p.routes {
		switch {
		case rt.host == "":
		case strings.HasPrefix(rt.host, "*."):
			if !strings.HasSuffix(host, rt.host[1:]) {
				continue
			}
		case rt.host != host:
			continue
		}
		if prefixMatch(path, rt.prefix) {
			return rt
		}
	}
	return nil
}

// prefixMatch: "/api/" matches /api/x; "/api" matches /api and /api/x but
// not /apix. path is a matchPath; the prefix matches in any case, as
// patterns do (pattern.match says why).
func prefixMatch(path, prefix string) bool {
	if len(prefix) > 1 && prefix[len(prefix)-1] == '/' && strings.EqualFold(path, prefix[:len(prefix)-1]) {
		return true // "/api/" takes /api too: most upstreams serve both alike
	}
	if len(path) < len(prefix) || !strings.EqualFold(path[:len(prefix)], prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

// rewrite builds the upstream request: target, forwarding headers,
// correlation id and trace context. The fast path (fast.go) writes the
// same request without building it.
func (p *Proxy) rewrite(rt *route, pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	rt.stripPrefix(out.URL)
	pr.SetURL(rt.target)
	if rt.preserveHost {
		out.Host = in.Host
	}
	f := p.forwarding(in)
	out.Header["X-Forwarded-For"] = []string{f.xff}
	out.Header["X-Forwarded-Host"] = []string{f.xfh}
	out.Header["X-Forwarded-Proto"] = []string{f.xfp}
	out.Header["Forwarded"] = []string{f.forwarded()}

	ctx := in.Context()
	out.Header[p.reqID] = []string{httpaudit.RequestID(ctx)}
	if tp, ok := p.newTraceparent(in); ok {
		// Missing or invalid: the gateway starts the trace, and a
		// tracestate that went with a broken traceparent is dropped.
		out.Header.Del("Tracestate")
		out.Header["Traceparent"] = []string{tp}
	}
}

// stripPrefix removes the route's prefix from an upstream URL's path
// when the route says so.
func (rt *route) stripPrefix(u *url.URL) {
	if rt.strip && rt.prefix != "/" {
		trim := strings.TrimSuffix(rt.prefix, "/")
		if mp, err := matchPath(u); err == nil && len(mp) >= len(trim) && (mp != u.Path || !strings.HasPrefix(mp, trim)) {
			// Spelt otherwise than the prefix (//, dot segments, another
			// case): what replaces the prefix is taken off the path the
			// route was chosen on, as nginx's proxy_pass with a URI does,
			// or the upstream would get a path the decisions never saw.
			u.Path, u.RawPath = trim+mp[len(trim):], ""
		}
		u.Path = "/" + strings.TrimLeft(strings.TrimPrefix(u.Path, trim), "/")
		if u.RawPath != "" {
			u.RawPath = "/" + strings.TrimLeft(strings.TrimPrefix(u.RawPath, trim), "/")
		}
	}
}

// newTraceparent returns the traceparent the gateway sends upstream in
// place of the client's, when the client's is missing or invalid (the
// request's trace context is then the gateway's own).
func (p *Proxy) newTraceparent(in *http.Request) (string, bool) {
	traceID, spanID := httpaudit.TraceContext(in.Context())
	if tp := in.Header.Get("Traceparent"); len(tp) < 35 || tp[3:35] != traceID {
		return traceparent(traceID, spanID), true
	}
	return "", false
}

func traceparent(traceID, spanID string) string {
	return "00-" + traceID + "-" + spanID + "-01"
}

// forwarding are the values of X-Forwarded-For/Host/Proto and Forwarded
// (RFC 7239) sent upstream. Forwarded is the trusted hops' elements
// (prior) and the gateway's own (forwarded joins them; the fast path
// writes them without joining).
type forwarding struct{ xff, xfh, xfp, prior, node, host, proto string }

// forwarded is the value of Forwarded.
func (f *forwarding) forwarded() string {
	elem := "for=" + f.node + ";host=" + quoteForwarded(f.host) + ";proto=" + f.proto
	if f.prior != "" {
		elem = f.prior + ", " + elem
	}
	return elem
}

// forwarding computes the forwarding headers. What the client sent in them
// is passed on only when it comes from a trusted proxy; anyone else could
// forge a chain.
func (p *Proxy) forwarding(in *http.Request) forwarding {
	peer, _, err := net.SplitHostPort(in.RemoteAddr)
	if err != nil {
		peer = in.RemoteAddr
	}
	peerAddr, _ := netip.ParseAddr(peer)
	if peerAddr.Is4In6() || peerAddr.Is6() {
		// Written as the address's canonical form (an IPv4 address
		// parses only from it: the string is kept as it is).
		peerAddr = peerAddr.Unmap()
		peer = peerAddr.String()
	}
	trusted := peerAddr.IsValid() && p.isTrusted(peerAddr)
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	xff, fwd, xfh, xfp := peer, "", in.Host, proto
	if trusted {
		// Only the header the trusted proxies write names the chain; the
		// client's copy of the other came through them as sent. Both
		// headers sent upstream carry the chain believed, so that a
		// recipient reading either sees the client recorded here.
		if p.rfc7239 {
			fwd = strings.Join(in.Header.Values("Forwarded"), ", ")
			if prior := xffFromForwarded(fwd); prior != "" {
				xff = prior + ", " + peer
			}
		} else if vals := in.Header.Values("X-Forwarded-For"); len(vals) > 0 {
			xff = strings.Join(vals, ", ") + ", " + peer
			fwd = forwardedFromXFF(vals)
		}
		if v := in.Header.Get("X-Forwarded-Host"); v != "" {
			xfh = v
		}
		if v := in.Header.Get("X-Forwarded-Proto"); v != "" {
			xfp = v
		}
	}
	node := peer
	if peerAddr.Is6() {
		node = `"[` + peer + `]"`
	}
	return forwarding{xff: xff, xfh: xfh, xfp: xfp, prior: fwd, node: node, host: in.Host, proto: proto}
}

// forwardedFromXFF turns X-Forwarded-For hops into Forwarded elements.
func forwardedFromXFF(vals []string) string {
	var els []string
	for _, v := range vals {
		for h := range strings.SplitSeq(v, ",") {
			h = strings.TrimSpace(h)
			if h == "" {
				continue
			}
			// With a zone, netip keeps its text as sent: quoted as any
			// other node rather than written bare inside the quotes.
			if a, err := netip.ParseAddr(h); err == nil && a.Is6() && a.Zone() == "" {
				h = `"[` + a.String() + `]"`
			} else {
				h = quoteForwarded(h)
			}
			els = append(els, "for="+h)
		}
	}
	return strings.Join(els, ", ")
}

// xffFromForwarded is the X-Forwarded-For list of a Forwarded header's
// for= values (nodes unquoted, an IPv6 address without its brackets, no
// ports), or "" when it names none.
func xffFromForwarded(fwd string) string {
	var hops []string
	for elem := range strings.SplitSeq(fwd, ",") {
		for pair := range strings.SplitSeq(elem, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || !strings.EqualFold(k, "for") {
				continue
			}
			v = strings.Trim(v, `"`)
			if strings.HasPrefix(v, "[") {
				if end := strings.IndexByte(v, ']'); end > 0 {
					v = v[1:end]
				}
			} else if strings.Count(v, ":") == 1 {
				v, _, _ = strings.Cut(v, ":")
			}
			hops = append(hops, v)
		}
	}
	return strings.Join(hops, ", ")
}

// quoteForwarded quotes a Forwarded parameter value unless it is a token.
func quoteForwarded(v string) string {
	if isToken(v) {
		return v
	}
	var b strings.Builder
	b.Grow(len(v) + 2)
	appendQuoted(&b, v)
	return b.String()
}

// isToken reports whether v is an RFC 9110 token (or empty).
func isToken(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// appendQuoted writes v as a quoted-string: quotes and backslashes
// escaped, control bytes dropped.
func appendQuoted(b interface{ WriteByte(byte) error }, v string) {
	b.WriteByte('"')
	for j := 0; j < len(v); j++ {
		if v[j] == '"' || v[j] == '\\' {
			b.WriteByte('\\')
		}
		if v[j] >= 0x20 && v[j] != 0x7f {
			b.WriteByte(v[j])
		}
	}
	b.WriteByte('"')
}

// modifyResponse withholds the answer from a client blocked while its
// request was in flight, and echoes the correlation headers downstream:
// the gateway's own, not a second copy from the upstream.
func (p *Proxy) modifyResponse(res *http.Response) error {
	var tp []string
	if res.Request != nil {
		tp = res.Request.Header["Traceparent"]
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		if rwc, ok := res.Body.(io.ReadWriteCloser); ok && p.cfg.Timeouts.Idle > 0 {
			res.Body = newIdleTunnel(rwc, p.cfg.Timeouts.Idle)
		}
	}
	return p.answer(res, tp)
}

// idleTunnel closes an upgraded connection's upstream side (and so the
// tunnel: ReverseProxy ends both sides when one ends) when neither side
// has sent a byte for d (timeouts.idle), as nginx's proxy_read_timeout
// closes a quiet WebSocket: a tunnel nobody uses holds two connections
// and two goroutines otherwise for ever. Writes are the client's bytes,
// reads the upstream's.
type idleTunnel struct {
	io.ReadWriteCloser
	d    time.Duration
	last atomic.Int64 // UnixNano of the last byte either way
	t    *time.Timer
}

func newIdleTunnel(rwc io.ReadWriteCloser, d time.Duration) *idleTunnel {
	it := &idleTunnel{ReadWriteCloser: rwc, d: d}
	it.last.Store(time.Now().UnixNano())
	it.t = time.AfterFunc(d, it.check)
	return it
}

func (it *idleTunnel) check() {
	quiet := time.Duration(time.Now().UnixNano() - it.last.Load())
	if quiet >= it.d {
		it.ReadWriteCloser.Close()
		return
	}
	it.t.Reset(it.d - quiet)
}

func (it *idleTunnel) Read(b []byte) (int, error) {
	n, err := it.ReadWriteCloser.Read(b)
	if n > 0 {
		it.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (it *idleTunnel) Write(b []byte) (int, error) {
	it.last.Store(time.Now().UnixNano())
	return it.ReadWriteCloser.Write(b)
}

func (it *idleTunnel) Close() error {
	it.t.Stop()
	return it.ReadWriteCloser.Close()
}

// answer is modifyResponse for an answer to a request sent upstream with
// the traceparent values tp.
func (p *Proxy) answer(res *http.Response, tp []string) error {
	if err := p.answerGate(res.Request, res.StatusCode); err != nil {
		return err
	}
	res.Header.Del(p.reqID)
	res.Header.Del("Traceparent")
	if len(tp) == 1 {
		res.Header["Traceparent"] = tp
	}
	return nil
}

// answerGate withholds the answer (status code) to req from a client
// blocked while req was in flight: a *withheldError. On a single node the
// request lane has first seen the client's failures answered so far
// (answerGate.pass).
func (p *Proxy) answerGate(req *http.Request, code int) error {
	var mark *gateMark
	if p.gate != nil && req != nil {
		ctx := req.Context()
		if mark, _ = ctx.Value(gateKey{}).(*gateMark); mark != nil {
			mark.client = httpaudit.ClientIP(ctx)
		}
	}
	if mark != nil && mark.client.IsValid() {
		// Given only once the lane has seen this client's failures
		// answered so far: the block one of them causes covers it.
		var reason string
		withhold, begun := p.gate.pass(mark.client, code, func() bool {
			var ok bool
			if p.blocks.Len() > 0 {
				reason, ok = p.blockedNow(req)
			}
			return ok
		})
		if withhold {
			return &withheldError{status: code, reason: reason}
		}
		mark.begun = begun // ended by ServeHTTP once the request's events are queued
	} else if p.blocks.Len() > 0 && req != nil {
		if reason, ok := p.blockedNow(req); ok {
			return &withheldError{status: code, reason: reason}
		}
	}
	return nil
}

// blockedNow reports whether a decision made while the request was in
// flight covers its client (or its Basic-auth user), and why.
func (p *Proxy) blockedNow(r *http.Request) (string, bool) {
	if scenario, origin, _, ok := p.blocks.Blocked(httpaudit.ClientIP(r.Context())); ok {
		return blockReason("", scenario, origin), true
	}
	if p.blocks.hasUsers() {
		if user, _, ok := r.BasicAuth(); ok {
			if scenario, origin, _, ok := p.blocks.BlockedUser(user); ok {
				return blockReason(p.red.String(user), scenario, origin), true
			}
		}
	}
	return "", false
}

// withheldError is modifyResponse's refusal of an answer: the client was
// blocked while its request was in flight. Answers to the last attempts of
// a brute force, one of which may be the right password, never reach it.
type withheldError struct {
	status int
	reason string
}

func (e *withheldError) Error() string {
	return "answer withheld: " + e.reason
}

// upstreamError answers 502 or 504 and puts the reason on the access
// event; or 403 for an answer withheld from a client blocked meanwhile.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	var wh *withheldError
	if errors.As(err, &wh) {
		if ex, ok := w.(*exchange); ok {
			ex.withheld = wh.status
		}
		p.withheld.Add(1)
		// Recorded whatever the refusal budget: the request did reach the
		// upstream, and such answers come no faster than it gives them.
		p.recorded(httpaudit.Audit(ctx, httpaudit.Op{
			Action: ActionWithheld, Outcome: event.OutcomeFailure, Resource: r.URL.Path,
			Reason:   wh.reason + "; blocked while its request was in flight, the upstream's answer (" + strconv.Itoa(wh.status) + ") was withheld",
			Category: []string{event.CategoryWeb}, Type: []string{event.TypeDenied},
		}))
		writeRefusal(w, http.StatusForbidden, 0)
		return
	}
	status, reason := errorStatus(err)
	if ctx.Err() != nil {
		// The client went away: nobody reads the answer; nginx's 499.
		status, reason = 499, "client closed the request"
	} else {
		p.upErrors.Add(1)
	}
	msg := p.red.String(err.Error())
	httpaudit.Annotate(ctx, func(ev *event.Event) {
		ev.Reason = reason
		ev.ErrorMessage = msg
		ev.LogLevel = "error"
	})
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	if status != 499 {
		w.Write([]byte(http.StatusText(status) + ": " + reason + "\n"))
	}
}

// newTransport returns the transport to the upstreams, whose connections
// count against up: a dial that finds it full closes the idle
// connections kept for reuse and waits for one to close, at most
// timeouts.dial (then the request gets 502).
func newTransport(t Timeouts, up *connlimit.Limiter) *h1Transport {
	d := &net.Dialer{Timeout: t.Dial, KeepAlive: 30 * time.Second}
	var tr *h1Transport
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return up.Dial(ctx, t.Dial, tr.CloseIdleConnections, d.DialContext, network, addr)
	}
	std := &http.Transport{
		Proxy:                 nil, // never an environment proxy between gateway and upstream
		DialContext:           dial,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       t.Idle,
		ResponseHeaderTimeout: t.ResponseHeader,
		TLSHandshakeTimeout:   t.Dial,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
		// The client's Accept-Encoding is passed through as sent; the
		// gateway never asks for compression it would have to undo.
		DisableCompression: true,
		TLSClientConfig:    &tls.Config{MinVersion: tls.VersionTLS12},
		WriteBufferSize:    16 << 10,
		ReadBufferSize:     16 << 10,
	}
	tr = newH1Transport(std, dial)
	tr.crowded = up.Crowded
	return tr
}

// bufferPool hands ReverseProxy 32 KiB copy buffers. Buffers are pooled
// as array pointers so that Put allocates nothing.
type bufferPool struct{ p sync.Pool }

const poolBufSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if v := b.p.Get(); v != nil {
		return v.(*[poolBufSize]byte)[:]
	}
	return new([poolBufSize]byte)[:]
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == poolBufSize {
		b.p.Put((*[poolBufSize]byte)(buf[:poolBufSize]))
	}
}

// teeBody is a request body on its way to the upstream. It keeps the
// first keep bytes (when keep > 0) and whether they are all of it, and
// once finish was called it refuses further reads, so that nothing
// touches the request after the exchange, even a transport still writing
// a body the upstream did not wait for.
type teeBody struct {
	mu       sync.Mutex
	body     interface{ Read([]byte) (int, error) }
	closer   interface{ Close() error }
	keep     int
	buf      []byte
	overflow bool
	eof      bool
	done     bool
	// length is the request's Content-Length (-1: unknown). Bytes read up
	// to it are the whole body, EOF or not: the transport reads the EOF
	// after the declared bytes in its own goroutine, which an upstream
	// that answered once it had them can beat, and the body (a login's
	// user name) was then taken for unread.
	length int64
}

func newTee(body interface {
	Read([]byte) (int, error)
	Close() error
}, keep int) *teeBody {
	return &teeBody{body: body, closer: body, keep: keep, length: -1}
}

var errExchangeOver = &net.OpError{Op: "read", Net: "body", Err: os.ErrClosed}

func (t *teeBody) Read(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return 0, errExchangeOver
	}
	n, err := t.body.Read(b)
	if t.keep > 0 && !t.overflow && n > 0 {
		if len(t.buf)+n > t.keep {
			t.overflow, t.buf = true, nil
		} else {
			t.buf = append(t.buf, b[:n]...)
		}
	}
	if err != nil {
		t.eof = true
	}
	return n, err
}

func (t *teeBody) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return nil
	}
	return t.closer.Close()
}

// finish ends the exchange and returns the whole body if it was kept and
// read to its end, else nil.
func (t *teeBody) finish() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	whole := t.eof || t.length >= 0 && int64(len(t.buf)) == t.length
	if t.keep > 0 && !t.overflow && whole {
		if t.buf == nil {
			return []byte{}
		}
		return t.buf
	}
	return nil
}
