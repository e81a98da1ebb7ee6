package index

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/trailguard/trailguard/query"
)

// compiler turns a query.Expr into a condition on block rows that holds
// for every row whose record matches: a superset, checked record by record
// against the ledger. exact reports that it holds for exactly those rows
// (odd rows aside), so that counts may come from the index alone and a row
// it selects whose record does not match is a row that lies. Term values
// are looked up in the terms table (and event.id and http.request.id in
// the ids table) once, when the query is compiled; every value is a bound
// parameter there.
type compiler struct {
	ctx  context.Context
	q    querier
	ix   *Index
	need [nCols]bool // columns the condition reads
}

// rowFn is a condition on row i of a block whose needed columns are
// loaded.
type rowFn func(b *block, i int) bool

// cond is a compiled condition: always true, never true, or fn.
type cond struct {
	k  int
	fn rowFn
}

const (
	kTrue = iota
	kFalse
	kFn
)

var (
	condTrue  = cond{k: kTrue}
	condFalse = cond{k: kFalse}
)

func fnCond(fn rowFn) cond { return cond{k: kFn, fn: fn} }

// eval is c on row i.
func (c cond) eval(b *block, i int) bool {
	switch c.k {
	case kTrue:
		return true
	case kFalse:
		return false
	}
	return c.fn(b, i)
}

func (c *compiler) expr(e query.Expr) (cond, bool, error) {
	switch e := e.(type) {
	case nil:
		return condTrue, true, nil
	case *query.And:
		return c.list(e.X, true)
	case *query.Or:
		return c.list(e.X, false)
	case *query.Not:
		x, exact, err := c.expr(e.X)
		switch {
		case err != nil:
			return cond{}, false, err
		case !exact:
			return condTrue, false, nil
		case x.k == kTrue:
			return condFalse, true, nil
		case x.k == kFalse:
			return condTrue, true, nil
		}
		// An absent field makes a condition on it false, so "not
		// field:x" true, as Match does.
		fn := x.fn
		return fnCond(func(b *block, i int) bool { return !fn(b, i) }), true, nil
	case *query.Term:
		return c.term(e)
	case *query.Exists:
		f, ok := fieldNum[e.Field]
		if !ok {
			return condTrue, false, nil
		}
		return c.has(f), true, nil
	case *query.Range:
		cd, exact, err := c.rng(e)
		return cd, exact, err
	case *query.Text:
		return condTrue, false, nil
	}
	return cond{}, false, fmt.Errorf("index: cannot compile %T", e)
}

// list joins conditions with AND (and) or OR; neutral parts are left out,
// an absorbing one decides.
func (c *compiler) list(xs []query.Expr, and bool) (cond, bool, error) {
	neutral, absorbing := kTrue, kFalse
	if !and {
		neutral, absorbing = kFalse, kTrue
	}
	var fns []rowFn
	exact := true
	decided := false
	for _, x := range xs {
		cd, ex, err := c.expr(x)
		if err != nil {
			return cond{}, false, err
		}
		exact = exact && ex
		switch cd.k {
		case neutral:
		case absorbing:
			decided = true
		default:
			fns = append(fns, cd.fn)
		}
	}
	switch {
	case decided:
		return cond{k: absorbing}, exact, nil
	case len(fns) == 0:
		return cond{k: neutral}, exact, nil
	case len(fns) == 1:
		return fnCond(fns[0]), exact, nil
	case and:
		return fnCond(func(b *block, i int) bool {
			for _, fn := range fns {
				if !fn(b, i) {
					return false
				}
			}
			return true
		}), exact, nil
	}
	return fnCond(func(b *block, i int) bool {
		for _, fn := range fns {
			if fn(b, i) {
				return true
			}
		}
		return false
	}), exact, nil
}

// termCol is the block column of term field f.
func termCol(f int) int { return cTerm0 + f - fAction }

// has is the condition that field f has a value in the columns.
func (c *compiler) has(f int) cond {
	switch {
	case f == fTimestamp:
		return condTrue // every row that is not odd has one
	case f == fEventID:
		return fnCond(func(b *block, i int) bool { return b.flags[i]&flEID != 0 })
	case f == fRequestID:
		return fnCond(func(b *block, i int) bool { return b.flags[i]&flRID != 0 })
	case f == fStatus:
		return fnCond(func(b *block, i int) bool { return b.flags[i]&flStatus != 0 })
	case f == fSourceIP || f == fClientIP:
		c.need[cSIP+f-fSourceIP] = true
		k := f - fSourceIP
		return fnCond(func(b *block, i int) bool { return b.ip[k][i].IsValid() })
	}
	c.need[termCol(f)] = true
	j := f - fAction
	return fnCond(func(b *block, i int) bool { return b.terms[j][i] != 0 })
}

// terms is the condition that term field f holds a term whose text v
// satisfies pred (SQL on the terms table, binding args).
func (c *compiler) terms(f int, pred string, args ...any) (cond, error) {
	rows, err := c.q.QueryContext(c.ctx, "SELECT n FROM terms WHERE f="+strconv.Itoa(f)+" AND "+pred, args...)
	if err != nil {
		return cond{}, fmt.Errorf("index: terms: %w", err)
	}
	defer rows.Close()
	set := map[uint32]bool{}
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return cond{}, fmt.Errorf("index: terms: %w", err)
		}
		set[uint32(n+1)] = true
	}
	if err := rows.Err(); err != nil {
		return cond{}, fmt.Errorf("index: terms: %w", err)
	}
	c.need[termCol(f)] = true
	j := f - fAction
	switch len(set) {
	case 0:
		return condFalse, nil
	case 1:
		var only uint32
		for n := range set {
			only = n
		}
		return fnCond(func(b *block, i int) bool { return b.terms[j][i] == only }), nil
	}
	return fnCond(func(b *block, i int) bool { return set[b.terms[j][i]] }), nil
}

// ids is the condition that the row's record is one the id table lists
// for field f's value v; past maxIDCandidates, every row (the records
// decide).
func (c *compiler) ids(f int, v string) (cond, error) {
	idxs, err := c.ix.lookupID(c.ctx, c.q, f, v)
	if err != nil {
		return cond{}, err
	}
	if len(idxs) > maxIDCandidates {
		return condTrue, nil
	}
	if len(idxs) == 0 {
		return condFalse, nil
	}
	set := make(map[uint64]bool, len(idxs))
	for _, i := range idxs {
		set[i] = true
	}
	return fnCond(func(b *block, i int) bool { return set[b.idx(i)] }), nil
}

func (c *compiler) term(e *query.Term) (cond, bool, error) {
	f, ok := fieldNum[e.Field]
	if !ok {
		return condTrue, false, nil
	}
	switch {
	case f == fCategory:
		if e.Wildcard || strings.IndexByte(e.Value, ',') >= 0 {
			return condTrue, false, nil
		}
		// The term holds the values joined with ','.
		cd, err := c.terms(f, "instr(','||v||',', ?) > 0", ","+e.Value+",")
		return cd, true, err
	case isTermField(f):
		if e.Wildcard {
			cd, err := c.terms(f, "v GLOB ?", glob(e.Value))
			return cd, true, err
		}
		cd, err := c.terms(f, "v = ?", e.Value)
		return cd, true, err
	case f == fEventID || f == fRequestID:
		if e.Wildcard {
			return condTrue, false, nil
		}
		// A hash: other ids may share it (the ledger decides), and a
		// numeric value may match an odd row's number.
		cd, err := c.ids(f, e.Value)
		return cd, false, err
	case f == fStatus:
		if e.Wildcard || !e.Numeric {
			return condFalse, true, nil // rows that are not odd hold integers only
		}
		return c.status(func(s int64) bool { return float64(s) == e.Num }), true, nil
	case f == fSourceIP || f == fClientIP:
		if e.Wildcard || !e.Prefix.IsValid() {
			return condTrue, false, nil
		}
		p := e.Prefix.Masked()
		c.need[cSIP+f-fSourceIP] = true
		k := f - fSourceIP
		return fnCond(func(b *block, i int) bool { return p.Contains(b.ip[k][i]) }), true, nil
	case f == fTimestamp:
		if e.Wildcard || e.Time.IsZero() {
			return condTrue, false, nil
		}
		t := clampNanos(e.Time)
		c.need[cTS] = true
		return fnCond(func(b *block, i int) bool { return b.ts[i] == t }), true, nil
	}
	return condTrue, false, nil
}

// status is the condition that the row has a status code satisfying ok.
func (c *compiler) status(ok func(int64) bool) cond {
	c.need[cStatus] = true
	return fnCond(func(b *block, i int) bool { return b.flags[i]&flStatus != 0 && ok(b.stat[i]) })
}

// compare reports whether x op y holds for op one of < <= > >=.
func compare[T int64 | float64](op string, x, y T) bool {
	switch op {
	case "<":
		return x < y
	case "<=":
		return x <= y
	case ">":
		return x > y
	}
	return x >= y
}

func (c *compiler) rng(e *query.Range) (cond, bool, error) {
	f, ok := fieldNum[e.Field]
	if !ok {
		return condTrue, false, nil
	}
	op := e.Op.String()
	switch {
	case f == fTimestamp:
		if e.Kind != query.RangeTime {
			return condTrue, false, nil
		}
		t := clampNanos(e.Time)
		c.need[cTS] = true
		return fnCond(func(b *block, i int) bool { return compare(op, b.ts[i], t) }), true, nil
	case f == fStatus:
		if e.Kind != query.RangeNumber {
			return condFalse, true, nil // only strings compare as strings or times
		}
		return c.status(func(s int64) bool { return compare(op, float64(s), e.Num) }), true, nil
	case isTermField(f) && f != fCategory:
		switch e.Kind {
		case query.RangeString:
			cd, err := c.terms(f, "v "+op+" ?", e.Value)
			return cd, true, err
		case query.RangeNumber:
			return condFalse, true, nil // the column holds strings only
		}
	case f == fEventID || f == fRequestID:
		if e.Kind == query.RangeNumber {
			return condFalse, true, nil
		}
	}
	return condTrue, false, nil
}

// glob converts a query pattern to SQLite GLOB syntax, where the special
// characters are *, ?, [ and ] and a literal one is written as a class.
func glob(p string) string {
	var b strings.Builder
	for _, part := range query.Pattern(p) {
		switch {
		case part.Star:
			b.WriteByte('*')
		case part.One:
			b.WriteByte('?')
		default:
			for i := 0; i < len(part.Lit); i++ {
				switch ch := part.Lit[i]; ch {
				case '*', '?', '[':
					b.WriteByte('[')
					b.WriteByte(ch)
					b.WriteByte(']')
				default:
					b.WriteByte(ch)
				}
			}
		}
	}
	return b.String()
}
