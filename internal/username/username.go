// Package username says when two user names are one account: the
// gateway's user-name bans and detection's per-account grouping compare
// names by the same Key, so neither can be dodged by respelling a name
// that the upstream's login treats as the same.
package username

import (
	"strings"
	"unicode/utf8"
)

// Key is how user names are compared: in any case and without spaces
// around, as MySQL's default collations, e-mail logins and most user
// stores compare them (a ban of alice@example.com must cover
// Alice@Example.com), and with the characters whose NFKC form is ASCII
// replaced by it, as Django's login form normalises the user name (NFKC)
// before looking it up: ａｌｉｃｅ, 𝐚𝐥𝐢𝐜𝐞 and ⓐⓛⓘⓒⓔ log in as alice there.
// Matching more than a case-sensitive store only merges names that differ
// by case alone. An ASCII name in lower case is returned as is, without
// allocating.
func Key(name string) string { return strings.ToLower(strings.TrimSpace(FoldCompat(name))) }

// FoldCompat replaces each character of s whose NFKC form is ASCII with
// that form (nfkcASCII). For a name whose NFKC form is ASCII this is its
// NFKC form: composition never yields ASCII, so every character of such
// a name maps to ASCII alone. (Names that stay non-ASCII are compared as
// sent: josé does not match jose with a combining accent.)
func FoldCompat(s string) string {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for _, r := range s[i:] {
		if k, ok := nfkcASCII[r]; ok {
			b.WriteString(k)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}
