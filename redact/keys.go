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
	// "tokens_used" are not credentials.
	"*token", "*pwd", "*cookie", "*sessionid", "*sessid", "*signature", "*otp",
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
	exact    map[string]struct{}
	prefix   [256][]string
	suffix   [256][]string
	contains [256][]string
}

func (m *matcher) init() { m.exact = make(map[string]struct{}) }

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
		m.contains[n[0]] = append(m.contains[n[0]], n)
	case pre:
		m.suffix[n[len(n)-1]] = append(m.suffix[n[len(n)-1]], n)
	case suf:
		m.prefix[n[0]] = append(m.prefix[n[0]], n)
	default:
		m.exact[n] = struct{}{}
	}
	return nil
}

func (m *matcher) match(n []byte) bool {
	if len(n) == 0 {
		return false
	}
	if _, ok := m.exact[string(n)]; ok {
		return true
	}
	for _, p := range m.suffix[n[len(n)-1]] {
		if len(n) >= len(p) && string(n[len(n)-len(p):]) == p {
			return true
		}
	}
	for _, p := range m.prefix[n[0]] {
		if len(n) >= len(p) && string(n[:len(p)]) == p {
			return true
		}
	}
	for i, c := range n {
		for _, p := range m.contains[c] {
			if len(n)-i >= len(p) && string(n[i:i+len(p)]) == p {
				return true
			}
		}
	}
	return false
}

// appendNorm appends the normalised form of a name: ASCII lowercase, with
// the separators people put between words ('_', '-', '.', space) dropped.
func appendNorm[T text](dst []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			dst = append(dst, c+'a'-'A')
		case c == '_' || c == '-' || c == '.' || c == ' ':
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
