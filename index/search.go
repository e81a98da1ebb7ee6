package index

import (
	"cmp"
	"container/heap"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"time"

	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/query"
)

// RequestError is a request the caller must change: Param names what is
// wrong (the HTTP API's parameter of the same name), Msg says why.
type RequestError struct {
	Param, Msg string
}

// Error leads with the parameter so that a caller who only logs the
// message still knows which part of the request to change.
func (e *RequestError) Error() string { return "index: " + e.Param + ": " + e.Msg }

func badRequest(param, format string, args ...any) error {
	return &RequestError{Param: param, Msg: fmt.Sprintf(format, args...)}
}

// ReadError is a ledger record a query could not read: damaged, or its
// read failed. The query goes on without it and reports it.
type ReadError struct {
	Index uint64
	Err   error
}

// Error names the ledger record, the index to give `trailguard verify`
// or a proof request when looking into it.
func (e *ReadError) Error() string { return fmt.Sprintf("index: ledger record %d: %v", e.Index, e.Err) }

// Unwrap gives the read's own error, so that errors.Is can tell a damaged
// record (ledger.ErrCorrupt) from an I/O failure.
func (e *ReadError) Unwrap() error { return e.Err }

// Request is a search.
type Request struct {
	// Query selects events; nil selects all.
	Query query.Expr
	// From and To bound the event time (@timestamp, or the append time of a
	// record without one) to [From, To); zero means unbounded.
	From, To time.Time
	// Desc returns the newest events first.
	Desc bool
	// Limit is the most hits returned: default 100, at most MaxLimit.
	Limit int
	// Cursor continues a previous search from its Result.Next; the other
	// fields must be the same as in that search.
	Cursor string
}

// MaxLimit is the most hits one Search returns.
const MaxLimit = 10000

// Hit is one event found.
type Hit struct {
	// Index is the event's ledger index (for proofs).
	Index uint64
	// Time is its @timestamp (the append time if it has none).
	Time time.Time
	// Raw is the record exactly as the ledger holds it (a JSON object for
	// every record the collector writes).
	Raw []byte
}

// Checked is what a query found while checking index rows against the
// ledger, besides its answer.
type Checked struct {
	// Scanned is how many ledger records the query read.
	Scanned int
	// Partial reports that the query read Options.ScanBudget records, or
	// checked records for Options.ScanTime, before it was done: a Search
	// page is short (continue from Next), and Stats and Top counted only
	// the events at or after CountedFrom.
	Partial bool
	// Mismatches are ledger indices whose index row claimed what the
	// record does not say (an altered or stale index: run trailguard
	// reindex); they were left out. At most maxReported.
	Mismatches []uint64
	// Unreadable are records the ledger could not read (damaged: run
	// trailguard verify); they were left out. At most maxReported.
	Unreadable []ReadError
}

// maxReported bounds the Mismatches and Unreadable of one answer.
const maxReported = 100

// Result is a page of hits.
type Result struct {
	Hits []Hit
	// Next is the cursor of the next page, "" if the search is done.
	Next string
	Checked
}

// pos is a keyset position: (ts, idx) of a row.
type pos struct {
	ts  int64
	idx uint64
}

func encodeCursor(p pos) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(p.ts))
	binary.BigEndian.PutUint64(b[8:], p.idx)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func decodeCursor(s string) (pos, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	// Ledger indexes are SQLite integers: one past int64 would compare as
	// negative and page from the start again.
	if err != nil || len(b) != 16 || binary.BigEndian.Uint64(b[8:]) > math.MaxInt64 {
		return pos{}, badRequest("cursor", "not a cursor this API returned (pass the last answer's next unchanged)")
	}
	return pos{int64(binary.BigEndian.Uint64(b[:8])), binary.BigEndian.Uint64(b[8:])}, nil
}

// plan is a compiled query: cond selects candidate rows (a superset of
// the matches) in the time range [lo, hi] (unix ns).
type plan struct {
	q         query.Expr
	lo, hi    int64
	cond      cond
	need      [nCols]bool
	exact     bool
	desc      bool
	unbounded bool // cond selects every row in the range
	never     bool // cond selects no row (odd ones aside)
}

// readTx is a snapshot of the index for one query: blocks and columns
// read in it agree with each other while the writer goes on.
func (ix *Index) readTx(ctx context.Context) (*sql.Tx, error) {
	tx, err := ix.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("index: query: %w", err)
	}
	return tx, nil
}

func (ix *Index) plan(ctx context.Context, q querier, qe query.Expr, from, to time.Time, desc bool) (*plan, error) {
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		return nil, badRequest("to", "%s is not after from (%s)", to.Format(time.RFC3339Nano), from.Format(time.RFC3339Nano))
	}
	c := &compiler{ctx: ctx, q: q, ix: ix}
	cd, exact, err := c.expr(qe)
	if err != nil {
		return nil, err
	}
	p := &plan{q: qe, cond: cd, need: c.need, exact: exact, desc: desc, unbounded: cd.k == kTrue, never: cd.k == kFalse,
		lo: math.MinInt64, hi: math.MaxInt64}
	p.need[cTS], p.need[cFlags] = true, true
	if !from.IsZero() {
		p.lo = clampNanos(from)
	}
	if !to.IsZero() {
		if t := clampNanos(to); t == math.MinInt64 {
			p.hi, p.lo = math.MinInt64, math.MaxInt64 // nothing is before it
		} else {
			p.hi = t - 1
		}
	}
	return p, nil
}

// selects reports whether row i of b is a candidate of p: a record in p's
// time range that the condition selects, or that is odd.
func (p *plan) selects(b *block, i int) (cand, odd bool) {
	if !b.present(i) {
		return false, false
	}
	if t := b.ts[i]; t < p.lo || t > p.hi {
		return false, false
	}
	if b.flags[i]&flOdd != 0 {
		return true, true
	}
	return p.cond.eval(b, i), false
}

// candidate is an index row to check against its record.
type candidate struct {
	pos
	odd bool
}

// before orders candidates by (ts, idx), descending if desc.
func before(a, b pos, desc bool) bool {
	if desc {
		a, b = b, a
	}
	return a.ts < b.ts || a.ts == b.ts && a.idx < b.idx
}

// candList is the next candidates of one block, in order: at most
// maxHeld of them, the block read again for more once they are used up.
type candList struct {
	meta  *block
	cands []candidate
	more  bool // the block has candidates after the last of cands
}

// maxHeld bounds the candidates kept per block: blocks whose times overlap
// (events arriving with timestamps far from their neighbours') are merged
// at once, and holding all their candidates would take memory in
// proportion to the whole index. (A variable: tests make it small.)
var maxHeld = 256

// candHeap merges the sorted candidates of several blocks.
type candHeap struct {
	lists []*candList
	desc  bool
}

func (h *candHeap) Len() int { return len(h.lists) }
func (h *candHeap) Less(i, j int) bool {
	return before(h.lists[i].cands[0].pos, h.lists[j].cands[0].pos, h.desc)
}
func (h *candHeap) Swap(i, j int) { h.lists[i], h.lists[j] = h.lists[j], h.lists[i] }
func (h *candHeap) Push(x any)    { h.lists = append(h.lists, x.(*candList)) }
func (h *candHeap) Pop() any {
	l := h.lists[len(h.lists)-1]
	h.lists = h.lists[:len(h.lists)-1]
	return l
}

// blockCands reads the candidates of block meta strictly after after (if
// not nil) in p's order, at most maxHeld of them.
func blockCands(ctx context.Context, q querier, p *plan, meta *block, after *pos) (*candList, error) {
	b := *meta
	if err := b.load(ctx, q, p.need); err != nil {
		return nil, err
	}
	var cs []candidate
	for i := range b.n {
		ok, odd := p.selects(&b, i)
		if !ok {
			continue
		}
		c := candidate{pos{b.ts[i], b.idx(i)}, odd}
		if after != nil && !before(*after, c.pos, p.desc) {
			continue
		}
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(x, y candidate) int {
		if before(x.pos, y.pos, p.desc) {
			return -1
		}
		return 1
	})
	l := &candList{meta: meta, more: len(cs) > maxHeld}
	l.cands = slices.Clip(cs[:min(len(cs), maxHeld)])
	return l, nil
}

// candidates yields the rows that may match p, and every odd row in its
// time range, in (ts, idx) order (descending if p.desc) strictly after
// after (if not nil). Blocks are decoded as the merge reaches their time
// range: a block is read once the rows yielded so far reach its earliest
// (latest, descending) time.
func (ix *Index) candidates(ctx context.Context, q querier, p *plan, after *pos) iter.Seq2[candidate, error] {
	return func(yield func(candidate, error) bool) {
		lo, hi := p.lo, p.hi
		if after != nil {
			if p.desc {
				hi = min(hi, after.ts)
			} else {
				lo = max(lo, after.ts)
			}
		}
		if lo > hi {
			return
		}
		metas, err := blockMetas(ctx, q, lo, hi, 0)
		if err != nil {
			yield(candidate{}, err)
			return
		}
		if p.desc {
			slices.SortStableFunc(metas, func(a, b *block) int { return cmp.Compare(b.tmax, a.tmax) })
		} else {
			slices.SortStableFunc(metas, func(a, b *block) int { return cmp.Compare(a.tmin, b.tmin) })
		}
		h := &candHeap{desc: p.desc}
		next := 0
		for {
			for next < len(metas) {
				b := metas[next]
				if h.Len() > 0 {
					top := h.lists[0].cands[0].ts
					if !p.desc && b.tmin > top || p.desc && b.tmax < top {
						break
					}
				}
				next++
				if err := ctx.Err(); err != nil {
					yield(candidate{}, err)
					return
				}
				l, err := blockCands(ctx, q, p, b, after)
				if err != nil {
					yield(candidate{}, err)
					return
				}
				if len(l.cands) > 0 {
					heap.Push(h, l)
				}
			}
			if h.Len() == 0 {
				return
			}
			l := h.lists[0]
			c := l.cands[0]
			l.cands = l.cands[1:]
			if len(l.cands) == 0 && l.more {
				// Read the block again for the candidates after c.
				nl, err := blockCands(ctx, q, p, l.meta, &c.pos)
				if err != nil {
					yield(candidate{}, err)
					return
				}
				*l = *nl
			}
			if len(l.cands) == 0 {
				heap.Pop(h)
			} else {
				heap.Fix(h, 0)
			}
			if !yield(c, nil) {
				return
			}
		}
	}
}

// verdict is what checking a row against its record found.
type verdict int

const (
	vMatch      verdict = iota
	vNoMatch            // the record does not match a query the row could not decide
	vMismatch           // the row claims what the record does not say
	vGone               // pruned by retention
	vUnreadable         // the ledger could not read the record
)

// errNoLedger is returned by queries of an Index opened without a ledger.
var errNoLedger = errors.New("index: no ledger to read hits from (Options.Ledger)")

// check reads the record of c and decides whether it matches p. match, if
// not nil, replaces p.q's Match (lookups by id). readErr is why a record
// is vUnreadable; err ends the query (the ledger is closed).
func (ix *Index) check(c candidate, p *plan, match func(*extracted, []byte) bool) (hit Hit, v verdict, readErr, err error) {
	if ix.opts.Ledger == nil {
		return Hit{}, 0, nil, errNoLedger
	}
	e, err := ix.opts.Ledger.Read(c.idx)
	if err != nil {
		v, readErr, err := readFailed(err)
		return Hit{}, v, readErr, err
	}
	var x extracted
	extract(e.Data, &x)
	cl := x.columns(e.Time)
	if cl.ts != c.ts || cl.odd != c.odd {
		return Hit{}, vMismatch, nil, nil
	}
	hit = Hit{Index: c.idx, Time: time.Unix(0, cl.ts).UTC(), Raw: e.Data}
	var ok bool
	switch {
	case match != nil:
		ok = match(&x, e.Data)
	case p.q == nil:
		ok = true
	case p.exact && !c.odd:
		ok = p.q.Match(x.doc())
	default:
		ok = matchRecord(p.q, e.Data)
	}
	switch {
	case ok:
		return hit, vMatch, nil, nil
	case p.exact && !c.odd:
		return Hit{}, vMismatch, nil, nil
	}
	return Hit{}, vNoMatch, nil, nil
}

// readFailed classifies a failed ledger read: a pruned record is gone, a
// record past the ledger's end means the row is not the ledger's, a closed
// ledger ends the query, anything else (a damaged record) is reported.
func readFailed(err error) (verdict, error, error) {
	switch {
	case errors.Is(err, ledger.ErrPruned):
		return vGone, nil, nil
	case errors.Is(err, ledger.ErrClosed):
		return 0, nil, err
	case errors.Is(err, ledger.ErrNotFound):
		return vMismatch, nil, nil
	}
	return vUnreadable, err, nil
}

// matchRecord is query.Expr.Match on a record; records that are not JSON
// objects match no query.
func matchRecord(q query.Expr, data []byte) bool {
	doc, err := query.Flatten(data)
	return err == nil && q.Match(doc)
}

// note records a mismatch or an unreadable record in ch.
func (ch *Checked) note(v verdict, idx uint64, err error) {
	switch v {
	case vMismatch:
		if len(ch.Mismatches) < maxReported {
			ch.Mismatches = append(ch.Mismatches, idx)
		}
	case vUnreadable:
		if len(ch.Unreadable) < maxReported {
			ch.Unreadable = append(ch.Unreadable, ReadError{Index: idx, Err: err})
		}
	}
}

// report logs what a query found wrong, once per query.
func (ix *Index) report(what string, ch *Checked) {
	log := ix.opts.logger()
	if len(ch.Mismatches) > 0 {
		log.Warn("index: rows disagree with their ledger records and were left out; the index may have been altered: run trailguard reindex",
			"query", what, "rows", len(ch.Mismatches), "ledger_indices", ch.Mismatches)
	}
	for _, u := range ch.Unreadable {
		log.Error("index: ledger record unreadable; run trailguard verify", "query", what, "ledger_index", u.Index, "err", u.Err)
	}
}

// Search returns the events matching req in time order (ties by ledger
// index), a page at a time, each read from the ledger and matched there.
// Pages are keyset-paginated on (time, index), so a deep page costs what
// the first one does and events indexed meanwhile do not shift pages.
func (ix *Index) Search(ctx context.Context, req Request) (Result, error) {
	limit := req.Limit
	switch {
	case limit == 0:
		limit = 100
	case limit < 0 || limit > MaxLimit:
		return Result{}, badRequest("limit", "want 1..%d, got %d", MaxLimit, limit)
	}
	tx, err := ix.readTx(ctx)
	if err != nil {
		return Result{}, err
	}
	defer tx.Rollback()
	p, err := ix.plan(ctx, tx, req.Query, req.From, req.To, req.Desc)
	if err != nil {
		return Result{}, err
	}
	var after *pos
	if req.Cursor != "" {
		c, err := decodeCursor(req.Cursor)
		if err != nil {
			return Result{}, err
		}
		after = &c
	}
	var res Result
	defer ix.report("search", &res.Checked)
	var last pos
	start := time.Now()
	for c, err := range ix.candidates(ctx, tx, p, after) {
		if err != nil {
			return Result{}, err
		}
		if ix.scanSpent(start, res.Scanned) {
			if len(res.Hits) < limit {
				res.Partial = true
				res.Next = encodeCursor(last)
			} else {
				res.Next = encodeCursor(lastPos(res.Hits[len(res.Hits)-1]))
			}
			return res, nil
		}
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		res.Scanned++
		last = c.pos
		hit, v, readErr, err := ix.check(c, p, nil)
		if err != nil {
			return Result{}, err
		}
		res.note(v, c.idx, readErr)
		if v != vMatch {
			continue
		}
		if len(res.Hits) == limit {
			res.Next = encodeCursor(lastPos(res.Hits[len(res.Hits)-1]))
			return res, nil
		}
		res.Hits = append(res.Hits, hit)
	}
	return res, nil
}

func lastPos(h Hit) pos { return pos{h.Time.UnixNano(), h.Index} }

// ByEventID returns the event with the given event.id (the first in the
// ledger if several have it), read from the ledger, or ErrNotFound. A
// candidate the ledger cannot read is a *ReadError if no other matched. A
// record whose event.id is not one string (several values, a number) has
// no hash and is not found by id; the collector never writes one.
func (ix *Index) ByEventID(ctx context.Context, id string) (Hit, error) {
	hits, ch, err := ix.byID(ctx, fEventID, id, 1)
	if err != nil {
		return Hit{}, fmt.Errorf("index: event %q: %w", id, err)
	}
	if len(hits) == 0 {
		if len(ch.Unreadable) > 0 {
			return Hit{}, fmt.Errorf("index: event %q: %w", id, &ch.Unreadable[0])
		}
		return Hit{}, fmt.Errorf("index: event %q: %w", id, ErrNotFound)
	}
	return hits[0], nil
}

// maxRequestHits bounds ByRequestID: a request produces a handful of
// events, a forged id shared by many must not exhaust memory.
const maxRequestHits = 1000

// ByRequestID returns the events of one request (http.request.id, the
// correlation id) in ledger order, at most 1000, read from the ledger.
func (ix *Index) ByRequestID(ctx context.Context, id string) ([]Hit, Checked, error) {
	hits, ch, err := ix.byID(ctx, fRequestID, id, maxRequestHits)
	if err != nil {
		return nil, ch, fmt.Errorf("index: request %q: %w", id, err)
	}
	return hits, ch, nil
}

// byID finds the records whose field f (event.id or http.request.id) is
// id, through the ids table, in ledger order.
func (ix *Index) byID(ctx context.Context, f int, id string, limit int) ([]Hit, Checked, error) {
	var ch Checked
	defer ix.report(fieldNames[f], &ch)
	tx, err := ix.readTx(ctx)
	if err != nil {
		return nil, ch, err
	}
	defer tx.Rollback()
	idxs, err := ix.lookupID(ctx, tx, f, id)
	if err != nil {
		return nil, ch, err
	}
	idxs = idxs[:min(len(idxs), limit*2, ix.opts.ScanBudget)]
	term := &query.Term{Field: fieldNames[f], Value: id, Type: query.FieldType(fieldNames[f])}
	match := func(x *extracted, data []byte) bool {
		if fv := x.f[f]; fv.n == 1 && fv.kind == 's' {
			return fv.s == id
		}
		return matchRecord(term, data)
	}
	if ix.opts.Ledger == nil {
		return nil, ch, errNoLedger
	}
	var hits []Hit
	var x extracted
	for _, idx := range idxs {
		// The record decides alone: the id table found it, its id must
		// be the one asked for (the block's columns are not read).
		ch.Scanned++
		e, err := ix.opts.Ledger.Read(idx)
		var v verdict
		var readErr error
		var hit Hit
		if err != nil {
			if v, readErr, err = readFailed(err); err != nil {
				return nil, ch, err
			}
		} else if extract(e.Data, &x); match(&x, e.Data) {
			hit = Hit{Index: idx, Time: time.Unix(0, x.columns(e.Time).ts).UTC(), Raw: e.Data}
		} else {
			v = vMismatch // the hash said this id; a collision is all but impossible
		}
		ch.note(v, idx, readErr)
		if v == vMatch {
			hits = append(hits, hit)
			if len(hits) == limit {
				break
			}
		}
	}
	return hits, ch, nil
}
