package report

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailguard/trailguard/ledger"
)

// Options configure Compute.
type Options struct {
	Standard string
	From, To time.Time
	// Params left zero take their defaults (DefaultParams).
	Params Params
	// State is what the caller knows outside the ledger (retention,
	// tokens, rules, witnesses); Compute fills in Key, Integrity and
	// Ledger.
	State State
	// Verifiers check the checkpoints (the collector's public key).
	Verifiers []note.Verifier
	// Now is the generation time (default time.Now); To is cut to it.
	Now time.Time
	// Workers scan chunks in parallel (default GOMAXPROCS).
	Workers int
	// Generator names the program ("trailguard v1.2.3").
	Generator string
	// Cache, if set with CacheKey, is a directory where the figures of
	// whole chunks of records are kept for later reports (see
	// chunkCache); Recompute never uses one.
	Cache string
	// CacheKey authenticates the cache's files: ledger.DeriveKey of the
	// collector's signing key with CachePurpose. Without it (the public
	// key alone) the cache is not used: every record is read.
	CacheKey []byte
	// keepState: recomputing a report, the stated facts (including what
	// was checked at generation) are the report's own.
	keepState bool
}

// DefaultParams are the settings used where Options.Params is zero.
func DefaultParams() Params {
	return Params{
		MaxGap:         Duration(2 * time.Minute),
		ClockTolerance: Duration(2 * time.Second),
		MaxDelay:       Duration(5 * time.Minute),
		AckTarget:      Duration(24 * time.Hour),
		AdminRoles:     []string{"admin", "administrator", "root", "superuser"},
	}
}

// chunkSize is the number of records a worker scans at once. Fixed, so
// that figures do not depend on the number of workers.
const chunkSize = ChunkSize

// ChunkSize is the number of records in a chunk: reports scan and keep
// figures (Options.Cache, Warm) by whole chunks aligned on multiples of it.
const ChunkSize = 1 << 15

// ErrStandard is returned for an unknown standard.
var ErrStandard = errors.New("report: unknown standard (want pci-dss, soc2 or hipaa)")

// Compute makes a report of the ledger l over [From, To).
func Compute(ctx context.Context, l *ledger.Ledger, o Options) (*Report, error) {
	title := ""
	for _, s := range Standards() {
		if s.ID == o.Standard {
			title = s.Title
		}
	}
	if title == "" {
		return nil, fmt.Errorf("%w: %q", ErrStandard, o.Standard)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	o.Now = o.Now.UTC()
	o.From, o.To = o.From.UTC(), o.To.UTC()
	if o.To.IsZero() || o.To.After(o.Now) {
		o.To = o.Now
	}
	if !o.From.Before(o.To) {
		return nil, fmt.Errorf("report: the period's start (%s) must be before its end (%s)", o.From.Format(time.RFC3339), o.To.Format(time.RFC3339))
	}
	p := withDefaults(o.Params, o.From, o.To)
	rep := &Report{Format: FormatVersion, Standard: o.Standard, Title: title, From: o.From, To: o.To, Generated: o.Now,
		Generator: o.Generator, Params: p, State: o.State}
	if len(o.Verifiers) > 0 && !o.keepState {
		rep.State.Key = o.Verifiers[0].Name() + "+" + fmt.Sprintf("%08x", o.Verifiers[0].KeyHash())
	}
	figs, err := computeFigures(ctx, l, rep, o)
	if err != nil {
		return nil, err
	}
	rep.Figures = figs
	build(rep)
	return rep, nil
}

func withDefaults(p Params, from, to time.Time) Params {
	d := DefaultParams()
	if p.MaxGap <= 0 {
		p.MaxGap = d.MaxGap
	}
	if p.ClockTolerance <= 0 {
		p.ClockTolerance = d.ClockTolerance
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = d.MaxDelay
	}
	if p.AckTarget <= 0 {
		p.AckTarget = d.AckTarget
	}
	if p.AdminRoles == nil {
		p.AdminRoles = d.AdminRoles
	}
	if p.Interval <= 0 {
		p.Interval = Duration(chartInterval(to.Sub(from)))
	}
	return p
}

// chartInterval picks a round bucket width giving at most 60 buckets.
func chartInterval(span time.Duration) time.Duration {
	for _, d := range []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute,
		5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
		24 * time.Hour, 7 * 24 * time.Hour} {
		if span/d <= 60 {
			return d
		}
	}
	return 30 * 24 * time.Hour
}

type cpPoint struct {
	size     uint64
	t        time.Time
	shutdown bool
	signed   []byte
	root     tlog.Hash
	origin   string
}

// computeFigures maps the period onto the ledger, checks the checkpoints
// and scans the records.
func computeFigures(ctx context.Context, l *ledger.Ledger, rep *Report, o Options) (*Figures, error) {
	h, err := readHistory(l, rep.From, rep.To, time.Duration(rep.Params.MaxGap))
	if err != nil {
		return nil, err
	}
	startCP, endCP := h.start, h.end
	figs := &Figures{}
	if endCP == nil {
		if !o.keepState {
			rep.State.Integrity.Problem = "no checkpoint was signed before the period's end"
			rep.State.Ledger = ledgerInfo(l, o.Verifiers)
		}
		return emptyFigures(figs, rep), nil
	}
	rep.Checkpoint = CheckpointRef{Origin: endCP.origin, TreeSize: endCP.size, RootHash: base64.StdEncoding.EncodeToString(endCP.root[:]),
		Time: endCP.t.UTC(), Signed: string(endCP.signed)}
	if startCP != nil {
		rep.Range.First, rep.Range.FirstTime = startCP.size, startCP.t.UTC()
	}
	rep.Range.End = endCP.size
	from := rep.Range.First
	if o.keepState {
		from += rep.State.prunedAt(rep.Range)
		rep.Range.Pruned = from - rep.Range.First
	} else {
		checkIntegrity(l, rep, startCP, endCP, o.Verifiers)
		if len(h.damaged) > 0 {
			in := &rep.State.Integrity
			in.Problem = strings.Trim(in.Problem+"; "+strings.Join(h.damaged, "; "), "; ")
		}
		rep.State.Ledger = ledgerInfo(l, o.Verifiers)
	}
	if pr := l.Pruned(); pr > from && !o.keepState {
		rep.Range.Pruned = min(pr, rep.Range.End) - from
		from = min(pr, rep.Range.End)
	}
	p := &computeParams{tolerance: time.Duration(rep.Params.ClockTolerance), maxDelay: time.Duration(rep.Params.MaxDelay),
		adminRoles: set(rep.Params.AdminRoles...), chd: rep.Params.CHDResources}
	p.cpSizes, p.cpTimes = h.sizes, h.times
	var cache *chunkCache
	if !o.keepState {
		cache = newChunkCache(o.Cache, o.CacheKey, p)
	}
	total, cached, rejected, err := scan(ctx, l, from, rep.Range.End, p, o.Workers, cache)
	if err != nil {
		return nil, err
	}
	if !o.keepState {
		rep.State.Integrity.SummarisedEarlier = cached
		rep.State.Integrity.CacheRejected = rejected
	}
	finish(figs, total, rep, l)
	figs.Checkpoints = h.cp
	return figs, nil
}

// Removals merges a ledger's retention records (Ledger.PruneHistory, oldest
// first) into runs of consecutive records removed under one policy: what a
// report, and the collector's ledger_verified event, state.
func Removals(recs []ledger.PruneRecord) []Removal {
	var out []Removal
	for _, p := range recs {
		if p.End <= p.Start {
			continue
		}
		if n := len(out); n > 0 && out[n-1].End == p.Start && out[n-1].Policy == p.Policy {
			out[n-1].End, out[n-1].Last = p.End, p.At
			out[n-1].Signed++
			continue
		}
		out = append(out, Removal{Start: p.Start, End: p.End, Policy: p.Policy, First: p.At, Last: p.At, Signed: 1})
	}
	return out
}

func ledgerInfo(l *ledger.Ledger, keys []note.Verifier) LedgerInfo {
	li := LedgerInfo{Dir: l.Dir(), OldestIndex: l.Pruned(), Size: l.Size()}
	recs, bad := l.PruneHistory(keys)
	li.RemovedUnverified = bad
	li.Removed = Removals(recs)
	if e, err := l.Read(li.OldestIndex); err == nil {
		li.OldestRead = true
		var f fields
		if f.parse(e.Data) == nil && f.hasTS {
			li.OldestTime = f.tsTime.UTC()
		}
	}
	return li
}

func emptyFigures(f *Figures, rep *Report) *Figures {
	f.Completeness.Fields = []FieldCompleteness{}
	for _, rf := range requiredFields {
		f.Completeness.Fields = append(f.Completeness.Fields, FieldCompleteness{Field: rf.name, Source: rf.ecs})
	}
	for _, id := range coverageIDs {
		f.Coverage = append(f.Coverage, Coverage{ID: id})
	}
	f.AuthFailures.Interval = rep.Params.Interval
	f.AuthFailures.Start = rep.From
	return f
}

// checkIntegrity verifies the named checkpoint's signature and that its
// tree is a prefix of the ledger's newest (and the period's first
// checkpoint's tree a prefix of it).
func checkIntegrity(l *ledger.Ledger, rep *Report, startCP, endCP *cpPoint, verifiers []note.Verifier) {
	in := &rep.State.Integrity
	fail := func(format string, args ...any) {
		if in.Problem == "" {
			in.Problem = fmt.Sprintf(format, args...)
		}
	}
	if len(verifiers) == 0 {
		fail("no verifier key given: signatures not checked")
	} else if _, _, err := ledger.OpenCheckpoint(endCP.signed, note.VerifierList(verifiers...)); err != nil {
		fail("checkpoint of size %d: %v", endCP.size, err)
	} else {
		in.CheckpointVerified = true
	}
	signed, newest := l.LatestCheckpoint()
	in.NewestSize, in.NewestTime = newest.Size, newest.Time.UTC()
	if signed == nil {
		fail("the ledger has no latest checkpoint")
		return
	}
	if len(verifiers) > 0 {
		if _, _, err := ledger.OpenCheckpoint(signed, note.VerifierList(verifiers...)); err != nil {
			fail("newest checkpoint: %v", err)
			return
		}
	}
	in.ConsistentWithNewest = consistent(l, endCP.size, endCP.root, newest) == nil
	if !in.ConsistentWithNewest {
		fail("checkpoint of size %d: %v", endCP.size, consistent(l, endCP.size, endCP.root, newest))
	}
	in.StartConsistent = true
	if startCP != nil {
		if err := consistent(l, startCP.size, startCP.root, newest); err != nil {
			in.StartConsistent = false
			fail("the period's first checkpoint (size %d): %v", startCP.size, err)
		}
	}
}

// consistent checks that the tree of size with root is a prefix of cp's.
func consistent(l *ledger.Ledger, size uint64, root tlog.Hash, cp ledger.Checkpoint) error {
	if size == 0 {
		return nil
	}
	if size == cp.Size {
		if root != cp.Root {
			return errors.New("root hash differs from the newest checkpoint's of the same size")
		}
		return nil
	}
	proof, old, err := l.ConsistencyProof(size, cp)
	if err != nil {
		return err
	}
	if old != root {
		return errors.New("root hash does not match the ledger's tree at that size")
	}
	if err := tlog.CheckTree(proof, int64(cp.Size), cp.Root, int64(size), root); err != nil {
		return fmt.Errorf("consistency proof: %w", err)
	}
	return nil
}

// scan reads records [from, end) in chunks aligned on multiples of
// chunkSize (so that the figures do not depend on the number of workers,
// and whole chunks can be kept in cache) on several workers, and merges
// the chunks' figures in ledger order. cached counts the records whose
// figures came from the cache, rejected the chunks whose cache files did
// not authenticate (read from the ledger instead).
func scan(ctx context.Context, l *ledger.Ledger, from, end uint64, p *computeParams, workers int, cache *chunkCache) (*acc, uint64, uint64, error) {
	total := newAcc(p)
	if from >= end {
		return total, 0, 0, nil
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	first := from / chunkSize
	nchunks := int((end-1)/chunkSize - first + 1)
	_, newest := l.LatestCheckpoint()
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	done := map[int]*acc{}
	nextMerge, nextChunk := 0, 0
	var cached, rejected uint64
	var firstErr error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range min(workers, nchunks) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var f fields
			for {
				mu.Lock()
				// Keep at most 2 × workers chunks waiting to be merged,
				// so that memory stays bounded.
				for nextChunk-nextMerge > 2*workers && firstErr == nil {
					cond.Wait()
				}
				c := nextChunk
				nextChunk++
				stop := firstErr != nil || c >= nchunks
				mu.Unlock()
				if stop {
					return
				}
				k := first + uint64(c)
				lo, hi := max(k*chunkSize, from), min((k+1)*chunkSize, end)
				whole := lo == k*chunkSize && hi == (k+1)*chunkSize && cache != nil && hi <= newest.Size
				var root tlog.Hash
				var a *acc
				if whole {
					if _, r, err := l.ConsistencyProof(hi, newest); err == nil {
						root = r
						var st int
						if a, st = cache.load(k, root, p); st == chunkRejected {
							cache.reject(k)
							mu.Lock()
							rejected++
							mu.Unlock()
						}
					} else {
						whole = false
					}
				}
				if a != nil {
					mu.Lock()
					cached += hi - lo
					mu.Unlock()
				} else {
					a = newAcc(p)
					for e, err := range l.Entries(lo) {
						if err == nil && ctx.Err() != nil {
							err = ctx.Err()
						}
						if err != nil {
							if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
								mu.Lock()
								if firstErr == nil {
									firstErr = err
								}
								cond.Broadcast()
								mu.Unlock()
								return
							}
							a.readErr = err.Error()
							break
						}
						if e.Index >= hi {
							break
						}
						a.add(e.Index, e.Time, e.Data, nil, &f)
					}
					if whole && a.readErr == "" && a.records == chunkSize {
						cache.store(k, root, a)
					}
				}
				mu.Lock()
				done[c] = a
				for done[nextMerge] != nil {
					d := done[nextMerge]
					delete(done, nextMerge)
					if total.readErr == "" {
						total.merge(d)
					}
					nextMerge++
				}
				cond.Broadcast()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, 0, 0, fmt.Errorf("report: %w", firstErr)
	}
	return total, cached, rejected, nil
}

// finish turns the merged chunk figures into Figures.
func finish(f *Figures, a *acc, rep *Report, l *ledger.Ledger) {
	a.flushMin()
	f.Records, f.Undecodable, f.ReadError, f.Events, f.AlertDocs = a.records, a.undec, a.readErr, a.events, a.alerts
	for _, c := range a.actions.top(0) {
		action, outcome, _ := cutNUL(c.Value)
		v := action
		if outcome != "" {
			v += " (" + outcome + ")"
		}
		f.Actions = append(f.Actions, Count{v, c.Count})
	}
	f.Services = a.services.top(0)
	for i, id := range coverageIDs {
		f.Coverage = append(f.Coverage, Coverage{ID: id, Count: a.cov[i], Actions: orEmpty(a.covAct[i].top(10))})
	}
	f.HTTP401, f.HTTP403 = a.h401, a.h403
	f.Completeness.Auditable = a.auditable
	for i, rf := range requiredFields {
		f.Completeness.Fields = append(f.Completeness.Fields, FieldCompleteness{Field: rf.name, Source: rf.ecs,
			Applicable: a.applicable[i], Present: a.present[i], MissingBy: a.missingBy[i].top(5)})
	}
	f.Completeness.Examples = orEmpty(a.examples)
	af := &f.AuthFailures
	af.Total, af.Successes, af.Interval = a.authFail, a.loginOK, rep.Params.Interval
	af.Start, af.Buckets = chart(a.failSec, rep.From, rep.To, time.Duration(rep.Params.Interval))
	af.Sources, af.Users = a.srcs.distinct(), a.users.distinct()
	af.TopSources, af.TopUsers = orEmpty(a.srcs.top(10)), orEmpty(a.users.top(10))
	f.Reads = Reads{Total: a.reads, ByReader: orEmpty(a.readers.top(20)), Refused: a.refused}
	f.Time = TimeFigures{WithTimestamp: a.withTS, Ahead: a.ahead, MaxAhead: Duration(a.maxAhead), Delayed: a.delayed,
		MaxDelay: Duration(a.maxDelay), Outside: outside(a.evMin, rep.From, rep.To), Examples: orEmpty(a.timeEx)}
	rares(f, a.rares, rep, l)
}

// chart buckets the failed logins per second into intervals aligned on
// multiples of the interval (as /v1/stats aligns them), from the one
// holding the period's start to the one holding its end.
func chart(perSec map[int64]uint64, from, to time.Time, interval time.Duration) (time.Time, []uint64) {
	start := from.Truncate(interval)
	n := int((to.Sub(start) + interval - 1) / interval)
	buckets := make([]uint64, max(n, 1))
	lo, hi := start.Unix(), to.Unix() // the second holding the end counts
	step := int64(interval / time.Second)
	for s, v := range perSec {
		if s < lo || s > hi {
			continue
		}
		if b := int((s - lo) / step); b < len(buckets) {
			buckets[b] += v
		}
	}
	return start, buckets
}

// outside counts the events stamped in a minute wholly before or after
// the period (to the minute: the events are counted per minute).
func outside(perMin map[int64]uint64, from, to time.Time) uint64 {
	lo := floorDiv(from.Unix(), 60) // the minute holding the start
	end := to.Truncate(time.Minute)
	hi := floorDiv(end.Unix(), 60) // the first minute wholly after the end
	if to.After(end) {
		hi++
	}
	var n uint64
	for m, v := range perMin {
		if m < lo || m >= hi {
			n += v
		}
	}
	return n
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func cutNUL(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// maxList bounds the lists of alerts, blocks, starts and failures.
const maxList = 50

// rares computes alert lifecycles, blocks, starts and stops and failures
// from the rare records, in ledger order.
func rares(f *Figures, rs []rare, rep *Report, l *ledger.Ledger) {
	type alertState struct {
		row   AlertRow
		acked bool
	}
	alerts := map[string]*alertState{}
	var order []*alertState
	rules, levels, scen := &counter{}, &counter{}, &counter{}
	var delays []time.Duration
	last := map[string]string{} // service\x00host → last lifecycle action
	f.Alerts.List, f.Blocks.List, f.Lifecycle.List, f.Failures.List = []AlertRow{}, []BlockRow{}, []LifecycleRow{}, []FailureRow{}
	for _, r := range rs {
		switch r.what {
		case 'a':
			st := &alertState{row: AlertRow{Index: r.index, ID: r.id, Rule: r.rule, Title: r.title, Level: r.level,
				Time: r.t.UTC(), Client: r.client, User: r.user, Status: "open"}}
			// The delay is between the ledger's append times of the
			// record that completed the alert and of the alert (an
			// alert's @timestamp is its last event's).
			if r.trigger >= 0 {
				if te, err := l.Read(uint64(r.trigger)); err == nil {
					st.row.Delay = Duration(r.appended.Sub(te.Time))
					delays = append(delays, r.appended.Sub(te.Time))
				}
			} else if !r.end.IsZero() && !r.t.IsZero() {
				st.row.Delay = Duration(r.t.Sub(r.end))
				delays = append(delays, r.t.Sub(r.end))
			}
			if alerts[r.id] == nil {
				alerts[r.id] = st
				order = append(order, st)
			}
			rules.add([]byte(cmpStr(r.title, r.rule)), 1)
			levels.add([]byte(cmpStr(r.level, "medium")), 1)
		case 's':
			st := alerts[r.id]
			if st == nil {
				f.Alerts.EarlierChanged++
				continue
			}
			t := r.t.UTC()
			switch r.status {
			case "acknowledged":
				if st.row.Acked == nil {
					st.row.Acked = &t
				}
			case "resolved":
				if st.row.Resolved == nil {
					st.row.Resolved = &t
				}
				if st.row.Acked == nil {
					st.row.Acked = &t // resolving acknowledges
				}
			}
			if r.status != "" {
				st.row.Status = r.status
			}
		case 'd', 'x':
			if r.what == 'x' {
				f.Blocks.Deleted++
				continue
			}
			f.Blocks.Created++
			scen.add([]byte(cmpStr(r.rule, "manual")), 1)
			if len(f.Blocks.List) < maxList {
				f.Blocks.List = append(f.Blocks.List, BlockRow{Index: r.index, Time: r.t.UTC(), Value: r.client, Scenario: cmpStr(r.rule, "manual")})
			}
		case 'l':
			key := r.svc + "\x00" + r.host
			row := LifecycleRow{Index: r.index, Time: r.t.UTC(), Action: r.action, Service: r.svc, Host: r.host}
			switch r.action {
			case "sys_startup", "sys_restart":
				f.Lifecycle.Starts++
				if prev, ok := last[key]; ok && prev == "sys_startup" {
					row.Unclean = true
					f.Lifecycle.Unclean++
				}
			case "sys_shutdown":
				f.Lifecycle.Stops++
			case "sys_crash":
				row.Unclean = true
				f.Lifecycle.Unclean++
			}
			last[key] = r.action
			if len(f.Lifecycle.List) < maxList {
				f.Lifecycle.List = append(f.Lifecycle.List, row)
			}
		case 'f':
			fl := &f.Failures
			switch r.action {
			case "audit_events_unrecorded":
				fl.UnrecordedEvents++
				fl.Unrecorded += uint64(max(r.n, 0))
			case "sys_monitor_disabled":
				fl.MonitorDisabled++
			case "sys_monitor_enabled":
				fl.MonitorEnabled++
			case "forward_records_lost":
				fl.RecordsLost++
			case "ledger_records_adopted":
				fl.Adopted++
			}
			if len(fl.List) < maxList {
				fl.List = append(fl.List, FailureRow{Index: r.index, Time: r.t.UTC(), Action: r.action, Service: r.svc, Count: r.n})
			}
		}
	}
	target := time.Duration(rep.Params.AckTarget)
	var acks, resolves []time.Duration
	al := &f.Alerts
	for _, st := range order {
		al.Raised++
		row := st.row
		switch {
		case row.Resolved != nil:
			al.Resolved++
		case row.Acked != nil:
			al.Acknowledged++
		default:
			al.Open++
			if rep.To.Sub(row.Time) > target {
				al.Overdue++
			}
		}
		if row.Acked != nil {
			d := row.Acked.Sub(row.Time)
			acks = append(acks, d)
			if d > target {
				al.Overdue++
			}
		}
		if row.Resolved != nil {
			resolves = append(resolves, row.Resolved.Sub(row.Time))
		}
		if len(al.List) < maxList {
			al.List = append(al.List, row)
		}
	}
	al.ByRule, al.ByLevel = orEmpty(rules.top(20)), orEmpty(levels.top(0))
	al.AckMedian, al.AckMax = medianMax(acks)
	al.ResolveMedian, al.ResolveMax = medianMax(resolves)
	al.DelayMedian, al.DelayMax = medianMax(delays)
	f.Blocks.ByScenario = orEmpty(scen.top(20))
}

func cmpStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func medianMax(ds []time.Duration) (Duration, Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	return Duration(ds[(len(ds)-1)/2]), Duration(ds[len(ds)-1])
}

// history is what a report needs of the checkpoint history, read in one
// pass without keeping it (a year of one checkpoint a second is 30M).
type history struct {
	start, end *cpPoint // newest signed at or before the period's start, its end
	// sizes and times (Unix ns) of the checkpoints where the tree grew:
	// the signed time of the first checkpoint covering each record.
	sizes []uint64
	times []int64
	cp    Checkpoints
	// damaged describes damage to the checkpoint history (the first few).
	damaged []string
}

// readHistory reads the checkpoint history: the checkpoints opening and
// closing the period, and the gaps in the cadence inside it (from the
// period's start, or the first checkpoint after it, to its end).
func readHistory(l *ledger.Ledger, from, to time.Time, maxGap time.Duration) (*history, error) {
	h := &history{}
	cf := &h.cp
	cf.List = []GapRow{}
	gap := func(after, before time.Time, size uint64, planned bool) {
		d := before.Sub(after)
		if d <= maxGap {
			return
		}
		if planned {
			cf.PlannedStops++
		} else {
			cf.Gaps++
			cf.LargestGap = max(cf.LargestGap, Duration(d))
		}
		if len(cf.List) < maxList {
			cf.List = append(cf.List, GapRow{After: after.UTC(), Before: before.UTC(), Size: size, Planned: planned})
		}
	}
	var prev cpPoint
	havePrev, later := false, false
	// From the checkpoint that opens the period on: the records of the
	// period are covered by it and the ones after.
	for e, err := range l.HistoryFrom(from) {
		if errors.Is(err, ledger.ErrHistoryDamaged) {
			// Stated as an integrity problem; the checkpoints after the
			// damage still map the period.
			if len(h.damaged) < 3 {
				h.damaged = append(h.damaged, err.Error())
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		if n := len(h.sizes); n == 0 || e.Size > h.sizes[n-1] {
			h.sizes = append(h.sizes, e.Size)
			h.times = append(h.times, e.Time.UnixNano())
		}
		c := cpPoint{size: e.Size, t: e.Time, shutdown: e.Shutdown}
		switch {
		case !e.Time.After(from):
			c.signed, c.root, c.origin = e.Signed, e.Root, e.Origin
			h.start, h.end = &c, &c
			prev, havePrev = c, true
		case !e.Time.After(to):
			c.signed, c.root, c.origin = e.Signed, e.Root, e.Origin
			h.end = &c
			switch {
			case havePrev:
				// Only the part of a silence inside the period counts.
				gap(maxTime(prev.t, from), c.t, prev.size, prev.shutdown)
			case e.Size == 0:
				// The ledger was created in the period: before its first
				// checkpoint there was no trail to fail.
				cf.Began = e.Time.UTC()
			default:
				gap(from, c.t, 0, false)
			}
			prev, havePrev = c, true
			cf.Count++
		default:
			later = true
		}
	}
	if h.start != nil {
		cf.Count++ // the checkpoint that opens the period
	}
	// To the period's end: only if the ledger was still being written then
	// (a newer checkpoint exists); otherwise the gap is the present.
	if h.end != nil && later {
		gap(maxTime(prev.t, from), to, prev.size, prev.shutdown)
	}
	return h, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// WitnessState asks witness w for the newest checkpoint it holds and checks
// it: signed by one of keys, and a prefix of the ledger's tree.
func WitnessState(ctx context.Context, l *ledger.Ledger, name string, w ledger.Witness, keys []note.Verifier) Witness {
	out := Witness{Name: name}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	signed, err := w.Latest(ctx)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	if signed == nil {
		out.Error = "holds no checkpoint"
		return out
	}
	c, _, err := ledger.OpenCheckpoint(signed, note.VerifierList(keys...))
	if err != nil {
		out.Error = err.Error()
		return out
	}
	out.TreeSize, out.Time = c.Size, c.Time.UTC()
	_, newest := l.LatestCheckpoint()
	if c.Size <= newest.Size {
		out.Consistent = consistent(l, c.Size, c.Root, newest) == nil
	}
	return out
}
