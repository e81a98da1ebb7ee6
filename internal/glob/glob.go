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
// backtracking only to the last star, so never exponential, whatever the
// pattern; and a star followed by a literal moves straight to the
// literal's next occurrence, a pattern that ends in a literal compares it
// with the end of s at once, so that a long literal that almost occurs
// all along a long value costs a search of the value, not a comparison
// at each of its characters (a query's 4,000 characters against a 256
// KiB record took about a second).
func Match(parts []Part, s string, fold bool) bool {
	// A pattern Q·L matches s when s ends with L and Q matches the rest.
	// (A literal that starts inside a UTF-8 character is left to the loop,
	// which only cuts s between characters.)
	if k := len(parts) - 1; k > 0 && !parts[k].Star && !parts[k].One && parts[k].Lit != "" && utf8.RuneStart(parts[k].Lit[0]) {
		lit := parts[k].Lit
		if len(s) < len(lit) {
			return false
		}
		if tail := s[len(s)-len(lit):]; !(fold && hasPrefixFold(tail, lit) || !fold && tail == lit) {
			return false
		}
		parts, s = parts[:k], s[:len(s)-len(lit)]
	}
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
		// The literal after the star can match only where it occurs: go
		// there (it starts a character, so the loop would have got there
		// one character at a time, failing at each one before).
		if next := starPi + 1; next < len(parts) && !parts[next].Star && !parts[next].One && parts[next].Lit != "" && utf8.RuneStart(parts[next].Lit[0]) {
			var j int
			if fold {
				j = indexFold(s[starSi:], parts[next].Lit)
			} else {
				j = strings.Index(s[starSi:], parts[next].Lit)
			}
			if j < 0 {
				return false
			}
			starSi += j
		}
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

// indexFold is strings.Index ignoring ASCII case, in time linear in
// len(s)+len(lit) (Rabin-Karp over ASCII-lowered bytes, as strings.Index
// falls back to).
func indexFold(s, lit string) int {
	n := len(lit)
	if n > len(s) {
		return -1
	}
	const prime = 16777619
	var want, got, pow uint32 = 0, 0, 1
	for i := 0; i < n; i++ {
		want = want*prime + uint32(lowerASCII(lit[i]))
		got = got*prime + uint32(lowerASCII(s[i]))
		pow *= prime
	}
	for i := n; ; i++ {
		if got == want && hasPrefixFold(s[i-n:], lit) {
			return i - n
		}
		if i == len(s) {
			return -1
		}
		got = got*prime + uint32(lowerASCII(s[i])) - pow*uint32(lowerASCII(s[i-n]))
	}
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
