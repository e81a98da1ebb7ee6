package detect

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/trailguard/trailguard/internal/glob"
)

// cnode is a compiled condition.
type cnode interface{ eval(e *evalCtx) bool }

type cAnd []cnode
type cOr []cnode
type cNot struct{ x cnode }
type cAtom int32
type cConst bool

func (n cAnd) eval(e *evalCtx) bool {
	for _, x := range n {
		if !x.eval(e) {
			return false
		}
	}
	return true
}

func (n cOr) eval(e *evalCtx) bool {
	for _, x := range n {
		if x.eval(e) {
			return true
		}
	}
	return false
}

func (n cNot) eval(e *evalCtx) bool   { return !n.x.eval(e) }
func (n cAtom) eval(e *evalCtx) bool  { return e.atom(int32(n)) }
func (n cConst) eval(e *evalCtx) bool { return bool(n) }

// compiler turns rules into atoms, field programs and condition trees
// shared by one Engine.
type compiler struct {
	x        *extractor
	fields   []fieldDef
	fieldIdx map[string]int32
	atoms    []atom
	atomIdx  map[string]int32
}

func newCompiler() *compiler {
	return &compiler{x: newExtractor(), fieldIdx: map[string]int32{}, atomIdx: map[string]int32{}}
}

func (c *compiler) field(name string) int32 {
	if i, ok := c.fieldIdx[name]; ok {
		return i
	}
	i := int32(len(c.fields))
	c.fields = append(c.fields, defineField(c.x, name))
	c.fieldIdx[name] = i
	return i
}

func (c *compiler) atom(a atom) int32 {
	a.key = fmt.Sprintf("%d|%d|%t|%v|%c|%v|%d", a.kind, a.field, a.cased, a.cidr, a.op, a.num, a.ref)
	if a.kind == aStrings {
		// Members in a canonical order, so the same list shares one atom.
		keys := make([]string, len(a.members))
		for i, m := range a.members {
			keys[i] = fmt.Sprintf("%d:%q:%v", m.kind, m.lit, m.glob)
		}
		sort.Strings(keys)
		a.key += "|" + strings.Join(keys, "|")
	}
	if a.re != nil {
		a.key += "|re:" + a.re.String()
	}
	if i, ok := c.atomIdx[a.key]; ok {
		return i
	}
	i := int32(len(c.atoms))
	c.atoms = append(c.atoms, a)
	c.atomIdx[a.key] = i
	return i
}

// compileDetection compiles a detection rule's condition.
func (c *compiler) compileDetection(d *Detection, web bool) (cnode, error) {
	searches := map[string]cnode{}
	for _, s := range d.Searches {
		var alts cOr
		for _, tests := range s.Alternatives {
			var all cAnd
			for _, t := range tests {
				n, err := c.fieldTest(t, web)
				if err != nil {
					return nil, err
				}
				all = append(all, n)
			}
			alts = append(alts, simplifyAnd(all))
		}
		searches[s.Name] = simplifyOr(alts)
	}
	return c.expr(d.Condition, searches), nil
}

func simplifyAnd(n cAnd) cnode {
	if len(n) == 1 {
		return n[0]
	}
	return n
}

func simplifyOr(n cOr) cnode {
	if len(n) == 1 {
		return n[0]
	}
	return n
}

func (c *compiler) expr(x Expr, s map[string]cnode) cnode {
	switch x := x.(type) {
	case *AndExpr:
		var out cAnd
		for _, y := range x.X {
			out = append(out, c.expr(y, s))
		}
		return out
	case *OrExpr:
		var out cOr
		for _, y := range x.X {
			out = append(out, c.expr(y, s))
		}
		return out
	case *NotExpr:
		return cNot{c.expr(x.X, s)}
	case *IdentExpr:
		return s[x.Name]
	case *OfExpr:
		var xs []cnode
		for _, n := range x.Names {
			xs = append(xs, s[n])
		}
		if x.All {
			return simplifyAnd(cAnd(xs))
		}
		return simplifyOr(cOr(xs))
	}
	return cConst(false)
}

// modifiers of one field test, validated.
type mods struct {
	transforms []string // base64, base64offset, utf16le, utf16be, utf16, windash, in order
	match      string   // contains, startswith, endswith, or ""
	all, cased bool
	re         bool
	reFlags    string
	cidr       bool
	exists     bool
	cmp        string // gt, gte, lt, lte
	neq        bool
	fieldref   bool
}

func parseMods(t *FieldTest) (mods, error) {
	var m mods
	for _, mod := range t.Modifiers {
		switch mod {
		case "contains", "startswith", "endswith":
			if m.match != "" {
				return m, fmt.Errorf("modifiers %s and %s exclude each other", m.match, mod)
			}
			m.match = mod
		case "all":
			m.all = true
		case "cased":
			m.cased = true
		case "re":
			m.re = true
		case "i", "m", "s":
			if !m.re {
				return m, fmt.Errorf("modifier %s belongs after re", mod)
			}
			m.reFlags += mod
		case "cidr":
			m.cidr = true
		case "exists":
			m.exists = true
		case "gt", "gte", "lt", "lte":
			if m.cmp != "" {
				return m, fmt.Errorf("modifiers %s and %s exclude each other", m.cmp, mod)
			}
			m.cmp = mod
		case "neq":
			m.neq = true
		case "fieldref":
			m.fieldref = true
		case "base64", "base64offset", "utf16le", "utf16be", "utf16", "wide", "windash":
			if mod == "wide" {
				mod = "utf16le"
			}
			m.transforms = append(m.transforms, mod)
		case "expand":
			return m, fmt.Errorf("modifier expand needs placeholder values, which trailguard does not define: write the values out")
		case "minute", "hour", "day", "week", "month", "year":
			return m, fmt.Errorf("time modifier %s is not supported", mod)
		case "":
			return m, fmt.Errorf("empty modifier (a stray '|')")
		default:
			return m, fmt.Errorf("unknown modifier %q", mod)
		}
	}
	kinds := 0
	for _, b := range []bool{m.re, m.cidr, m.exists, m.cmp != "", m.fieldref} {
		if b {
			kinds++
		}
	}
	if kinds > 1 {
		return m, fmt.Errorf("modifiers %s do not combine", strings.Join(t.Modifiers, "|"))
	}
	if kinds == 1 && !m.fieldref && (m.match != "" || len(m.transforms) > 0) {
		return m, fmt.Errorf("modifiers %s do not combine", strings.Join(t.Modifiers, "|"))
	}
	if m.fieldref && (m.match != "" || len(m.transforms) > 0) {
		return m, fmt.Errorf("fieldref compares whole values; it does not combine with %s", strings.Join(t.Modifiers, "|"))
	}
	return m, nil
}

// fieldTest compiles one "field|modifiers: values" entry.
func (c *compiler) fieldTest(t *FieldTest, web bool) (cnode, error) {
	errf := func(format string, args ...any) error {
		return &posError{line: t.line, col: t.col, msg: fmt.Sprintf("%s: %s", t.label(), fmt.Sprintf(format, args...))}
	}
	m, err := parseMods(t)
	if err != nil {
		return nil, errf("%v", err)
	}
	if t.Field == "" && (m.re || m.cidr || m.exists || m.cmp != "" || m.fieldref || m.neq || m.match != "") {
		return nil, errf("keyword searches take only the all and cased modifiers")
	}
	f := c.field(resolveField(t.Field, web))
	if t.Null {
		if len(t.Modifiers) > 0 {
			return nil, errf("null takes no modifiers")
		}
		return cAtom(c.atom(atom{kind: aNull, field: f})), nil
	}
	var atoms []cnode
	switch {
	case m.exists:
		if len(t.Values) != 1 || !t.Values[0].Bool {
			return nil, errf("exists wants true or false")
		}
		want := 0.0
		if t.Values[0].Text == "true" {
			want = 1
		}
		return cAtom(c.atom(atom{kind: aExists, field: f, num: want})), nil
	case m.cmp != "":
		for _, v := range t.Values {
			n, err := strconv.ParseFloat(v.Text, 64)
			if err != nil || n != n {
				return nil, errf("%s wants a number, got %q", m.cmp, v.Text)
			}
			op := map[string]byte{"lt": '<', "lte": 'l', "gt": '>', "gte": 'g'}[m.cmp]
			atoms = append(atoms, cAtom(c.atom(atom{kind: aNumCmp, field: f, op: op, num: n})))
		}
	case m.cidr:
		for _, v := range t.Values {
			p, err := netip.ParsePrefix(strings.TrimSpace(v.Text))
			if err != nil {
				a, aerr := netip.ParseAddr(strings.TrimSpace(v.Text))
				if aerr != nil {
					return nil, errf("cidr wants a network such as 10.0.0.0/8, got %q", v.Text)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			atoms = append(atoms, cAtom(c.atom(atom{kind: aCIDR, field: f, cidr: p.Masked()})))
		}
	case m.re:
		for _, v := range t.Values {
			flags := m.reFlags
			if flags != "" {
				flags = "(?" + flags + ")"
			}
			if len(v.Text) > 4096 {
				return nil, errf("regular expression longer than 4096 bytes")
			}
			re, err := regexp.Compile(flags + v.Text)
			if err != nil {
				return nil, errf("regular expression %q: %v (Go's RE2 syntax: no lookarounds or backreferences)", v.Text, err)
			}
			atoms = append(atoms, cAtom(c.atom(atom{kind: aRegexp, field: f, re: re})))
		}
	case m.fieldref:
		for _, v := range t.Values {
			ref := c.field(resolveField(v.Text, web))
			atoms = append(atoms, cAtom(c.atom(atom{kind: aFieldRef, field: f, ref: ref, cased: m.cased})))
		}
	default:
		var all []member
		for _, v := range t.Values {
			variants, literal, err := transform(v.Text, m.transforms)
			if err != nil {
				return nil, errf("%v", err)
			}
			var ms []member
			for _, s := range variants {
				ms = append(ms, stringMember(s, literal, m, t.Field == ""))
			}
			if m.all {
				atoms = append(atoms, cAtom(c.atom(atom{kind: aStrings, field: f, cased: m.cased, members: ms})))
			}
			all = append(all, ms...)
		}
		if !m.all {
			atoms = append(atoms, cAtom(c.atom(atom{kind: aStrings, field: f, cased: m.cased, members: all})))
		}
	}
	var n cnode
	if m.all {
		n = simplifyAnd(cAnd(atoms))
	} else {
		n = simplifyOr(cOr(atoms))
	}
	if m.neq {
		n = cNot{n}
	}
	return n, nil
}

func (t *FieldTest) label() string {
	if t.Field == "" {
		return "keywords"
	}
	if len(t.Modifiers) > 0 {
		return t.Field + "|" + strings.Join(t.Modifiers, "|")
	}
	return t.Field
}

// stringMember builds the test for one string value.
func stringMember(v string, literal bool, m mods, keyword bool) member {
	var parts []glob.Part
	if literal {
		if v != "" {
			parts = []glob.Part{{Lit: v}}
		}
	} else {
		parts, _ = parsePattern(v)
	}
	star := glob.Part{Star: true}
	match := m.match
	if keyword {
		match = "contains" // a keyword matches anywhere in a value
	}
	switch match {
	case "contains":
		parts = append(append([]glob.Part{star}, parts...), star)
	case "startswith":
		parts = append(parts, star)
	case "endswith":
		parts = append([]glob.Part{star}, parts...)
	}
	parts = mergeStars(parts)
	if !m.cased {
		for i := range parts {
			parts[i].Lit = lowerASCII(parts[i].Lit)
		}
	}
	switch {
	case len(parts) == 0:
		return member{kind: aEq}
	case len(parts) == 1 && parts[0].Lit != "":
		return member{kind: aEq, lit: parts[0].Lit}
	case len(parts) == 1 && parts[0].Star:
		return member{kind: aAny}
	case len(parts) == 2 && parts[0].Lit != "" && parts[1].Star:
		return member{kind: aPrefix, lit: parts[0].Lit}
	case len(parts) == 2 && parts[0].Star && parts[1].Lit != "":
		return member{kind: aSuffix, lit: parts[1].Lit}
	case len(parts) == 3 && parts[0].Star && parts[1].Lit != "" && parts[2].Star:
		return member{kind: aContains, lit: parts[1].Lit}
	}
	return member{kind: aGlob, glob: parts}
}

func mergeStars(parts []glob.Part) []glob.Part {
	out := parts[:0:0]
	for _, p := range parts {
		if p.Star && len(out) > 0 && out[len(out)-1].Star {
			continue
		}
		out = append(out, p)
	}
	return out
}

// transform applies Sigma's transformation modifiers in order. literal
// reports that the results are not patterns (they passed through base64,
// whose output has no wildcards).
func transform(v string, ts []string) (out []string, literal bool, err error) {
	out = []string{v}
	for _, t := range ts {
		var next []string
		for _, s := range out {
			switch t {
			case "windash":
				w, err := windash(s)
				if err != nil {
					return nil, false, err
				}
				next = append(next, w...)
			case "utf16le", "utf16be", "utf16":
				next = append(next, utf16Encode(s, t))
			case "base64":
				if _, wild := parsePattern(s); wild && !literal {
					return nil, false, fmt.Errorf("base64 of a value with wildcards cannot match")
				}
				next = append(next, base64.StdEncoding.EncodeToString([]byte(unescapePattern(s, literal))))
			case "base64offset":
				if _, wild := parsePattern(s); wild && !literal {
					return nil, false, fmt.Errorf("base64offset of a value with wildcards cannot match")
				}
				next = append(next, base64Offsets(unescapePattern(s, literal))...)
			}
		}
		if t == "base64" || t == "base64offset" {
			literal = true
		}
		out = next
	}
	return out, literal, nil
}

// unescapePattern resolves a pattern's escapes when it has no wildcards.
func unescapePattern(s string, literal bool) string {
	if literal {
		return s
	}
	parts, _ := parsePattern(s)
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.Lit)
	}
	return b.String()
}

// base64Offsets returns the three encodings of v as it may appear at any
// offset inside a longer base64 text, with the characters that depend on
// the neighbouring bytes cut off.
func base64Offsets(v string) []string {
	starts := [3]int{0, 2, 3}
	cuts := [3]int{0, 3, 2} // characters cut from the end, by (len+i)%3
	out := make([]string, 0, 3)
	for i := 0; i < 3; i++ {
		full := base64.StdEncoding.EncodeToString(append(make([]byte, i), v...))
		end := len(full) - cuts[(len(v)+i)%3]
		if starts[i] < end {
			out = append(out, full[starts[i]:end])
		}
	}
	return out
}

func utf16Encode(s, form string) string {
	u := utf16.Encode([]rune(s))
	var b []byte
	if form == "utf16" {
		b = append(b, 0xFF, 0xFE)
		form = "utf16le"
	}
	for _, r := range u {
		if form == "utf16be" {
			b = append(b, byte(r>>8), byte(r))
		} else {
			b = append(b, byte(r), byte(r>>8))
		}
	}
	return string(b)
}

// windash returns every variant of s with each '-' or '/' replaced by any
// of the characters Windows accepts as an option prefix.
func windash(s string) ([]string, error) {
	dashes := []string{"-", "/", "\u2013", "\u2014", "\u2015"}
	n := strings.Count(s, "-") + strings.Count(s, "/")
	if n > 4 {
		return nil, fmt.Errorf("windash on a value with %d dashes would make %d variants (at most 4 dashes)", n, pow(5, n))
	}
	out := []string{""}
	for _, r := range s {
		ch := string(r)
		if ch == "-" || ch == "/" {
			var next []string
			for _, o := range out {
				for _, d := range dashes {
					next = append(next, o+d)
				}
			}
			out = next
			continue
		}
		for i := range out {
			out[i] += ch
		}
	}
	return out, nil
}

func pow(a, b int) int {
	r := 1
	for ; b > 0; b-- {
		r *= a
	}
	return r
}
