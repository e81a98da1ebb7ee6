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
	return match(parts, s, fold, shiftAndAfter)
}

// match is Match, searching a star's segment that holds a ? with shiftAnd
// when more than after bytes of s are left (tests take every path).
func match(parts []Part, s string, fold bool, after int) bool {
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
				if len(s)-si > after {
					if end, ok := segmentEnd(parts, pi+1); ok {
						// The segment up to the next star holds a ?: where
						// its first literal occurs is no sign it occurs
						// there, and trying each place costs the segment's
						// length each time (a query's "*a?a?…b*" of 2,000
						// parts took 1.6 s over a 100 KiB value). Its first
						// occurrence, the one to take, found in one pass.
						at, found := shiftAnd(parts[pi+1:end], s[si:], fold, end == len(parts))
						if !found {
							return false
						}
						if end == len(parts) {
							return true
						}
						pi, si = end, si+at
						continue
					}
				}
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

// shiftAndAfter is the length of the rest of a value past which a star's
// segment holding a ? is searched with shiftAnd: below it, trying each
// place costs little.
const shiftAndAfter = 256

// segmentEnd returns the index of the star that ends the segment of parts
// starting at from (len(parts) when none does), and whether the segment
// is one shiftAnd takes: it holds a ? and its literals are valid UTF-8, so
// that a place the star can stop at (a character boundary of the value,
// read from where the star started) and the segment's parts cut the
// value into the same characters.
func segmentEnd(parts []Part, from int) (int, bool) {
	end := from
	one := false
	for ; end < len(parts) && !parts[end].Star; end++ {
		one = one || parts[end].One
	}
	if !one {
		return end, false
	}
	for _, p := range parts[from:end] {
		if !p.One && !utf8.ValidString(p.Lit) {
			return end, false
		}
	}
	return end, true
}

// shiftAnd finds the first place in s where seg (literals and ?, no star)
// ends, reading s one character at a time (an invalid byte is one) as a
// star would try it: Shift-And (Baeza-Yates–Gonnet), a bit per character
// of seg, so one pass costs len(s) times seg's characters/64. With atEnd
// the segment must end s. It returns the byte offset just past the match.
func shiftAnd(seg []Part, s string, fold, atEnd bool) (int, bool) {
	// The segment's characters: a rune, or -1 for ?.
	var pat []rune
	for _, p := range seg {
		if p.One {
			pat = append(pat, -1)
			continue
		}
		for _, r := range p.Lit {
			if fold && 'A' <= r && r <= 'Z' {
				r += 'a' - 'A'
			}
			pat = append(pat, r)
		}
	}
	m := len(pat)
	words := (m + 63) / 64
	// masks[0] holds the ?s' bits; a character of seg has its own mask,
	// those bits included. Characters not in seg match only the ?s.
	masks := make([]uint64, words, 4*words)
	var ascii [128]int32
	other := map[rune]int32{}
	for j, r := range pat {
		if r < 0 {
			masks[j/64] |= 1 << (j % 64)
		}
	}
	for j, r := range pat {
		if r < 0 {
			continue
		}
		var slot int32
		if r < 128 {
			slot = ascii[r]
		} else {
			slot = other[r]
		}
		if slot == 0 {
			slot = int32(len(masks) / words)
			masks = append(masks, masks[:words]...)
			if r < 128 {
				ascii[r] = slot
			} else {
				other[r] = slot
			}
		}
		masks[int(slot)*words+j/64] |= 1 << (j % 64)
	}
	d := make([]uint64, words)
	last, lastBit := (m-1)/64, uint64(1)<<((m-1)%64)
	for i := 0; i < len(s); {
		r, n := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, n = utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				r = -2 // an invalid byte: no character of seg
			}
		} else if fold && 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		var slot int32
		switch {
		case r >= 0 && r < 128:
			slot = ascii[r]
		case r >= 128:
			slot = other[r]
		}
		mk := masks[int(slot)*words : int(slot)*words+words]
		carry := uint64(1)
		for w := range d {
			next := d[w] >> 63
			d[w] = (d[w]<<1 | carry) & mk[w]
			carry = next
		}
		i += n
		if d[last]&lastBit != 0 && (!atEnd || i == len(s)) {
			return i, true
		}
	}
	return 0, false
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
