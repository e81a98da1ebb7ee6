package detect

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/trailguard/trailguard/internal/glob"
)

// An atom is one elementary test of one field: equals, contains, a
// pattern, a regular expression, a CIDR, a comparison, existence. Equal
// atoms of all rules are shared, every atom is evaluated at most once per
// event, and all string tests of a field run together in one pass (see
// fieldProg), so a hundred rules cost little more than ten.
type atomKind uint8

const (
	aEq       atomKind = iota // whole value equals lit
	aContains                 // lit anywhere
	aPrefix                   // value starts with lit
	aSuffix                   // value ends with lit
	aGlob                     // Sigma wildcards
	aAny                      // '*': any non-null value
	// aStrings holds when any of its members (the kinds above) holds: a
	// field's list of values is one atom, decided by the field's program.
	aStrings
	aRegexp
	aCIDR
	aNumCmp
	aExists   // field present (num: 1) or absent (num: 0)
	aNull     // field absent or null
	aFieldRef // equals another field
)

type atom struct {
	kind    atomKind
	field   int32 // index in engine.fields
	cased   bool
	members []member // aStrings
	re      *regexp.Regexp
	cidr    netip.Prefix
	op      byte // '<' 'l' (<=) '>' 'g' (>=)
	num     float64
	ref     int32 // aFieldRef: the other field
	// key identifies equal atoms so that rules share them.
	key string
}

// member is one string test of an aStrings atom.
type member struct {
	kind atomKind // aEq, aContains, aPrefix, aSuffix, aGlob or aAny
	lit  string   // lower-cased unless the atom is cased
	glob []glob.Part
}

// parsePattern reads a Sigma value with its wildcards: * and ? are
// wildcards; a backslash escapes *, ? and itself; any other backslash is
// literal, as Sigma specifies (query.Pattern, for the query language,
// escapes any byte); both give parts for glob.Match.
func parsePattern(v string) (parts []glob.Part, wild bool) {
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, glob.Part{Lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			if i+1 < len(v) && (v[i+1] == '*' || v[i+1] == '?' || v[i+1] == '\\') {
				i++
				lit.WriteByte(v[i])
			} else {
				lit.WriteByte('\\')
			}
		case '*':
			flush()
			if len(parts) == 0 || !parts[len(parts)-1].Star {
				parts = append(parts, glob.Part{Star: true})
			}
			wild = true
		case '?':
			flush()
			parts = append(parts, glob.Part{One: true})
			wild = true
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return parts, wild
}

// lowerASCII lower-cases ASCII letters; other bytes are kept, so that
// patterns and values fold the same way.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// appendLower appends s lower-cased (ASCII) to dst.
func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}

// evalOne evaluates an atom that is not part of a field program against
// the field's values.
func (a *atom) evalOne(e *evalCtx) bool {
	f := &e.eng.fields[a.field]
	switch a.kind {
	case aExists:
		present := e.present(a.field)
		return present == (a.num == 1)
	case aNull:
		if f.kind != fDirect {
			return !e.present(a.field)
		}
		return e.doc.isNull(f.slots[0])
	case aFieldRef:
		var other []string
		ref := e.eng.fields[a.ref].user
		e.forEach(a.ref, func(v string) {
			if ref {
				v = matchName(v)
			}
			other = append(other, v)
		})
		hit := false
		e.forEach(a.field, func(v string) {
			if f.user {
				v = matchName(v)
			}
			for _, o := range other {
				if a.cased && v == o || !a.cased && strings.EqualFold(v, o) {
					hit = true
				}
			}
		})
		return hit
	}
	hit := false
	e.forEach(a.field, func(v string) {
		if hit {
			return
		}
		if f.user {
			v = matchName(v)
		}
		switch a.kind {
		case aRegexp:
			hit = a.re.MatchString(v)
		case aCIDR:
			if ip, err := netip.ParseAddr(v); err == nil {
				hit = a.cidr.Contains(ip.Unmap().WithZone(""))
			}
		case aNumCmp:
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return
			}
			switch a.op {
			case '<':
				hit = n < a.num
			case 'l':
				hit = n <= a.num
			case '>':
				hit = n > a.num
			case 'g':
				hit = n >= a.num
			}
		}
	})
	return hit
}

// fieldProg runs every string atom of one field in one pass over each of
// its values: a map for equality, a bigram index for substrings (each
// position of the value looks up the patterns starting with its two
// bytes), direct tests for prefixes and suffixes, and globs behind their
// longest literal.
type fieldProg struct {
	atoms []int32 // every atom the program decides
	// folded holds the tests on the lower-cased value, cased on the value
	// as it is.
	folded, cased progSet
	anyAtoms      []int32 // '*' atoms: true for any value
}

type progSet struct {
	eq       map[string][]int32
	prefix   []litAtom
	suffix   []litAtom
	contains []litAtom
	short    []litAtom // contains with one byte
	buckets  [1 << bigramBits][]int32
	hasIdx   bool
	globs    []globAtom
}

type litAtom struct {
	lit  string
	atom int32
	// glob, when ≥ 0, is the index in globs this literal pre-filters:
	// a hit runs that glob instead of deciding an atom.
	glob int32
}

type globAtom struct {
	parts []glob.Part
	atom  int32
	// always: the glob has no literal to pre-filter on, so it runs on
	// every value.
	always bool
}

const bigramBits = 12

func bigram(a, b byte) int { return (int(a)<<5 ^ int(b)) & (1<<bigramBits - 1) }

func (s *progSet) add(a *member, id int32) {
	switch a.kind {
	case aEq:
		if s.eq == nil {
			s.eq = map[string][]int32{}
		}
		s.eq[a.lit] = append(s.eq[a.lit], id)
	case aPrefix:
		s.prefix = append(s.prefix, litAtom{a.lit, id, -1})
	case aSuffix:
		s.suffix = append(s.suffix, litAtom{a.lit, id, -1})
	case aContains:
		s.addContains(litAtom{a.lit, id, -1})
	case aGlob:
		g := int32(len(s.globs))
		s.globs = append(s.globs, globAtom{parts: a.glob, atom: id})
		// The longest literal must occur for the glob to match.
		best := ""
		for _, p := range a.glob {
			if len(p.Lit) > len(best) {
				best = p.Lit
			}
		}
		if best == "" {
			s.globs[g].always = true
			return
		}
		s.addContains(litAtom{best, id, g})
	}
}

func (s *progSet) addContains(l litAtom) {
	if len(l.lit) < 2 {
		s.short = append(s.short, l)
		return
	}
	i := int32(len(s.contains))
	s.contains = append(s.contains, l)
	h := bigram(l.lit[0], l.lit[1])
	s.buckets[h] = append(s.buckets[h], i)
	s.hasIdx = true
}

// run sets the atoms that v satisfies.
func (s *progSet) run(e *evalCtx, v string) {
	if s.eq != nil {
		for _, id := range s.eq[v] {
			e.res[id] = resTrue
		}
	}
	for i := range s.prefix {
		if strings.HasPrefix(v, s.prefix[i].lit) {
			e.res[s.prefix[i].atom] = resTrue
		}
	}
	for i := range s.suffix {
		if strings.HasSuffix(v, s.suffix[i].lit) {
			e.res[s.suffix[i].atom] = resTrue
		}
	}
	for i := range s.short {
		if strings.Contains(v, s.short[i].lit) {
			s.hit(e, &s.short[i], v)
		}
	}
	if s.hasIdx && len(v) >= 2 {
		for i := 0; i+1 < len(v); i++ {
			b := s.buckets[bigram(v[i], v[i+1])]
			for _, ci := range b {
				l := &s.contains[ci]
				if len(v)-i >= len(l.lit) && v[i:i+len(l.lit)] == l.lit {
					s.hit(e, l, v)
				}
			}
		}
	}
	for i := range s.globs {
		if g := &s.globs[i]; g.always && glob.Match(g.parts, v, false) {
			e.res[g.atom] = resTrue
		}
	}
}

func (s *progSet) hit(e *evalCtx, l *litAtom, v string) {
	if l.glob < 0 {
		e.res[l.atom] = resTrue
		return
	}
	if e.res[l.atom] != resTrue && glob.Match(s.globs[l.glob].parts, v, false) {
		e.res[l.atom] = resTrue
	}
}

// Atom results within one event.
const (
	resUnknown uint8 = iota
	resFalse
	resTrue
)
