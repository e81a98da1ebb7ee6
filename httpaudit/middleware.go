package httpaudit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/tick"
)

type ctxKey struct{}

// state is everything the middleware keeps for one request. It doubles as
// the request's context (carrying itself as a value) and the response
// writer wrapper: a request costs the middleware two allocations, the
// state and WithContext's copy of the request for the handler (a request
// with a body one more, for its bodyReader; one whose handler sets a user
// one more, for its actor; one without an incoming request id one more,
// for the generated id). The state must not hold the handler's request:
// it waits in the queue after the client was answered, and the request
// (its headers, the forms its handler parsed) would wait with it
// (TestQueuedRequestKeepsNoRequest). It is kept small, what only some
// requests need elsewhere (reqOpt, bodyReader, actor): it is allocated,
// zeroed and collected on every request, and every byte it drops is a byte
// less for the garbage collector on each.
type state struct {
	// What the writer goroutine reads to encode the access event comes
	// first, together, so that it touches as few of the cache lines the
	// request's core wrote as it can.
	info      reqInfo
	written   int64
	body      *bodyReader // nil when the request has no body
	requestID string
	// trace is the trace context: the trace id, '-', the span id (as a
	// traceparent carries them, h[3:52]: 49 bytes), or the incoming
	// traceparent header not yet checked (55 bytes or more), or "". The
	// check of a header (parseTraceparent) is left to whoever reads the
	// ids (traceIDs), most often the writer goroutine: off the request's
	// path, which only hands the header over. One string rather than two
	// keeps the state in the 224-byte size class (TestStateSize).
	trace  string
	who    atomic.Pointer[actor] // nil until the handler sets a user or an annotation; never changes once set
	status int32                 // 0 until the handler wrote the header (or a body, or hijacked)
	// method is the request's method as a methodCode (one byte where a
	// string took sixteen: the state is allocated on every request), 0
	// for any other, which info.opt.method then holds.
	method uint8

	// What only the request's own goroutine uses.
	context.Context // the incoming request's context
	l               *Logger
	w               http.ResponseWriter
	idHeader        [1]string
}

// traceIDs are the ids st.trace holds, checked, or "" and "": a
// traceparent header is parsed here, every time (a pure function of the
// header, so that the request's goroutine and the writer, each reading
// the ids, agree without writing to the state).
func (st *state) traceIDs() (traceID, spanID string) {
	t := st.trace
	if len(t) != 49 {
		var ok bool
		if traceID, spanID, ok = parseTraceparent(t); !ok {
			return "", ""
		}
		return traceID, spanID
	}
	return t[:32], t[33:]
}

// actor is what a handler adds to its request's events, or says of them,
// allocated when it first does (SetUser, a successful Auth, Annotate,
// Discard): many requests (health checks, public and refused ones) never
// do, and the state stays smaller without it. Its lock is its own rather than the state's for the same
// reason: the state is allocated on every request, and eight bytes more
// took it into the next size class (TestStateSize).
type actor struct {
	mu       sync.Mutex // handlers may call SetUser and Annotate from other goroutines
	user     User
	annotate func(*event.Event) // set by Annotate, applied to the access event
	discard  atomic.Bool        // set by Discard, from any goroutine
}

// lockActor returns st's actor, allocating it first if need be, locked:
// the caller unlocks it. Concurrent first calls agree on one actor.
func (st *state) lockActor() *actor {
	a := st.who.Load()
	if a == nil {
		a = new(actor)
		if !st.who.CompareAndSwap(nil, a) {
			a = st.who.Load()
		}
	}
	a.mu.Lock()
	return a
}

// actor returns the request's user and Annotate hook so far.
func (st *state) actor() (User, func(*event.Event)) {
	a := st.who.Load()
	if a == nil {
		// Most requests have neither: the writer asks for every event, and
		// the load spares it the lock.
		return User{}, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.user, a.annotate
}

// Value implements context.Context: the state is its own value under
// ctxKey, everything else comes from the parent.
func (st *state) Value(key any) any {
	if key == (ctxKey{}) {
		return st
	}
	return st.Context.Value(key)
}

func stateFrom(ctx context.Context) *state {
	st, _ := ctx.Value(ctxKey{}).(*state)
	return st
}

// Discard tells the middleware not to record the current request's access
// event. It is for servers that sample floods of refused or anonymous
// requests, which would otherwise let anyone fill the trail's disk: they
// record some and count the rest. Events the handler records with Auth,
// Audit or Log are unaffected. Outside the middleware it does nothing.
func Discard(ctx context.Context) {
	if st := stateFrom(ctx); st != nil {
		a := st.lockActor()
		a.discard.Store(true)
		a.mu.Unlock()
	}
}

// Middleware returns next wrapped so that every request is recorded. It
// has the signature routers expect of middleware (chi's Use, gorilla/mux's
// Use, or plain wrapping of a ServeMux).
func (l *Logger) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.serve(w, r, next)
	})
}

func (l *Logger) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	// Everything the state holds is worked out first and the state is
	// built in one literal: each field is stored once, and while the
	// garbage collector marks (much of the time under load) the write
	// barriers of its pointers are taken in two batches rather than one
	// call per field set.
	info, method := l.capture(r)
	// An incoming id is kept only if it is safe and carries no secret: a
	// JWT, say, fits the allowed alphabet.
	id := header(r.Header, l.cfg.RequestIDHeader)
	if !uuidShaped(id) && (!validRequestID(id) || l.red.String(id) != id) {
		// The id's time is the request's start, which capture read as a
		// tick.
		var buf [36]byte
		id = string(event.AppendIDAt(buf[:0], l.idTime(&info)))
	}
	// A traceparent is checked when its ids are read (traceIDs), unless
	// the check decides whether to generate a trace context now. Shorter
	// than 55 bytes it is not one: dropped (and never taken for the
	// 49-byte checked form).
	var trace string
	if tp := header(r.Header, "Traceparent"); len(tp) >= 55 {
		if !l.cfg.GenerateTrace {
			trace = tp
		} else if _, _, ok := parseTraceparent(tp); ok {
			trace = tp[3:52]
		}
	}
	if trace == "" && l.cfg.GenerateTrace {
		trace = newTrace()
	}
	var body *bodyReader
	if r.Body != nil && r.Body != http.NoBody {
		body = &bodyReader{body: r.Body, declared: r.ContentLength, max: l.cfg.MaxBody,
			capture: l.cfg.MaxBody > 0 && capturable(info.opt.contentType)}
	}
	parent := r.Context()
	st := &state{info: info, body: body, requestID: id, trace: trace, method: method,
		Context: parent, l: l, w: w, idHeader: [1]string{id}}
	w.Header()[l.cfg.RequestIDHeader] = st.idHeader[:]

	r2 := r.WithContext(st)
	if body != nil {
		r2.Body = body
	}
	if l.cfg.LogStart {
		ev := l.requestEvent(st, l.startOf(&st.info, l.stamp()))
		ev.Type = typeStart
		ev.Action = event.ActionHTTPRequestStart
		l.tryEnqueue(ev)
	}

	defer func() {
		if p := recover(); p != nil {
			// The panic is recorded as the 500 the client will see, queued
			// without the option to drop it, then re-raised so that the
			// application's own recovery (or net/http's) still runs.
			st.info.elapsed = l.sinceStart(&st.info)
			ev := l.finish(st, l.stamp())
			ev.StatusCode = http.StatusInternalServerError
			ev.Outcome = event.OutcomeFailure
			ev.Type = typeAccessError
			ev.LogLevel = "error"
			if p == http.ErrAbortHandler {
				ev.ErrorMessage = "handler aborted"
			} else {
				ev.ErrorMessage = l.cut(l.red.String(fmt.Sprintf("panic: %v", p)))
			}
			_ = l.enqueue(context.Background(), ev, false)
			panic(p)
		}
	}()
	next.ServeHTTP(st, r2)
	// A queued st must not keep the response alive (a server's response
	// object, its header maps and buffers): the writer may take a
	// millisecond or more to get to it, and everything it keeps is work
	// for every garbage collection meanwhile. The handler may no longer
	// use its ResponseWriter (net/http's rule), and one that does gets
	// errUsedAfterReturn rather than another request's connection.
	st.w = finished{}

	// The completion event is built and scrubbed by the writer goroutine
	// from what st captured: the request path only hands st over.
	st.info.elapsed = l.sinceStart(&st.info)
	if a := st.who.Load(); a != nil && a.discard.Load() {
		return
	}
	if st.status >= 400 {
		_ = l.enqueueItem(context.Background(), item{st: st, size: st.size()}, false)
		return
	}
	if l.cfg.Skip != nil && l.cfg.Skip(r) {
		return
	}
	l.tryEnqueueItem(item{st: st, size: st.size()})
}

// markStart notes when a request starts. With the real clock that is one
// reading of the tick counter (package tick: the processor's time-stamp
// counter where it can be used, ~10 ns, where a reading of the monotonic
// clock cost 40-100 ns on a virtual machine, and time.Now as much again):
// the writer turns it into wall-clock time (startOf) against its own
// reading of the clock and the counter, taken once per batch.
func (l *Logger) markStart(ri *reqInfo) {
	if l.realClock {
		ri.startTick = tick.Now()
		return
	}
	ri.opt.start = l.cfg.Now()
}

// sinceStart is what elapsed since the request of ri started: ticks with
// the real clock (duration converts them), nanoseconds with Config.Now.
func (l *Logger) sinceStart(ri *reqInfo) int64 {
	if l.realClock {
		return tick.Now() - ri.startTick
	}
	return int64(l.cfg.Now().Sub(ri.opt.start))
}

// stamp is a reading of the real clock and the tick counter together,
// with the counter's scale since New: what turns a request's ticks into
// times and durations. Every tick it converts lies between New's reading
// and its own, which keeps the conversion within the readings' pairing
// (see package tick).
type stamp struct {
	tick.Reading
	scale tick.Scale
}

// stamp reads the clock and the counter now.
func (l *Logger) stamp() stamp {
	r := tick.Read()
	return stamp{r, tick.ScaleBetween(l.base, r)}
}

// at is the time of a tick near s (a second or so either way, which the
// scale extrapolates).
func (s *stamp) at(t int64) time.Time {
	if d := t - s.Ticks; d < 0 {
		return s.Time.Add(-s.scale.Duration(-d))
	}
	return s.Time.Add(s.scale.Duration(t - s.Ticks))
}

// maxIDExtrapolation is how far from the writer's last stamp idTime
// extrapolates a request's start: the scale's error, and any slewing of
// the clock since, grow with the distance.
const maxIDExtrapolation = time.Second

// idTime is the time a generated request id carries: the request's start.
// A busy Logger converts it against the stamp of the writer's last batch,
// no clock reading (recent); one idle for more than maxIDExtrapolation, or
// a young one whose last stamp is closer to New than to the request,
// reads the clock: the scale is measured between New and the stamp, and
// extrapolated over no more than that span its error stays within the
// readings' pairing. The event's @timestamp is the same tick converted by
// the writer's next stamp: the two agree to a few microseconds.
func (l *Logger) idTime(ri *reqInfo) time.Time {
	if !l.realClock {
		return ri.opt.start
	}
	if s := l.recent.Load(); s != nil {
		d := ri.startTick - s.Ticks
		if d < 0 {
			d = -d
		}
		if d <= s.Ticks-l.base.Ticks && s.scale.Duration(d) < maxIDExtrapolation {
			return s.at(ri.startTick)
		}
	}
	return l.startOf(ri, l.stamp())
}

// startOf is when the request of ri started, by the wall clock. now is a
// stamp taken since: the start is now's wall-clock time less the ticks
// elapsed between the two. A step of the wall clock in between (it is at
// most a batch's wait, a fraction of a millisecond) moves the start with
// it, as if the request had begun after the step.
func (l *Logger) startOf(ri *reqInfo, now stamp) time.Time {
	if l.realClock {
		return now.Time.Add(-now.scale.Duration(now.Ticks - ri.startTick))
	}
	return ri.opt.start
}

// duration is how long the handler of ri took (ri.elapsed), converted at
// now's scale.
func (l *Logger) duration(ri *reqInfo, now stamp) time.Duration {
	if l.realClock {
		return now.scale.Duration(ri.elapsed)
	}
	return time.Duration(ri.elapsed)
}

// reqInfo is what an event needs of a request, captured while the request
// is being served: strings are immutable, so the writer goroutine can
// build the event from them after the handler returned. (The method is
// the state's: see state.method.)
type reqInfo struct {
	path, rawQuery, ua, referer, remoteAddr string
	startTick                               int64   // with the real clock: tick.Now at the start (else opt.start)
	elapsed                                 int64   // until the handler returned (sinceStart: ticks, or nanoseconds with Config.Now)
	opt                                     *reqOpt // what only some configurations record
}

// reqOpt holds what a request's events need only when the Logger trusts
// proxies, records headers or captures bodies, or has a Config.Now clock,
// or when the client percent-encoded the path, sent a method other than
// the standard ones, or the handler recorded another path (SetPath); it is
// allocated only then, to keep the per-request state small.
type reqOpt struct {
	start       time.Time // by a Config.Now clock
	method      string    // one that has no methodCode
	rawPath     string
	path        string // by SetPath: url.path in place of the client's path
	contentType string
	xff, fwd    []string
	headers     [][]string // aligned with Config.Headers
}

// noOpt stands in for the reqOpt of requests of Loggers that need none.
var noOpt = &reqOpt{}

// methods are the methods of RFC 9110 and RFC 5789 (PATCH), indexed by
// their methodCode less one: they need no JSON escaping nor sanitizing.
var methods = [...]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodHead,
	http.MethodOptions, http.MethodPatch, http.MethodConnect, http.MethodTrace}

// methodCode is m's index in methods plus one, or 0 if it is none of them.
func methodCode(m string) uint8 {
	switch m {
	case http.MethodGet:
		return 1
	case http.MethodPost:
		return 2
	case http.MethodPut:
		return 3
	case http.MethodDelete:
		return 4
	case http.MethodHead:
		return 5
	case http.MethodOptions:
		return 6
	case http.MethodPatch:
		return 7
	case http.MethodConnect:
		return 8
	case http.MethodTrace:
		return 9
	}
	return 0
}

// methodName is the request's method as sent: one of methods, or the
// other one info.opt holds.
func (st *state) methodName() string {
	if c := st.method; c != 0 {
		return methods[c-1]
	}
	return st.info.opt.method
}

// capture reads what the events of r need of it, and notes its start
// (markStart). The method is returned as its methodCode; another method
// is kept in the reqOpt, which is then allocated.
func (l *Logger) capture(r *http.Request) (reqInfo, uint8) {
	h := r.Header
	ri := reqInfo{path: r.URL.Path, rawQuery: r.URL.RawQuery, ua: header(h, "User-Agent"), referer: header(h, "Referer"),
		remoteAddr: r.RemoteAddr, opt: noOpt}
	method := methodCode(r.Method)
	if method != 0 && l.lean && r.URL.RawPath == "" {
		ri.startTick = tick.Now()
		return ri, method
	}
	o := &reqOpt{rawPath: r.URL.RawPath}
	ri.opt = o
	if method == 0 {
		o.method = r.Method
	}
	if l.cfg.MaxBody > 0 {
		o.contentType = header(h, "Content-Type")
	}
	if len(l.cfg.TrustedProxies) > 0 {
		if l.cfg.ForwardedHeader == "Forwarded" {
			o.fwd = h["Forwarded"]
		} else {
			o.xff = h["X-Forwarded-For"]
		}
	}
	if len(l.cfg.Headers) > 0 {
		o.headers = make([][]string, len(l.cfg.Headers))
		for i, name := range l.cfg.Headers {
			o.headers[i] = h[name]
		}
	}
	l.markStart(&ri)
	return ri, method
}

// size is how many bytes of its request st keeps alive: what its queued
// access event holds on to (Config.MaxQueueBytes).
func (st *state) size() int {
	n := st.info.size()
	if st.body != nil {
		n += cap(st.body.captured)
	}
	return n
}

// size is the bytes of its request ri keeps alive.
func (ri *reqInfo) size() int {
	n := len(ri.path) + len(ri.rawQuery) + len(ri.ua) + len(ri.referer) + len(ri.remoteAddr)
	if o := ri.opt; o != noOpt {
		n += len(o.method) + len(o.rawPath) + len(o.path) + len(o.contentType)
		for _, vs := range [][]string{o.xff, o.fwd} {
			for _, v := range vs {
				n += len(v)
			}
		}
		for _, vs := range o.headers {
			for _, v := range vs {
				n += len(v)
			}
		}
	}
	return n
}

// header is h.Get(key) for a key already in canonical form: Get
// canonicalises its argument on every call, which cost more than the
// lookup.
func header(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

var (
	categoryWeb     = []string{event.CategoryWeb}
	typeAccess      = []string{event.TypeAccess}
	typeStart       = []string{event.TypeStart}
	typeAccessError = []string{event.TypeAccess, event.TypeError}
)

// requestEvent fills the request side of an event from the request's
// scrubbed fields.
func (l *Logger) requestEvent(st *state, now time.Time) *event.Event {
	ri := &st.info
	ev := l.newEvent(now)
	ev.Category = categoryWeb
	ev.Dataset = event.DatasetAccess
	ev.RequestID = st.requestID
	ev.TraceID, ev.SpanID = st.traceIDs()
	var f reqFields
	l.fields(st, nil, &f)
	ev.Method, ev.Path, ev.Query, ev.Original = f.method, f.path, f.query, f.original
	ev.UserAgent, ev.Referrer = f.ua, f.referrer
	ev.SourceIP, ev.SourcePort, ev.ClientIP = f.sourceIP, f.sourcePort, f.clientIP
	for i, vs := range ri.opt.headers {
		if len(vs) > 0 {
			if ev.RequestHeaders == nil {
				ev.RequestHeaders = make(map[string]string, len(ri.opt.headers))
			}
			name := l.cfg.Headers[i]
			ev.RequestHeaders[strings.ToLower(name)] = l.cut(l.red.Header(name, strings.Join(vs, ", ")))
		}
	}
	return ev
}

// cut caps a scrubbed value at Config.MaxFieldBytes. Scrubbing comes
// first: a secret cut in half would no longer be recognised, and its
// first half would be stored.
func (l *Logger) cut(s string) string {
	max := l.cfg.MaxFieldBytes
	if len(s) <= max {
		return s
	}
	suffix := "…[truncated from " + strconv.Itoa(len(s)) + " bytes]"
	n := max - len(suffix)
	if n < 0 {
		n = 0
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + suffix
}

// finish builds the completion event of a request once it was served; now
// is a stamp taken since (see startOf).
func (l *Logger) finish(st *state, now stamp) *event.Event {
	ri := &st.info
	ev := l.requestEvent(st, l.startOf(ri, now))
	ev.Type = typeAccess
	ev.Action = event.ActionHTTPRequest
	ev.Duration = l.duration(ri, now)
	ev.StatusCode = int(st.status)
	if ev.StatusCode == 0 {
		ev.StatusCode = http.StatusOK // nothing written: net/http sends 200
	}
	ev.Outcome = event.OutcomeSuccess
	if ev.StatusCode >= 400 {
		ev.Outcome = event.OutcomeFailure
	}
	ev.ResponseBodyBytes = st.written
	ev.RequestBodyBytes = st.requestBytes()
	if body := st.body.capturedBody(); body != nil {
		ev.RequestBody = l.scrubBody(ri.opt.contentType, body)
	}
	u, annotate := st.actor()
	ev.UserID, ev.UserName, ev.UserRoles = l.cut(u.ID), l.cut(u.Name), u.Roles
	if annotate != nil {
		annotate(ev)
	}
	return ev
}

func (l *Logger) scrubBody(contentType string, body []byte) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/x-www-form-urlencoded" {
		return l.red.Form(string(body))
	}
	out, err := l.red.JSON(nil, body)
	if err != nil {
		// Not valid JSON: free-text detectors are all that can apply, and
		// key-based scrubbing cannot; record that rather than guess.
		return "[unparsable JSON body not recorded]"
	}
	return string(out)
}

func capturable(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "application/x-www-form-urlencoded" ||
		(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// sanitizeMethod keeps the method as sent when it is a token, and replaces
// anything else (net/http accepts odd methods) so the field stays short.
func sanitizeMethod(m string) string {
	if len(m) > 16 {
		return "INVALID"
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; c <= ' ' || c >= 0x7f {
			return "INVALID"
		}
	}
	return m
}

// splitAddr parses a connection's RemoteAddr. The address text is a slice
// of addr when that is already canonical (the common IPv4 case), which
// saves formatting it again on every request.
func splitAddr(addr string) (netip.Addr, string, int) {
	// The common case, "a.b.c.d:port", without the general parsers.
	if a, n := parseIPv4(addr); n > 0 && n < len(addr) && addr[n] == ':' {
		if p, ok := parsePort(addr[n+1:]); ok {
			return a, addr[:n], p
		}
	}
	return splitAddrSlow(addr)
}

// parseIPv4 parses the dotted quad at the start of s as netip.ParseAddr
// would accept it alone (four decimal fields, none above 255, no leading
// zeros) and returns it and its length; 0 when s does not start with one.
func parseIPv4(s string) (netip.Addr, int) {
	var ip [4]byte
	i := 0
	for f := range 4 {
		if f > 0 {
			if i >= len(s) || s[i] != '.' {
				return netip.Addr{}, 0
			}
			i++
		}
		st, v := i, 0
		for i < len(s) && i-st < 4 && '0' <= s[i] && s[i] <= '9' {
			v = v*10 + int(s[i]-'0')
			i++
		}
		if n := i - st; n == 0 || n > 3 || v > 255 || (n > 1 && s[st] == '0') {
			return netip.Addr{}, 0
		}
		ip[f] = byte(v)
	}
	return netip.AddrFrom4(ip), i
}

// parsePort parses one to five decimal digits.
func parsePort(s string) (int, bool) {
	if len(s) == 0 || len(s) > 5 {
		return 0, false
	}
	p := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		p = p*10 + int(s[i]-'0')
	}
	return p, true
}

// splitAddrSlow is splitAddr for every other form.
func splitAddrSlow(addr string) (netip.Addr, string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, "", 0
	}
	p, _ := strconv.Atoi(port)
	if a.Is4() {
		return a, host, p
	}
	a = a.Unmap()
	return a, a.String(), p
}

func (l *Logger) trusted(a netip.Addr) bool {
	for _, p := range l.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP finds the originating client behind trusted proxies. It walks
// the forwarding chain from the nearest hop outwards and stops at the first
// address that is not a trusted proxy: hops further out were written by an
// untrusted party and could be forged.
func (l *Logger) clientIP(ri *reqInfo, src netip.Addr) (netip.Addr, bool) {
	if len(l.cfg.TrustedProxies) == 0 || !l.trusted(src) {
		return netip.Addr{}, false
	}
	hops := forwardedHops(ri.opt.fwd, ri.opt.xff)
	client := src
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := parseHop(hops[i])
		if err != nil {
			break
		}
		client = a
		if !l.trusted(a) {
			break
		}
	}
	return client, client != src
}

// forwardedHops returns the addresses of the RFC 7239 Forwarded header's
// for= parameters when present, else those of X-Forwarded-For, nearest
// last (the request holds the one of Config.ForwardedHeader only).
func forwardedHops(fw, xff []string) []string {
	var hops []string
	if len(fw) > 0 {
		for _, line := range fw {
			for elem := range strings.SplitSeq(line, ",") {
				for pair := range strings.SplitSeq(elem, ";") {
					k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
					if ok && strings.EqualFold(k, "for") {
						hops = append(hops, strings.Trim(v, `"`))
					}
				}
			}
		}
		return hops
	}
	for _, line := range xff {
		for hop := range strings.SplitSeq(line, ",") {
			hops = append(hops, strings.TrimSpace(hop))
		}
	}
	return hops
}

func parseHop(h string) (netip.Addr, error) {
	if strings.HasPrefix(h, "[") { // [v6]:port or [v6]
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return netip.Addr{}, errors.New("bad hop")
		}
		h = h[1:end]
	} else if strings.Count(h, ":") == 1 { // v4:port
		h, _, _ = strings.Cut(h, ":")
	}
	a, err := netip.ParseAddr(h)
	if err == nil && a.Zone() != "" {
		// A zone names an interface of the host that wrote it, not a
		// client, and netip keeps its text as sent (quotes, braces):
		// written as client.ip it broke the event's JSON.
		return netip.Addr{}, errors.New("bad hop: zone")
	}
	return a.Unmap(), err
}

// ResponseWriter side of state.

// Header implements http.ResponseWriter.
func (st *state) Header() http.Header { return st.w.Header() }

// WriteHeader implements http.ResponseWriter.
func (st *state) WriteHeader(code int) {
	if st.status == 0 && code >= 200 {
		st.status = int32(code)
	}
	st.w.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (st *state) Write(p []byte) (int, error) {
	if st.status == 0 {
		st.status = http.StatusOK
	}
	n, err := st.w.Write(p)
	st.written += int64(n)
	return n, err
}

// ReadFrom keeps io.Copy's fast path (sendfile) available to handlers.
func (st *state) ReadFrom(src io.Reader) (int64, error) {
	if st.status == 0 {
		st.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := st.w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{st.w}, src)
	}
	st.written += n
	return n, err
}

// Flush implements http.Flusher when the underlying writer does.
func (st *state) Flush() {
	if st.status == 0 {
		st.status = http.StatusOK
	}
	_ = http.NewResponseController(st.w).Flush()
}

// Hijack implements http.Hijacker when the underlying writer does; a
// hijacked connection (a WebSocket) is recorded with status 101.
func (st *state) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(st.w).Hijack()
	if err == nil && st.status == 0 {
		st.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

// finished stands in for the response writer once the handler returned.
type finished struct{}

// errUsedAfterReturn is what writing to a request's ResponseWriter after
// its handler returned gets.
var errUsedAfterReturn = errors.New("httpaudit: ResponseWriter used after the handler returned")

func (finished) Header() http.Header       { return http.Header{} }
func (finished) Write([]byte) (int, error) { return 0, errUsedAfterReturn }
func (finished) WriteHeader(int)           {}

// Unwrap lets http.ResponseController reach the underlying writer.
func (st *state) Unwrap() http.ResponseWriter { return st.w }

// bodyReader is the request-body side of a request with a body: it counts
// what the handler reads and keeps a copy of capturable bodies up to
// Config.MaxBody.
type bodyReader struct {
	body     io.ReadCloser
	declared int64 // Content-Length
	max      int   // Config.MaxBody
	read     int64
	captured []byte
	capture  bool // the content type is one that is recorded
	overflow bool // the body outgrew max: nothing is recorded
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.read += int64(n)
	if b.capture && !b.overflow && n > 0 {
		if len(b.captured)+n > b.max {
			b.overflow = true
			b.captured = nil
		} else {
			b.captured = append(b.captured, p[:n]...)
		}
	}
	return n, err
}

func (b *bodyReader) Close() error { return b.body.Close() }

// capturedBody is the body to record, scrubbed, or nil: none was captured
// (not capturable, too large, empty, or no body at all).
func (b *bodyReader) capturedBody() []byte {
	if b == nil || !b.capture || b.overflow || len(b.captured) == 0 {
		return nil
	}
	return b.captured
}

// requestBytes is http.request.body.bytes: what the handler read of the
// body, or the declared length when it read nothing.
func (st *state) requestBytes() int64 {
	var read int64
	if st.body != nil {
		read = st.body.read
	}
	if read == 0 && st.body != nil && st.body.declared > 0 {
		return st.body.declared
	}
	return read
}
