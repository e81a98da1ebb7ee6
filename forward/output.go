package forward

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/ship"
)

// deliverer sends one batch until each record is delivered or dead-lettered;
// ship.Sender is one.
type deliverer interface {
	Deliver(records [][]byte) error
	Close()
	Stats() ship.Stats
}

// job is one batch: ledger records [first, end). A skip job carries no
// records: [first, end) was deleted by retention before delivery.
type job struct {
	gen, seq uint64
	first    uint64
	end      uint64
	recs     [][]byte
	bytes    int
	skip     bool
}

// maxUnverified bounds the records acknowledged but not yet confirmed by
// query: beyond it the output waits for verification.
const maxUnverified = 2_000_000

// readChunk is how many ledger entries the reader hands the dispatcher at
// once; arenaSize the size of the buffers records with ledger fields are
// cut from.
const (
	readChunk = 256
	arenaSize = 256 << 10
)

// mark is an acknowledged position awaiting verification.
type mark struct {
	end uint64
	at  time.Time
}

type errAt struct {
	err error
	at  time.Time
}

type output struct {
	m         *Manager
	cfg       Config
	dir       string
	hasCursor bool
	senders   []deliverer
	closeOnce sync.Once
	client    *http.Client // verification queries

	committed atomic.Uint64 // the cursor: everything before it is delivered
	saved     atomic.Uint64 // what the cursor file holds
	acked     atomic.Uint64 // everything before it was acknowledged

	// mu guards the read position the dispatcher follows.
	mu       sync.Mutex
	gen      uint64
	readFrom uint64
	rewindC  chan struct{} // wakes an idle dispatcher after a rewind

	// committer state (its goroutine only)
	marks   []mark
	skips   [][2]uint64 // ranges lost to retention, not looked for
	lostTo  uint64      // end of the last loss recorded
	seen    []mark      // ranges [cursor, end) found complete, oldest first (see verifyRound)
	vfails  int
	pending map[uint64]*job
	nextSeq uint64
	dead    *deadLetters

	bytes, resent, lost, verified, deadVerify atomic.Uint64
	lastErr                                   atomic.Pointer[errAt]
	lastLog                                   atomic.Int64

	rateMu  sync.Mutex
	samples []sample
}

type sample struct {
	at time.Time
	n  uint64
}

func newOutput(m *Manager, c Config) (*output, error) {
	o := &output{m: m, cfg: c, dir: filepath.Join(m.opts.Dir, c.Name), pending: map[uint64]*job{}, rewindC: make(chan struct{}, 1)}
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return nil, fmt.Errorf("forward: output %q: %w", c.Name, err)
	}
	o.dead = &deadLetters{path: filepath.Join(o.dir, ship.DeadLetterFile), url: redact(c.URL)}
	next, ok, err := readCursor(filepath.Join(o.dir, "cursor"))
	if err != nil {
		// Shipping again from the oldest record is the safe side.
		m.opts.Logger.Error("forward: cursor damaged; sending again from the oldest record", "output", c.Name, "err", err)
	}
	o.hasCursor = ok || err != nil
	o.setCommitted(next)
	if c.verifying() && !boolOr(c.LedgerFields, true) {
		return nil, fmt.Errorf("forward: output %q: verify needs ledger_fields (the query looks for trailguard.ledger.index)", c.Name)
	}
	var host string
	if u, err := url.Parse(c.URL); err == nil {
		host = u.Hostname()
	}
	tlsConf, err := c.tlsConfig(host)
	if err != nil {
		return nil, fmt.Errorf("forward: output %q: %w", c.Name, err)
	}
	if c.Type == TypeSyslog {
		for range c.Workers {
			o.senders = append(o.senders, newSyslogSender(c, tlsConf, o.report))
		}
		return o, nil
	}
	hdr, err := c.headers()
	if err != nil {
		return nil, fmt.Errorf("forward: output %q: %w", c.Name, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	tr.MaxIdleConnsPerHost = c.Workers + 1
	tr.DialContext = (&net.Dialer{Timeout: c.Timeout, KeepAlive: 30 * time.Second}).DialContext
	o.client = &http.Client{Transport: tr, Timeout: c.Timeout}
	proto, index := ship.Bulk, c.Index
	if c.Type == TypeVictoriaLogs {
		index = ""
		if c.Protocol == "jsonline" {
			proto = ship.NDJSON
		}
	}
	for range c.Workers {
		s, err := ship.NewSender(ship.Options{
			URL: c.endpoint(), Protocol: proto, Index: index, Headers: hdr, Gzip: boolOr(c.Gzip, true),
			SpoolDir: o.dir, BatchBytes: c.BatchBytes, Timeout: c.Timeout, MaxBackoff: c.MaxBackoff,
			Client: &http.Client{Transport: tr}, OnError: o.report, Now: m.opts.Now,
		})
		if err != nil {
			return nil, fmt.Errorf("forward: output %q: %w", c.Name, err)
		}
		o.senders = append(o.senders, s)
	}
	return o, nil
}

func (o *output) setCommitted(n uint64) {
	o.committed.Store(n)
	o.acked.Store(n)
	o.mu.Lock()
	o.readFrom = n
	o.mu.Unlock()
}

func (o *output) closeSenders() {
	o.closeOnce.Do(func() {
		for _, s := range o.senders {
			s.Close()
		}
	})
}

// report records a delivery problem and logs it at most every 10 s.
func (o *output) report(err error) {
	now := o.m.opts.Now()
	o.lastErr.Store(&errAt{err, now})
	if last := o.lastLog.Load(); now.UnixNano()-last > int64(10*time.Second) && o.lastLog.CompareAndSwap(last, now.UnixNano()) {
		o.m.opts.Logger.Warn("forward: delivery problem", "output", o.cfg.Name, "err", err)
	}
}

func (o *output) saveCursor() error {
	c := o.committed.Load()
	if o.saved.Load() == c && o.hasCursor {
		return nil
	}
	if err := writeCursor(o.dir, c); err != nil {
		return fmt.Errorf("forward: output %q: save cursor: %w", o.cfg.Name, err)
	}
	o.hasCursor = true
	o.saved.Store(c)
	return nil
}

// run forwards until ctx ends.
func (o *output) run(ctx context.Context, src Source) {
	stop := context.AfterFunc(ctx, o.closeSenders)
	defer stop()
	jobs := make(chan *job)
	results := make(chan *job, len(o.senders))
	var wg sync.WaitGroup
	for _, s := range o.senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if !j.skip {
					if err := s.Deliver(j.recs); err != nil {
						return // stopped
					}
				}
				select {
				case results <- j:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(jobs)
		o.dispatch(ctx, src, jobs)
	}()
	o.commitLoop(ctx, src, results)
	wg.Wait()
}

// readPos is where the dispatcher reads from, and the generation: a rewind
// (a verification that found records missing) starts a new one.
func (o *output) readPos() (uint64, uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.readFrom, o.gen
}

func (o *output) currentGen() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.gen
}

// appendedSource is a Source that can also serve the records its own
// process appended from the copies of the bytes it hashed; *ledger.Ledger
// is one (ledger.FollowAppended, with Options.TailBytes).
type appendedSource interface {
	FollowAppended(ctx context.Context, from uint64) iter.Seq2[ledger.Entry, error]
}

// dispatch reads the ledger from the read position and cuts batches.
func (o *output) dispatch(ctx context.Context, src Source, jobs chan<- *job) {
	ledgerFields := boolOr(o.cfg.LedgerFields, true)
	// Batches are numbered within a generation, in ledger order, across
	// restarts of the ledger reader.
	var seq, lastGen uint64
	var arena []byte
	follow := src.Follow
	if a, ok := src.(appendedSource); ok {
		follow = a.FollowAppended
	}
	for ctx.Err() == nil {
		from, gen := o.readPos()
		if gen != lastGen {
			seq, lastGen = 0, gen
		}
		// The reader hands over entries in chunks: one channel send, one
		// wake-up and one generation check per chunk instead of per
		// record. A chunk goes out when full or when it reaches the
		// ledger's end (the next Follow step would block), so a live
		// tail is not held back.
		reader := ledger.FollowRuns(ctx, follow, from, func(e ledger.Entry) ledger.Entry { return e },
			ledger.RunsOptions{Len: readChunk, Queue: 4, Size: src.Size})
		entries := reader.C()
		next := from
		var b *job
		send := func() bool {
			if b == nil {
				return true
			}
			// Acknowledged but unconfirmed records are sent again after
			// a restart or a failed verification: bound them, so that a
			// verification that never succeeds (a wrong verify_url)
			// stops the output instead of sending the whole ledger.
			for o.acked.Load()-min(o.acked.Load(), o.committed.Load()) > maxUnverified && o.currentGen() == gen {
				select {
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
					return false
				}
			}
			j := b
			b = nil
			j.seq = seq
			seq++
			select {
			case jobs <- j:
				return true
			case <-ctx.Done():
				return false
			}
		}
		add := func(e ledger.Entry) bool {
			rec := e.Data
			if ledgerFields {
				// Records with the ledger fields are cut from a shared
				// arena (one allocation per ~256 KiB, not per record);
				// each is capped so no append can reach its neighbour.
				need := len(e.Data) + len(o.m.opts.Origin) + 80
				if cap(arena)-len(arena) < need {
					arena = make([]byte, 0, max(need, arenaSize))
				}
				n := len(arena)
				arena = appendLedgerFields(arena, e.Data, o.m.opts.Origin, e.Index)
				rec = arena[n:len(arena):len(arena)]
			}
			if b != nil && b.bytes+len(rec) > o.cfg.BatchBytes {
				if !send() {
					return false
				}
			}
			if b == nil {
				b = &job{gen: gen, first: e.Index, end: e.Index}
			}
			b.recs = append(b.recs, rec)
			b.bytes += len(rec)
			b.end = e.Index + 1
			next = e.Index + 1
			if len(b.recs) >= o.cfg.BatchEvents {
				return send()
			}
			return true
		}
		timer := time.NewTimer(time.Hour)
		timer.Stop()
	loop:
		for {
			select {
			case chunk, ok := <-entries:
				if !ok {
					// The reader stopped (why is read below): the
					// records it read before, all taken, go out first.
					send()
					break loop
				}
				if o.currentGen() != gen {
					break loop // rewound: start again from the cursor
				}
				for _, e := range chunk {
					started := b == nil
					if !add(e) {
						break loop
					}
					if started && b != nil {
						timer.Reset(o.cfg.FlushInterval)
					}
				}
				reader.Release(chunk)
			case <-timer.C:
				if o.currentGen() != gen || !send() {
					break loop
				}
			case <-o.rewindC:
				if o.currentGen() != gen {
					break loop
				}
			case <-ctx.Done():
				break loop
			}
		}
		timer.Stop()
		ferr := reader.Stop()
		if ferr == nil {
			ferr = errors.New("ledger follow ended")
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(ferr, ledger.ErrPruned) && o.currentGen() == gen {
			// Retention deleted [next, Pruned) before it was delivered
			// (max_retention_delay, or the output was absent): skip it,
			// counted and recorded by the committer in order.
			if p := src.Pruned(); p > next {
				b = &job{gen: gen, first: next, end: p, skip: true}
				if !send() {
					return
				}
				o.mu.Lock()
				if o.gen == gen {
					o.readFrom = p
				}
				o.mu.Unlock()
				continue
			}
		}
		if !errors.Is(ferr, context.Canceled) {
			if errors.Is(ferr, ledger.ErrClosed) {
				return
			}
			o.report(fmt.Errorf("forward: reading the ledger: %w", ferr))
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return
			}
		}
		// The dispatcher carries on from where it got to, unless rewound.
		o.mu.Lock()
		if o.gen == gen {
			o.readFrom = next
		}
		o.mu.Unlock()
	}
}

// commitLoop takes acknowledged batches in ledger order, advances the
// cursor (at once, or after verification) and saves it.
func (o *output) commitLoop(ctx context.Context, src Source, results <-chan *job) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastVerify := o.m.opts.Now()
	for {
		select {
		case j := <-results:
			if j.gen != o.currentGen() {
				continue // sent before a rewind: sent again since
			}
			o.pending[j.seq] = j
			for {
				j, ok := o.pending[o.nextSeq]
				if !ok {
					break
				}
				delete(o.pending, o.nextSeq)
				o.nextSeq++
				o.acked.Store(j.end)
				o.bytes.Add(uint64(j.bytes))
				if j.skip {
					o.recordLoss(j.first, j.end)
				}
				if o.cfg.verifying() {
					if j.skip {
						o.skips = append(o.skips, [2]uint64{j.first, j.end})
					}
					o.marks = append(o.marks, mark{end: j.end, at: o.m.opts.Now()})
				} else {
					o.committed.Store(j.end)
				}
			}
		case <-tick.C:
			now := o.m.opts.Now()
			o.sampleRate(now)
			if o.cfg.verifying() && now.Sub(lastVerify) >= o.cfg.VerifyDelay/2 {
				lastVerify = now
				o.verifyRound(ctx, src, now)
			}
			if err := o.saveCursor(); err != nil {
				o.report(err)
			}
		case <-ctx.Done():
			return
		}
	}
}

// recordLoss counts and audits records deleted before delivery.
func (o *output) recordLoss(first, end uint64) {
	first = max(first, o.lostTo)
	if end <= first {
		return // recorded already (sent again after a rewind)
	}
	o.lostTo = end
	n := end - first
	o.lost.Add(n)
	msg := fmt.Sprintf("output %s: %d ledger records (%d to %d) were deleted by retention before they were delivered", o.cfg.Name, n, first, end-1)
	o.m.opts.Logger.Error("forward: records lost to retention", "output", o.cfg.Name, "first", first, "last", end-1, "count", n)
	if o.m.opts.Audit != nil {
		attrs := fmt.Appendf(nil, `{"output":%s,"first":%d,"last":%d,"count":%d,"max_retention_delay":%s}`,
			strconv.Quote(o.cfg.Name), first, end-1, n, strconv.Quote(o.cfg.MaxRetentionDelay.String()))
		o.m.opts.Audit(&event.Event{
			Kind: event.KindEvent, Category: []string{event.CategoryConfiguration}, Type: []string{event.TypeDeletion},
			Action: ActionRecordsLost, Outcome: event.OutcomeFailure, Message: msg, Dataset: event.DatasetAudit, Attrs: attrs,
		})
	}
}

// ActionRecordsLost is the event.action of the event recorded when
// retention deleted records an output had not delivered.
const ActionRecordsLost = "forward_records_lost"

// rewind sends everything from the cursor again.
func (o *output) rewind() {
	c := o.committed.Load()
	o.resent.Add(o.acked.Load() - c)
	o.mu.Lock()
	o.gen++
	o.readFrom = c
	o.mu.Unlock()
	select {
	case o.rewindC <- struct{}{}:
	default:
	}
	o.acked.Store(c)
	o.marks = nil
	o.seen = o.seen[:0]
	clear(o.pending)
	o.nextSeq = 0
}

func (o *output) sampleRate(now time.Time) {
	o.rateMu.Lock()
	defer o.rateMu.Unlock()
	if n := len(o.samples); n > 0 && now.Sub(o.samples[n-1].at) < time.Second {
		return
	}
	o.samples = append(o.samples, sample{now, o.delivered()})
	if len(o.samples) > 61 {
		o.samples = o.samples[1:]
	}
}

func (o *output) delivered() uint64 {
	var n uint64
	for _, s := range o.senders {
		n += s.Stats().Shipped
	}
	return n
}

// Stats describes one output.
type Stats struct {
	Name string `json:"name"`
	Type string `json:"type"`
	URL  string `json:"url"`
	// Delivered counts records the engine acknowledged (Duplicates of
	// them were already there: a 409 on a resent _id).
	Delivered  uint64 `json:"delivered"`
	Duplicates uint64 `json:"duplicates"`
	// DeadLettered records were refused by the engine (4xx per item) or
	// never stored after resends; they are in <name>/dead-letter.jsonl.
	DeadLettered uint64 `json:"dead_lettered"`
	// Retried counts record sends repeated after a retryable failure.
	Retried uint64 `json:"retried"`
	// Resent counts records sent again because verification did not
	// find them in the engine.
	Resent uint64 `json:"resent"`
	// Lost counts records deleted by retention before delivery.
	Lost  uint64 `json:"lost"`
	Bytes uint64 `json:"bytes"`
	// Cursor is the next ledger index the output restarts from;
	// Acknowledged the next one not yet acknowledged.
	Cursor       uint64 `json:"cursor"`
	Acknowledged uint64 `json:"acknowledged"`
	// LagRecords are ledger records not yet acknowledged, LagSeconds the
	// age of the oldest of them (since its append).
	LagRecords uint64  `json:"lag_records"`
	LagSeconds float64 `json:"lag_seconds"`
	// Unverified records were acknowledged but not yet confirmed by
	// query (victorialogs).
	Unverified uint64 `json:"unverified"`
	// Rate is records delivered per second over the last minute.
	Rate        float64    `json:"rate"`
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
}

// Stats returns a snapshot of every output.
func (m *Manager) Stats() []Stats {
	var size uint64
	b := m.src.Load()
	if b != nil {
		size = b.Size()
	}
	now := m.opts.Now()
	out := make([]Stats, 0, len(m.outs))
	for _, o := range m.outs {
		st := Stats{Name: o.cfg.Name, Type: o.cfg.Type, URL: redact(o.cfg.URL)}
		for _, s := range o.senders {
			ss := s.Stats()
			st.Delivered += ss.Shipped
			st.Duplicates += ss.Duplicates
			st.DeadLettered += ss.DeadLettered
			st.Retried += ss.Retried
		}
		st.DeadLettered += o.deadVerify.Load()
		st.Resent, st.Lost, st.Bytes = o.resent.Load(), o.lost.Load(), o.bytes.Load()
		st.Cursor, st.Acknowledged = o.committed.Load(), o.acked.Load()
		st.Unverified = st.Acknowledged - min(st.Acknowledged, st.Cursor)
		if size > st.Acknowledged {
			st.LagRecords = size - st.Acknowledged
			if e, err := b.Read(st.Acknowledged); err == nil {
				st.LagSeconds = max(0, now.Sub(e.Time).Seconds())
			}
		}
		o.rateMu.Lock()
		if n := len(o.samples); n > 1 {
			a, z := o.samples[0], o.samples[n-1]
			if d := z.at.Sub(a.at).Seconds(); d > 0 {
				st.Rate = float64(z.n-a.n) / d
			}
		}
		o.rateMu.Unlock()
		if e := o.lastErr.Load(); e != nil {
			st.LastError = e.err.Error()
			at := e.at
			st.LastErrorAt = &at
		}
		out = append(out, st)
	}
	return out
}
