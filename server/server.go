// Package server is the collector behind `trailguard serve`: it ingests
// events over HTTP (its own NDJSON API and an Elasticsearch-compatible
// _bulk API), scrubs them again, appends them durably to the ledger,
// indexes them in SQLite, and serves queries, statistics and a live tail
// to holders of API tokens with the right role.
//
// The collector audits itself: every request to it, every failed token
// check and every read of audit data is an event in the same ledger.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/forward"
	"github.com/trailguard/trailguard/httpaudit"
	"github.com/trailguard/trailguard/index"
	"github.com/trailguard/trailguard/internal/connlimit"
	"github.com/trailguard/trailguard/internal/sockio"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/redact"
	"github.com/trailguard/trailguard/report"
	"github.com/trailguard/trailguard/retention"
	"golang.org/x/mod/sumdb/note"
)

// Server is a running collector.
type Server struct {
	cfg     Config
	log     *slog.Logger
	ledger  *ledger.Ledger
	index   *index.Index
	tokens  *access.Store
	red     *redact.Redactor
	audit   *httpaudit.Logger
	limiter *failLimiter
	conns   *connlimit.Limiter // Serve's client connections (nil before Serve)
	// connState is Serve's http.Server's ConnState (tests look at the
	// connections served).
	connState func(net.Conn, http.ConnState)
	// extraMetrics write an embedder's metrics after the collector's.
	extraMetrics []func(io.Writer)
	sampler      *sampler
	polls        pollSampler // empty decision-stream polls recorded (pollaudit.go)
	slots        *tokenSlots
	reads        *tokenSlots // reads in progress, per token and in all
	// reports: one report in progress or waiting for reportSlot per token
	// (others get 429), so a single read token — stolen, or a script in a
	// loop — cannot fill the wait and starve other readers' reports into
	// 503s; reads already bound them in all.
	reports *tokenSlots
	recent  *recentIDs
	space   *spaceMonitor
	metrics *metrics
	forward *forward.Manager
	// chunkEvents is the most events appended at once (chunkEvents,
	// smaller in tests).
	chunkEvents int
	// turns: the ingest requests preparing events at once (turns.go).
	turns   *prepTurns
	detect  *detection
	ui      *uiState // the web UI (ui.go)
	handler http.Handler
	// reportWarmer keeps report figures of whole ledger chunks (report.go).
	reportWarmer *reportCacheWarmer
	// reportCacheKey authenticates the report cache's files (derived from
	// the signing key: report.CachePurpose).
	reportCacheKey []byte

	// Paths of the keys, for operators.
	SignerKeyPath, VerifierKeyPath string

	// stopping is closed when a shutdown starts: live tails end then
	// instead of holding up the drain of requests in flight.
	stopping chan struct{}
	// tailBudget is a live tail's burst of time checking records against
	// its query (index.DefaultScanTime, as a search's; tests shorten it).
	tailBudget    time.Duration
	stopStreams   func()
	indexCancel   context.CancelFunc
	indexDone     chan error
	indexFailures atomic.Uint64
	sampleStop    chan struct{}
	sampleDone    chan struct{}
	closeOnce     sync.Once
	closeErr      error
	// closing is a shutdown's steps, for the log of a slow one;
	// closeHook (tests) runs at the start of each step (shutdown.go).
	closing   shutdownProgress
	closeHook func(step string)
	// auditStall (tests) runs before each append of the collector's own
	// audit events (ledgerSink).
	auditStall atomic.Pointer[func()]

	// appendLog summarises ingest refused for a full disk (storelog.go).
	appendLog appendFailureLog
	// settings are what the collector started with, as its reports state
	// them, saved signed in SettingsFile; settingsSum is that file's hash,
	// which its start event carries (settings.go).
	settings    RunSettings
	settingsSum string
}

// ledgerSink lets the collector's own audit events (its access log,
// token failures, reads of the trail) go into the ledger they protect.
// stall, if it holds a function, runs before each append (tests: a
// ledger that falls behind, a stalled fdatasync).
type ledgerSink struct {
	l     *ledger.Ledger
	stall *atomic.Pointer[func()]
}

func (s ledgerSink) Write(ctx context.Context, recs [][]byte) error {
	if f := s.stall.Load(); f != nil {
		(*f)()
	}
	_, err := s.l.Append(ctx, recs...)
	return err
}

func (s ledgerSink) Close() error { return nil }

// New opens (or creates) the collector's data directory: keys, ledger,
// index and tokens. Keys missing on first start are generated and their
// paths are in SignerKeyPath and VerifierKeyPath.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	// Every section is checked before anything is written: a mistake in
	// outputs: (or notifiers:, a retention profile, …) was found after
	// the data directory and the keys were made.
	if errs := cfg.checkSections("", true); len(errs) > 0 {
		return nil, fmt.Errorf("server: config: %w", errors.Join(errs...))
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: cannot create the data directory (point --data, data_dir or TRAILGUARD_DATA at a writable place): %w", err)
	}
	if err := secureDataDir(cfg.DataDir, log); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, metrics: newMetrics(), recent: newRecentIDs(cfg.DedupWindow), chunkEvents: chunkEvents,
		turns: newPrepTurns(defaultPrepTurns()), space: &spaceMonitor{dir: cfg.DataDir, reserve: cfg.DiskReserve}, closeHook: CloseStepHook, stopping: make(chan struct{}),
		tailBudget: index.DefaultScanTime}
	var stopOnce sync.Once
	s.stopStreams = func() { stopOnce.Do(func() { close(s.stopping) }) }
	if cfg.ShutdownTimeout <= 0 {
		// A Config not from Defaults: a zero budget would abandon
		// every step of Close at once.
		s.cfg.ShutdownTimeout = Defaults().ShutdownTimeout
	}
	if cfg.Origin == "" {
		host, _ := os.Hostname()
		s.cfg.Origin = "trailguard/" + host
	}
	signer, err := s.loadOrCreateKeys()
	if err != nil {
		return nil, err
	}
	var handover note.Signer
	if cfg.Once.HandoverKey != "" {
		if handover, err = ledger.LoadSigner(cfg.Once.HandoverKey); err != nil {
			return nil, fmt.Errorf("server: --handover-key: %w", err)
		}
	}
	if err := checkSignerKey(filepath.Join(cfg.DataDir, "ledger"), s.SignerKeyPath, signer, handover); err != nil {
		return nil, err
	}
	if s.reportCacheKey, err = ledger.DeriveKey(s.SignerKeyPath, report.CachePurpose); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if s.red, err = newRedactor(cfg, false); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	// The collector's own records also lose any trailguard token a
	// client pasted where it does not belong (a search, the path, a
	// header): kept, it would be readable by every reader for good.
	selfRed, err := newRedactor(cfg, true)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	var prof retention.Profile
	if cfg.Retention != "" {
		if prof, err = retention.Lookup(cfg.Retention); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	var witnesses []ledger.Witness
	for _, w := range cfg.Witness {
		if strings.HasPrefix(w, "http://") || strings.HasPrefix(w, "https://") {
			witnesses = append(witnesses, ledger.HTTPWitness(w, &http.Client{Timeout: 10 * time.Second}))
		} else {
			witnesses = append(witnesses, ledger.DirWitness(w))
		}
	}
	pruneFloor, err := s.openForward(prof)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.ledger, err = ledger.Open(filepath.Join(cfg.DataDir, "ledger"), ledger.Options{
		PruneFloor:         pruneFloor,
		Origin:             s.cfg.Origin,
		Signer:             signer,
		HandoverSigner:     handover,
		CheckpointInterval: cfg.CheckpointInterval,
		SegmentSize:        cfg.LedgerSegmentBytes,
		Retention:          prof,
		LegalHold:          cfg.LegalHold,
		Witnesses:          witnesses,
		Logger:             log,
		// One-shot operator decisions (flags only).
		AdoptUnsigned:       cfg.Once.AdoptUnsigned,
		StartWithoutWitness: cfg.Once.StartWithoutWitness,
		// A prepared record is the line plus a few fields the collector
		// adds; scrubbing never makes it longer than twice the line.
		MaxRecordSize: 2*cfg.MaxLineBytes + 64<<10,
		// The index, detection and the UI's overview follow what ingest
		// appends; within this much of the newest records they take the
		// bytes Append hashed from memory instead of reading each record
		// back, checking its frame and hashing it again, once per
		// follower (appendedFollower).
		TailBytes: followTailBytes,
		// The reserve keeps room for checkpoints. The ledger's close must
		// end by the ledger's share of shutdown_timeout (shutdown.go);
		// CloseBy gives up on it then anyway, so that the process exits
		// in time.
		Reserve:      cfg.DiskReserve,
		CloseTimeout: PlanShutdown(time.Time{}, s.cfg.ShutdownTimeout).Ledger.Sub(time.Time{}),
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := s.rebuildRecent(); err != nil {
		s.ledger.Close()
		return nil, err
	}
	if s.tokens, err = access.Open(filepath.Join(cfg.DataDir, "tokens.json")); err != nil {
		s.ledger.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	if s.index, err = index.Open(filepath.Join(cfg.DataDir, "index.db"), index.Options{Ledger: s.ledger, Logger: log, BatchDelay: cfg.IndexBatchDelay}); err != nil {
		s.ledger.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	s.audit, err = httpaudit.New(httpaudit.Config{
		Sink:        ledgerSink{s.ledger, &s.auditStall},
		Redactor:    selfRed,
		ServiceName: "trailguard-collector",
		ErrorLog:    log,
		// Everything the collector records about its own requests is
		// cut to this (see README, "Limits").
		MaxFieldBytes: auditFieldBytes,
	})
	if err != nil {
		s.index.Close()
		s.ledger.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	s.limiter = newFailLimiter(cfg.AuthFailBurst, cfg.AuthFailPerMinute)
	s.sampler = newSampler(cfg.RefusedAuditPerMinute, cfg.RefusedAuditTotalPerMinute, time.Now())
	s.slots = newTokenSlots(cfg.MaxIngestPerToken, cfg.MaxIngestRequests)
	// A Config not from Defaults (no read limits set) gets the defaults,
	// not a limit of zero reads.
	readsPerToken, reads := cfg.MaxReadsPerToken, cfg.MaxReadRequests
	if readsPerToken <= 0 || reads <= 0 {
		readsPerToken, reads = Defaults().MaxReadsPerToken, Defaults().MaxReadRequests
	}
	s.reads = newTokenSlots(readsPerToken, reads)
	s.reports = newTokenSlots(1, reads)
	s.handler = s.boundBodies(s.audit.Middleware(s.sampleUnauthorized(s.routes())))
	s.sampleStop, s.sampleDone = make(chan struct{}), make(chan struct{})
	go s.sampleLoop(s.sampleStop, s.sampleDone)

	ctx, cancel := context.WithCancel(context.Background())
	s.indexCancel = cancel
	s.indexDone = make(chan error, 1)
	go func() { s.indexDone <- s.runIndex(ctx) }()
	s.startForward()
	if err := s.startDetection(); err != nil {
		s.Close()
		return nil, err
	}
	s.startReportWarmer()
	if err := s.saveRunSettings(); err != nil {
		// A stale record would have offline reports state the last
		// start's settings as this one's.
		os.Remove(filepath.Join(cfg.DataDir, SettingsFile))
		s.log.Error("settings not saved: reports made offline state the configuration they are given", "err", err)
	}
	s.logSystem(event.ActionSysStartup, "collector started (settings sha256 "+s.settingsSum+" in "+SettingsFile+")")
	if a := s.ledger.Adopted(); a != nil {
		// The operator's adoption of unsigned records is itself audited
		// (the adopting checkpoint records it too).
		s.logSystem("ledger_records_adopted", a.String()+" (--adopt-unsigned)")
	}
	return s, nil
}

// rebuildRecent fills the resend window with the event.ids of the
// ledger's last DedupWindow records, so that a shipper resending after a
// collector restart (or crash) is not stored twice: the window would
// otherwise start empty at every start.
func (s *Server) rebuildRecent() error {
	if s.recent == nil {
		return nil
	}
	start := time.Now()
	size := s.ledger.Size()
	from := max(size-min(size, uint64(len(s.recent.ring))), s.ledger.Pruned())
	keys := make([]uint64, 0, 4096)
	n := 0
	for e, err := range s.ledger.Entries(from) {
		if err != nil {
			return fmt.Errorf("server: rebuilding the resend window from ledger record %d: %w", from+uint64(n), err)
		}
		n++
		if id, ok := event.PeekID(e.Data); ok && id != "" {
			keys = append(keys, s.recent.keyOfString(id))
			if len(keys) == cap(keys) {
				s.recent.add(keys)
				keys = keys[:0]
			}
		}
	}
	s.recent.add(keys)
	if n > 0 {
		s.log.Info("resend window rebuilt from the ledger", "records", n, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func newRedactor(cfg Config, tokens bool) (*redact.Redactor, error) {
	mode, err := redact.ParseMode(cfg.RedactMode)
	if err != nil {
		return nil, fmt.Errorf("redact_mode: %w", err)
	}
	rc := redact.Config{Mode: mode, Tokens: tokens}
	if cfg.RedactSecretFile != "" {
		b, err := os.ReadFile(cfg.RedactSecretFile)
		if err != nil {
			return nil, fmt.Errorf("redact_secret_file: %w", err)
		}
		rc.Secret = []byte(strings.TrimSpace(string(b)))
	}
	r, err := redact.New(rc)
	if err != nil {
		return nil, fmt.Errorf("redact_mode %s: %w", cfg.RedactMode, err)
	}
	return r, nil
}

// loadOrCreateKeys returns the checkpoint signer, generating a key pair
// in <data_dir>/keys on first start.
func (s *Server) loadOrCreateKeys() (note.Signer, error) {
	s.SignerKeyPath = s.cfg.SignerKey
	if s.SignerKeyPath == "" {
		s.SignerKeyPath = filepath.Join(s.cfg.DataDir, "keys", "signer.key")
	}
	s.VerifierKeyPath = strings.TrimSuffix(s.SignerKeyPath, ".key") + ".pub"
	if _, err := os.Stat(s.SignerKeyPath); errors.Is(err, os.ErrNotExist) && s.cfg.SignerKey == "" {
		skey, vkey, err := ledger.GenerateKey(s.cfg.Origin)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(s.SignerKeyPath), 0o700); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		if err := os.WriteFile(s.SignerKeyPath, []byte(skey+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("server: write signer key: %w", err)
		}
		if err := os.WriteFile(s.VerifierKeyPath, []byte(vkey+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("server: write verifier key: %w", err)
		}
		s.log.Info("generated checkpoint keys", "signer", s.SignerKeyPath, "verifier", s.VerifierKeyPath)
	}
	sg, err := ledger.LoadSigner(s.SignerKeyPath)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return sg, nil
}

// Handler is the collector's HTTP API, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Ledger is the collector's ledger, for embedding (the demo ships to it).
func (s *Server) Ledger() *ledger.Ledger { return s.ledger }

// IndexLag is how many ledger records are not indexed yet.
func (s *Server) IndexLag() uint64 {
	size := s.ledger.Size()
	return size - min(size, s.index.Indexed())
}

// Tokens is the collector's token store.
func (s *Server) Tokens() *access.Store { return s.tokens }

// auditFieldBytes caps each value the collector records about its own
// requests (url.path, url.query, user_agent.original, event.reason, …).
const auditFieldBytes = 1024

// Serve answers HTTP on ln until ctx ends, then shuts down within
// ShutdownTimeout whatever happens (a full disk, a stuck witness, a
// follower that does not stop; see ShutdownPlan): it stops intake, lets
// requests in flight finish for at most 40 % of the budget and cuts the
// rest, writes the collector's last audit events and the ledger's final
// checkpoint by 75 %, and stops the index, detection, the outputs and the
// UI's follower by 90 %, abandoning any that has not stopped. An error
// wrapping ErrFinalCheckpoint means the final checkpoint was not written;
// one wrapping ErrAbandoned names a part abandoned.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	base, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		// Requests in flight at the signal are not cancelled by it: an
		// ingest request finishes its durable append and is answered
		// (live tails end at once, on s.stopping). What still runs when
		// the drain's share ends is cancelled then.
		BaseContext: func(net.Listener) context.Context { return base },
		// requireRole vouches for a connection that presented a valid
		// token (max_connections_per_address).
		ConnContext: connlimit.ConnContext,
		ConnState:   s.connState,
	}
	// The connections' reads and writes are sockio's raw system calls
	// (below TLS, when it serves TLS): at full ingest the two Ps are busy,
	// and a socket read that outlasts one of the runtime monitor's polls had
	// its P taken and handed to another thread, which also set the monitor
	// back to polling every 20 µs (the other hand-offs are the ledger's
	// disk calls, which may block; docs/performance.md, "Twenty-sixth
	// session, the runtime's monitor").
	ln = s.limitConns(sockio.Listener(ln))
	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLSCert != "" {
			errc <- srv.ServeTLS(ln, s.cfg.TLSCert, s.cfg.TLSKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return errors.Join(err, s.Close())
	case <-ctx.Done():
	}
	plan := s.ShutdownPlan(time.Now())
	s.stopStreams()
	drain, cancel := context.WithDeadline(context.Background(), plan.Drain)
	defer cancel()
	if err := srv.Shutdown(drain); err != nil {
		// Slow clients, long reads: cut them, so that the ledger can
		// close in the time left.
		s.log.Warn("requests still running at shutdown were cut", "after", time.Since(plan.Start).Round(time.Millisecond))
		cancelBase()
		srv.Close()
	}
	drained := time.Since(plan.Start)
	err := s.CloseBy(plan)
	s.log.Info("collector stopped", "requests_drained_in", drained.Round(time.Millisecond),
		"took", time.Since(plan.Start).Round(time.Millisecond), "shutdown_timeout", s.cfg.ShutdownTimeout)
	return err
}

// AddMetrics adds f's lines (Prometheus text format) to /metrics: an
// embedder's own counters (a single-node gateway's events lost). Call it
// before serving.
func (s *Server) AddMetrics(f func(io.Writer)) { s.extraMetrics = append(s.extraMetrics, f) }

// limitConns caps ln's connections at max_connections, lowered to fit the
// open-file limit (internal/connlimit).
func (s *Server) limitConns(ln net.Listener) net.Listener {
	n, limit := connlimit.Fit(s.cfg.MaxConnections, 1)
	if n < s.cfg.MaxConnections {
		s.log.Warn("max_connections lowered to fit the open-file limit (raise LimitNOFILE or ulimit -n for more)",
			"max_connections", s.cfg.MaxConnections, "now", n, "open_file_limit", limit)
	}
	per := s.cfg.MaxConnectionsPerAddress
	s.conns = connlimit.New(n, s.log, "client connections").PerAddress(per, max(per/8, 8), nil)
	return s.conns.Listener(ln)
}

// runIndex keeps the indexer following the ledger until ctx ends. A
// failure of the index (its disk full, say) stops one Run; the next
// starts from what was committed after a pause, so the collector recovers
// by itself when the cause goes away.
func (s *Server) runIndex(ctx context.Context) error {
	return s.followIndex(ctx, func(ctx context.Context) error {
		return s.index.Run(ctx, gatedSource{s.ledger, s.space})
	})
}

// followIndex is runIndex with the indexer's Run as run. A Run that
// failed while or after ctx ended (its last batch's commit, which runs
// after the stop, timing out on SQLite's lock) returns that failure, not
// ctx.Err(): the stop reports it instead of taking it for a clean stop.
// The ledger closing under the stopped follower is not a failure: the
// followers stop in parallel with the ledger's close, and Run commits
// what it read before it returns.
func (s *Server) followIndex(ctx context.Context, run func(context.Context) error) error {
	backoff := time.Second
	for {
		err := run(ctx)
		if ctx.Err() != nil {
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
				!errors.Is(err, ledger.ErrClosed) {
				return err
			}
			return ctx.Err()
		}
		s.indexFailures.Add(1)
		s.log.Error("index: stopped, restarting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// logSystem records a lifecycle event of the collector itself (PCI DSS
// 10.2.1.6: audit logs started and stopped).
func (s *Server) logSystem(action, msg string) {
	ev := &event.Event{
		Kind: event.KindEvent, Category: []string{event.CategoryConfiguration}, Type: []string{event.TypeInfo},
		Action: action, Outcome: event.OutcomeSuccess, Message: msg, Dataset: event.DatasetAudit,
	}
	if err := s.audit.Log(context.Background(), ev); err != nil {
		s.log.Error("collector lifecycle event not recorded", "action", action, "err", err)
	}
}
