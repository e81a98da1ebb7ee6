package index

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trailguard/trailguard/query"
)

// StatsRequest asks for a count of matching events per time bucket.
type StatsRequest struct {
	// Query selects events; nil selects all.
	Query query.Expr
	// From and To are the time range [From, To); both are required.
	From, To time.Time
	// Interval is the bucket width (at least a second). Buckets are
	// aligned on multiples of it since the Unix epoch, so minute buckets
	// start at :00, hours at :00:00 and days at 00:00 UTC; the first and
	// last may reach outside [From, To) but count only events inside it.
	// At most MaxBuckets buckets; AutoInterval picks one.
	Interval time.Duration
}

// MaxBuckets is the most buckets one Stats call returns.
const MaxBuckets = 10000

// Bucket is the count of events in [Start, Start+Interval).
type Bucket struct {
	Start time.Time
	Count int64
}

// StatsResult is the answer to a StatsRequest.
type StatsResult struct {
	// Buckets cover [From, To) in order, empty ones with a zero count.
	Buckets []Bucket
	// CountedFrom is set when Partial: events before it may be missing
	// from the counts (the scan went from the newest event back).
	CountedFrom time.Time
	Checked
}

// niceIntervals are the bucket widths AutoInterval and the errors of
// Stats suggest; beyond the last, whole days.
var niceIntervals = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 48 * time.Hour, 7 * 24 * time.Hour,
}

// alignedBuckets is the first bucket's start and the number of buckets
// of width iv that cover [from, to).
func alignedBuckets(from, to time.Time, iv time.Duration) (start int64, n int64) {
	f, t := clampNanos(from), clampNanos(to)
	start = floorTo(f, int64(iv))
	end := floorTo(t-1, int64(iv)) + int64(iv)
	return start, (end - start) / int64(iv)
}

func floorTo(x, m int64) int64 {
	r := x % m
	if r < 0 {
		r += m
	}
	return x - r
}

// AutoInterval is the smallest of 1s, 2s, 5s, 10s, 15s, 30s, 1m, 2m, 5m,
// 10m, 15m, 30m, 1h, 2h, 3h, 6h, 12h, 24h, 48h and 7 days (then whole
// days) that covers [from, to) in at most buckets buckets.
func AutoInterval(from, to time.Time, buckets int) time.Duration {
	for _, iv := range niceIntervals {
		if _, n := alignedBuckets(from, to, iv); n <= int64(buckets) {
			return iv
		}
	}
	day := 24 * time.Hour
	iv := (to.Sub(from)/time.Duration(max(buckets, 1)) + day - 1) / day * day
	for {
		if _, n := alignedBuckets(from, to, iv); n <= int64(buckets) {
			return iv
		}
		iv += day
	}
}

// Stats counts matching events in each Interval from From to To. With a
// query the columns decide, counts come from the index alone (the rows are
// not checked against the ledger); otherwise the candidate records are
// read and matched, newest first, within Options.ScanBudget.
func (ix *Index) Stats(ctx context.Context, req StatsRequest) (StatsResult, error) {
	switch {
	case req.From.IsZero():
		return StatsResult{}, badRequest("from", "required")
	case req.To.IsZero():
		return StatsResult{}, badRequest("to", "required")
	case req.Interval < time.Second:
		return StatsResult{}, badRequest("interval", "want a duration of at least 1s, such as 1m, got %v", req.Interval)
	}
	tx, err := ix.readTx(ctx)
	if err != nil {
		return StatsResult{}, err
	}
	defer tx.Rollback()
	p, err := ix.plan(ctx, tx, req.Query, req.From, req.To, true)
	if err != nil {
		return StatsResult{}, err
	}
	start, n := alignedBuckets(req.From, req.To, req.Interval)
	if n > MaxBuckets {
		return StatsResult{}, badRequest("interval", "%v over %v gives %d buckets, at most %d are allowed: use interval=%v or more, or a shorter range",
			req.Interval, req.To.Sub(req.From), n, MaxBuckets, fmtDuration(AutoInterval(req.From, req.To, MaxBuckets)))
	}
	iv := int64(req.Interval)
	var res StatsResult
	defer ix.report("stats", &res.Checked)
	counts := make([]int64, n)
	bucket := func(ts int64) int64 { return (ts - start) / iv }
	scanPlan := p
	if p.exact {
		// The columns decide every row but the odd ones: count the rows
		// from the columns, and the odd ones by their records (if the
		// pass over the columns met any).
		odd := 1
		if !p.never {
			odd = 0
			err := ix.exactRows(ctx, tx, p, 0, &odd, func(b *block, i int) bool {
				if k := bucket(b.ts[i]); k >= 0 && k < n {
					counts[k]++
				}
				return true
			})
			if err != nil {
				return StatsResult{}, err
			}
		}
		scanPlan = p.oddOnly(odd > 0)
	}
	res.CountedFrom, err = ix.scan(ctx, tx, scanPlan, &res.Checked, func(h Hit) {
		if b := bucket(h.Time.UnixNano()); b >= 0 && b < n {
			counts[b]++
		}
	})
	if err != nil {
		return StatsResult{}, err
	}
	res.Buckets = make([]Bucket, n)
	for i := range res.Buckets {
		res.Buckets[i] = Bucket{Start: time.Unix(0, start+int64(i)*iv).UTC(), Count: counts[i]}
	}
	return res, nil
}

// fmtDuration writes whole days as such (168h as 7d is not Go syntax, so
// days stay hours) without trailing zero units: 1m, not 1m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// oddOnly is p restricted to the odd rows of its time range (none if
// !any: a pass over the columns found none).
func (p *plan) oddOnly(any bool) *plan {
	o := *p
	o.cond, o.unbounded, o.never = condFalse, false, true
	o.need = [nCols]bool{cTS: true, cFlags: true}
	if !any {
		o.lo, o.hi = math.MaxInt64, math.MinInt64
	}
	return &o
}

// exactRows calls fn for every row in p's time range at or after ledger
// index from that p's condition selects and that is not odd, in ledger
// order, until fn returns false. It adds the odd rows of the range it
// passed to *odd, if not nil.
func (ix *Index) exactRows(ctx context.Context, q querier, p *plan, from uint64, odd *int, fn func(b *block, i int) bool) error {
	metas, err := blockMetas(ctx, q, p.lo, p.hi, from)
	if err != nil {
		return err
	}
	for _, b := range metas {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.load(ctx, q, p.need); err != nil {
			return err
		}
		for i := range b.n {
			if b.idx(i) < from {
				continue
			}
			ok, isOdd := p.selects(b, i)
			switch {
			case !ok:
			case isOdd:
				if odd != nil {
					*odd++
				}
			case !fn(b, i):
				return nil
			}
		}
	}
	return nil
}

// scan checks the candidates of p newest first and calls fn for every
// match, until they end, Options.ScanBudget records were read or
// Options.ScanTime passed (then ch.Partial is set and the time before
// which events may be missing is returned).
func (ix *Index) scan(ctx context.Context, q querier, p *plan, ch *Checked, fn func(Hit)) (time.Time, error) {
	desc := *p
	desc.desc = true
	start := time.Now()
	for c, err := range ix.candidates(ctx, q, &desc, nil) {
		if err != nil {
			return time.Time{}, err
		}
		if ix.scanSpent(start, ch.Scanned) {
			ch.Partial = true
			return time.Unix(0, c.ts).Add(time.Nanosecond).UTC(), nil
		}
		if err := ctx.Err(); err != nil {
			return time.Time{}, err
		}
		ch.Scanned++
		hit, v, readErr, err := ix.check(c, &desc, nil)
		if err != nil {
			return time.Time{}, err
		}
		ch.note(v, c.idx, readErr)
		if v == vMatch {
			fn(hit)
		}
	}
	return time.Time{}, nil
}

// TopRequest asks for the most frequent values of a field.
type TopRequest struct {
	// Query selects events; nil selects all.
	Query query.Expr
	// From and To bound the event time to [From, To); zero means
	// unbounded.
	From, To time.Time
	// Field is any field; those with a column (TopFields) are counted from
	// the index, others by reading the matching records within
	// Options.ScanBudget.
	Field string
	// N is how many values: default 10, at most MaxTop.
	N int
}

// MaxTop is the most values one Top call returns.
const MaxTop = 1000

// TopN is one value and how many matching events have it.
type TopN struct {
	Value string
	Count int64
}

// TopResult is the answer to a TopRequest.
type TopResult struct {
	// Values are the most frequent first, ties by value.
	Values []TopN
	// CountedFrom is set when Partial: events before it were not counted.
	CountedFrom time.Time
	Checked
}

// TopFields returns the fields Top counts from the index, sorted.
func TopFields() []string {
	var fs []string
	for f := fAction; f <= fClientIP; f++ {
		if isTermField(f) || f == fStatus || f == fSourceIP || f == fClientIP {
			fs = append(fs, fieldNames[f])
		}
	}
	slices.Sort(fs)
	return fs
}

// validFieldName is the field syntax of the query language.
func validFieldName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_@.-", c) >= 0) {
			return false
		}
	}
	return true
}

// Top returns the N most frequent values of Field among matching events,
// most frequent first (ties by value); an event with several values (an
// array, such as event.category) counts once for each. Values shown come
// from the ledger: for counts taken from the index, the first event of
// each value is read and a value its record does not hold is left out (a
// mismatch).
func (ix *Index) Top(ctx context.Context, req TopRequest) (TopResult, error) {
	if !validFieldName(req.Field) {
		return TopResult{}, badRequest("field", "%q is not a field name (letters, digits, _ @ . -)", req.Field)
	}
	n := req.N
	switch {
	case n == 0:
		n = 10
	case n < 0 || n > MaxTop:
		return TopResult{}, badRequest("n", "want 1..%d, got %d", MaxTop, n)
	}
	tx, err := ix.readTx(ctx)
	if err != nil {
		return TopResult{}, err
	}
	defer tx.Rollback()
	p, err := ix.plan(ctx, tx, req.Query, req.From, req.To, true)
	if err != nil {
		return TopResult{}, err
	}
	var res TopResult
	defer ix.report("top "+req.Field, &res.Checked)
	counts := map[string]*topCount{}
	f, hasCol := fieldNum[req.Field]
	hasCol = hasCol && (isTermField(f) || f == fStatus || f == fSourceIP || f == fClientIP)
	scanPlan := p
	if hasCol && p.exact && !p.never {
		odd := 0
		if err := ix.topColumns(ctx, tx, p, f, &odd, counts); err != nil {
			return TopResult{}, err
		}
		scanPlan = p.oddOnly(odd > 0)
	}
	res.CountedFrom, err = ix.scan(ctx, tx, scanPlan, &res.Checked, func(h Hit) {
		for _, v := range recordValues(req.Field, h.Raw) {
			tc := counts[v]
			if tc == nil {
				tc = &topCount{sample: -1}
				counts[v] = tc
			}
			tc.n++
		}
	})
	if err != nil {
		return TopResult{}, err
	}
	all := make([]TopN, 0, len(counts))
	for v, tc := range counts {
		if tc.n > 0 {
			all = append(all, TopN{Value: v, Count: tc.n})
		}
	}
	slices.SortFunc(all, func(a, b TopN) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	// Values counted from the index are shown only once a record holding
	// them was read.
	for _, t := range all {
		if len(res.Values) == n {
			break
		}
		tc := counts[t.Value]
		if tc.sample >= 0 {
			ok, err := ix.showable(ctx, tx, p, f, tc, req.Field, t.Value, &res.Checked)
			if err != nil {
				return TopResult{}, err
			}
			if !ok {
				continue
			}
		}
		res.Values = append(res.Values, t)
	}
	return res, nil
}

// topCount is a value's count and, when it came from the index, the
// ledger index of one event the index says holds it (else -1).
type topCount struct {
	n      int64
	sample int64
	col    any // the column value the sample was chosen by
}

// group is how many rows hold a value and the first of them.
type group struct {
	c, m int64
}

// countBy counts the rows p selects (and that are not odd) by key.
func countBy[K comparable](ctx context.Context, ix *Index, q querier, p *plan, odd *int, key func(b *block, i int) (K, bool)) (map[any]*group, error) {
	// Groups in one slice, the map holding their positions: no
	// allocation per distinct value (a field such as client.ip can have
	// millions) and one map lookup per row.
	pos := map[K]int{}
	var gs []group
	err := ix.exactRows(ctx, q, p, 0, odd, func(b *block, i int) bool {
		k, ok := key(b, i)
		if !ok {
			return true
		}
		j, seen := pos[k]
		if !seen {
			j = len(gs)
			pos[k] = j
			gs = append(gs, group{m: int64(b.idx(i))})
		}
		gs[j].c++
		return true
	})
	out := make(map[any]*group, len(pos))
	for k, j := range pos {
		out[k] = &gs[j]
	}
	return out, err
}

// colValue is row i's value of column field f (uint32 term number + 1,
// int64 status, netip.Addr), or nil.
func colValue(b *block, i, f int) any {
	switch {
	case isTermField(f):
		if v := b.terms[f-fAction][i]; v != 0 {
			return v
		}
	case f == fStatus:
		if b.flags[i]&flStatus != 0 {
			return b.stat[i]
		}
	case f == fSourceIP || f == fClientIP:
		if a := b.ip[f-fSourceIP][i]; a.IsValid() {
			return a
		}
	}
	return nil
}

// colNeed is the block column of field f (a term, status or address
// field).
func colNeed(f int) int {
	switch {
	case isTermField(f):
		return termCol(f)
	case f == fStatus:
		return cStatus
	}
	return cSIP + f - fSourceIP
}

// topColumns counts the values of column field f among the rows p selects
// that are not odd.
func (ix *Index) topColumns(ctx context.Context, q querier, p *plan, f int, odd *int, counts map[string]*topCount) error {
	pp := *p
	pp.need[colNeed(f)] = true
	// Counted by the column's own type: a key boxed in an interface
	// would allocate for every row.
	var groups map[any]*group
	var err error
	switch {
	case isTermField(f):
		j := f - fAction
		groups, err = countBy(ctx, ix, q, &pp, odd, func(b *block, i int) (uint32, bool) { v := b.terms[j][i]; return v, v != 0 })
	case f == fStatus:
		groups, err = countBy(ctx, ix, q, &pp, odd, func(b *block, i int) (int64, bool) { return b.stat[i], b.flags[i]&flStatus != 0 })
	default:
		k := f - fSourceIP
		groups, err = countBy(ctx, ix, q, &pp, odd, func(b *block, i int) (netip.Addr, bool) { a := b.ip[k][i]; return a, a.IsValid() })
	}
	if err != nil {
		return fmt.Errorf("index: top: %w", err)
	}
	var texts map[uint32]string
	if isTermField(f) {
		texts = map[uint32]string{}
		rows, err := q.QueryContext(ctx, `SELECT n, v FROM terms WHERE f=?`, f)
		if err != nil {
			return fmt.Errorf("index: top: %w", err)
		}
		for rows.Next() {
			var n int64
			var v string
			if err := rows.Scan(&n, &v); err != nil {
				rows.Close()
				return fmt.Errorf("index: top: %w", err)
			}
			if _, counted := groups[uint32(n+1)]; counted {
				texts[uint32(n+1)] = v
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("index: top: %w", err)
		}
	}
	for v, g := range groups {
		var vals []string
		switch v := v.(type) {
		case uint32:
			t, ok := texts[v]
			switch {
			case !ok:
				// A row whose value is not a term: the sample check below
				// will leave it out.
				vals = []string{"#" + strconv.FormatUint(uint64(v), 10)}
			case f == fCategory:
				vals = strings.Split(t, ",")
			default:
				vals = []string{t}
			}
		case int64:
			vals = []string{strconv.FormatInt(v, 10)}
		case netip.Addr:
			vals = []string{v.String()}
		}
		for _, s := range vals {
			tc := counts[s]
			if tc == nil {
				tc = &topCount{sample: g.m, col: v}
				counts[s] = tc
			} else if tc.sample < 0 || g.m < tc.sample {
				tc.sample, tc.col = g.m, v
			}
			tc.n += g.c
		}
	}
	return nil
}

// maxSamples bounds the records Top reads to show one value, when the
// first ones cannot be read.
const maxSamples = 3

// showable reads events the index says hold value until one does (true),
// one does not (a mismatch: false), or maxSamples could not be read.
func (ix *Index) showable(ctx context.Context, q querier, p *plan, f int, tc *topCount, field, value string, ch *Checked) (bool, error) {
	if ix.opts.Ledger == nil {
		return false, errNoLedger
	}
	i := tc.sample
	for range maxSamples {
		ch.Scanned++
		e, err := ix.opts.Ledger.Read(uint64(i))
		if err == nil {
			if slices.Contains(recordValues(field, e.Data), value) {
				return true, nil
			}
			ch.note(vMismatch, uint64(i), nil)
			return false, nil
		}
		v, readErr, err := readFailed(err)
		if err != nil {
			return false, err
		}
		ch.note(v, uint64(i), readErr)
		if v == vMismatch {
			return false, nil
		}
		// Unreadable or pruned: try the next event with the value.
		next := int64(-1)
		pp := *p
		pp.need[colNeed(f)] = true
		err = ix.exactRows(ctx, q, &pp, uint64(i)+1, nil, func(b *block, r int) bool {
			if colValue(b, r, f) == tc.col {
				next = int64(b.idx(r))
				return false
			}
			return true
		})
		if err != nil {
			return false, fmt.Errorf("index: top: %w", err)
		}
		if next < 0 {
			return false, nil
		}
		i = next
	}
	return false, nil
}

// recordValues are the values of field in a record, as Top shows them:
// strings as they are (addresses in canonical form), numbers as written,
// booleans as true and false.
func recordValues(field string, data []byte) []string {
	doc, err := query.Flatten(data)
	if err != nil {
		return nil
	}
	v, ok := doc[field]
	if !ok {
		return nil
	}
	l, isList := v.([]any)
	if !isList {
		l = []any{v}
	}
	ipField := query.FieldType(field) == query.TypeIP
	var out []string
	for _, x := range l {
		switch x := x.(type) {
		case string:
			if ipField {
				if a, err := netip.ParseAddr(x); err == nil {
					x = a.Unmap().WithZone("").String()
				}
			}
			out = append(out, x)
		case json.Number:
			out = append(out, string(x))
		case bool:
			out = append(out, strconv.FormatBool(x))
		}
	}
	return out
}
