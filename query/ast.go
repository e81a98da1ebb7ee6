// Package query is trailguard's search language: a small, KQL-like
// language for audit events, as users know it from Kibana.
//
//	user.name:alice and event.outcome:failure and not source.ip:10.0.0.0/8
//	url.path:/api/* and http.response.status_code >= 400
//	@timestamp >= 2026-01-01T00:00:00Z and event.action:(authn_login_fail or authz_fail)
//	"brute force"
//
// # Syntax
//
//   - field:value matches events whose field equals value. Field names are
//     ECS dotted names (letters, digits, '_', '@', '.', '-').
//   - Unquoted values may hold the wildcards * (any run of characters) and
//     ? (one character); a backslash makes the next character literal
//     (\*, \(, \ , \\). Quoted values ("a phrase", with \" and \\) are
//     always literal.
//   - field:* matches events that have the field (with a non-null value).
//   - field:(a or b and not c) applies the field to every value of the group.
//   - field < v, <=, >, >= compare numbers, RFC 3339 times (on date fields
//     such as @timestamp; a bare date 2026-01-02 means its midnight UTC) or,
//     on other fields, strings byte-wise.
//   - and, or, not (any case) combine terms; not binds tighter than and,
//     and tighter than or; parentheses group. They are never field names.
//   - A value with no field is free text (see Text).
//
// Values are checked against the field's ECS type when the query is parsed:
// a number field needs a number, a date field an RFC 3339 time, a boolean
// field true or false, and an IP field (source.ip, client.ip,
// destination.ip, host.ip, …) an address or a CIDR network (10.0.0.0/8,
// 2001:db8::/32), which matches every address in it. Field values are
// matched case-sensitively, as Elasticsearch matches keyword fields.
//
// # Errors and limits
//
// Parse returns an *Error holding the byte offset (from 0) of the problem in
// the query. Queries longer than MaxLen bytes or nesting parentheses and
// nots deeper than MaxDepth (as written, or in the canonical form String
// gives) are rejected, so hostile input costs little and every query
// accepted has a canonical form that Parse accepts too.
//
// # Evaluation
//
// The parsed Expr is an exported AST (And, Or, Not, Term, Exists, Range,
// Text): Match evaluates it in memory against one event flattened by
// Flatten (the live tail does this), and package index compiles the same
// nodes to SQL with the same meaning.
package query

import (
	"net/netip"
	"strings"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/glob"
)

// Expr is a parsed query: one of *And, *Or, *Not, *Term, *Exists, *Range
// or *Text.
type Expr interface {
	// Match reports whether the event doc matches the query.
	Match(doc Doc) bool
	// String renders the query in canonical form; parsing it gives an
	// expression with the same String.
	String() string
	node()
}

// And matches when every one of X matches (at least two).
type And struct{ X []Expr }

// Or matches when any of X matches (at least two).
type Or struct{ X []Expr }

// Not matches when X does not.
type Not struct{ X Expr }

// Term is field:value.
//
// A literal value matches a field value equal to it: a string with the same
// bytes, a number with the same numeric value (when Value is a number), or
// a boolean with the same name (true, false). On date fields Time holds the
// parsed value and a field value matches at the same instant; on IP fields
// Prefix holds the network (a single address is a full-length prefix) and
// every address inside it matches.
//
// With Wildcard set, Value is a pattern that matches string field values
// only: * matches any run of characters, ? exactly one, and a backslash
// makes the next byte literal (see Pattern).
type Term struct {
	Field    string
	Value    string
	Wildcard bool

	// Type is FieldType(Field).
	Type Type
	// Numeric reports that Value is a number (always so on TypeNumber
	// fields); Num is its value, which numeric field values are compared
	// with.
	Numeric bool
	Num     float64
	// Time is the instant on date fields (TypeDate).
	Time time.Time
	// Prefix is the network on IP fields for a literal value.
	Prefix netip.Prefix
}

// Exists is field:*, which matches events where the field is present with
// a value other than null or an empty array.
type Exists struct{ Field string }

// Op is a range comparison operator.
type Op int

// The range operators.
const (
	Lt Op = iota // <
	Le           // <=
	Gt           // >
	Ge           // >=
)

// String returns the operator as written in a query.
func (o Op) String() string {
	switch o {
	case Lt:
		return "<"
	case Le:
		return "<="
	case Gt:
		return ">"
	default:
		return ">="
	}
}

// RangeKind says how a Range compares.
type RangeKind int

// The kinds of range comparison.
const (
	// RangeNumber compares numeric field values with Num.
	RangeNumber RangeKind = iota
	// RangeTime compares RFC 3339 string field values with Time.
	RangeTime
	// RangeString compares string field values with Value, byte-wise.
	RangeString
)

// Range is field op value. Its Kind is fixed at parse time: RangeTime on
// date fields, RangeNumber on number fields, and on other fields
// RangeNumber if Value is a number, RangeTime if it is an RFC 3339 time and
// RangeString otherwise. Field values of another JSON type never match.
type Range struct {
	Field string
	Op    Op
	Value string
	Kind  RangeKind
	Num   float64
	Time  time.Time
}

// Text is free text, a value with no field. It matches an event if any
// string value in it (at any depth, array elements included, never a key)
// or any integer value, written in decimal, contains Value as a substring,
// ignoring ASCII case. With Wildcard set, Value is a pattern as in Term,
// matched anywhere inside the value: admin*x is the substring test for
// "admin", any characters, "x".
type Text struct {
	Value    string
	Wildcard bool
}

func (*And) node()    {}
func (*Or) node()     {}
func (*Not) node()    {}
func (*Term) node()   {}
func (*Exists) node() {}
func (*Range) node()  {}
func (*Text) node()   {}

// Type is the kind of value a field holds, from its ECS definition.
type Type int

// The field types.
const (
	// TypeUnknown is a field ECS does not define (labels.*, trailguard.*):
	// literal values match strings, numbers and booleans alike.
	TypeUnknown Type = iota
	// TypeString is keyword, wildcard, text and the like.
	TypeString
	// TypeNumber is long, integer, float and the like.
	TypeNumber
	// TypeDate is an RFC 3339 time.
	TypeDate
	// TypeIP is an IPv4 or IPv6 address.
	TypeIP
	// TypeBool is true or false.
	TypeBool
)

// FieldType returns the type ECS gives the dotted field name.
func FieldType(name string) Type {
	t, ok := event.ECSType(name)
	if !ok {
		return TypeUnknown
	}
	switch t {
	case "keyword", "constant_keyword", "wildcard", "text", "match_only_text":
		return TypeString
	case "long", "integer", "short", "byte", "float", "double", "half_float", "scaled_float", "unsigned_long":
		return TypeNumber
	case "date":
		return TypeDate
	case "ip":
		return TypeIP
	case "boolean":
		return TypeBool
	}
	return TypeUnknown
}

// PatternPart is one piece of a wildcard pattern: a literal run of bytes
// (Lit), or a single wildcard (Star for *, One for ?). It is the part the
// one matcher of wildcards takes, Sigma rules' (detect) as well as the
// query language's.
type PatternPart = glob.Part

// Pattern splits a wildcard pattern (Term.Value or Text.Value with
// Wildcard set) into literal runs and wildcards, resolving backslash
// escapes; compilers to other pattern languages (SQL GLOB, LIKE) start here.
func Pattern(p string) []PatternPart {
	var parts []PatternPart
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, PatternPart{Lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '\\':
			if i+1 < len(p) {
				i++
				lit.WriteByte(p[i])
			}
		case '*':
			flush()
			parts = append(parts, PatternPart{Star: true})
		case '?':
			flush()
			parts = append(parts, PatternPart{One: true})
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return parts
}
