package index

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/trailguard/trailguard/query"
)

// column is an ECS field with a column of its own.
type column struct {
	name string
	kind colKind
	blob string // the sortable address column, for IP fields
}

type colKind int

const (
	colText colKind = iota
	colInt
	colTime
	colIP
)

// columns maps ECS fields to columns. event.category is stored joined,
// for display and Top, and matched through the raw JSON array.
var columns = map[string]column{
	"@timestamp":                {name: "ts", kind: colTime},
	"event.id":                  {name: "event_id"},
	"event.action":              {name: "action"},
	"event.outcome":             {name: "outcome"},
	"event.kind":                {name: "kind"},
	"event.dataset":             {name: "dataset"},
	"http.request.id":           {name: "request_id"},
	"http.request.method":       {name: "method"},
	"url.path":                  {name: "url_path"},
	"http.response.status_code": {name: "status", kind: colInt},
	"source.ip":                 {name: "source_ip", kind: colIP, blob: "source_ipb"},
	"client.ip":                 {name: "client_ip", kind: colIP, blob: "client_ipb"},
	"user.id":                   {name: "user_id"},
	"user.name":                 {name: "user_name"},
	"user_agent.original":       {name: "user_agent"},
	"service.name":              {name: "service"},
	"host.name":                 {name: "host"},
	"event.duration":            {name: "duration", kind: colInt},
}

// topColumns are the fields Top can count by.
var topColumns = func() map[string]string {
	m := map[string]string{"event.category": "category"}
	for f, c := range columns {
		if c.kind != colTime {
			m[f] = c.name
		}
	}
	return m
}()

// compiler turns a query.Expr into a SQL condition on the events table;
// every value becomes a bound parameter.
type compiler struct {
	args []any
}

func (c *compiler) arg(v any) string {
	c.args = append(c.args, v)
	return "?"
}

func (c *compiler) expr(e query.Expr) (string, error) {
	switch e := e.(type) {
	case *query.And:
		return c.list(e.X, " AND ")
	case *query.Or:
		return c.list(e.X, " OR ")
	case *query.Not:
		x, err := c.expr(e.X)
		if err != nil {
			return "", err
		}
		// A comparison with NULL is NULL, and NOT NULL is NULL too: an
		// absent field must make "not field:x" true, as Match does.
		return "NOT coalesce((" + x + "), 0)", nil
	case *query.Term:
		if col, ok := columns[e.Field]; ok && e.Field != "event.category" {
			return c.termColumn(col, e), nil
		}
		return c.jsonAny(e.Field, func() string { return c.termJSON(e) }), nil
	case *query.Exists:
		if col, ok := columns[e.Field]; ok {
			return col.name + " IS NOT NULL", nil
		}
		return c.jsonAny(e.Field, func() string { return "type NOT IN ('null','object','array')" }), nil
	case *query.Range:
		if col, ok := columns[e.Field]; ok {
			return c.rangeColumn(col, e), nil
		}
		return c.jsonAny(e.Field, func() string { return c.rangeJSON(e) }), nil
	case *query.Text:
		return "EXISTS (SELECT 1 FROM json_tree(events.raw) WHERE type IN ('text','integer') AND atom LIKE " +
			c.arg(like(e)) + " ESCAPE '\\')", nil
	case nil:
		return "1", nil
	}
	return "", fmt.Errorf("index: cannot compile %T", e)
}

func (c *compiler) list(xs []query.Expr, op string) (string, error) {
	parts := make([]string, len(xs))
	for i, x := range xs {
		s, err := c.expr(x)
		if err != nil {
			return "", err
		}
		parts[i] = "(" + s + ")"
	}
	return strings.Join(parts, op), nil
}

func (c *compiler) termColumn(col column, e *query.Term) string {
	if e.Wildcard {
		return col.name + " GLOB " + c.arg(glob(e.Value))
	}
	switch col.kind {
	case colIP:
		lo, hi := prefixRange(e.Prefix)
		return col.blob + " BETWEEN " + c.arg(lo) + " AND " + c.arg(hi)
	case colTime:
		return col.name + " = " + c.arg(clampNanos(e.Time))
	case colInt:
		return col.name + " = " + c.arg(e.Num)
	}
	return col.name + " = " + c.arg(e.Value)
}

func (c *compiler) rangeColumn(col column, e *query.Range) string {
	op := e.Op.String()
	switch {
	case col.kind == colTime && e.Kind == query.RangeTime:
		return col.name + " " + op + " " + c.arg(clampNanos(e.Time))
	case col.kind == colInt && e.Kind == query.RangeNumber:
		return col.name + " " + op + " " + c.arg(e.Num)
	case (col.kind == colText || col.kind == colIP) && e.Kind == query.RangeString:
		return col.name + " " + op + " " + c.arg(e.Value)
	case col.kind == colText && e.Kind == query.RangeTime:
		// A keyword column holds strings; Match compares an RFC 3339
		// string value as a time.
		return "tg_time(" + col.name + ") " + op + " " + c.arg(clampNanos(e.Time))
	}
	// A numeric comparison on a string column (or the reverse) matches
	// nothing, as in Match.
	return "0"
}

// jsonAny is the condition that some value of a non-column field, read
// from the raw JSON, satisfies pred (a condition on json_each's type and
// value columns, whose parameters pred binds). The field is looked up
// nested ($."a"."b") and, as the encoder writes fields it does not model,
// as one dotted key ($."a.b"). Values inside arrays of objects are not
// reached.
func (c *compiler) jsonAny(field string, pred func() string) string {
	parts := strings.Split(field, ".")
	nested := "$"
	for _, p := range parts {
		nested += `."` + p + `"`
	}
	// Members of an object (text keys) are not values of the field; array
	// elements (integer keys) and a scalar (no key) are.
	q := "EXISTS (SELECT 1 FROM json_each(events.raw, " + c.arg(nested) + ") WHERE typeof(key) != 'text' AND (" + pred() + ")"
	if len(parts) > 1 {
		q += " UNION ALL SELECT 1 FROM json_each(events.raw, " + c.arg(`$."`+field+`"`) + ") WHERE typeof(key) != 'text' AND (" + pred() + ")"
	}
	return q + ")"
}

func (c *compiler) termJSON(e *query.Term) string {
	if e.Wildcard {
		return "type = 'text' AND value GLOB " + c.arg(glob(e.Value))
	}
	switch e.Type {
	case query.TypeIP:
		lo, hi := prefixRange(e.Prefix)
		return "type = 'text' AND tg_ip(value) BETWEEN " + c.arg(lo) + " AND " + c.arg(hi)
	case query.TypeDate:
		return "type = 'text' AND tg_time(value) = " + c.arg(clampNanos(e.Time))
	}
	p := "(type = 'text' AND value = " + c.arg(e.Value) + ")"
	if e.Numeric {
		p += " OR (type IN ('integer','real') AND value = " + c.arg(e.Num) + ")"
	}
	if e.Value == "true" || e.Value == "false" {
		p += " OR type = " + c.arg(e.Value)
	}
	return "(" + p + ")"
}

func (c *compiler) rangeJSON(e *query.Range) string {
	op := e.Op.String()
	switch e.Kind {
	case query.RangeNumber:
		return "type IN ('integer','real') AND value " + op + " " + c.arg(e.Num)
	case query.RangeTime:
		return "type = 'text' AND tg_time(value) " + op + " " + c.arg(clampNanos(e.Time))
	}
	return "type = 'text' AND value " + op + " " + c.arg(e.Value)
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

// like converts free text to a LIKE pattern (ESCAPE '\'): a substring
// test, ASCII case-insensitive as LIKE is.
func like(t *query.Text) string {
	var b strings.Builder
	b.WriteByte('%')
	lit := func(s string) {
		for i := 0; i < len(s); i++ {
			if s[i] == '%' || s[i] == '_' || s[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[i])
		}
	}
	if t.Wildcard {
		for _, part := range query.Pattern(t.Value) {
			switch {
			case part.Star:
				b.WriteByte('%')
			case part.One:
				b.WriteByte('_')
			default:
				lit(part.Lit)
			}
		}
	} else {
		lit(t.Value)
	}
	b.WriteByte('%')
	return b.String()
}

// prefixRange is the first and last address of a network in the 16-byte
// form of ipBlob.
func prefixRange(p netip.Prefix) (lo, hi []byte) {
	p = p.Masked()
	a := p.Addr().As16()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	l, h := a, a
	for i := bits; i < 128; i++ {
		h[i/8] |= 0x80 >> (i % 8)
	}
	return l[:], h[:]
}

// Request is a search.
type Request struct {
	// Query selects events; nil selects all.
	Query query.Expr
	// From and To bound @timestamp to [From, To); zero means unbounded.
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
	// Raw is the event's JSON.
	Raw json.RawMessage
}

// Result is a page of hits.
type Result struct {
	Hits []Hit
	// Next is the cursor of the next page, "" if this is the last.
	Next string
}

// where builds the condition shared by Search, Stats and Top.
func where(q query.Expr, from, to time.Time) (string, []any, error) {
	c := &compiler{}
	cond, err := c.expr(q)
	if err != nil {
		return "", nil, err
	}
	if !from.IsZero() {
		cond = "(" + cond + ") AND ts >= " + c.arg(clampNanos(from))
	}
	if !to.IsZero() {
		cond = "(" + cond + ") AND ts < " + c.arg(clampNanos(to))
	}
	return cond, c.args, nil
}

// cursor is the keyset position after the last hit of a page.
func encodeCursor(ts int64, idx uint64) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(ts))
	binary.BigEndian.PutUint64(b[8:], idx)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func decodeCursor(s string) (int64, uint64, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 16 {
		return 0, 0, errors.New("index: invalid cursor")
	}
	return int64(binary.BigEndian.Uint64(b[:8])), binary.BigEndian.Uint64(b[8:]), nil
}

// Search returns the events matching req in @timestamp order (ties by
// ledger index), a page at a time. Pages are keyset-paginated on
// (timestamp, index), so a deep page costs what the first one does and
// events indexed meanwhile do not shift pages.
func (ix *Index) Search(ctx context.Context, req Request) (Result, error) {
	limit := req.Limit
	if limit <= 0 {
		limit = 100
	}
	if limit > MaxLimit {
		limit = MaxLimit
	}
	cond, args, err := where(req.Query, req.From, req.To)
	if err != nil {
		return Result{}, err
	}
	dir, cmp := "ASC", ">"
	if req.Desc {
		dir, cmp = "DESC", "<"
	}
	if req.Cursor != "" {
		ts, idx, err := decodeCursor(req.Cursor)
		if err != nil {
			return Result{}, err
		}
		// Written so that the planner can use the ts index for the bound.
		cond = "(" + cond + ") AND ts " + cmp + "= ? AND (ts " + cmp + " ? OR idx " + cmp + " ?)"
		args = append(args, ts, ts, int64(idx))
	}
	q := "SELECT idx, ts, raw FROM events WHERE " + cond + " ORDER BY ts " + dir + ", idx " + dir + " LIMIT ?"
	args = append(args, limit+1)
	rows, err := ix.r.QueryContext(ctx, q, args...)
	if err != nil {
		return Result{}, fmt.Errorf("index: search: %w", err)
	}
	defer rows.Close()
	var res Result
	var lastTS int64
	for rows.Next() {
		var h Hit
		var ts int64
		var raw string
		if err := rows.Scan(&h.Index, &ts, &raw); err != nil {
			return Result{}, fmt.Errorf("index: search: %w", err)
		}
		if len(res.Hits) == limit {
			last := res.Hits[len(res.Hits)-1]
			res.Next = encodeCursor(lastTS, last.Index)
			break
		}
		h.Time = time.Unix(0, ts).UTC()
		h.Raw = json.RawMessage(raw)
		lastTS = ts
		res.Hits = append(res.Hits, h)
	}
	if err := rows.Err(); err != nil {
		return Result{}, fmt.Errorf("index: search: %w", err)
	}
	return res, nil
}

// ByEventID returns the event with the given event.id, or ErrNotFound.
func (ix *Index) ByEventID(ctx context.Context, id string) (Hit, error) {
	hits, err := ix.hits(ctx, `SELECT idx, ts, raw FROM events WHERE event_id = ? ORDER BY idx LIMIT 1`, id)
	if err != nil {
		return Hit{}, fmt.Errorf("index: event %q: %w", id, err)
	}
	if len(hits) == 0 {
		return Hit{}, fmt.Errorf("index: event %q: %w", id, ErrNotFound)
	}
	return hits[0], nil
}

// maxRequestHits bounds ByRequestID: a request produces a handful of
// events, a forged id shared by many must not exhaust memory.
const maxRequestHits = 1000

// ByRequestID returns the events of one request (http.request.id, the
// correlation id) in ledger order, at most 1000.
func (ix *Index) ByRequestID(ctx context.Context, id string) ([]Hit, error) {
	hits, err := ix.hits(ctx, `SELECT idx, ts, raw FROM events WHERE request_id = ? ORDER BY idx LIMIT ?`, id, maxRequestHits)
	if err != nil {
		return nil, fmt.Errorf("index: request %q: %w", id, err)
	}
	return hits, nil
}

func (ix *Index) hits(ctx context.Context, q string, args ...any) ([]Hit, error) {
	rows, err := ix.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var hits []Hit
	for rows.Next() {
		var h Hit
		var ts int64
		var raw string
		if err := rows.Scan(&h.Index, &ts, &raw); err != nil {
			return nil, err
		}
		h.Time = time.Unix(0, ts).UTC()
		h.Raw = json.RawMessage(raw)
		hits = append(hits, h)
	}
	return hits, rows.Err()
}

// StatsRequest asks for a count of matching events per time bucket.
type StatsRequest struct {
	// Query selects events; nil selects all.
	Query query.Expr
	// From and To are the time range [From, To); both are required.
	From, To time.Time
	// Interval is the bucket width; the range may hold at most
	// MaxBuckets buckets.
	Interval time.Duration
}

// MaxBuckets is the most buckets one Stats call returns.
const MaxBuckets = 10000

// Bucket is the count of events in [Start, Start+Interval).
type Bucket struct {
	Start time.Time
	Count int64
}

// Stats counts matching events in each Interval from From to To; every
// bucket is returned, empty ones with a zero count.
func (ix *Index) Stats(ctx context.Context, req StatsRequest) ([]Bucket, error) {
	if req.From.IsZero() || req.To.IsZero() || !req.To.After(req.From) {
		return nil, errors.New("index: stats: need From before To")
	}
	if req.Interval <= 0 {
		return nil, errors.New("index: stats: need a positive Interval")
	}
	n := (req.To.Sub(req.From) + req.Interval - 1) / req.Interval
	if n > MaxBuckets || n < 0 {
		return nil, fmt.Errorf("index: stats: %v in %v buckets is more than %d buckets", req.To.Sub(req.From), req.Interval, MaxBuckets)
	}
	cond, args, err := where(req.Query, req.From, req.To)
	if err != nil {
		return nil, err
	}
	from := clampNanos(req.From)
	q := "SELECT (ts - ?) / ? AS b, count(*) FROM events WHERE " + cond + " GROUP BY b"
	rows, err := ix.r.QueryContext(ctx, q, append([]any{from, int64(req.Interval)}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("index: stats: %w", err)
	}
	defer rows.Close()
	buckets := make([]Bucket, n)
	for i := range buckets {
		buckets[i].Start = req.From.Add(time.Duration(i) * req.Interval)
	}
	for rows.Next() {
		var b, count int64
		if err := rows.Scan(&b, &count); err != nil {
			return nil, fmt.Errorf("index: stats: %w", err)
		}
		if b >= 0 && b < int64(n) {
			buckets[b].Count = count
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: stats: %w", err)
	}
	return buckets, nil
}

// TopRequest asks for the most frequent values of a field.
type TopRequest struct {
	// Query selects events; nil selects all.
	Query query.Expr
	// From and To bound @timestamp to [From, To); zero means unbounded.
	From, To time.Time
	// Field must be one with a column (see TopFields).
	Field string
	// N is how many values: default 10, at most 1000.
	N int
}

// TopN is one value and how many matching events have it.
type TopN struct {
	Value string
	Count int64
}

// TopFields returns the fields Top can count by, those with a column,
// sorted.
func TopFields() []string {
	fs := make([]string, 0, len(topColumns))
	for f := range topColumns {
		fs = append(fs, f)
	}
	slices.Sort(fs)
	return fs
}

// Top returns the N most frequent values of Field among matching events,
// most frequent first (ties by value). Events without the field are not
// counted.
func (ix *Index) Top(ctx context.Context, req TopRequest) ([]TopN, error) {
	col, ok := topColumns[req.Field]
	if !ok {
		return nil, fmt.Errorf("index: top: %q is not an indexed field (one of: %s)", req.Field, strings.Join(TopFields(), ", "))
	}
	n := req.N
	if n <= 0 {
		n = 10
	}
	if n > 1000 {
		n = 1000
	}
	cond, args, err := where(req.Query, req.From, req.To)
	if err != nil {
		return nil, err
	}
	q := "SELECT CAST(" + col + " AS TEXT) AS v, count(*) AS c FROM events WHERE (" + cond + ") AND " + col +
		" IS NOT NULL GROUP BY " + col + " ORDER BY c DESC, v LIMIT ?"
	rows, err := ix.r.QueryContext(ctx, q, append(args, n)...)
	if err != nil {
		return nil, fmt.Errorf("index: top %s: %w", req.Field, err)
	}
	defer rows.Close()
	var out []TopN
	for rows.Next() {
		var t TopN
		var v sql.NullString
		if err := rows.Scan(&v, &t.Count); err != nil {
			return nil, fmt.Errorf("index: top %s: %w", req.Field, err)
		}
		t.Value = v.String
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: top %s: %w", req.Field, err)
	}
	return out, nil
}
