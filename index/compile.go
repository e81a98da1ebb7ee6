package index

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/trailguard/trailguard/query"
)

// compiler turns a query.Expr into a SQL condition on the events table
// that holds for every row whose record matches: a superset, checked
// record by record against the ledger. exact reports that it holds for
// exactly those rows (odd rows aside), so that counts may come from SQL
// alone and a row it selects whose record does not match is a row that
// lies. Every value is a bound parameter.
type compiler struct {
	salt []byte
	args []any
}

func (c *compiler) arg(v any) string {
	c.args = append(c.args, v)
	return "?"
}

// The conditions that need no SQL.
const (
	sqlTrue  = "1"
	sqlFalse = "0"
)

func (c *compiler) expr(e query.Expr) (cond string, exact bool, err error) {
	switch e := e.(type) {
	case nil:
		return sqlTrue, true, nil
	case *query.And:
		return c.list(e.X, " AND ", sqlTrue, sqlFalse)
	case *query.Or:
		return c.list(e.X, " OR ", sqlFalse, sqlTrue)
	case *query.Not:
		x, exact, err := c.expr(e.X)
		switch {
		case err != nil:
			return "", false, err
		case !exact:
			return sqlTrue, false, nil
		case x == sqlTrue:
			return sqlFalse, true, nil
		case x == sqlFalse:
			return sqlTrue, true, nil
		}
		// A comparison with NULL is NULL, and NOT NULL is NULL too: an
		// absent field must make "not field:x" true, as Match does.
		return "NOT coalesce((" + x + "), 0)", true, nil
	case *query.Term:
		cond, exact := c.term(e)
		return cond, exact, nil
	case *query.Exists:
		f, ok := fieldNum[e.Field]
		switch {
		case !ok:
			return sqlTrue, false, nil
		case f == fTimestamp:
			return sqlTrue, true, nil // every row that is not odd has one
		}
		return column(f) + " IS NOT NULL", true, nil
	case *query.Range:
		cond, exact := c.rng(e)
		return cond, exact, nil
	case *query.Text:
		return sqlTrue, false, nil
	}
	return "", false, fmt.Errorf("index: cannot compile %T", e)
}

// list joins conditions with op; neutral parts are left out, an absorbing
// one decides.
func (c *compiler) list(xs []query.Expr, op, neutral, absorbing string) (string, bool, error) {
	var parts []string
	exact := true
	decided := false
	for _, x := range xs {
		s, ex, err := c.expr(x)
		if err != nil {
			return "", false, err
		}
		exact = exact && ex
		switch s {
		case neutral:
		case absorbing:
			decided = true
		default:
			parts = append(parts, "("+s+")")
		}
	}
	switch {
	case decided:
		return absorbing, exact, nil
	case len(parts) == 0:
		return neutral, exact, nil
	}
	return strings.Join(parts, op), exact, nil
}

// column is the events column of field f.
func column(f int) string {
	switch f {
	case fTimestamp:
		return "ts"
	case fEventID:
		return "eid"
	case fRequestID:
		return "rid"
	case fStatus:
		return "status"
	case fSourceIP:
		return "sip"
	case fClientIP:
		return "cip"
	}
	return termCols[f]
}

// terms is the condition that the term column of f holds a term whose
// text v satisfies pred (which binds its own parameters).
func (c *compiler) terms(f int, pred string) string {
	return column(f) + " IN (SELECT n FROM terms WHERE f=" + strconv.Itoa(f) + " AND " + pred + ")"
}

func (c *compiler) term(e *query.Term) (string, bool) {
	f, ok := fieldNum[e.Field]
	if !ok {
		return sqlTrue, false
	}
	switch {
	case f == fCategory:
		if e.Wildcard || strings.IndexByte(e.Value, ',') >= 0 {
			return sqlTrue, false
		}
		// The column holds the values joined with ','.
		return c.terms(f, "instr(','||v||',', "+c.arg(","+e.Value+",")+") > 0"), true
	case isTermField(f):
		if e.Wildcard {
			return c.terms(f, "v GLOB "+c.arg(glob(e.Value))), true
		}
		return column(f) + " = (SELECT n FROM terms WHERE f=" + strconv.Itoa(f) + " AND v=" + c.arg(e.Value) + ")", true
	case f == fEventID || f == fRequestID:
		if e.Wildcard {
			return sqlTrue, false
		}
		// A hash: other ids may share it (the ledger decides), and a
		// numeric value may match an odd row's number.
		return column(f) + " = " + c.arg(keyedHash(c.salt, e.Value)), false
	case f == fStatus:
		if e.Wildcard || !e.Numeric {
			return sqlFalse, true // rows that are not odd hold integers only
		}
		return "status = " + c.arg(e.Num), true
	case f == fSourceIP || f == fClientIP:
		if e.Wildcard || !e.Prefix.IsValid() {
			return sqlTrue, false
		}
		lo, hi := prefixRange(e.Prefix)
		return column(f) + " BETWEEN " + c.arg(lo) + " AND " + c.arg(hi), true
	case f == fTimestamp:
		if e.Wildcard || e.Time.IsZero() {
			return sqlTrue, false
		}
		return "ts = " + c.arg(clampNanos(e.Time)), true
	}
	return sqlTrue, false
}

func (c *compiler) rng(e *query.Range) (string, bool) {
	f, ok := fieldNum[e.Field]
	if !ok {
		return sqlTrue, false
	}
	op := e.Op.String()
	switch {
	case f == fTimestamp:
		if e.Kind != query.RangeTime {
			return sqlTrue, false
		}
		return "ts " + op + " " + c.arg(clampNanos(e.Time)), true
	case f == fStatus:
		if e.Kind != query.RangeNumber {
			return sqlFalse, true // only strings compare as strings or times
		}
		return "status " + op + " " + c.arg(e.Num), true
	case isTermField(f) && f != fCategory:
		switch e.Kind {
		case query.RangeString:
			return c.terms(f, "v "+op+" "+c.arg(e.Value)), true
		case query.RangeNumber:
			return sqlFalse, true // the column holds strings only
		}
	case f == fEventID || f == fRequestID:
		if e.Kind == query.RangeNumber {
			return sqlFalse, true
		}
	}
	return sqlTrue, false
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
