package redact

import (
	"errors"
	"strings"
)

// defaultKeys are the built-in sensitive names, already normalised. "x"
// matches the whole name, "*x" a suffix, "x*" a prefix, "*x*" anywhere.
// Partial matches are reserved for words that do not occur inside
// ordinary field names; see SensitiveKey for the reasoning.
var defaultKeys = []string{
	// Words that only ever name a secret.
	"*password*", "*passwd*", "*passphrase*", "*secret*", "*apikey*",
	"*privatekey*", "*credential*", "*accesskey*", "*signingkey*",
	"*encryptionkey*", "*cardnumber*", "*creditcard*", "*socialsecurity*",
	// Credentials are named "<something>_token"; "token_type" and
	// "tokens_used" are not credentials, nor is "max_tokens", so plurals
	// are listed one by one.
	"*token", "*apitokens", "*accesstokens", "*refreshtokens", "*authtokens",
	"*sessiontokens", "*masterkey", "*hmackey", "*pwd", "*cookie", "*sessionid", "*sessid", "*signature", "*otp",
	"*cvv", "*cvv2", "*cvc", "*cvc2", "*ssn",
	// Short words that appear inside ordinary names match only whole.
	"auth", "authorization", "session", "sid", "sig", "jwt", "bearer", "pin",
	"pan", "ccnum", "ccv", "csc", "securitycode", "taxid", "iban", "mfacode",
}

// defaultHeaders are header names that carry credentials under names the
// key rule would not catch.
var defaultHeaders = []string{
	"authorization", "proxyauthorization", "cookie", "setcookie",
	"xapikey", "xauthtoken", "xcsrftoken", "xxsrftoken", "xamzsecuritytoken",
	"xgoogapikey", "xvaulttoken", "xaccesstoken", "xrefreshtoken",
	"xsessiontoken", "xupstreamauthorization", "xforwardedauthorization",
	"xamznoidcdata", "xamznoidcaccesstoken", "cfaccessjwtassertion",
	"xserviceaccountjwt", "xjwtassertion",
}

// matcher matches normalised names. Partial patterns are indexed by the
// byte they start (or, for suffixes, end) with, because key matching runs
// for every JSON member and must cost a few nanoseconds.
type matcher struct {
	exact    [256][]string
	prefix   [256][]string
	suffix   [256][]string
	contains [256][]string
	// containsPair (a bit per first two bytes of a '*x*' pattern) and
	// minContains let match skip most positions: the patterns start with
	// common letters, so one byte alone stopped few of them.
	containsPair [1 << 16 / 64]uint64
	minContains  int
}

func pairBit(a, b byte) (int, uint64) {
	p := int(a)<<8 | int(b)
	return p >> 6, 1 << (p & 63)
}

func (m *matcher) add(pattern string) error {
	p := strings.TrimSpace(pattern)
	pre := strings.HasPrefix(p, "*")
	suf := strings.HasSuffix(p, "*") && len(p) > 1
	n := string(appendNorm(nil, strings.Trim(p, "*")))
	if n == "" {
		return errors.New("empty name after normalisation")
	}
	if strings.Contains(n, "*") {
		return errors.New("'*' is allowed only at the start or end")
	}
	switch {
	case pre && suf:
		if len(n) < 2 {
			return errors.New("a '*x*' pattern needs at least two characters")
		}
		m.contains[n[0]] = append(m.contains[n[0]], n)
		w, bit := pairBit(n[0], n[1])
		m.containsPair[w] |= bit
		if m.minContains == 0 || len(n) < m.minContains {
			m.minContains = len(n)
		}
	case pre:
		m.suffix[n[len(n)-1]] = append(m.suffix[n[len(n)-1]], n)
	case suf:
		m.prefix[n[0]] = append(m.prefix[n[0]], n)
	default:
		m.exact[n[0]] = append(m.exact[n[0]], n)
	}
	return nil
}

func (m *matcher) match(n []byte) bool {
	if len(n) == 0 {
		return false
	}
	for _, p := range m.exact[n[0]] {
		if string(n) == p {
			return true
		}
	}
	last := len(n) - 1
	for _, p := range m.suffix[n[last]] {
		if len(n) >= len(p) && n[len(n)-len(p)] == p[0] && string(n[len(n)-len(p):]) == p {
			return true
		}
	}
	for _, p := range m.prefix[n[0]] {
		if len(n) >= len(p) && string(n[:len(p)]) == p {
			return true
		}
	}
	if m.minContains == 0 || len(n) < m.minContains {
		return false
	}
	for i := 0; i <= len(n)-m.minContains; i++ {
		if w, bit := pairBit(n[i], n[i+1]); m.containsPair[w]&bit == 0 {
			continue
		}
		for _, p := range m.contains[n[i]] {
			// Comparing the second byte first avoids most calls to memequal.
			if len(n)-i >= len(p) && n[i+1] == p[1] && string(n[i:i+len(p)]) == p {
				return true
			}
		}
	}
	return false
}

// normTab maps a byte to its normalised form; 0 drops it.
var normTab = func() (t [256]byte) {
	for c := range 256 {
		t[c] = byte(c)
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = byte(c) + 'a' - 'A'
	}
	t['_'], t['-'], t['.'], t[' '], t[0] = 0, 0, 0, 0, 0
	return t
}()

// appendNorm appends the normalised form of a name: ASCII lowercase, with
// the separators people put between words ('_', '-', '.', space) dropped.
// NUL is dropped too, so it cannot split a name.
func appendNorm[T text](dst []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		if c := normTab[s[i]]; c != 0 {
			dst = append(dst, c)
		}
	}
	return dst
}
