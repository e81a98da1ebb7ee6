package detect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"os"
	"sync"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/regfile"
	"github.com/trailguard/trailguard/internal/statefile"
	"github.com/trailguard/trailguard/ledger"
)

// Source is what a Runner follows: *ledger.Ledger satisfies it.
type Source interface {
	Follow(ctx context.Context, from uint64) iter.Seq2[ledger.Entry, error]
	Entries(from uint64) iter.Seq2[ledger.Entry, error]
}

// reader is implemented by *ledger.Ledger: it lets alerts name their
// evidence by event.id.
type reader interface {
	Read(i uint64) (ledger.Entry, error)
}

// Runner feeds an Engine from a ledger in order and persists where it is,
// like the index does: a restart resumes after the last record it
// processed, and alerts come out as they would have without the restart.
//
// The cursor file holds the next record to process, the first record the
// correlations still need (the engine's longest timespan back, by append
// time) and the rate_of_rise baselines. On start the Runner replays the
// records between the two without raising alerts, which rebuilds every
// correlation window exactly; baselines, whose memory is far longer than
// any window, are restored from the file. Alerts the previous run raised
// after its last save, and stored, are recognised by their deterministic
// ids (a record's alert has the same id every time) and not raised again.
type Runner struct {
	// Engine is the compiled rule set.
	Engine *Engine
	// Source is the ledger.
	Source Source
	// CursorPath is the cursor file; "" keeps no cursor (start at 0).
	CursorPath string
	// Emit receives each alert, in order; an error stops Run (the alert
	// is raised again after a restart).
	Emit func(*Alert) error
	// SaveEvery is how often the cursor is saved while records flow.
	// Default 1s.
	SaveEvery time.Duration
	// IdleAdvance: when no record arrived for this long, the engine's
	// clock is moved to the wall clock minus Options.MaxFuture, so windows
	// judged at their close (lt, eq, … conditions) close on a quiet
	// ledger. Default 10s; negative disables it.
	IdleAdvance time.Duration

	mu      sync.Mutex
	next    uint64
	samples []sample
	seen    map[string]bool
}

type sample struct {
	idx uint64
	t   time.Time
}

// cursorFile is the persisted state.
type cursorFile struct {
	Version    int         `json:"version"`
	Next       uint64      `json:"next"`
	ReplayFrom uint64      `json:"replay_from"`
	Rates      []rateSaved `json:"rates,omitempty"`
}

// Next returns the next ledger index the runner will process.
func (r *Runner) Next() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next
}

// Stats returns the engine's counters; safe while Run runs.
func (r *Runner) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Engine.Stats()
}

// Run processes records until ctx is done or the source fails. It returns
// ctx.Err() on cancellation, after saving the cursor, joined with any
// error of the stop itself (an alert not stored, the cursor not saved).
func (r *Runner) Run(ctx context.Context) error {
	if r.SaveEvery <= 0 {
		r.SaveEvery = time.Second
	}
	if r.IdleAdvance == 0 {
		r.IdleAdvance = 10 * time.Second
	}
	cur, err := r.load()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.next = cur.Next
	r.Engine.restoreRates(cur.Rates)
	r.mu.Unlock()
	if err := r.warm(cur); err != nil {
		return err
	}

	// The follower hands records over in runs of up to runLen (a channel
	// operation on each side per record was ~1.5 % of the collector's CPU
	// under ingest load, as the index's was), holding followBuffer at
	// most ahead of the engine.
	o := ledger.RunsOptions{Len: runLen, Queue: followBuffer / runLen}
	if sz, ok := r.Source.(sizer); ok {
		o.Size = sz.Size
	}
	follower := ledger.FollowRuns(ctx, r.Source.Follow, cur.Next, func(e ledger.Entry) ledger.Entry { return e }, o)
	defer follower.Stop()
	ch := follower.C()
	// take processes a run and returns it to the follower.
	take := func(es []ledger.Entry) error {
		for _, e := range es {
			if err := r.process(e); err != nil {
				return err
			}
		}
		follower.Release(es)
		return nil
	}
	save := time.NewTicker(r.SaveEvery)
	defer save.Stop()
	idle := time.NewTicker(max(r.IdleAdvance, time.Second))
	defer idle.Stop()
	lastRecord := time.Now()
	dirty := false
	for {
		select {
		case es, ok := <-ch:
			if !ok {
				// Every record read before the follow ended is processed.
				err := follower.Stop()
				if err == nil {
					err = errors.New("detect: ledger follower stopped")
				}
				return r.stop(ctx, err, true)
			}
			n := len(es)
			if err := take(es); err != nil {
				return r.stop(ctx, err, false)
			}
			// The runs already waiting are taken without a select each
			// (the only receiver: len says they are there), a bounded
			// number of records so that saving and ctx are still seen.
			for n < drainMax && len(ch) > 0 {
				es := <-ch
				n += len(es)
				if err := take(es); err != nil {
					return r.stop(ctx, err, false)
				}
			}
			lastRecord, dirty = time.Now(), true
		case <-save.C:
			if dirty {
				if err := r.save(); err != nil {
					return err
				}
				dirty = false
			}
		case now := <-idle.C:
			if r.IdleAdvance > 0 && now.Sub(lastRecord) >= r.IdleAdvance {
				if err := r.advance(now.Add(-r.Engine.opts.MaxFuture)); err != nil {
					return r.stop(ctx, err, false)
				}
			}
		case <-ctx.Done():
			return r.stop(ctx, nil, false)
		}
	}
}

// sizer is a Source that tells how many records it holds now (the
// ledger's Size): the follower ends a run at the last of them.
type sizer interface{ Size() uint64 }

// runLen is how many records the follower hands over at a time at most,
// followBuffer how many it holds ahead of the engine.
const (
	runLen       = 64
	followBuffer = 1024
)

// drainMax bounds the records Run takes from its follower between two
// looks at its tickers and context.
const drainMax = 256

// stop saves the cursor and returns why Run ends. After a cancellation,
// an error of the follower (fromFollower) is a consequence of it and
// ctx.Err() alone is returned; the runner's own (an alert that was not
// stored) is returned with ctx.Err(): a caller that sees only the
// cancellation would not know an alert is waiting for the next start.
func (r *Runner) stop(ctx context.Context, err error, fromFollower bool) error {
	serr := r.save()
	if cerr := ctx.Err(); cerr != nil {
		if fromFollower || err == nil {
			err = cerr
		} else {
			err = errors.Join(cerr, err)
		}
	}
	if serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

func (r *Runner) process(e ledger.Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var emitErr error
	rec := Record{Index: e.Index, Time: e.Time, Data: e.Data}
	if sps, ok := e.Aux.([]event.Spans); ok && e.AuxPos < len(sps) {
		rec.Spans = &sps[e.AuxPos]
	}
	r.Engine.Process(rec, func(a *Alert) {
		if emitErr == nil {
			emitErr = r.emit(a)
		}
	})
	if emitErr != nil {
		return emitErr
	}
	r.next = e.Index + 1
	r.sample(e.Index, e.Time)
	return nil
}

func (r *Runner) advance(t time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var emitErr error
	r.Engine.Advance(t, func(a *Alert) {
		if emitErr == nil {
			emitErr = r.emit(a)
		}
	})
	return emitErr
}

func (r *Runner) emit(a *Alert) error {
	if r.seen[a.ID] {
		delete(r.seen, a.ID)
		if a.Rule.Response == nil {
			return nil
		}
		// Stored before the restart; what it asked for may not have been
		// done: the receiver decides, by the alert's id.
		a.Stored = true
	}
	if rd, ok := r.Source.(reader); ok && len(a.Evidence) > 0 {
		for _, i := range a.Evidence {
			id := ""
			if e, err := rd.Read(i); err == nil {
				id, _ = event.PeekID(e.Data)
			}
			a.EvidenceIDs = append(a.EvidenceIDs, id)
		}
	}
	if r.Emit == nil {
		return nil
	}
	return r.Emit(a)
}

// sample remembers (index, append time) pairs, about one a second, to find
// how far back a restart must replay.
func (r *Runner) sample(idx uint64, t time.Time) {
	if n := len(r.samples); n > 0 && t.Sub(r.samples[n-1].t) < time.Second {
		return
	}
	r.samples = append(r.samples, sample{idx, t})
	// Keep what the longest window needs, plus one sample older than it.
	keep := r.window()
	cut := 0
	for cut+1 < len(r.samples) && t.Sub(r.samples[cut+1].t) > keep {
		cut++
	}
	if cut > 0 {
		r.samples = append(r.samples[:0], r.samples[cut:]...)
	}
}

// window is how far back (in append time) correlation state reaches: the
// longest timespan, and the lateness an event's own time may have.
func (r *Runner) window() time.Duration {
	return r.Engine.MaxTimespan() + r.Engine.opts.MaxFuture + time.Minute
}

func (r *Runner) replayFrom() uint64 {
	if len(r.samples) == 0 {
		return r.next
	}
	return r.samples[0].idx
}

// warm replays [ReplayFrom, Next) without alerts, and collects the ids of
// alerts already stored after Next.
func (r *Runner) warm(cur cursorFile) error {
	if cur.ReplayFrom < cur.Next {
		r.mu.Lock()
		r.Engine.warm = true
		for e, err := range r.Source.Entries(cur.ReplayFrom) {
			if errors.Is(err, ledger.ErrPruned) {
				continue
			}
			if err != nil {
				r.Engine.warm = false
				r.mu.Unlock()
				return fmt.Errorf("detect: warm-up replay: %w", err)
			}
			if e.Index >= cur.Next {
				break
			}
			r.Engine.Process(Record{Index: e.Index, Time: e.Time, Data: e.Data}, nil)
			r.sample(e.Index, e.Time)
		}
		r.Engine.warm = false
		r.mu.Unlock()
	}
	r.seen = map[string]bool{}
	for e, err := range r.Source.Entries(cur.Next) {
		if err != nil {
			break
		}
		if isAlertDoc(e.Data) {
			if id, ok := event.PeekID(e.Data); ok {
				r.seen[id] = true
			}
		}
	}
	return nil
}

// isAlertDoc reports whether a stored record is an alert.
func isAlertDoc(data []byte) bool {
	x := newExtractor()
	s := x.slot("event.kind")
	var d document
	if x.scan(&d, data) != nil {
		return false
	}
	k, _ := d.str(s)
	return k == "alert"
}

// maxCursorFile bounds the cursor file read: the runner writes a few
// hundred bytes.
const maxCursorFile = 1 << 20

func (r *Runner) load() (cursorFile, error) {
	var c cursorFile
	if r.CursorPath == "" {
		return c, nil
	}
	// A regular file of at most maxCursorFile bytes (regfile): a FIFO
	// planted at the name would hang the collector's start.
	data, err := regfile.Read(r.CursorPath, maxCursorFile)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("detect: read cursor: %w", err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("detect: cursor %s is damaged (%v); remove it to start over from the ledger's first record", r.CursorPath, err)
	}
	if c.ReplayFrom > c.Next {
		c.ReplayFrom = c.Next
	}
	return c, nil
}

// save writes the cursor atomically (temporary file, fsync, rename).
func (r *Runner) save() error {
	if r.CursorPath == "" {
		return nil
	}
	r.mu.Lock()
	c := cursorFile{Version: 1, Next: r.next, ReplayFrom: r.replayFrom(), Rates: r.Engine.rateSnapshot()}
	r.mu.Unlock()
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := statefile.Write(r.CursorPath, data); err != nil {
		return fmt.Errorf("detect: save cursor: %w", err)
	}
	return nil
}
