// Package glob matches text against wildcard patterns: the one matcher
// behind Sigma rules' wildcards (detect, on the ingest path) and the query
// language's (query, checking search results). Each parses its patterns its
// own way — Sigma's backslash escapes only *, ? and itself, the query
// language's any byte — into the same parts, matched the same way.
package glob

import (
	"strings"
	"unicode/utf8"
)

// Part is one piece of a pattern: a literal run of bytes (Lit), or a
// single wildcard: Star (*) matches any run of characters, none included;
// One (?) matches one UTF-8 character, an invalid byte counting as one.
type Part struct {
	Lit  string
	Star bool
	One  bool
}

// Match reports whether s matches the pattern parts, whole. fold ignores
// ASCII case in literals (other bytes compare as they are). Iterative,
// backtracking only to the last star, so linear in practice and never
// exponential, whatever the pattern.
func Match(parts []Part, s string, fold bool) bool {
	pi, si := 0, 0
	starPi, starSi := -1, 0
	for {
		if pi < len(parts) {
			p := parts[pi]
			switch {
			case p.Star:
				starPi, starSi = pi, si
				pi++
				continue
			case p.One:
				if si < len(s) {
					_, n := utf8.DecodeRuneInString(s[si:])
					si += n
					pi++
					continue
				}
			default:
				// strings.HasPrefix is inlined where a call that takes
				// fold is not: detect's rules, matching on the ingest
				// path, lower-case the value once and pass fold false.
				if fold {
					if hasPrefixFold(s[si:], p.Lit) {
						si += len(p.Lit)
						pi++
						continue
					}
				} else if strings.HasPrefix(s[si:], p.Lit) {
					si += len(p.Lit)
					pi++
					continue
				}
			}
		} else if si == len(s) {
			return true
		}
		if starPi < 0 || starSi >= len(s) {
			return false
		}
		// Let the last star absorb one more character and retry: a match
		// the earlier stars could give, this one gives too.
		_, n := utf8.DecodeRuneInString(s[starSi:])
		starSi += n
		pi, si = starPi+1, starSi
	}
}

// hasPrefixFold is strings.HasPrefix ignoring ASCII case.
func hasPrefixFold(s, p string) bool {
	if len(s) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		a, b := s[i], p[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}
