package detect

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Limits on conditions: a hostile rule costs little to reject.
const (
	// MaxConditionLen is the longest condition accepted, in bytes.
	MaxConditionLen = 8192
	// MaxConditionDepth bounds nesting of parentheses and nots.
	MaxConditionDepth = 64
)

// Expr is a parsed Sigma condition: *AndExpr, *OrExpr, *NotExpr,
// *IdentExpr or *OfExpr.
type Expr interface {
	// String renders the condition in canonical form; parsing it again
	// gives the same String.
	String() string
	expr()
}

// AndExpr holds when every one of X holds.
type AndExpr struct{ X []Expr }

// OrExpr holds when any of X holds.
type OrExpr struct{ X []Expr }

// NotExpr holds when X does not.
type NotExpr struct{ X Expr }

// IdentExpr is a search identifier.
type IdentExpr struct{ Name string }

// OfExpr is "1 of PATTERN", "all of PATTERN", "1 of them" or "all of
// them". Names are the search identifiers it covers, resolved at parse
// time.
type OfExpr struct {
	All     bool
	Pattern string // "them" for them
	Names   []string
}

func (*AndExpr) expr()   {}
func (*OrExpr) expr()    {}
func (*NotExpr) expr()   {}
func (*IdentExpr) expr() {}
func (*OfExpr) expr()    {}

// String implements Expr.
func (e *AndExpr) String() string { return join(e.X, " and ", false) }

// String implements Expr.
func (e *OrExpr) String() string { return join(e.X, " or ", true) }

// String implements Expr.
func (e *NotExpr) String() string { return "not " + paren(e.X, false) }

// String implements Expr.
func (e *IdentExpr) String() string { return e.Name }

// String implements Expr.
func (e *OfExpr) String() string {
	if e.All {
		return "all of " + e.Pattern
	}
	return "1 of " + e.Pattern
}

func join(xs []Expr, sep string, inOr bool) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = paren(x, inOr)
	}
	return strings.Join(parts, sep)
}

// paren writes x in parentheses where the parser needs them to read the
// same tree back: around an or, or an and under an and or a not. An and
// under an or needs none (and binds tighter), and writing them would
// make the canonical form nest deeper than the condition it came from:
// a or b and (c or d and (…)) had twice the parentheses, and past half
// of MaxConditionDepth the canonical form no longer parsed.
func paren(x Expr, inOr bool) string {
	switch x.(type) {
	case *OrExpr:
		return "(" + x.String() + ")"
	case *AndExpr:
		if !inOr {
			return "(" + x.String() + ")"
		}
	}
	return x.String()
}

// ParseCondition parses a Sigma condition over the given search
// identifiers. Operator precedence, loosest first: or, and, not, "x of",
// parentheses. Keywords are case-insensitive. An identifier that names no
// search, or a pattern that matches none, is an error, as is Sigma 1.0's
// aggregation syntax ("| count() by x > 5"), which correlation rules
// replace.
func ParseCondition(cond string, names []string) (Expr, error) {
	if len(cond) > MaxConditionLen {
		return nil, fmt.Errorf("longer than %d bytes", MaxConditionLen)
	}
	toks, err := lexCondition(cond)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, errors.New("empty condition")
	}
	p := &condParser{toks: toks, names: names}
	e, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("unexpected %q at offset %d", p.toks[p.pos].text, p.toks[p.pos].off)
	}
	// String puts a space around every operator, so a condition near the
	// limit written without them ("(a or b)and(c or d)") can have a
	// longer canonical form, which would not parse.
	if n := len(e.String()); n > MaxConditionLen {
		return nil, fmt.Errorf("longer than %d bytes as written canonically (%d)", MaxConditionLen, n)
	}
	return e, nil
}

type ctok struct {
	text string
	off  int
}

func lexCondition(s string) ([]ctok, error) {
	var out []ctok
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			out = append(out, ctok{s[i : i+1], i})
			i++
		case c == '|':
			return nil, fmt.Errorf("'|' at offset %d: aggregations (| count() …) are Sigma 1.0 syntax; write a correlation rule", i)
		case isIdentByte(c):
			j := i
			for j < len(s) && isIdentByte(s[j]) {
				j++
			}
			out = append(out, ctok{s[i:j], i})
			i = j
		default:
			return nil, fmt.Errorf("unexpected character %q at offset %d", c, i)
		}
	}
	return out, nil
}

func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '*' || c == '-' || c == '.' || c == '?'
}

type condParser struct {
	toks  []ctok
	pos   int
	names []string
}

func (p *condParser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos].text
	}
	return ""
}

func (p *condParser) is(word string) bool { return strings.EqualFold(p.peek(), word) }

func (p *condParser) or(depth int) (Expr, error) {
	x, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	xs := []Expr{x}
	for p.is("or") {
		p.pos++
		y, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		xs = append(xs, y)
	}
	if len(xs) == 1 {
		return x, nil
	}
	return &OrExpr{X: xs}, nil
}

func (p *condParser) and(depth int) (Expr, error) {
	x, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	xs := []Expr{x}
	for p.is("and") {
		p.pos++
		y, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		xs = append(xs, y)
	}
	if len(xs) == 1 {
		return x, nil
	}
	return &AndExpr{X: xs}, nil
}

func (p *condParser) unary(depth int) (Expr, error) {
	if depth > MaxConditionDepth {
		return nil, fmt.Errorf("nested deeper than %d", MaxConditionDepth)
	}
	if p.pos >= len(p.toks) {
		return nil, errors.New("unexpected end of condition")
	}
	t := p.toks[p.pos]
	switch {
	case strings.EqualFold(t.text, "not"):
		p.pos++
		x, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &NotExpr{X: x}, nil
	case t.text == "(":
		p.pos++
		x, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, fmt.Errorf("missing ')' for '(' at offset %d", t.off)
		}
		p.pos++
		return x, nil
	case t.text == ")":
		return nil, fmt.Errorf("unexpected ')' at offset %d", t.off)
	case p.pos+1 < len(p.toks) && strings.EqualFold(p.toks[p.pos+1].text, "of"):
		return p.of()
	case isKeyword(t.text):
		return nil, fmt.Errorf("unexpected %q at offset %d", t.text, t.off)
	}
	p.pos++
	if strings.ContainsAny(t.text, "*?") {
		return nil, fmt.Errorf("%q at offset %d: a pattern needs '1 of' or 'all of'", t.text, t.off)
	}
	for _, n := range p.names {
		if n == t.text {
			return &IdentExpr{Name: t.text}, nil
		}
	}
	return nil, fmt.Errorf("%q at offset %d names no search identifier", t.text, t.off)
}

func isKeyword(s string) bool {
	for _, k := range []string{"and", "or", "not", "of", "them"} {
		if strings.EqualFold(s, k) {
			return true
		}
	}
	return false
}

func (p *condParser) of() (Expr, error) {
	q := p.toks[p.pos]
	e := &OfExpr{}
	switch strings.ToLower(q.text) {
	case "1", "any":
	case "all":
		e.All = true
	default:
		return nil, fmt.Errorf("%q of at offset %d: want '1 of' or 'all of'", q.text, q.off)
	}
	p.pos += 2 // quantifier, "of"
	if p.pos >= len(p.toks) {
		return nil, errors.New("'of' needs a pattern or 'them'")
	}
	t := p.toks[p.pos]
	p.pos++
	if strings.EqualFold(t.text, "them") {
		e.Pattern = "them"
		for _, n := range p.names {
			if !strings.HasPrefix(n, "_") {
				e.Names = append(e.Names, n)
			}
		}
		if len(e.Names) == 0 {
			return nil, errors.New("'them' covers no search identifier")
		}
		return e, nil
	}
	if t.text == "(" || t.text == ")" || isKeyword(t.text) {
		return nil, fmt.Errorf("'of' at offset %d needs a pattern or 'them'", t.off)
	}
	e.Pattern = t.text
	for _, n := range p.names {
		if ok, _ := path.Match(escapeMatch(t.text), n); ok {
			e.Names = append(e.Names, n)
		}
	}
	if len(e.Names) == 0 {
		return nil, fmt.Errorf("pattern %q at offset %d matches no search identifier", t.text, t.off)
	}
	return e, nil
}

// escapeMatch makes a condition pattern (only * is a wildcard) safe for
// path.Match, which also treats ?, [ and \ specially.
func escapeMatch(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '?', '[', ']', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
