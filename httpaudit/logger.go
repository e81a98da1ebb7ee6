package httpaudit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/throttle"
	"github.com/trailguard/trailguard/internal/tick"
	"github.com/trailguard/trailguard/redact"
	"github.com/trailguard/trailguard/sink"
)

// Config configures a Logger. Only Sink is required.
type Config struct {
	// Sink receives the encoded events. The Logger owns it: Close closes it.
	Sink sink.Sink
	// Redactor scrubs every value before it is queued. Nil means a
	// redactor with the default rules (redact.New(redact.Config{})).
	Redactor *redact.Redactor
	// ServiceName is service.name on every event.
	ServiceName string
	// HostName is host.name on every event; empty means os.Hostname.
	HostName string
	// TrustedProxies lists the peers whose ForwardedHeader is believed.
	// Requests from anywhere else have client.ip set to the connection's
	// address, whatever their headers claim.
	TrustedProxies []netip.Prefix
	// ForwardedHeader names the one header the trusted proxies write the
	// client's address in: "X-Forwarded-For" (the default; nginx,
	// HAProxy, Envoy, Traefik and the AWS, Google and Azure load
	// balancers append to it) or "Forwarded" (RFC 7239). The other header
	// is never read: a proxy that appends to one passes the client's own
	// copy of the other on unchanged, so believing it let any client
	// behind the load balancer name its own client.ip.
	ForwardedHeader string
	// RequestIDHeader is the correlation header, default "X-Request-ID".
	RequestIDHeader string
	// Headers names request headers to record, scrubbed, under
	// trailguard.http.request.headers (for example "Accept",
	// "X-Tenant-ID"). Credentials in them are replaced by the redactor:
	// naming "Authorization" records that a credential was sent, never
	// the credential.
	Headers []string
	// GenerateTrace gives a request that arrives without a valid W3C
	// traceparent a new random trace id and span id (trace.id, span.id),
	// available to the handler through TraceContext: a gateway sends them
	// on to the upstream so that its records join the same trace.
	GenerateTrace bool
	// LogStart also records an event when a request starts, so that
	// requests that never finish (a hung handler, a crash) leave a trace.
	LogStart bool
	// MaxBody enables request body capture: JSON and form bodies of at most
	// MaxBody bytes are recorded, scrubbed, in http.request.body.content.
	// Larger bodies and other content types are never captured (a truncated
	// JSON document could not be scrubbed reliably). Zero disables capture.
	MaxBody int
	// Skip, when it returns true, suppresses the access event of a
	// successful request (health checks, metrics scrapes). Failed requests
	// (status ≥ 400), auth and audit events are recorded regardless (but
	// see Discard).
	Skip func(*http.Request) bool
	// MaxFieldBytes caps every value the middleware and the helpers copy
	// from a request or an application into an event: url.path,
	// url.query, url.original, user_agent.original, http.request.referrer, each recorded
	// header, event.reason, user names and ids, trailguard.audit.resource.
	// A longer value (measured after scrubbing) is cut at a UTF-8 boundary
	// and ends in "…[truncated from N bytes]", so a client cannot make one
	// event cost more than a few times this. Default 2048; the request
	// body has its own cap (MaxBody).
	MaxFieldBytes int
	// QueueSize bounds the number of events waiting to be written; default
	// 8192.
	QueueSize int
	// MaxQueueBytes bounds the bytes of requests (path, query, user agent,
	// referrer, recorded and forwarding headers, captured body) that the
	// access events waiting to be written keep alive, and those the writer
	// holds in its batch: a client can send a megabyte of headers with
	// every request, and while the sink is slow QueueSize of them would
	// otherwise wait. An access event that would exceed it is dropped and
	// counted like one that finds the queue full; other events wait for
	// room. Default 64 MiB.
	MaxQueueBytes int
	// BatchSize bounds how many events are written to the sink at once;
	// default 512.
	BatchSize int
	// FailClosed makes Auth and Audit wait until their event is persisted
	// and return an error if it cannot be within WriteTimeout.
	FailClosed bool
	// WriteTimeout bounds how long a fail-closed Auth or Audit waits;
	// default 5s.
	WriteTimeout time.Duration
	// ErrorLog receives the logger's own failures (a sink error, dropped
	// events). Nil means slog.Default(). Never route it back into this
	// Logger.
	ErrorLog *slog.Logger
	// Now is the clock; default time.Now. With the default, a request's
	// duration and start are measured with the processor's time-stamp
	// counter where the kernel keeps time with it (Linux on amd64 with
	// an invariant counter), calibrated against time.Now: a tenth of the
	// cost of a clock reading on a virtual machine, and within about a
	// microsecond of it.
	Now func() time.Time
}

// Stats are the Logger's counters since New.
type Stats struct {
	Enqueued uint64 // events accepted into the queue
	Written  uint64 // events the sink acknowledged
	Dropped  uint64 // access events dropped because the queue was full
	Failed   uint64 // sink writes that returned an error (each retried)
	Lost     uint64 // events that could not be written before Close, or found the queue full while the sink failed
	Queued   int    // events waiting now
	// Failing is true while the sink's last write failed (the batch is
	// being retried): events are accepted but not persisted. Servers that
	// must not act unrecorded (a read of audit data) refuse while it is
	// set.
	Failing bool
}

// ErrClosed is returned by Auth, Audit and Log after Close.
var ErrClosed = errors.New("httpaudit: logger closed")

// Logger is the audit pipeline: a bounded queue in front of a sink, and the
// middleware and helpers that feed it. It is safe for concurrent use.
type Logger struct {
	cfg     Config
	red     *redact.Redactor
	q       *queue
	pool    sync.Pool
	closed  atomic.Bool
	closing chan struct{}
	done    chan struct{}
	lostErr error

	realClock bool // Config.Now is time.Now
	// lean: a request needs no reqOpt of this Logger's own making (the
	// real clock; no body capture, trusted proxies or recorded headers).
	lean   bool
	base   tick.Reading          // New's reading of the clock and the tick counter: the origin of every stamp's scale
	recent atomic.Pointer[stamp] // the writer's last batch's stamp (idTime)

	// Precomputed for the direct encoding of access events (encode.go).
	tail      []byte      // the service and host members every event ends with
	tailSpans []fixedSpan // where tail holds their values
	hdrKeys   []hdrKey    // Config.Headers in the order they are encoded

	written, failed, lost atomic.Uint64
	// failing is set while the sink fails (see Stats.Failing); the queue
	// reads it to stop senders from waiting for room that may never come.
	failing atomic.Bool
	// outage throttles the writer's lines about failed sink writes: one
	// run of failures per outage, weighed in events.
	outage throttle.Gate
	// failingRun is set while a run of failures goes on (writer goroutine
	// only): a successful write ends it without touching outage's lock.
	failingRun bool
}

// failLogEvery is how often a sink that keeps failing is reported while it
// fails: its retries come every second, and a full disk that nobody frees
// for a day must not write 86,400 lines to the log it may share.
var failLogEvery = time.Minute

// noteFailure records a failed write of a batch of n events and logs it when
// due (l.outage): the first failure of a run, unless a line about failures
// was logged within failLogEvery (a sink failing every other write), and
// then once per failLogEvery with the run's counts.
func (l *Logger) noteFailure(n int, err error) {
	l.failingRun = true
	now := time.Now()
	line, ok := l.outage.Note(now, uint64(n))
	if !ok {
		return
	}
	if line.First {
		l.cfg.ErrorLog.Error("httpaudit: sink write failed, retrying (while it fails, again every "+l.outage.Every.String()+" with counts)",
			"events", n, "failed_total", l.failed.Load(), "err", err)
		return
	}
	run := line.Run
	l.cfg.ErrorLog.Error("httpaudit: sink still failing, retrying", "failures", run.Count, "since", run.Start.UTC().Format(time.RFC3339),
		"for", now.Sub(run.Start).Round(time.Second).String(), "events_waiting", n+queuedNow(l.q), "failed_total", l.failed.Load(), "err", err)
}

func queuedNow(q *queue) int { _, _, n := q.counts(); return n }

// recovered ends a run of failures, saying so if the run was logged.
func (l *Logger) recovered() {
	if !l.failingRun {
		return
	}
	l.failingRun = false
	if run, logged := l.outage.End(); logged {
		l.cfg.ErrorLog.Warn("httpaudit: sink writes succeed again", "failures", run.Count,
			"after", time.Since(run.Start).Round(time.Millisecond).String(), "failed_total", l.failed.Load())
	}
}

// item is one queued event: ready-made (ev), or the state of a served
// request whose access event the writer builds (st). done, when set,
// receives the sink's verdict.
type item struct {
	ev   *event.Event
	st   *state
	done chan error
	size int // the request bytes st keeps alive (see Config.MaxQueueBytes)
}

// New starts a Logger writing to cfg.Sink.
func New(cfg Config) (*Logger, error) {
	if cfg.Sink == nil {
		return nil, errors.New("httpaudit: Config.Sink is required")
	}
	if cfg.Redactor == nil {
		r, err := redact.New(redact.Config{})
		if err != nil {
			return nil, fmt.Errorf("httpaudit: default redactor: %w", err)
		}
		cfg.Redactor = r
	}
	if cfg.HostName == "" {
		cfg.HostName, _ = os.Hostname()
	}
	switch http.CanonicalHeaderKey(cfg.ForwardedHeader) {
	case "", "X-Forwarded-For":
		cfg.ForwardedHeader = "X-Forwarded-For"
	case "Forwarded":
		cfg.ForwardedHeader = "Forwarded"
	default:
		return nil, fmt.Errorf("httpaudit: Config.ForwardedHeader %q: want X-Forwarded-For or Forwarded", cfg.ForwardedHeader)
	}
	if cfg.RequestIDHeader == "" {
		cfg.RequestIDHeader = "X-Request-ID"
	}
	cfg.RequestIDHeader = http.CanonicalHeaderKey(cfg.RequestIDHeader)
	for i, h := range cfg.Headers {
		cfg.Headers[i] = http.CanonicalHeaderKey(h)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 8192
	}
	if cfg.MaxQueueBytes <= 0 {
		cfg.MaxQueueBytes = 64 << 20
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 512
	}
	if cfg.MaxFieldBytes <= 0 {
		cfg.MaxFieldBytes = 2048
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	if cfg.ErrorLog == nil {
		cfg.ErrorLog = slog.Default()
	}
	realClock := cfg.Now == nil
	if realClock {
		cfg.Now = time.Now
	}
	l := &Logger{
		cfg:     cfg,
		red:     cfg.Redactor,
		q:       newQueue(cfg.QueueSize, cfg.MaxQueueBytes),
		closing: make(chan struct{}),
		done:    make(chan struct{}),

		realClock: realClock,
		lean:      realClock && cfg.MaxBody <= 0 && len(cfg.TrustedProxies) == 0 && len(cfg.Headers) == 0,
		base:      tick.Read(),
	}
	l.q.failing = &l.failing
	l.pool.New = func() any { return new(event.Event) }
	l.tail = accessTail(cfg.ServiceName, cfg.HostName)
	l.tailSpans = accessTailSpans(l.tail, cfg.ServiceName, cfg.HostName)
	l.hdrKeys = headerKeys(cfg.Headers)
	l.outage.Every = failLogEvery
	go l.run()
	return l, nil
}

// Stats returns the current counters.
func (l *Logger) Stats() Stats {
	enqueued, dropped, queued := l.q.counts()
	return Stats{
		Enqueued: enqueued,
		Written:  l.written.Load(),
		Dropped:  dropped,
		Failed:   l.failed.Load(),
		Lost:     l.lost.Load(),
		Queued:   queued,
		Failing:  l.failing.Load(),
	}
}

// newEvent returns a cleared event from the pool with the fields every
// event carries.
func (l *Logger) newEvent(now time.Time) *event.Event {
	ev := l.pool.Get().(*event.Event)
	*ev = event.Event{
		Timestamp:   now,
		Kind:        event.KindEvent,
		ServiceName: l.cfg.ServiceName,
		HostName:    l.cfg.HostName,
	}
	// The id lives inside the pooled event: it is encoded before the event
	// is recycled, and nothing keeps it beyond that.
	ev.SetNewID()
	return ev
}

// tryEnqueue queues ev unless the queue is full; a dropped event is
// counted. It is for plain access events only.
func (l *Logger) tryEnqueue(ev *event.Event) { l.tryEnqueueItem(item{ev: ev}) }

func (l *Logger) tryEnqueueItem(it item) {
	ok, closed, dropped := l.q.offer(it)
	switch {
	case ok:
	case closed:
		l.lost.Add(1)
	case dropped&(dropped-1) == 0: // log at powers of two
		l.cfg.ErrorLog.Warn("httpaudit: queue full, access events dropped", "dropped_total", dropped)
	}
}

// enqueue queues ev, waiting for room: these events are never dropped.
// With wait set it also waits until the sink has persisted the event, or
// ctx or the write timeout ends first.
func (l *Logger) enqueue(ctx context.Context, ev *event.Event, wait bool) error {
	return l.enqueueItem(ctx, item{ev: ev}, wait)
}

func (l *Logger) enqueueItem(ctx context.Context, it item, wait bool) error {
	if !wait {
		return l.putItem(ctx, it, nil, false)
	}
	return l.enqueuePending(ctx, it)()
}

// enqueuePending queues it and returns at once a function (to be called
// once) that waits until it is persisted, ctx is done or WriteTimeout has
// passed since it was queued, and returns why not.
func (l *Logger) enqueuePending(ctx context.Context, it item) func() error {
	done := make(chan error, 1)
	it.done = done
	t := time.NewTimer(l.cfg.WriteTimeout)
	if err := l.putItem(ctx, it, t.C, true); err != nil {
		t.Stop()
		return func() error { return err }
	}
	return func() error {
		defer t.Stop()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return fmt.Errorf("httpaudit: event not confirmed persisted: %w", ctx.Err())
		case <-t.C:
			return fmt.Errorf("httpaudit: event not persisted within %v", l.cfg.WriteTimeout)
		}
	}
}

// putItem queues it; wait says the caller will wait for it (a failing
// sink is then an error at once).
func (l *Logger) putItem(ctx context.Context, it item, timeout <-chan time.Time, wait bool) error {
	switch err := l.q.put(ctx, it, timeout, l.cfg.WriteTimeout); err {
	case nil:
		return nil
	case errFailingQueued:
		// The sink is failing and its batch is being retried: the event
		// is queued, but a fail-closed caller learns now that it is not
		// persisted.
		if wait {
			return errors.New("httpaudit: audit sink failing: event queued but not persisted")
		}
		return nil
	case errFailingFull:
		// Waiting for room could last as long as the outage (a full disk)
		// and hang every request that records something.
		n := l.lost.Add(1)
		if n&(n-1) == 0 { // log at powers of two
			l.cfg.ErrorLog.Error("httpaudit: sink failing and queue full, events lost", "lost_total", n)
		}
		return errors.New("httpaudit: audit sink failing and queue full: event not recorded")
	default:
		return err
	}
}

// Log records a custom event. The event is scrubbed of nothing: build it
// from scrubbed values (see Logger.Redactor). Missing @timestamp, event.id,
// service and host are filled in. It waits for queue room and, with
// Config.FailClosed, for persistence.
func (l *Logger) Log(ctx context.Context, ev *event.Event) error {
	e := l.newEvent(l.cfg.Now())
	ts := e.Timestamp
	*e = *ev
	if e.Timestamp.IsZero() {
		e.Timestamp = ts
	}
	if e.ID == "" {
		e.SetNewID()
	}
	if e.Kind == "" {
		e.Kind = event.KindEvent
	}
	if e.ServiceName == "" {
		e.ServiceName = l.cfg.ServiceName
	}
	if e.HostName == "" {
		e.HostName = l.cfg.HostName
	}
	return l.enqueue(ctx, e, l.cfg.FailClosed)
}

// Redactor returns the scrubber the Logger applies, for handlers that
// build their own events.
func (l *Logger) Redactor() *redact.Redactor { return l.red }

// pieceBytes is how much of a batch's encoding the writer holds before it
// hands that part to a *sink.Writer: a stream, where another call costs
// one more write(2) and nothing else (no sync, whole lines each time).
// Its buffer then stays at pieceBufBytes, where it kept the encoding of
// the largest batch it ever took for the process's lifetime: 432 KB in
// bench/ (512 events), megabytes with recorded headers and bodies. The
// collector counts that buffer live, and under its 4 MB minimum heap a
// live byte is headroom lost: serially, bench/'s process then took ~40 %
// more page faults (pages the scavenger returned, touched again by the
// requests' allocations) and 5 % more cycles. Above the minimum the pacer
// sets the heap goal at twice the live heap, and there the buffer was
// headroom gained: bench/'s parallel benchmark runs ~8 % slower without
// it (docs/performance.md, middleware, twenty-third session). Other sinks
// take a batch whole: sink.File syncs on every call, and an EncodedSink's
// records are indexed by the batch.
const (
	pieceBytes    = 60 << 10
	pieceBufBytes = 64 << 10
)

// run is the single writer: it batches queued events, encodes them and
// hands each batch to the sink (a *sink.Writer's in pieces: pieceBytes),
// retrying a failed batch or piece until it is written or the Logger
// closes.
func (l *Logger) run() {
	defer close(l.done)
	batch := make([]item, 0, l.cfg.BatchSize)
	records := make([][]byte, 0, l.cfg.BatchSize)
	ids := event.NewIDSource()
	wc := writerCache{memo: l.red.NewMemo()}
	var buf []byte
	piece := 0 // 0: the batch whole
	if _, ok := l.cfg.Sink.(*sink.Writer); ok {
		piece = pieceBytes
		buf = make([]byte, 0, pieceBufBytes)
	}
	// encs[i] says where record i holds its fields, for a sink that
	// takes them.
	var encs []event.EncodedSpans
	es, _ := l.cfg.Sink.(EncodedSink)
	if es != nil {
		encs = make([]event.EncodedSpans, l.cfg.BatchSize)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch = l.q.next(batch, l.cfg.BatchSize, timer)
		if len(batch) == 0 {
			return // closed and drained
		}
		buf = buf[:0]
		records = records[:0]
		// One clock reading stamps the ids of the whole batch: UUIDv7
		// orders by millisecond, and a batch takes well under one. It
		// also converts the ticks of the batch's requests (see stamp).
		wc.now = l.stamp()
		now := wc.now.Time
		recent := wc.now
		l.recent.Store(&recent)
		var id [36]byte
		from := 0 // the first item of the piece being encoded
		for i := range batch {
			if piece > 0 && len(buf) >= piece {
				l.write(batch[from:i], records, buf, nil)
				buf, records, from = buf[:0], records[:0], i
			}
			start := len(buf)
			var enc *event.EncodedSpans
			if es != nil {
				enc = &encs[i]
				enc.Reset()
			}
			if st := batch[i].st; st != nil {
				var ok bool
				if buf, ok = l.appendAccess(buf, st, ids.Append(id[:0], now), &wc, enc); ok {
					records = append(records, buf[start:len(buf):len(buf)])
					buf = append(buf, '\n')
					batch[i].st = nil
					continue
				}
				batch[i].ev = l.finish(st, wc.now)
				batch[i].st = nil
			}
			if enc != nil {
				enc.Invalidate() // not noted
			}
			buf = batch[i].ev.AppendJSON(buf)
			records = append(records, buf[start:len(buf):len(buf)])
			buf = append(buf, '\n')
		}
		l.write(batch[from:], records, buf, encs[:min(len(encs), len(records))])
		for _, it := range batch {
			if it.ev != nil {
				l.pool.Put(it.ev)
			}
		}
		clear(batch) // keep no request alive until the next batch
	}
}

// write hands a batch to the sink: records, or lines, the same records
// framed (each followed by a newline), to a sink.LineWriter.
func (l *Logger) write(batch []item, records [][]byte, lines []byte, encs []event.EncodedSpans) {
	backoff := 10 * time.Millisecond
	notified := false
	for {
		err := l.sinkWrite(records, lines, encs)
		if err == nil {
			l.failing.Store(false)
			l.recovered()
			l.written.Add(uint64(len(batch)))
			if !notified {
				notify(batch, nil)
			}
			return
		}
		if l.failing.CompareAndSwap(false, true) {
			l.q.wakeWaiters() // room may never come: they must not wait for it
		}
		l.failed.Add(1)
		l.noteFailure(len(batch), err)
		if !notified {
			// Fail-closed callers learn now; the batch is still retried so
			// that events of callers who did not wait are not lost.
			notify(batch, fmt.Errorf("httpaudit: audit event not persisted: %w", err))
			notified = true
		}
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, time.Second)
		case <-l.closing:
			if err := l.sinkWrite(records, lines, encs); err == nil {
				l.written.Add(uint64(len(batch)))
				return
			}
			l.lost.Add(uint64(len(batch)))
			l.lostErr = fmt.Errorf("httpaudit: %d events lost at close: %w", l.lost.Load(), err)
			return
		}
	}
}

// sinkWrite writes a batch, framed for the sinks of package sink that take
// it so. Only those exact types: a wrapper that embeds one to add to its
// Write (counting, filtering, fan-out) would have its Write bypassed by a
// promoted WriteLines.
func (l *Logger) sinkWrite(records [][]byte, lines []byte, encs []event.EncodedSpans) error {
	switch s := l.cfg.Sink.(type) {
	case *sink.Writer:
		return s.WriteLines(context.Background(), lines, len(records))
	case *sink.File:
		return s.WriteLines(context.Background(), lines, len(records))
	case EncodedSink:
		return s.WriteEncoded(context.Background(), records, encs)
	}
	return l.cfg.Sink.Write(context.Background(), records)
}

// EncodedSink is a Sink that also takes, beside each record of a batch,
// where the Logger's writer put the record's fields as it encoded it
// (an access event it wrote directly; for any other record the
// EncodedSpans is not Valid): a sink that stores its records normalised
// as the collector's ingest does (a single-node gateway's, with
// event.AppendEncoded) is spared parsing them again. records and spans
// are the writer's buffers, reused after WriteEncoded returns; their
// contract is otherwise Write's.
type EncodedSink interface {
	sink.Sink
	WriteEncoded(ctx context.Context, records [][]byte, spans []event.EncodedSpans) error
}

func notify(batch []item, err error) {
	for _, it := range batch {
		if it.done != nil {
			it.done <- err
		}
	}
}

// Close stops accepting events, writes everything queued, and closes the
// sink. It reports events that could not be written. Close is idempotent.
func (l *Logger) Close() error {
	if l.closed.Swap(true) {
		<-l.done
		return nil
	}
	l.q.close()
	close(l.closing)
	<-l.done
	return errors.Join(l.lostErr, l.cfg.Sink.Close())
}
