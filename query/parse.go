package query

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/trailguard/trailguard/internal/ipnet"
)

// Limits on what Parse accepts, against hostile input.
const (
	// MaxLen is the longest query, in bytes.
	MaxLen = 4096
	// MaxDepth is the deepest nesting of parentheses and nots.
	MaxDepth = 32
)

// Error is a syntax or type error in a query, at byte offset Pos (from 0).
type Error struct {
	Pos int
	Msg string
}

// Error returns "query: position N: message".
func (e *Error) Error() string { return fmt.Sprintf("query: position %d: %s", e.Pos, e.Msg) }

// Parse parses a query. Its errors are *Error.
func Parse(s string) (Expr, error) {
	if len(s) > MaxLen {
		return nil, &Error{MaxLen, fmt.Sprintf("query is longer than %d bytes", MaxLen)}
	}
	p := &parser{s: s}
	e, err := p.parse()
	if err != nil {
		return nil, err
	}
	// The canonical form writes the terms on one field as one field
	// group, whose own parenthesis is free (see group); a field group of
	// the query that sat under an and then becomes a counted parenthesis
	// inside the larger group: f:(not … x or y) and f:c is written
	// f:((not … x or y) and c), one level deeper. It is never more than
	// one deeper (each other parenthesis and not it writes is one the
	// query needed too), so only a query that reached MaxDepth can have a
	// canonical form that does not parse; such a query is refused, as a
	// query must read back as itself.
	//
	// For the same reason a query whose canonical form is longer than
	// MaxLen is refused: quoting can lengthen a value (a\ b is written
	// "a b", a control character as \u0000) and single spaces go around
	// every operator, so a query near the limit can have a canonical form
	// that Parse would refuse as too long.
	canon := e.String()
	if len(canon) > MaxLen {
		return nil, p.errf(0, "query is longer than %d bytes as written canonically (%d bytes)", MaxLen, len(canon))
	}
	if p.limitPos >= 0 {
		c := &parser{s: canon}
		if _, err := c.parse(); err != nil {
			if c.tooDeep {
				return nil, p.errf(p.limitPos, "nesting deeper than %d once the terms on one field are written as one group, as the canonical form writes them", MaxDepth)
			}
			return nil, p.errf(p.limitPos, "the canonical form %q does not parse: %s", c.s, err)
		}
	}
	return e, nil
}

// parse parses p.s whole.
func (p *parser) parse() (Expr, error) {
	p.limitPos = -1
	p.ws()
	if p.eof() {
		return nil, p.errf(p.pos, "empty query")
	}
	e, err := p.or("")
	if err != nil {
		return nil, err
	}
	p.ws()
	if !p.eof() {
		if p.s[p.pos] == ')' {
			return nil, p.errf(p.pos, "unexpected ')'")
		}
		return nil, p.errf(p.pos, "expected 'and', 'or' or the end of the query, found %s (quote a phrase: \"a b\")", p.show(p.pos))
	}
	return e, nil
}

type parser struct {
	s     string
	pos   int
	depth int
	// limitPos is where the nesting first reached MaxDepth (-1: never).
	limitPos int
	// tooDeep is set when the nesting went past MaxDepth.
	tooDeep bool
}

func (p *parser) errf(pos int, format string, args ...any) *Error {
	return &Error{pos, fmt.Sprintf(format, args...)}
}

func (p *parser) eof() bool { return p.pos >= len(p.s) }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (p *parser) ws() {
	for p.pos < len(p.s) && isSpace(p.s[p.pos]) {
		p.pos++
	}
}

// show quotes the token at pos for an error message.
func (p *parser) show(pos int) string {
	end := pos
	for end < len(p.s) && end-pos < 20 && !isSpace(p.s[end]) && (end == pos || !strings.ContainsRune("()\"", rune(p.s[end]))) {
		end++
	}
	return strconv.Quote(p.s[pos:end])
}

// keyword reports whether the unquoted keyword kw (lower case) starts at
// the current position, followed by a delimiter.
func (p *parser) keyword(kw string) bool {
	end := p.pos + len(kw)
	if end > len(p.s) || !strings.EqualFold(p.s[p.pos:end], kw) {
		return false
	}
	return end == len(p.s) || isSpace(p.s[end]) || p.s[end] == '(' || p.s[end] == ')' || p.s[end] == '"'
}

func (p *parser) enter(pos int) error {
	p.depth++
	if p.depth > MaxDepth {
		p.tooDeep = true
		return p.errf(pos, "nesting deeper than %d", MaxDepth)
	}
	if p.depth == MaxDepth && p.limitPos < 0 {
		p.limitPos = pos
	}
	return nil
}

// or parses a disjunction. In a field group (field:(…)) field is the
// group's field and the terms are values.
func (p *parser) or(field string) (Expr, error) {
	var xs []Expr
	for {
		e, err := p.and(field)
		if err != nil {
			return nil, err
		}
		if o, ok := e.(*Or); ok {
			xs = append(xs, o.X...)
		} else {
			xs = append(xs, e)
		}
		p.ws()
		if !p.keyword("or") {
			break
		}
		p.pos += 2
	}
	if len(xs) == 1 {
		return xs[0], nil
	}
	return &Or{xs}, nil
}

func (p *parser) and(field string) (Expr, error) {
	var xs []Expr
	for {
		e, err := p.not(field)
		if err != nil {
			return nil, err
		}
		if a, ok := e.(*And); ok {
			xs = append(xs, a.X...)
		} else {
			xs = append(xs, e)
		}
		p.ws()
		if !p.keyword("and") {
			break
		}
		p.pos += 3
	}
	if len(xs) == 1 {
		return xs[0], nil
	}
	return &And{xs}, nil
}

func (p *parser) not(field string) (Expr, error) {
	p.ws()
	if !p.keyword("not") {
		return p.primary(field)
	}
	start := p.pos
	p.pos += 3
	if err := p.enter(start); err != nil {
		return nil, err
	}
	x, err := p.not(field)
	if err != nil {
		return nil, err
	}
	p.depth--
	return &Not{x}, nil
}

// group parses "(" or ")" at the current position. The parenthesis that
// opens a field group (field:(…)) does not count towards MaxDepth, so that
// the canonical form, which writes field:a or field:b as field:(a or b),
// nests no deeper than the query it came from (but see Parse on field
// groups merged into one).
func (p *parser) group(field string, fieldGroup bool) (Expr, error) {
	open := p.pos
	if !fieldGroup {
		if err := p.enter(open); err != nil {
			return nil, err
		}
	}
	p.pos++
	p.ws()
	if !p.eof() && p.s[p.pos] == ')' {
		return nil, p.errf(p.pos, "empty parentheses")
	}
	e, err := p.or(field)
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.eof() {
		return nil, p.errf(p.pos, "expected ')' to close '(' at position %d", open)
	}
	if p.s[p.pos] != ')' {
		return nil, p.errf(p.pos, "expected 'and', 'or' or ')', found %s", p.show(p.pos))
	}
	p.pos++
	if !fieldGroup {
		p.depth--
	}
	return e, nil
}

func (p *parser) primary(field string) (Expr, error) {
	p.ws()
	if p.eof() {
		return nil, p.errf(p.pos, "unexpected end of query, expected a term")
	}
	if p.keyword("and") || p.keyword("or") {
		return nil, p.errf(p.pos, "expected a term, found %s", p.show(p.pos))
	}
	switch c := p.s[p.pos]; c {
	case '(':
		return p.group(field, false)
	case ')':
		return nil, p.errf(p.pos, "unexpected ')', expected a term")
	}
	if field != "" {
		return p.value(field)
	}
	start := p.pos
	if p.s[p.pos] == '"' {
		v, err := p.quoted()
		if err != nil {
			return nil, err
		}
		return &Text{Value: v}, nil
	}
	w, wild, escaped, err := p.word(":<>")
	if err != nil {
		return nil, err
	}
	end := p.pos
	if w == "" {
		return nil, p.errf(start, "expected a term, found %s", p.show(start))
	}
	p.ws()
	if !p.eof() && strings.IndexByte(":<>", p.s[p.pos]) >= 0 {
		name := p.s[start:end]
		if escaped || wild || !validField(name) {
			return nil, p.errf(start, "invalid field name %q", name)
		}
		// "not>0" would otherwise name a field "not" whose canonical form,
		// "not > 0", reads back as the operator: a query must mean one thing.
		if isKeyword(name) {
			return nil, p.errf(start, "%q is an operator, not a field name", name)
		}
		if p.s[p.pos] == ':' {
			p.pos++
			return p.afterColon(name)
		}
		return p.rng(name)
	}
	return &Text{Value: w, Wildcard: wild}, nil
}

// afterColon parses what follows "field:".
func (p *parser) afterColon(field string) (Expr, error) {
	p.ws()
	if p.eof() || p.s[p.pos] == ')' {
		return nil, p.errf(p.pos, "expected a value after ':'")
	}
	if p.s[p.pos] == '(' {
		return p.group(field, true)
	}
	return p.value(field)
}

// value parses one value of field: quoted or a word, or * for exists.
func (p *parser) value(field string) (Expr, error) {
	start := p.pos
	if p.s[p.pos] == '"' {
		v, err := p.quoted()
		if err != nil {
			return nil, err
		}
		return newTerm(field, v, false, start)
	}
	w, wild, _, err := p.word("")
	if err != nil {
		return nil, err
	}
	if w == "" {
		return nil, p.errf(start, "expected a value after ':'")
	}
	if wild && w == "*" {
		return &Exists{field}, nil
	}
	return newTerm(field, w, wild, start)
}

// rng parses "op value" after a field name.
func (p *parser) rng(field string) (Expr, error) {
	opPos := p.pos
	var op Op
	if p.s[p.pos] == '<' {
		op = Lt
	} else {
		op = Gt
	}
	p.pos++
	if !p.eof() && p.s[p.pos] == '=' {
		op++
		p.pos++
	}
	p.ws()
	start := p.pos
	if p.eof() || p.s[p.pos] == ')' || p.s[p.pos] == '(' {
		return nil, p.errf(p.pos, "expected a value after '%s'", op)
	}
	var v string
	if p.s[p.pos] == '"' {
		var err error
		if v, err = p.quoted(); err != nil {
			return nil, err
		}
	} else {
		w, wild, _, err := p.word("")
		if err != nil {
			return nil, err
		}
		if w == "" {
			return nil, p.errf(start, "expected a value after '%s'", op)
		}
		if wild {
			return nil, p.errf(start, "wildcards are not allowed in a range")
		}
		v = w
	}
	r := &Range{Field: field, Op: op, Value: v}
	switch FieldType(field) {
	case TypeDate:
		t, ok := parseTime(v)
		if !ok {
			return nil, p.errf(start, "%s needs an RFC 3339 time (2026-01-02T15:04:05Z), not %q", field, v)
		}
		r.Kind, r.Time = RangeTime, t
	case TypeNumber:
		n, ok := parseNum(v)
		if !ok {
			return nil, p.errf(start, "%s needs a number, not %q", field, v)
		}
		r.Kind, r.Num = RangeNumber, n
	case TypeIP, TypeBool:
		return nil, p.errf(opPos, "%s does not support '%s' (use a CIDR network for IP fields)", field, op)
	default:
		if n, ok := parseNum(v); ok {
			r.Kind, r.Num = RangeNumber, n
		} else if t, ok := parseTime(v); ok {
			r.Kind, r.Time = RangeTime, t
		} else {
			r.Kind = RangeString
		}
	}
	return r, nil
}

// quoted reads a double-quoted string at the current position, resolving
// backslash escapes.
func (p *parser) quoted() (string, error) {
	start := p.pos
	p.pos++
	var b strings.Builder
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch c {
		case '"':
			p.pos++
			return b.String(), nil
		case '\\':
			if p.pos+1 >= len(p.s) {
				return "", p.errf(p.pos, "backslash at the end of the query")
			}
			b.WriteByte(p.s[p.pos+1])
			p.pos += 2
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	return "", p.errf(start, "unterminated quoted string")
}

// word reads an unquoted word, which ends at whitespace, a parenthesis, a
// quote or a byte of stop. It returns the word with its backslash escapes
// kept for unescaped * and ? (the pattern form) when wild, and resolved
// otherwise; escaped reports whether it had any backslash.
func (p *parser) word(stop string) (w string, wild, escaped bool, err error) {
	start := p.pos
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if isSpace(c) || c == '(' || c == ')' || c == '"' || strings.IndexByte(stop, c) >= 0 {
			break
		}
		if c == '\\' {
			if p.pos+1 >= len(p.s) {
				return "", false, false, p.errf(p.pos, "backslash at the end of the query")
			}
			escaped = true
			p.pos += 2
			continue
		}
		if c == '*' || c == '?' {
			wild = true
		}
		p.pos++
	}
	raw := p.s[start:p.pos]
	if wild {
		return normPattern(raw), true, escaped, nil
	}
	return unescape(raw), false, escaped, nil
}

// normPattern keeps backslashes only where they mean something in a
// pattern (before *, ? and \), so equal patterns have equal text.
func normPattern(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '\\' && i+1 < len(raw) {
			i++
			c = raw[i]
			if c == '*' || c == '?' || c == '\\' {
				b.WriteByte('\\')
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

func unescape(raw string) string {
	if strings.IndexByte(raw, '\\') < 0 {
		return raw
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' && i+1 < len(raw) {
			i++
		}
		b.WriteByte(raw[i])
	}
	return b.String()
}

func validField(name string) bool {
	if name == "" || name[0] == '.' || name[len(name)-1] == '.' || strings.Contains(name, "..") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '@' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func parseNum(s string) (float64, bool) {
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || s == "" || strings.ContainsAny(s, "xXpP_") || strings.EqualFold(s, "nan") || strings.Contains(strings.ToLower(s), "inf") {
		return 0, false
	}
	return n, true
}

func parseTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// newTerm types field:value by the field's ECS type.
func newTerm(field, v string, wild bool, pos int) (Expr, error) {
	t := &Term{Field: field, Value: v, Wildcard: wild, Type: FieldType(field)}
	fail := func(format string, args ...any) (Expr, error) {
		return nil, &Error{pos, fmt.Sprintf(format, args...)}
	}
	if wild {
		switch t.Type {
		case TypeNumber, TypeDate, TypeBool:
			return fail("wildcards are not allowed on %s", field)
		}
		return t, nil
	}
	t.Num, t.Numeric = parseNum(v)
	switch t.Type {
	case TypeNumber:
		if !t.Numeric {
			return fail("%s needs a number, not %q", field, v)
		}
	case TypeDate:
		tm, ok := parseTime(v)
		if !ok {
			return fail("%s needs an RFC 3339 time (2026-01-02T15:04:05Z), not %q", field, v)
		}
		t.Time = tm
	case TypeBool:
		if v != "true" && v != "false" {
			return fail("%s needs true or false, not %q", field, v)
		}
	case TypeIP:
		pf, ok := parseNet(v)
		if !ok {
			return fail("%s needs an IP address or CIDR network, not %q", field, v)
		}
		t.Prefix = pf
	}
	return t, nil
}

// parseNet parses an address or CIDR network as stored addresses are
// compared (IPv4-mapped as IPv4, no zone).
func parseNet(v string) (netip.Prefix, bool) {
	p, err := ipnet.Parse(v)
	return p, err == nil
}
