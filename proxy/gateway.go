package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/connlimit"
	"github.com/trailguard/trailguard/internal/throttle"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/server"
	"github.com/trailguard/trailguard/ship"
	"github.com/trailguard/trailguard/sink"
)

// Gateway is `trailguard proxy`: the Proxy with its storage. Single node
// (no collector URL), it keeps a ledger and an index in DataDir, as
// `trailguard serve` does, and can serve the collector's API over them;
// with a collector, it ships its events through a durable spool in
// DataDir/spool and enforces the collector's decision stream.
type Gateway struct {
	*Proxy
	cfg       Config
	log       *slog.Logger
	collector *server.Server // single node
	node      *nodeSink      // single node: where its events are stored
	shipper   *ship.Shipper  // collector mode

	watchStop, watchDone chan struct{}
}

// Open builds the gateway's storage from cfg.DataDir and cfg.Collector and
// the Proxy on top of it.
func Open(cfg Config, log *slog.Logger) (*Gateway, error) {
	if log == nil {
		log = slog.Default()
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DataDir == "" {
		return nil, errors.New("proxy: data_dir (--data) is required: the ledger, or the spool for the collector, lives there")
	}
	// Made here, before the collector or the spool is opened, so that
	// its failure names the ways to point the gateway elsewhere: the
	// embedded collector's named the collector's TRAILGUARD_DATA, which
	// the gateway does not read, and the spool's named nothing.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("proxy: cannot create the data directory %s (point --data, data_dir or TRAILGUARD_GATEWAY_DATA at a writable place): %w", cfg.DataDir, err)
	}
	g := &Gateway{cfg: cfg, log: log}
	var lane *requestLane
	if cfg.Collector.URL != "" {
		// The shipper retries with backoff (from 100 ms, up to 30 s) and
		// reported each failure: seven lines in the first ten seconds
		// of an outage. The first is logged, then one a minute with the
		// failures since; the watcher's alert says the collector is down.
		shipLog := &throttle.Gate{Every: shipFailLogEvery}
		sh, err := ship.New(ship.Options{
			URL:           strings.TrimRight(cfg.Collector.URL, "/") + "/v1/events",
			Token:         cfg.Collector.Token,
			SpoolDir:      filepath.Join(cfg.DataDir, "spool"),
			Log:           log,
			MaxSpoolBytes: cfg.Collector.MaxSpoolBytes,
			FlushInterval: cfg.Collector.FlushInterval,
			DrainTimeout:  shipDrain(cfg.Timeouts.Shutdown),
			OnError: func(err error) {
				line, ok := shipLog.Note(time.Now(), 1)
				switch {
				case !ok:
				case line.Count == 1:
					log.Warn("proxy: shipping to the collector failed; events stay in the spool", "err", err)
				default:
					log.Warn("proxy: shipping to the collector failed; events stay in the spool", "failures_since_last_line", line.Count,
						"since_last_line", line.Since.Round(time.Second).String(), "err", err)
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		g.shipper = sh
		cfg.Sink = sh
		if cfg.Collector.BouncerKey != "" {
			cfg.Sources = append(cfg.Sources, &StreamSource{URL: cfg.Collector.URL, APIKey: cfg.Collector.BouncerKey,
				Interval: cfg.Collector.PollInterval})
		}
	} else {
		srv, err := server.New(collectorConfig(cfg), log)
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		g.collector = srv
		node := &nodeSink{l: srv.Ledger(), now: time.Now, gap: commitGap, hurry: make(chan struct{}, 1), sleep: sleepOrHurry,
			backlog: newBacklog(maxUndurable)}
		if cfg.TrailDir != "" {
			f, err := sink.OpenFile(sink.FileOptions{Dir: cfg.TrailDir})
			if err != nil {
				g.closeStorage()
				return nil, fmt.Errorf("proxy: trail_dir: %w", err)
			}
			node.trail = f
		}
		if srv.Decisions() != nil {
			node.lane = newRequestLane(srv.DetectionRules(), srv.Decisions().Target)
		}
		lane = node.lane
		cfg.Sink = node
		g.node = node
		if src := embeddedSource(srv); src != nil {
			cfg.Sources = append(cfg.Sources, src)
		}
	}
	if cfg.TrailDir != "" && g.shipper != nil {
		f, err := sink.OpenFile(sink.FileOptions{Dir: cfg.TrailDir})
		if err != nil {
			g.closeStorage()
			return nil, fmt.Errorf("proxy: trail_dir: %w", err)
		}
		cfg.Sink = sink.Multi(cfg.Sink, f)
	}
	p, err := New(cfg, log)
	if err != nil {
		g.closeStorage()
		return nil, err
	}
	if lane != nil {
		p.gate = newAnswerGate(func() uint64 { return p.audit.Stats().Enqueued }, lane.seen.Load)
		lane.gate.Store(p.gate)
		lane.p.Store(p)
		if node, ok := cfg.Sink.(*nodeSink); ok {
			p.gate.hurry = node.hurry
		}
	}
	if node, ok := cfg.Sink.(*nodeSink); ok {
		// Requests wait while the ledger is more than maxUndurable
		// behind the answers (backlog). Only requests read stats, and
		// none is served before Open returns.
		node.backlog.stats = p.audit.Stats
		node.backlog.hurry = node.hurry
		p.backlog = node.backlog
	}
	g.Proxy = p
	if g.collector != nil {
		g.collector.AddMetrics(p.writeMetrics)
	}
	g.watchDone = make(chan struct{})
	g.watchStop = make(chan struct{})
	go g.watch()
	return g, nil
}

// shipDrain is how long the spool keeps shipping at shutdown before it
// stops (what is not shipped stays in the spool for the next start): 30 %
// of the shutdown timeout. The gateway's events are flushed into the spool
// from when the requests in flight are done (by 40 %) until the
// followers' share ends (90 %); the shipper's own default (5 s) could
// outlast that, and a collector that did not answer made every shutdown
// an abandoned one with exit status 1 although nothing was lost. The
// other 20 % are for the event queue's flush into the spool and the
// sender's stop.
func shipDrain(shutdown time.Duration) time.Duration {
	return max(shutdown*3/10, time.Millisecond)
}

// shipFailLogEvery is how often failures to ship to the collector are
// logged while they go on.
const shipFailLogEvery = time.Minute

// shipAlertAfter is how long events must have been failing to reach the
// collector before the outage is an alert (a restart of the collector is
// not one).
const shipAlertAfter = 3 * time.Second

// watch raises the collector-unreachable alert and its recovery from the
// shipper's counters, and reports events lost (lossWatch).
func (g *Gateway) watch() {
	defer close(g.watchDone)
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	down := false
	loss := newLossWatch()
	for {
		select {
		case <-g.watchStop:
			return
		case now := <-t.C:
			loss.check(g.Proxy, now)
		}
		if g.shipper == nil {
			continue
		}
		st := g.shipper.Stats()
		failing := st.Pending > 0 && st.LastError != nil && st.Lag >= shipAlertAfter
		switch {
		case failing && !down:
			down = true
			g.Proxy.shipHealth(g.cfg.Collector.URL, st.LastError, st.Pending)
		case down && (st.Pending == 0 || st.Lag < time.Second):
			down = false
			g.Proxy.shipHealth(g.cfg.Collector.URL, nil, st.Pending)
		}
	}
}

// nodeSink stores a single node's events: each batch the event writer
// hands over is normalised as the collector's ingest normalises what it
// receives (event.AppendNormalizedSpans: the same record, with
// event.ingested), which also notes where each record holds its fields
// (event.Spans). The ledger keeps the spans beside the records for its
// followers (AppendAux) and the request lane reads them, so that the
// index, detection, the overview and the report cache, which follow the
// ledger, and the lane do not each parse every record again: one pass
// over the record instead of five. A record the normaliser does not take
// (fields the event model lacks) is stored as it came, without spans, and
// its readers parse it.
type nodeSink struct {
	l     *ledger.Ledger
	lane  *requestLane // nil: no request lane
	trail sink.Sink    // nil: no trail_dir
	now   func() time.Time
	// gap is the least time between the starts of two ledger commits
	// while the gateway is not busy (see commitGap); 0: none.
	gap time.Duration
	// hurry ends that wait: the answer gate sends on it when a client's
	// failed authentication is queued, which the lane must see at once
	// (the gate holds that client's answers until it has).
	hurry chan struct{}
	// sleep waits d or until hurry; tests record the waits.
	sleep func(d time.Duration, hurry <-chan struct{})
	// The event writer is the only caller: its buffers are reused (the
	// ledger copies the records it keeps; the spans it keeps are made
	// for each batch).
	buf  []byte
	ends []int
	recs [][]byte
	// encoded counts the records stored from the encoder's notes (tests).
	encoded uint64
	// backlog, if not nil, is told when each write begins and returns
	// (maxUndurable); stall, if not nil, runs before each append (tests:
	// a ledger that falls behind).
	backlog *backlog
	stall   atomic.Pointer[func()]
}

func (s *nodeSink) Write(ctx context.Context, recs [][]byte) error {
	return s.WriteEncoded(ctx, recs, nil)
}

// WriteEncoded is Write for httpaudit's writer, which says where it put
// the fields of the access events it encoded (httpaudit.EncodedSink):
// event.AppendEncoded stores those as the normaliser would, without
// parsing them again (it was a fifth of the single node's background
// CPU per request).
func (s *nodeSink) WriteEncoded(ctx context.Context, recs [][]byte, encs []event.EncodedSpans) error {
	spans := make([]event.Spans, len(recs))
	now := s.now()
	s.buf, s.ends, s.recs = s.buf[:0], s.ends[:0], s.recs[:0]
	for i, r := range recs {
		var out []byte
		ok := false
		if i < len(encs) {
			out, _, ok = event.AppendEncoded(s.buf, r, &encs[i], now, event.AppendID, &spans[i])
			if ok {
				s.encoded++
			}
		}
		if !ok {
			out, _, ok = event.AppendNormalizedSpans(s.buf, r, now, event.AppendID, &spans[i])
		}
		if !ok {
			spans[i] = event.Spans{}
			out = append(s.buf, r...)
		}
		s.buf = out
		s.ends = append(s.ends, len(s.buf))
	}
	start := 0
	for _, end := range s.ends {
		s.recs = append(s.recs, s.buf[start:end:end])
		start = end
	}
	if s.lane != nil {
		s.lane.observe(recs, s.recs, spans)
	}
	began := time.Now()
	if s.backlog != nil {
		s.backlog.begin(began)
	}
	if f := s.stall.Load(); f != nil {
		(*f)()
	}
	_, err := s.l.AppendAux(ctx, spans, s.recs...)
	if err != nil {
		err = fmt.Errorf("proxy: ledger: %w", err)
	}
	if s.trail != nil {
		err = errors.Join(err, s.trail.Write(ctx, s.recs))
	}
	if s.backlog != nil {
		s.backlog.done(began)
	}
	if len(recs) < lingerBelow && err == nil {
		if d := s.gap - time.Since(began); d > 0 {
			s.sleep(d, s.hurry)
		}
	}
	return err
}

// sleepOrHurry waits d, or less if hurry is told.
func sleepOrHurry(d time.Duration, hurry <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-hurry:
	}
}

// commitGap spaces the single node's ledger commits when its batches are
// small. Without it, at moderate rates each commit carried the one or two
// events that arrived during the previous fdatasync, and every commit
// costs the same whatever it carries: an fdatasync (which also holds one
// of the runtime's Ps until its monitor takes it back), the ledger's
// sequencing and publishing, and a wakeup of each follower (the index,
// detection, the overview and the report cache): at 2,000 requests/s that
// was most of the single node's CPU per request. Waiting after a small
// commit lets the next one gather what arrives meanwhile. Nothing a
// client sees waits for it: requests are answered without waiting for
// their events to be durable, and the request lane sees each batch before
// it is committed; and a failed authentication, whose answer the gate
// holds until the lane has seen it, ends the wait (answerGate.hurry).
//
// 8 ms, not the 4 it was: a commit cost some 200 µs of CPU (the
// fdatasync, the ledger's sequencing, the wakeups), so at 4 ms the
// commits alone took 5 % of a core whatever the rate; at 8 ms the single
// node's background CPU per request at 2,000 requests/s fell by a fifth
// (docs/proxy.md). What it costs: an answered request's events are
// durable up to 8 ms (plus the fdatasync) after the batch before them
// instead of 4, which is what a crash of a gateway that is not busy can
// lose beyond what its event queue holds; blocking is as prompt as before
// (the hurry), and detection's alerts come up to 4 ms later.
const commitGap = 8 * time.Millisecond

// lingerBelow is the batch size from which the event writer is taken to
// be busy: it then commits again at once, so that spacing the commits
// never limits how fast events are stored (at most 512 a batch).
const lingerBelow = 128

func (s *nodeSink) Close() error {
	if s.trail != nil {
		return s.trail.Close()
	}
	return nil
}

// Collector is the embedded collector of a single-node gateway (nil with
// a remote collector).
func (g *Gateway) Collector() *server.Server { return g.collector }

// Shipper is the spool to the remote collector (nil on a single node).
func (g *Gateway) Shipper() *ship.Shipper { return g.shipper }

func (g *Gateway) closeStorage() error {
	var errs []error
	if g.shipper != nil {
		errs = append(errs, g.shipper.Close())
	}
	if g.collector != nil {
		errs = append(errs, g.collector.Close())
	}
	return errors.Join(errs...)
}

// Close drains the gateway's events into its storage and closes it,
// within the shutdown timeout from now (see Serve).
func (g *Gateway) Close() error {
	return g.closeBy(server.PlanShutdown(time.Now(), g.cfg.Timeouts.Shutdown))
}

// ShutdownTimeout is the longest a shutdown takes, from the signal to the
// end of Serve (timeouts.shutdown).
func (g *Gateway) ShutdownTimeout() time.Duration { return g.cfg.Timeouts.Shutdown }

// closeBy closes the gateway within plan. The gateway's own events are
// flushed first: into the single node's ledger before its final
// checkpoint (by server.ShutdownPlan.FlushBy; the collector's own last
// events and the final checkpoint share what it leaves), or into the
// spool (by the followers' share). A single node's collector then closes
// in its shares (server.Server.CloseBy). A step that does not end in time
// is abandoned with an error naming it.
func (g *Gateway) closeBy(plan server.ShutdownPlan) error {
	if g.watchStop != nil {
		close(g.watchStop)
		<-g.watchDone
		g.watchStop = nil
	}
	var err error
	if g.Proxy != nil {
		by := plan.Followers
		what := "flushing the gateway's events into the spool (the spool keeps what it holds; the next start ships it)"
		if g.collector != nil {
			by = plan.FlushBy(time.Now())
			what = "flushing the gateway's events into the ledger (events not appended by then are lost)"
		}
		// Requests cut at shutdown queue their events when their handlers
		// return, after the servers' Close: wait for them (up to half of
		// the flush's share) so that closing the queue does not drop them.
		now := time.Now()
		if !g.Proxy.waitRequests(now.Add(by.Sub(now) / 2)) {
			g.log.Warn("proxy: requests still running at shutdown; their events are lost",
				"requests", g.Proxy.serving.Load())
		}
		err = closeBefore(g.Proxy.Close, by, what, g.cfg.Timeouts.Shutdown)
		if errors.Is(err, server.ErrAbandoned) {
			// The flush goes on in the background, but the storage closes
			// under it next: the events accepted and not yet written are
			// lost, and the shutdown says how many rather than lose them
			// silently (under load, an fdatasync slower than the flush's
			// share lost a cut request's event without a count).
			st := g.Proxy.audit.Stats()
			unwritten := st.Enqueued - st.Written
			err = fmt.Errorf("%w: %d events accepted but not written are lost", err, unwritten)
			g.log.Error("proxy: shutdown: events not written are lost", "events", unwritten, "err", err)
		} else if err != nil {
			g.log.Error("proxy: shutdown", "err", err)
		} else if g.shipper != nil {
			if st := g.shipper.Stats(); st.Pending > 0 {
				g.log.Warn("proxy: events not shipped by the shutdown stay in the spool; the next start ships them",
					"events", st.Pending, "last_error", st.LastError)
			}
		}
	}
	if g.collector != nil {
		err = errors.Join(err, g.collector.CloseBy(plan))
	}
	return err
}

// closeBefore runs f, giving up on it at deadline: f goes on in the
// background until the process exits.
func closeBefore(f func() error, deadline time.Time, what string, budget time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	t := time.NewTimer(max(time.Until(deadline), 0))
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("proxy: %w: %s did not end within its share of the shutdown timeout %v", server.ErrAbandoned, what, budget)
	}
}

// Serve answers on ln (and, single node with api_listen, serves the
// collector's API on api) until ctx ends, then shuts down within the
// shutdown timeout (timeouts.shutdown) in the collector's shares
// (server.ShutdownPlan): requests in flight get 40 % of it and are cut
// then; the gateway's last events and the ledger's final checkpoint are
// written by 75 %; the followers are stopped, or abandoned, by 90 %.
func (g *Gateway) Serve(ctx context.Context, ln, api net.Listener) error {
	n, limit := connlimit.Fit(g.cfg.MaxConnections, 2)
	if n < g.cfg.MaxConnections {
		g.log.Warn("proxy: max_connections lowered to fit the open-file limit, two descriptors a connection (raise LimitNOFILE or ulimit -n for more)",
			"max_connections", g.cfg.MaxConnections, "now", n, "open_file_limit", limit)
	}
	per := g.cfg.MaxConnectionsPerAddress
	ln = connlimit.New(n, g.log, "client connections").PerAddress(per, per, g.Proxy.trusted).Listener(ln)
	if api != nil {
		// Slots of its own (a sixteenth more, at least 8, from the
		// descriptors kept for the process's files): a flood of the
		// public port must not lock the operators out of the UI and API.
		api = connlimit.New(max(n/16, 8), g.log, "API connections").PerAddress(per, max(per/8, 8), nil).Listener(api)
	}
	srv := g.HTTPServer()
	var front PlainServer = srv
	errc := make(chan error, 2)
	switch {
	case g.cfg.TLSCert != "":
		tln := withWriteTimeout(ln, g.cfg.Timeouts.Write)
		go func() { errc <- srv.ServeTLS(tln, g.cfg.TLSCert, g.cfg.TLSKey) }()
	default:
		ps := newPlainServer(g.Proxy, srv, g.cfg)
		front = ps
		go func() { errc <- ps.Serve(ln) }()
	}
	var apiSrv *http.Server
	if api != nil && g.collector != nil {
		g.collector.StartOverview() // counted only when the API is served
		// Bounded as the gateway's own listener is: without an idle
		// timeout a kept-alive connection that sent nothing more held a
		// file descriptor of the process for ever.
		apiSrv = &http.Server{Handler: g.collector.Handler(), ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout: g.cfg.Timeouts.Idle, MaxHeaderBytes: g.cfg.MaxHeaderBytes,
			ConnContext: connlimit.ConnContext} // the collector vouches for connections with a valid token
		go func() { errc <- apiSrv.Serve(api) }()
	}
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	plan := server.PlanShutdown(time.Now(), g.cfg.Timeouts.Shutdown)
	if g.collector != nil {
		g.collector.StopStreams() // live tails on the API listener
	}
	drain, cancel := context.WithDeadline(context.Background(), plan.Drain)
	defer cancel()
	shut := func(s PlainServer) {
		if err := s.Shutdown(drain); err != nil {
			s.Close() // streams and WebSockets still open
		}
	}
	apiDone := make(chan struct{})
	go func() {
		defer close(apiDone)
		if apiSrv != nil {
			shut(apiSrv)
		}
	}()
	shut(front)
	<-apiDone
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	drained := time.Since(plan.Start)
	err := errors.Join(serveErr, g.closeBy(plan))
	g.log.Info("gateway stopped", "requests_drained_in", drained.Round(time.Millisecond),
		"took", time.Since(plan.Start).Round(time.Millisecond), "shutdown_timeout", g.cfg.Timeouts.Shutdown)
	return err
}

// PlainServer serves a Proxy on a plain (not TLS) listener: the lean
// HTTP/1.1 front end with the http.Server behind it, or the http.Server
// alone (Config.HTTP1). Shutdown and Close are http.Server's.
type PlainServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// NewPlainServer returns the server for a Proxy's plain listener, with
// the configuration's protocols and timeouts, as `trailguard proxy` uses
// it.
func NewPlainServer(p *Proxy, cfg Config, log *slog.Logger) PlainServer {
	return newPlainServer(p, NewServer(p, cfg, log), cfg.withDefaults())
}

func newPlainServer(p *Proxy, srv *http.Server, cfg Config) PlainServer {
	if cfg.HTTP1 == HTTP1NetHTTP {
		return netHTTPServer{srv, cfg.Timeouts.Write}
	}
	f := newFront(p, p.leanTakes, srv)
	f.writeTimeout = cfg.Timeouts.Write
	f.connCtx = p.connContext
	return f
}

// HTTPServer is the http.Server the gateway listens with: HTTP/1.1 and
// HTTP/2 (over TLS, and cleartext h2c unless turned off), header timeouts,
// no overall write timeout (responses stream; Gateway.Serve puts the
// write timeout, timeouts.write, on its connections).
func (g *Gateway) HTTPServer() *http.Server {
	return NewServer(g.Proxy, g.cfg, g.log)
}

// NewServer returns an http.Server for a Proxy with the configuration's
// protocols and timeouts.
func NewServer(h http.Handler, cfg Config, log *slog.Logger) *http.Server {
	cfg = cfg.withDefaults()
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	if *cfg.H2C {
		protos.SetUnencryptedHTTP2(true)
	}
	if log == nil {
		log = slog.Default()
	}
	return &http.Server{
		Handler:           h,
		Protocols:         &protos,
		ReadHeaderTimeout: cfg.Timeouts.ReadHeader,
		IdleTimeout:       cfg.Timeouts.Idle,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
