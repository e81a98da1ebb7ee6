package query

import "strings"

// The canonical form: single spaces, lower-case operators, parentheses
// only where precedence needs them, a value bare when that is unambiguous
// and quoted otherwise, and terms on one field joined by and/or/not written
// as one field group (user.name:(alice or bob)).

// String is the expression in the canonical form above: the form the
// collector records a search under in its own trail, so one search reads
// the same whoever typed it and however.
func (e *And) String() string { return render(e, "") }

// String: see And.String.
func (e *Or) String() string { return render(e, "") }

// String: see And.String.
func (e *Not) String() string { return render(e, "") }

// String: see And.String.
func (e *Term) String() string { return render(e, "") }

// String: see And.String.
func (e *Exists) String() string { return e.Field + ":*" }

// String: see And.String.
func (e *Range) String() string {
	return e.Field + " " + e.Op.String() + " " + literal(e.Value, true)
}

// String: see And.String.
func (e *Text) String() string {
	if e.Wildcard {
		return pattern(e.Value)
	}
	return literal(e.Value, false)
}

// render writes e; inside a field group field is the group's field and
// terms are written as bare values.
func render(e Expr, field string) string {
	switch e := e.(type) {
	case *And:
		return join(e, e.X, " and ", field)
	case *Or:
		return join(e, e.X, " or ", field)
	case *Not:
		return "not " + paren(e.X, field, func(x Expr) bool {
			_, isAnd := x.(*And)
			_, isOr := x.(*Or)
			return isAnd || isOr
		})
	case *Term:
		var v string
		if e.Wildcard {
			v = pattern(e.Value)
		} else {
			v = literal(e.Value, true)
		}
		if field != "" {
			return v
		}
		return e.Field + ":" + v
	default:
		return e.String()
	}
}

func join(e Expr, xs []Expr, op, field string) string {
	if field == "" {
		if f := groupField(e); f != "" {
			return f + ":(" + join(e, xs, op, f) + ")"
		}
	}
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = paren(x, field, func(x Expr) bool {
			// An and inside an or needs none; the same operator never
			// nests in parsed queries, but a built one is kept as built.
			_, isOr := x.(*Or)
			_, isAnd := x.(*And)
			return isOr || (isAnd && op == " and ")
		})
	}
	return strings.Join(parts, op)
}

func paren(x Expr, field string, need func(Expr) bool) string {
	// A field group is already parenthesised.
	if need(x) && (field != "" || groupField(x) == "") {
		return "(" + render(x, field) + ")"
	}
	return render(x, field)
}

// groupField returns the field shared by every leaf of e if all of them
// are Terms on one field, and "" otherwise.
func groupField(e Expr) string {
	f := ""
	var walk func(Expr) bool
	walk = func(e Expr) bool {
		switch e := e.(type) {
		case *And:
			for _, x := range e.X {
				if !walk(x) {
					return false
				}
			}
			return true
		case *Or:
			for _, x := range e.X {
				if !walk(x) {
					return false
				}
			}
			return true
		case *Not:
			return walk(e.X)
		case *Term:
			if f == "" {
				f = e.Field
			}
			return f == e.Field
		}
		return false
	}
	if !walk(e) {
		return ""
	}
	return f
}

// safe reports whether c may appear unescaped in a bare value; a colon
// only where a value is expected (after field: or an operator), since a
// bare word followed by one is a field name.
func safe(c byte, inValue bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	case c >= 0x80:
		return true
	case c == ':' || c == '<' || c == '>':
		return inValue
	}
	return strings.IndexByte("._-/@+,;=!#$%&'~|{}[]^`", c) >= 0
}

func isKeyword(s string) bool {
	return strings.EqualFold(s, "and") || strings.EqualFold(s, "or") || strings.EqualFold(s, "not")
}

// literal writes a value that has no wildcards: bare if that reads back
// the same, quoted otherwise.
func literal(v string, inValue bool) string {
	bare := v != "" && !isKeyword(v)
	for i := 0; bare && i < len(v); i++ {
		bare = safe(v[i], inValue)
	}
	if bare {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if v[i] == '"' || v[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
	return b.String()
}

// pattern writes a wildcard pattern unquoted, escaping what would end or
// change the word.
func pattern(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\' && i+1 < len(p):
			b.WriteByte(c)
			i++
			b.WriteByte(p[i])
		case c == '*' || c == '?':
			b.WriteByte(c)
		case safe(c, false):
			b.WriteByte(c)
		default:
			b.WriteByte('\\')
			b.WriteByte(c)
		}
	}
	return b.String()
}
