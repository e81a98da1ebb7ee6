package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/trailguard/trailguard/event"
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
	g := &Gateway{cfg: cfg, log: log}
	var lane *requestLane
	if cfg.Collector.URL != "" {
		sh, err := ship.New(ship.Options{
			URL:           strings.TrimRight(cfg.Collector.URL, "/") + "/v1/events",
			Token:         cfg.Collector.Token,
			SpoolDir:      filepath.Join(cfg.DataDir, "spool"),
			MaxSpoolBytes: cfg.Collector.MaxSpoolBytes,
			FlushInterval: cfg.Collector.FlushInterval,
			OnError: func(err error) {
				log.Warn("proxy: shipping to the collector failed; events stay in the spool", "err", err)
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
		node := &nodeSink{l: srv.Ledger(), now: time.Now}
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
	}
	g.Proxy = p
	if g.shipper != nil {
		g.watchDone = make(chan struct{})
		g.watchStop = make(chan struct{})
		go g.watchShipping()
	}
	return g, nil
}

// shipAlertAfter is how long events must have been failing to reach the
// collector before the outage is an alert (a restart of the collector is
// not one).
const shipAlertAfter = 3 * time.Second

// watchShipping raises the collector-unreachable alert and its recovery
// from the shipper's counters.
func (g *Gateway) watchShipping() {
	defer close(g.watchDone)
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	down := false
	for {
		select {
		case <-g.watchStop:
			return
		case <-t.C:
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
	// The event writer is the only caller: its buffers are reused (the
	// ledger copies the records it keeps; the spans it keeps are made
	// for each batch).
	buf  []byte
	ends []int
	recs [][]byte
}

func (s *nodeSink) Write(ctx context.Context, recs [][]byte) error {
	spans := make([]event.Spans, len(recs))
	now := s.now()
	s.buf, s.ends, s.recs = s.buf[:0], s.ends[:0], s.recs[:0]
	for i, r := range recs {
		out, _, ok := event.AppendNormalizedSpans(s.buf, r, now, event.AppendID, &spans[i])
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
	_, err := s.l.AppendAux(ctx, spans, s.recs...)
	if err != nil {
		err = fmt.Errorf("proxy: ledger: %w", err)
	}
	if s.trail != nil {
		err = errors.Join(err, s.trail.Write(ctx, s.recs))
	}
	return err
}

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

// Close drains the gateway's events into its storage and closes it.
func (g *Gateway) Close() error {
	var err error
	if g.watchStop != nil {
		close(g.watchStop)
		<-g.watchDone
		g.watchStop = nil
	}
	if g.Proxy != nil {
		err = g.Proxy.Close() // closes the sink: the shipper drains
	}
	if g.collector != nil {
		err = errors.Join(err, g.collector.Close())
	}
	return err
}

// Serve answers on ln (and, single node with api_listen, serves the
// collector's API on api) until ctx ends, then drains within the shutdown
// timeout and closes the gateway.
func (g *Gateway) Serve(ctx context.Context, ln, api net.Listener) error {
	srv := g.HTTPServer()
	errc := make(chan error, 2)
	go func() {
		if g.cfg.TLSCert != "" {
			errc <- srv.ServeTLS(ln, g.cfg.TLSCert, g.cfg.TLSKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	var apiSrv *http.Server
	if api != nil && g.collector != nil {
		apiSrv = &http.Server{Handler: g.collector.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- apiSrv.Serve(api) }()
	}
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	drain, cancel := context.WithTimeout(context.Background(), g.cfg.Timeouts.Shutdown)
	defer cancel()
	if err := srv.Shutdown(drain); err != nil {
		srv.Close() // streams and WebSockets still open
	}
	if apiSrv != nil {
		if err := apiSrv.Shutdown(drain); err != nil {
			apiSrv.Close()
		}
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return errors.Join(serveErr, g.Close())
}

// HTTPServer is the http.Server the gateway listens with: HTTP/1.1 and
// HTTP/2 (over TLS, and cleartext h2c unless turned off), header timeouts,
// no overall write timeout (responses stream).
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
