// Package proxy is the trailguard gateway (`trailguard proxy`): a reverse
// proxy in front of any HTTP API that records what the httpaudit
// middleware records for a Go API — every request with its correlation id
// and trace context, logins and their outcome, refused authorisations and
// sensitive operations, scrubbed of secrets — without a change to the API,
// and that refuses clients the detection engine decided to block, and
// clients over their rate limit, without touching the upstream.
//
// It is built on net/http/httputil.ReverseProxy with pooled copy buffers:
// HTTP/1.1 and HTTP/2 (TLS, or cleartext h2c), bodies streamed both ways,
// WebSocket and Server-Sent Events passed through, hop-by-hop headers
// removed, Forwarded and X-Forwarded-* set, upstream timeouts, and a 502 or
// 504 with an event when the upstream fails.
//
// Events are recorded by an httpaudit.Logger wrapped around the proxy, so
// the access events, correlation ids, trusted-proxy rules, body capture
// and scrubbing are the middleware's own. [New] builds the gateway around
// any sink; [Open] gives it the storage `trailguard proxy` uses: a local
// ledger and index (single node), or a durable spool shipping to a
// collector whose decision stream it enforces.
package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/httpaudit"
	"github.com/trailguard/trailguard/internal/connlimit"
	"github.com/trailguard/trailguard/internal/ipnet"
	"github.com/trailguard/trailguard/redact"
	"github.com/trailguard/trailguard/ship"
)

// Actions of the gateway's own refusals (event.action).
const (
	// ActionBlocked is a request refused because a block decision covers
	// its client.
	ActionBlocked = "request_blocked"
	// ActionWithheld is an upstream answer not given to the client,
	// blocked while its request was in flight (the request reached the
	// upstream; the client got a 403).
	ActionWithheld = "response_withheld"
	// ActionRateLimited is a request refused by a rate limit (OWASP
	// excess_rate_limit_exceeded).
	ActionRateLimited = event.ActionRateLimitExceeded
	// ActionDecisionsApplied records a change in the decisions enforced.
	ActionDecisionsApplied = "decisions_applied"
	// ActionMonitorDisabled and ActionMonitorEnabled are the alerts raised
	// when a decision source becomes unreachable (the gateway keeps its
	// last decisions: fail-open) and when it is back.
	ActionMonitorDisabled = "sys_monitor_disabled"
	ActionMonitorEnabled  = "sys_monitor_enabled"
)

// Stats are the gateway's counters since New.
type Stats struct {
	Forwarded      uint64 // requests sent to an upstream
	Blocked        uint64 // refused by a block decision (403)
	RateLimited    uint64 // refused by a rate limit (429)
	Unrecorded     uint64 // refusals counted but not recorded one by one
	UpstreamErrors uint64 // 502 and 504 answers
	NoRoute        uint64 // requests no route matched (404)
	NotRecorded    uint64 // inferred events (logins, audits) that could not be queued
	// EarlyBlocks counts blocks enforced from the gateway's own events
	// before detection's decision (single node; see docs/proxy.md).
	EarlyBlocks uint64
	// Withheld counts upstream answers not given to a client blocked
	// while its request was in flight (403; not counted in Blocked).
	Withheld uint64
	// LedgerWaits counts the requests of a single node that waited
	// before being served because its ledger was more than maxUndurable
	// (250 ms) behind the answers given (a crash loses at most that).
	LedgerWaits uint64
	Decisions   int // block decisions held now
	Events      httpaudit.Stats
}

// Proxy is the gateway's HTTP handler. It is safe for concurrent use.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	audit   *httpaudit.Logger
	red     *redact.Redactor
	routes  []*route
	logins  []*loginRule
	sens    []*sensRule
	trusted []netip.Prefix
	// rfc7239: the trusted proxies write Forwarded, not X-Forwarded-For
	// (Config.ForwardedHeader).
	rfc7239   bool
	blocks    *Blocklist
	gate      *answerGate // single node with a request lane: answers wait for it
	backlog   *backlog    // single node: requests wait while its ledger is behind (maxUndurable)
	limit     *limiter    // per client, all routes
	sampler   *sampler
	handler   http.Handler
	transport *h1Transport
	pool      *bufferPool
	noFast    atomic.Bool // tests: everything through ReverseProxy
	reqID     string      // canonical request id header

	stop context.CancelFunc
	wg   sync.WaitGroup
	// serving counts the requests whose handler has not returned: a
	// request cut at shutdown (http.Server.Close closes its connection
	// but does not wait for its handler) queues its event only when its
	// handler sees the cut, and the gateway waits for that before it
	// closes the event queue (waitRequests).
	serving   atomic.Int64
	closeOnce sync.Once
	closeErr  error

	forwarded, blocked, limited, upErrors, noRoute, unrecorded, notRecorded, laneBlocks, withheld atomic.Uint64
}

// New builds a gateway that records into cfg.Sink and enforces the
// decisions of cfg.Sources. The configuration is validated first; every
// mistake is reported. Close releases it (and closes the sink).
func New(cfg Config, log *slog.Logger) (*Proxy, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Sink == nil {
		return nil, errors.New("proxy: Config.Sink is required (or use Open, which makes one from data_dir or collector)")
	}
	if log == nil {
		log = slog.Default()
	}
	red, err := newRedactor(cfg)
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, log: log, red: red, blocks: NewBlocklist(cfg.Now),
		reqID:   http.CanonicalHeaderKey(cfg.RequestIDHeader),
		sampler: newSampler(cfg.RefusalsPerMinute, cfg.RefusalsTotalPerMinute, cfg.Now())}
	for _, s := range cfg.TrustedProxies {
		pr, _ := ipnet.Parse(s)
		p.trusted = append(p.trusted, pr)
	}
	p.rfc7239 = http.CanonicalHeaderKey(cfg.ForwardedHeader) == "Forwarded"
	// Upstream connections share the file descriptors Serve budgets two
	// a client connection for (connlimit.Fit): one HTTP/2 client
	// connection carries up to 250 requests at once, each forwarded on an
	// upstream connection of its own.
	upConns, _ := connlimit.Fit(cfg.MaxConnections, 2)
	p.transport = newTransport(cfg.Timeouts, connlimit.New(upConns, log, "upstream connections"))
	p.pool = &bufferPool{}
	for i := range cfg.Routes {
		rt, err := p.newRoute(cfg.Routes[i], p.transport, p.pool)
		if err != nil {
			return nil, err
		}
		p.routes = append(p.routes, rt)
	}
	// More specific routes first: a named host before a wildcard before
	// any host, then the longest prefix; otherwise in configuration order.
	slices.SortStableFunc(p.routes, func(a, b *route) int {
		if a.hostRank() != b.hostRank() {
			return b.hostRank() - a.hostRank()
		}
		return len(b.prefix) - len(a.prefix)
	})
	for _, l := range cfg.Logins {
		lr, err := newLoginRule(l)
		if err != nil {
			return nil, err
		}
		p.logins = append(p.logins, lr)
	}
	for _, s := range cfg.Sensitive {
		sr, err := newSensRule(s)
		if err != nil {
			return nil, err
		}
		p.sens = append(p.sens, sr)
	}
	if cfg.RateLimit != nil {
		p.limit = newLimiter(cfg.RateLimit, maxLimitKeys)
	}
	p.audit, err = httpaudit.New(httpaudit.Config{
		Sink:            cfg.Sink,
		Redactor:        red,
		ServiceName:     cfg.ServiceName,
		TrustedProxies:  p.trusted,
		ForwardedHeader: cfg.ForwardedHeader,
		RequestIDHeader: cfg.RequestIDHeader,
		Headers:         cfg.Headers,
		GenerateTrace:   true,
		ErrorLog:        log,
		Now:             cfg.Now,
		QueueSize:       eventQueueSize,
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p.handler = p.audit.Middleware(http.HandlerFunc(p.serve))

	ctx, cancel := context.WithCancel(context.Background())
	p.stop = cancel
	for _, src := range cfg.Sources {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			src.Run(ctx, func(u Update) { p.applyUpdate(src.Name(), u) }, func(err error) { p.sourceHealth(src.Name(), err) })
		}()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.sampleLoop(ctx)
	}()
	p.logSystem(event.ActionSysStartup, fmt.Sprintf("gateway started with %d routes", len(p.routes)))
	return p, nil
}

func newRedactor(cfg Config) (*redact.Redactor, error) {
	mode, err := redact.ParseMode(cfg.RedactMode)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	rc := redact.Config{Mode: mode}
	if cfg.RedactSecretFile != "" {
		b, err := readSecret(cfg.RedactSecretFile)
		if err != nil {
			return nil, err
		}
		rc.Secret = b
	}
	r, err := redact.New(rc)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return r, nil
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.serving.Add(1)
	defer p.serving.Add(-1) // after the middleware has queued the event
	if p.backlog != nil {
		p.backlog.wait(r.Context())
	}
	if p.gate == nil {
		p.handler.ServeHTTP(w, r)
		return
	}
	if m, _ := r.Context().Value(gateKey{}).(*gateMark); m != nil && m.conn {
		// The connection's mark: no context and request copy for it.
		*m = gateMark{conn: true}
		defer func() {
			if m.begun != nil {
				p.gate.end(m.begun)
			}
		}()
		p.handler.ServeHTTP(w, r)
		return
	}
	mark := &gateMark{}
	defer func() {
		if mark.begun != nil {
			// The middleware has queued the request's events by now,
			// also when the handler panicked (an aborted copy).
			p.gate.end(mark.begun)
		}
	}()
	p.handler.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), gateKey{}, mark)))
}

// connContext is the context of the requests of a connection the lean
// front end serves, from the connection's (ctx, which ends with it): its
// requests are served one at a time, and they share what net/http's
// requests each need their own of: the hold on the upstream connection
// that ends its exchange when ctx ends (upSlot: one AfterFunc instead of
// one per exchange) and, with a gate, the mark (instead of a mark, a
// context and a copy of the request for each).
func (p *Proxy) connContext(ctx context.Context) context.Context {
	s := &upSlot{}
	context.AfterFunc(ctx, s.fire)
	ctx = context.WithValue(ctx, upSlotKey{}, s)
	if p.gate == nil {
		return ctx
	}
	return context.WithValue(ctx, gateKey{}, &gateMark{conn: true})
}

// Blocklist is the set of decisions the gateway enforces; embedders may
// apply their own updates to it.
func (p *Proxy) Blocklist() *Blocklist { return p.blocks }

// Apply applies a decision update as if it came from the named source,
// and records the change.
func (p *Proxy) Apply(source string, u Update) { p.applyUpdate(source, u) }

// Stats returns the gateway's counters.
func (p *Proxy) Stats() Stats {
	st := Stats{
		Forwarded: p.forwarded.Load(), Blocked: p.blocked.Load(), RateLimited: p.limited.Load(),
		Unrecorded: p.unrecorded.Load(), UpstreamErrors: p.upErrors.Load(), NoRoute: p.noRoute.Load(),
		NotRecorded: p.notRecorded.Load(), EarlyBlocks: p.laneBlocks.Load(), Withheld: p.withheld.Load(),
		Decisions: p.blocks.Len(), Events: p.audit.Stats(),
	}
	if p.backlog != nil {
		st.LedgerWaits = p.backlog.held.Load()
	}
	return st
}

// waitRequests waits until no handler is running or deadline passes,
// and reports whether none is. The servers are closed by then, so the
// handlers left are ones cut at shutdown, which end as soon as they see
// their connection or upstream closed; only the shutdown polls.
func (p *Proxy) waitRequests(deadline time.Time) bool {
	for p.serving.Load() > 0 {
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// Close stops the decision sources, summarises unrecorded refusals,
// drains the event queue and closes the sink.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.stop()
		p.wg.Wait()
		p.summarize(p.cfg.Now())
		p.logSystem(event.ActionSysShutdown, "gateway stopping")
		p.closeErr = p.audit.Close()
		p.transport.close()
	})
	return p.closeErr
}

// exchange is one request's response writer: it records the status the
// client is sent, and lets http.ResponseController reach the writer below
// (flushes for SSE, hijacking for WebSocket).
type exchange struct {
	http.ResponseWriter
	status int
	// withheld is the upstream's status when its answer was not given
	// to the client, blocked while the request was in flight.
	withheld int
	// wt is the write timeout of an HTTP/2 stream (0: none; an HTTP/1
	// connection has it on the connection, wtConn): a client that leaves
	// its stream's flow-control window shut blocks the writes of that
	// stream alone. The stream's deadline is renewed as wtConn's is.
	wt halfRenewal
}

// streamDeadline renews an HTTP/2 stream's write deadline (see wt).
func (e *exchange) streamDeadline() {
	if dl, ok := e.wt.due(time.Now()); ok {
		http.NewResponseController(e.ResponseWriter).SetWriteDeadline(dl)
	}
}

func (e *exchange) WriteHeader(code int) {
	if e.status == 0 && code >= 200 {
		e.status = code
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *exchange) Write(b []byte) (int, error) {
	if e.status == 0 {
		e.status = http.StatusOK
	}
	if e.wt.d > 0 {
		e.streamDeadline()
	}
	return e.ResponseWriter.Write(b)
}

func (e *exchange) Unwrap() http.ResponseWriter { return e.ResponseWriter }

var exchanges = sync.Pool{New: func() any { return new(exchange) }}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	if bt := p.cfg.Timeouts.Body; bt > 0 && r.Body != nil && r.Body != http.NoBody {
		// Armed at once: a request refused before its body is read
		// leaves net/http to discard the body before it answers.
		r2 := new(http.Request)
		*r2 = *r
		r2.Body = newTimedBody(r.Body, http.NewResponseController(w), bt)
		r = r2
	}
	ctx := r.Context()
	if strings.EqualFold(r.Method, http.MethodTrace) || strings.EqualFold(r.Method, http.MethodConnect) {
		// TRACE echoes the request (cookies and credentials included) and
		// CONNECT would make the gateway a tunnel: nginx answers 405 too.
		p.reject(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" is not forwarded")
		return
	}
	path, err := matchPath(r.URL)
	if err != nil {
		p.reject(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if path != r.URL.Path {
		// The events say what was decided on: url.path the normalised
		// path (rules, searches and reports see every spelling of a route
		// as that route), url.original the target as the client sent it.
		httpaudit.SetPath(ctx, path)
	}
	if r.Header["X-Original-Url"] != nil || r.Header["X-Rewrite-Url"] != nil {
		// Symfony, Laravel and IIS route on these in place of the path:
		// the decisions would be made on one path and the upstream
		// serve another.
		p.reject(w, r, http.StatusBadRequest, "X-Original-URL and X-Rewrite-URL replace the path at some upstreams; the gateway does not forward them")
		return
	}
	rt := p.routeFor(r, path)
	if rt == nil {
		p.noRoute.Add(1)
		http.Error(w, "no route for this host and path", http.StatusNotFound)
		return
	}
	client := httpaudit.ClientIP(ctx)
	if scenario, origin, _, ok := p.blocks.Blocked(client); ok {
		p.blocked.Add(1)
		p.refuse(w, r, client, http.StatusForbidden, ActionBlocked, blockReason("", scenario, origin), 0)
		return
	}
	var login *loginRule
	for _, l := range p.logins {
		if l.matches(r, path) {
			login = l
			break
		}
	}
	if users := p.blocks.hasUsers(); users || login != nil && login.user.fromBody() {
		// A login body is read first, within its bound: a user-name
		// decision refuses the request if it carries that user, as Basic
		// auth or as a login route's user, and the login's event names
		// its user (rules group failures by user.name).
		names, r2, status, why := p.requestUsers(r, login)
		r = r2
		if status != 0 {
			// The gateway cannot tell whose login this is, and the
			// upstream may: forwarded, it would walk around the bans
			// and be recorded without its user.
			p.reject(w, r, status, why)
			return
		}
		for _, user := range names {
			if !users {
				break
			}
			if scenario, origin, _, ok := p.blocks.BlockedUser(user); ok {
				p.blocked.Add(1)
				p.refuse(w, r, client, http.StatusForbidden, ActionBlocked, blockReason(user, scenario, origin), 0)
				return
			}
		}
	}
	now := p.cfg.Now()
	if p.limit != nil {
		if ok, wait := p.limit.allow(limitKey(client), now); !ok {
			p.limited.Add(1)
			p.refuse(w, r, client, http.StatusTooManyRequests, ActionRateLimited, "client rate limit exceeded", retryAfter(wait))
			return
		}
	}
	if rt.limit != nil {
		key := netip.Addr{}
		if !rt.perRoute {
			key = limitKey(client)
		}
		if ok, wait := rt.limit.allow(key, now); !ok {
			p.limited.Add(1)
			p.refuse(w, r, client, http.StatusTooManyRequests, ActionRateLimited, "route "+rt.name+" rate limit exceeded", retryAfter(wait))
			return
		}
	}

	var sens *sensRule
	for _, s := range p.sens {
		if s.matches(r, path) {
			sens = s
			break
		}
	}

	// The body streams to the upstream through a guard that keeps a
	// bounded prefix when something needs it, and that is shut once the
	// exchange is over: the transport may still be reading it otherwise.
	var body *teeBody
	if r.Body != nil && r.Body != http.NoBody {
		keep := rt.capture
		if login != nil && login.user.fromBody() {
			keep = max(keep, login.maxBody)
		}
		if sens != nil {
			keep = max(keep, sens.capture)
		}
		ct := r.Header.Get("Content-Type")
		if keep > 0 && (r.ContentLength < 0 || r.ContentLength <= int64(keep)) && httpaudit.Capturable(ct) {
			body = newTee(r.Body, keep)
			body.length = r.ContentLength
		} else {
			body = newTee(r.Body, 0)
		}
		r2 := new(http.Request)
		*r2 = *r
		r2.Body = body
		r = r2
	}

	ex := exchanges.Get().(*exchange)
	ex.ResponseWriter, ex.status, ex.withheld, ex.wt.d = w, 0, 0, 0
	if r.ProtoMajor == 2 {
		ex.wt.d = p.cfg.Timeouts.Write
		ex.wt.reset()
	}
	p.forwarded.Add(1)
	if p.fast(rt, r) && !p.noFast.Load() {
		p.serveFast(ex, r, rt)
	} else {
		rt.rp.ServeHTTP(ex, r)
	}
	status := ex.status
	if ex.withheld != 0 {
		// What the upstream said is what happened there (a failed login
		// is still one), though the client was refused.
		status = ex.withheld
	}
	ex.ResponseWriter = nil
	exchanges.Put(ex)
	var captured []byte
	if body != nil {
		captured = body.finish()
	}
	if status == 0 {
		status = http.StatusSwitchingProtocols // hijacked (WebSocket) or nothing written
	}
	p.infer(ctx, r, path, rt, login, sens, status, captured)
}

// recorded counts an inferred event that could not be queued (the
// gateway is closing, or the request's context ended while the queue was
// full); the upstream has answered by then, so the request goes on.
func (p *Proxy) recorded(err error) {
	if err != nil {
		if n := p.notRecorded.Add(1); n&(n-1) == 0 {
			p.log.Warn("proxy: inferred event not recorded", "total", n, "err", err)
		}
	}
}

func blockReason(user, scenario, origin string) string {
	reason := "blocked by decision"
	if user != "" {
		reason = "user " + user + " blocked by decision"
	}
	if scenario != "" {
		reason += " " + scenario
	}
	if origin != "" {
		reason += " (" + origin + ")"
	}
	return reason
}

// requestUsers returns the user names a request may carry to the
// upstream (userSource.names): its Basic-auth user, and its login route's
// user. For a user in a login body, the body is read first, up to the
// route's bound, and the request returned reads it again before the rest.
// A body the gateway cannot read a user from (longer than the bound, or
// neither a form nor JSON) gives a status to refuse the request with, and
// why: upstreams read far larger bodies, and multipart ones.
func (p *Proxy) requestUsers(r *http.Request, login *loginRule) ([]string, *http.Request, int, string) {
	var users []string
	if user, _, ok := r.BasicAuth(); ok {
		users = append(users, user)
	}
	if login == nil {
		return users, r, 0, ""
	}
	if !login.user.fromBody() {
		names, _ := login.user.names(r, "", nil)
		if twoUsers(names) {
			return users, r, http.StatusBadRequest, "login names more than one user: upstreams differ on which they take"
		}
		return append(users, names...), r, 0, ""
	}
	if r.Body == nil || r.Body == http.NoBody {
		return users, r, 0, ""
	}
	// The body is read as sent: upstreams that inflate a compressed body
	// (Express's body-parser) or take another Content-Type than the
	// first read a user the gateway would not see.
	if ce := r.Header.Values("Content-Encoding"); len(ce) > 1 || len(ce) == 1 && !strings.EqualFold(strings.TrimSpace(ce[0]), "identity") {
		return users, r, http.StatusUnsupportedMediaType, "login body with a Content-Encoding: the gateway reads the user name from it; send it uncompressed"
	}
	if len(r.Header.Values("Content-Type")) > 1 {
		return users, r, http.StatusBadRequest, "login body with more than one Content-Type: upstreams differ on which they take"
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, int64(login.maxBody)+1))
	r2 := new(http.Request)
	*r2 = *r
	r2.Body = &prefixedBody{Reader: io.MultiReader(bytes.NewReader(buf), r.Body), body: r.Body}
	if err != nil {
		return users, r2, http.StatusBadRequest, "login body unreadable: " + err.Error()
	}
	if len(buf) > login.maxBody {
		return users, r2, http.StatusRequestEntityTooLarge, fmt.Sprintf("login body over the route's max_body (%d bytes): the gateway reads the user name from it", login.maxBody)
	}
	names, ok := login.user.names(r, r.Header.Get("Content-Type"), buf)
	if !ok {
		return users, r2, http.StatusBadRequest, "login body is neither a form nor JSON: the gateway reads the user name from it"
	}
	if twoUsers(names) {
		// user=decoy&user=victim: PHP and Express check the last, others
		// the first; the failure would be counted under the wrong one.
		return users, r2, http.StatusBadRequest, "login body names more than one user (a repeated field, or the key in two cases): upstreams differ on which they take"
	}
	return append(users, names...), r2, 0, ""
}

// twoUsers reports whether names holds two different user names.
func twoUsers(names []string) bool {
	for _, n := range names[min(1, len(names)):] {
		if userKey(n) != userKey(names[0]) {
			return true
		}
	}
	return false
}

// timedBody bounds each read of a request body (timeouts.body, nginx's
// client_body_timeout): the read deadline is renewed as halfRenewal
// says, so a read is cut between d and 1.5×d after the body stopped
// coming, and cleared at the body's end, so that a slow upstream answer
// after it is not taken for the client's departure. After a cut it stays
// passed: the server's own reads of the rest fail, and it closes the
// connection.
type timedBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	rd    halfRenewal
	ended bool
}

func newTimedBody(body io.ReadCloser, rc *http.ResponseController, d time.Duration) *timedBody {
	b := &timedBody{ReadCloser: body, rc: rc}
	b.rd.d = d
	dl, _ := b.rd.due(time.Now())
	rc.SetReadDeadline(dl)
	return b
}

func (b *timedBody) Read(p []byte) (int, error) {
	if b.ended {
		return b.ReadCloser.Read(p)
	}
	if dl, ok := b.rd.due(time.Now()); ok {
		b.rc.SetReadDeadline(dl)
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.ended = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// prefixedBody is a body whose first bytes were already read.
type prefixedBody struct {
	io.Reader
	body io.Closer
}

func (b *prefixedBody) Close() error { return b.body.Close() }

// refuse answers a refused request without contacting the upstream and
// records it: the access event and an event naming the refusal, unless
// the client has had its share of recorded refusals this minute (then it
// is counted, and summarised once a minute).
func (p *Proxy) refuse(w http.ResponseWriter, r *http.Request, client netip.Addr, status int, action, reason string, retry int) {
	ctx := r.Context()
	if p.sampler.allow(client, action) {
		p.recorded(httpaudit.Audit(ctx, httpaudit.Op{
			Action: action, Outcome: event.OutcomeFailure, Reason: reason, Resource: r.URL.Path,
			Category: []string{event.CategoryWeb}, Type: []string{event.TypeDenied},
		}))
	} else {
		p.unrecorded.Add(1)
		httpaudit.Discard(ctx)
	}
	writeRefusal(w, status, retry)
}

// reject answers 400 or 405 to a request the gateway will not forward
// (a path no upstream reads alike, TRACE, CONNECT) and records it as
// input_validation_fail, sampled as refusals are.
func (p *Proxy) reject(w http.ResponseWriter, r *http.Request, status int, reason string) {
	ctx := r.Context()
	if p.sampler.allow(httpaudit.ClientIP(ctx), event.ActionInputValidationFail) {
		p.recorded(httpaudit.Audit(ctx, httpaudit.Op{
			Action: event.ActionInputValidationFail, Outcome: event.OutcomeFailure, Reason: reason, Resource: r.URL.Path,
			Category: []string{event.CategoryWeb}, Type: []string{event.TypeDenied},
		}))
	} else {
		p.unrecorded.Add(1)
		httpaudit.Discard(ctx)
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if status == http.StatusMethodNotAllowed {
		h.Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
	}
	w.WriteHeader(status)
	io.WriteString(w, strconv.Itoa(status)+" "+http.StatusText(status)+": "+reason+"\n")
}

// writeRefusal answers a refused request.
func writeRefusal(w http.ResponseWriter, status, retry int) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if retry > 0 {
		h.Set("Retry-After", strconv.Itoa(retry))
	}
	w.WriteHeader(status)
	if status == http.StatusForbidden {
		io.WriteString(w, "403 forbidden: this client is blocked\n")
	} else {
		io.WriteString(w, "429 too many requests: slow down\n")
	}
}

// infer turns the upstream's answer into the events the API would have
// recorded itself: logins, refused authentication and authorisation,
// sensitive operations; and the captured body onto the access event.
func (p *Proxy) infer(ctx context.Context, r *http.Request, path string, rt *route, login *loginRule, sens *sensRule, status int, body []byte) {
	ok2xx := status >= 200 && status < 300
	ct := ""
	if body != nil {
		ct = r.Header.Get("Content-Type")
	}
	switch {
	case login != nil && (ok2xx || status == http.StatusUnauthorized || status == http.StatusForbidden):
		a := httpaudit.Attempt{User: httpaudit.User{Name: login.user.recorded(r, ct, body)}, Success: ok2xx}
		if !ok2xx {
			a.Reason = "upstream answered " + strconv.Itoa(status) + " " + http.StatusText(status)
		}
		p.recorded(httpaudit.Auth(ctx, a))
	case p.cfg.UpstreamAudits && (status == http.StatusUnauthorized || status == http.StatusForbidden):
		// The upstream records its own refusals, with their reasons.
	case status == http.StatusUnauthorized:
		user, _, _ := r.BasicAuth()
		p.recorded(httpaudit.Auth(ctx, httpaudit.Attempt{User: httpaudit.User{Name: user},
			Reason: "upstream answered 401 Unauthorized"}))
	case status == http.StatusForbidden:
		p.recorded(httpaudit.Audit(ctx, httpaudit.Op{Action: event.ActionAuthzFail, Outcome: event.OutcomeFailure,
			Resource: path, Reason: "upstream answered 403 Forbidden"}))
	case ok2xx:
		// A Basic-auth user the upstream accepted is the request's actor.
		if user, _, ok := r.BasicAuth(); ok && user != "" {
			httpaudit.SetUser(ctx, httpaudit.User{Name: p.red.String(user)})
		}
	}
	if sens != nil {
		op := httpaudit.Op{Action: sens.action, Resource: path, Outcome: event.OutcomeSuccess}
		if !ok2xx {
			op.Outcome = event.OutcomeFailure
			op.Reason = "upstream answered " + strconv.Itoa(status) + " " + http.StatusText(status)
		}
		if sens.target != "" {
			if id, ok := sens.pattern.match(path, sens.target); ok && id != "" {
				op.Target = &httpaudit.User{ID: id}
			}
		}
		if sens.capture > 0 && body != nil {
			op.After = bodyValue(ct, body)
		}
		p.recorded(httpaudit.Audit(ctx, op))
	}
	if rt.capture > 0 && body != nil && len(body) <= rt.capture {
		scrubbed := p.audit.ScrubBody(ct, body)
		httpaudit.Annotate(ctx, func(ev *event.Event) { ev.RequestBody = scrubbed })
	}
}

// bodyValue is a captured body as the audit event's state: JSON as is,
// a form as an object of its fields (scrubbing happens in Audit).
func bodyValue(ct string, body []byte) any {
	if isForm(ct) {
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil
		}
		return v
	}
	if !json.Valid(body) {
		return nil
	}
	return json.RawMessage(body)
}

// sampleLoop summarises unrecorded refusals once a minute.
func (p *Proxy) sampleLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.summarize(p.cfg.Now())
		}
	}
}

func (p *Proxy) summarize(now time.Time) {
	sum, ok := p.sampler.roll(now)
	if !ok {
		return
	}
	attrs, _ := json.Marshal(map[string]any{
		"unrecorded": sum.Unrecorded, "addresses": sum.Addresses, "top": sum.Top,
		"window_start": sum.From.UTC(), "window_end": sum.To.UTC(),
		"per_address_limit": p.sampler.perAddr, "total_limit": p.sampler.total,
	})
	p.logEvent(&event.Event{
		Kind: event.KindEvent, Category: []string{event.CategoryWeb}, Type: []string{event.TypeInfo},
		Action: ActionAuditUnrecorded, Outcome: event.OutcomeUnknown, Dataset: event.DatasetAudit,
		Message: fmt.Sprintf("%d refused requests from %d addresses were counted but not recorded one by one between %s and %s (limits: %d per address, %d in all per minute)",
			sum.Unrecorded, sum.Addresses, sum.From.UTC().Format(time.RFC3339), sum.To.UTC().Format(time.RFC3339), p.sampler.perAddr, p.sampler.total),
		Attrs: attrs,
	})
}

// applyUpdate enforces a decision update and records what changed.
func (p *Proxy) applyUpdate(source string, u Update) {
	added, removed, err := p.blocks.Apply(source, u)
	if err != nil {
		p.log.Warn("proxy: decisions not enforced", "source", source, "err", err)
	}
	p.recordApplied(source, u, added, removed)
}

// recordApplied records a change in the decisions enforced.
func (p *Proxy) recordApplied(source string, u Update, added, removed int) {
	if added == 0 && removed == 0 {
		return
	}
	var values []string
	for _, d := range u.New {
		if len(values) == 20 {
			values = append(values, "…")
			break
		}
		values = append(values, d.Value)
	}
	attrs, _ := json.Marshal(map[string]any{"source": source, "added": added, "removed": removed,
		"in_force": p.blocks.Len(), "values": values, "full": u.Full})
	p.logEvent(&event.Event{
		Kind: event.KindEvent, Category: []string{event.CategoryConfiguration}, Type: []string{event.TypeChange},
		Action: ActionDecisionsApplied, Outcome: event.OutcomeSuccess, Dataset: event.DatasetAudit,
		Message: fmt.Sprintf("gateway enforces %d block decisions (%d added, %d removed, from %s)", p.blocks.Len(), added, removed, source),
		Attrs:   attrs,
	})
}

// sourceHealth raises an alert when a decision source becomes unreachable
// and records its return. Traffic keeps flowing with the last decisions.
func (p *Proxy) sourceHealth(source string, err error) {
	ev := &event.Event{Category: []string{event.CategoryIntrusion}, Type: []string{event.TypeInfo}, Dataset: event.DatasetAudit}
	if err != nil {
		ev.Kind, ev.Action, ev.Outcome, ev.LogLevel = event.KindAlert, ActionMonitorDisabled, event.OutcomeFailure, "error"
		ev.ErrorMessage = p.red.String(err.Error())
		// A refused key is not an outage: say what to change.
		if se := (*ship.StatusError)(nil); errors.As(err, &se) && (se.Code == http.StatusUnauthorized || se.Code == http.StatusForbidden) {
			ev.Message = fmt.Sprintf("%s rejected the gateway's bouncer key (%s): fix the key (--bouncer-key, TRAILGUARD_BOUNCER_KEY, collector.bouncer_key; a token of role bouncer that is not revoked); the gateway keeps serving with the %d decisions it holds (fail-open)", source, se.Status, p.blocks.Len())
			p.log.Error("proxy: the decision source rejected the bouncer key (fix it: --bouncer-key, TRAILGUARD_BOUNCER_KEY, collector.bouncer_key); keeping last decisions", "source", source, "status", se.Status, "err", err)
		} else {
			ev.Message = fmt.Sprintf("block decisions from %s are unavailable; the gateway keeps serving with the %d decisions it holds (fail-open)", source, p.blocks.Len())
			p.log.Error("proxy: decision source unreachable, keeping last decisions", "source", source, "err", err)
		}
	} else {
		ev.Kind, ev.Action, ev.Outcome = event.KindEvent, ActionMonitorEnabled, event.OutcomeSuccess
		ev.Message = fmt.Sprintf("block decisions from %s are available again", source)
		p.log.Info("proxy: decision source reachable again", "source", source)
	}
	p.logEvent(ev)
}

func (p *Proxy) logSystem(action, msg string) {
	p.logEvent(&event.Event{Kind: event.KindEvent, Category: []string{event.CategoryConfiguration},
		Type: []string{event.TypeInfo}, Action: action, Outcome: event.OutcomeSuccess, Dataset: event.DatasetAudit, Message: msg})
}

func (p *Proxy) logEvent(ev *event.Event) {
	if err := p.audit.Log(context.Background(), ev); err != nil {
		p.log.Error("proxy: event not recorded", "action", ev.Action, "err", err)
	}
}

// isTrusted reports whether a peer's forwarding headers are believed.
func (p *Proxy) isTrusted(a netip.Addr) bool {
	for _, pr := range p.trusted {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

// errorStatus maps an upstream failure onto the answer: 504 for a
// timeout, 502 otherwise.
func errorStatus(err error) (int, string) {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return http.StatusGatewayTimeout, "upstream timed out"
	}
	return http.StatusBadGateway, "upstream unavailable"
}

// shipHealth raises an alert when events stop reaching the collector (they
// stay in the spool, nothing is lost) and records when they flow again.
func (p *Proxy) shipHealth(collector string, err error, pending uint64) {
	ev := &event.Event{Category: []string{event.CategoryIntrusion}, Type: []string{event.TypeInfo}, Dataset: event.DatasetAudit}
	if err != nil {
		ev.Kind, ev.Action, ev.Outcome, ev.LogLevel = event.KindAlert, ActionMonitorDisabled, event.OutcomeFailure, "error"
		ev.ErrorMessage = p.red.String(err.Error())
		// The collector answering is not an outage: say what it refused
		// and what to change, or the operator waits for it to come back.
		var se *ship.StatusError
		switch {
		case errors.As(err, &se) && (se.Code == http.StatusUnauthorized || se.Code == http.StatusForbidden):
			ev.Message = fmt.Sprintf("the collector %s rejected the gateway's ingest token (%s): fix the token (--token, TRAILGUARD_PROXY_TOKEN, collector.token; a token of role ingest that is not revoked); %d events are spooled on disk and will be sent once it is accepted", collector, se.Status, pending)
			p.log.Error("proxy: the collector rejected the ingest token (fix the token: --token, TRAILGUARD_PROXY_TOKEN, collector.token); spooling events", "collector", collector, "status", se.Status, "pending", pending, "err", err)
		case errors.As(err, &se) && se.Code == http.StatusTooManyRequests:
			// The collector limits an address after failed token checks
			// (and a token with too many requests in progress): after a
			// 401 this is the same wrong token, not an outage.
			ev.Message = fmt.Sprintf("the collector %s is limiting the gateway (%s): it does so after failed token checks from this address, so check the ingest token (--token, TRAILGUARD_PROXY_TOKEN, collector.token); %d events are spooled on disk and will be sent once it accepts them", collector, se.Status, pending)
			p.log.Error("proxy: the collector is limiting the gateway (after failed token checks: check the token, --token, TRAILGUARD_PROXY_TOKEN, collector.token); spooling events", "collector", collector, "status", se.Status, "pending", pending, "err", err)
		case errors.As(err, &se) && se.Code >= 400 && se.Code < 500 && se.Code != http.StatusRequestTimeout && se.Code != http.StatusTooEarly:
			ev.Message = fmt.Sprintf("the collector %s refused the gateway's events (%s): check the collector URL; %d events are spooled on disk and will be sent once it accepts them", collector, se.Status, pending)
			p.log.Error("proxy: the collector refused the events (check the collector URL); spooling events", "collector", collector, "status", se.Status, "pending", pending, "err", err)
		default:
			ev.Message = fmt.Sprintf("events cannot reach the collector %s; %d are spooled on disk and will be sent when it is back", collector, pending)
			p.log.Error("proxy: collector unreachable, spooling events", "collector", collector, "pending", pending, "err", err)
		}
	} else {
		ev.Kind, ev.Action, ev.Outcome = event.KindEvent, ActionMonitorEnabled, event.OutcomeSuccess
		ev.Message = fmt.Sprintf("events reach the collector %s again", collector)
		p.log.Info("proxy: collector reachable again", "collector", collector)
	}
	p.logEvent(ev)
}
