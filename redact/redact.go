package redact

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"math/rand/v2"
	"strings"
	"sync"
)

// Mode says how a secret is replaced.
type Mode int

// The replacement modes. The zero value is [Remove], the safest.
const (
	// Remove replaces a secret with a fixed marker.
	Remove Mode = iota
	// Mask keeps the last four digits of a card number and the first letter
	// and domain of an e-mail address, and removes every other secret.
	Mask
	// HMAC replaces a secret with its keyed HMAC-SHA256, so equal secrets
	// give equal tokens.
	HMAC
)

// String returns the name [ParseMode] accepts: "remove", "mask" or
// "hmac-sha256".
func (m Mode) String() string {
	switch m {
	case Remove:
		return "remove"
	case Mask:
		return "mask"
	case HMAC:
		return "hmac-sha256"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses a mode name: "remove", "mask" or "hmac-sha256" ("hmac"
// is accepted too). Case and surrounding space are ignored.
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "remove":
		return Remove, nil
	case "mask":
		return Mask, nil
	case "hmac-sha256", "hmac":
		return HMAC, nil
	}
	return Remove, fmt.Errorf("redact: unknown mode %q (want remove, mask or hmac-sha256)", s)
}

// MarshalText implements [encoding.TextMarshaler] so a Mode reads well in
// configuration files.
func (m Mode) MarshalText() ([]byte, error) {
	if m < Remove || m > HMAC {
		return nil, fmt.Errorf("redact: invalid mode %d", int(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] using [ParseMode].
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Kind names a free-text detector. It appears in replacements as
// "[REDACTED:<kind>]" and selects detectors in [Config.Disable].
type Kind string

// The detectors.
const (
	KindCard       Kind = "card"
	KindJWT        Kind = "jwt"
	KindBearer     Kind = "bearer"
	KindAWSKey     Kind = "aws-key"
	KindPrivateKey Kind = "private-key"
	KindSSN        Kind = "ssn"
	KindEmail      Kind = "email"
	// KindKeyValue finds "name=value" and "name: value" in text where name
	// is a sensitive key. Its matches are replaced like a sensitive key's
	// value ("[REDACTED]"), not with a kind marker.
	KindKeyValue Kind = "key-value"
	// KindTrailguardToken is a trailguard API token (tg_<id>_<secret>):
	// pasted where it does not belong (a search, a URL, an application's
	// log line), it would otherwise sit in the trail for good, readable by
	// every reader.
	KindTrailguardToken Kind = "trailguard-token"
)

// Kinds lists every detector kind.
func Kinds() []Kind {
	return []Kind{KindCard, KindJWT, KindBearer, KindAWSKey, KindPrivateKey, KindSSN, KindEmail, KindKeyValue, KindTrailguardToken}
}

// Marker replaces the value of a sensitive key in [Remove] mode, and every
// non-card secret in [Mask] mode.
const Marker = "[REDACTED]"

// HashPrefix starts every replacement written in [HMAC] mode.
const HashPrefix = "hmac-sha256:"

// MinSecretLen is the shortest [Config.Secret] accepted: 128 bits, so the
// HMAC cannot be brute-forced to recover low-entropy secrets.
const MinSecretLen = 16

// DefaultMaxDepth is the JSON nesting limit when [Config.MaxDepth] is zero.
const DefaultMaxDepth = 128

// Config configures a [Redactor]. The zero value is usable: remove mode,
// built-in keys and headers, every detector but e-mail on.
type Config struct {
	// Mode says how a sensitive value is replaced; the zero value is Remove.
	Mode Mode
	// Secret is the HMAC key. It is required, at least MinSecretLen bytes,
	// when Mode is HMAC; with another mode it only enables Hash.
	Secret []byte
	// Keys are extra sensitive names for query parameters, form fields, JSON
	// members and attributes, added to the built-in ones. A name matches
	// exactly after normalisation; "name*" matches names starting with name,
	// "*name" names ending with it and "*name*" names containing it.
	Keys []string
	// Headers are extra sensitive header names, added to the built-in ones,
	// with the same wildcards as Keys. A header is also sensitive when its
	// name is a sensitive key.
	Headers []string
	// AllowKeys are names that are never treated as sensitive keys even
	// when a built-in or configured rule matches them (for example
	// "page_token"). Their values still go through the detectors.
	AllowKeys []string
	// AllowHeaders are header names that are never replaced whole. Their
	// values still go through the detectors.
	AllowHeaders []string
	// Emails turns on the e-mail detector. It is off by default because the
	// user name is often what an analyst needs.
	Emails bool
	// Tokens turns on the detector of trailguard API tokens
	// (KindTrailguardToken). It is off by default because its anchor, '_',
	// is common in values: it costs ingest's scrub pass a few per cent. The
	// collector turns it on for its own records, where a token pasted into
	// a search, a URL or a header would otherwise be kept for good.
	Tokens bool
	// Disable turns detectors off. Prefer AllowKeys for a single noisy
	// field: a disabled detector is off everywhere.
	Disable []Kind
	// MaxDepth limits JSON nesting; deeper input is rejected. Zero means
	// DefaultMaxDepth.
	MaxDepth int
}

// Redactor scrubs secrets. It is immutable and safe for concurrent use.
type Redactor struct {
	mode         Mode
	secret       []byte
	keys         matcher
	headers      matcher
	allowKeys    map[string]struct{}
	allowHeaders map[string]struct{}
	anchor       [256]uint8
	strTab       [256]uint8 // strSpecial | anchor, for the JSON string scan
	quickTab     [256]uint8 // qDigit, qStop or 0, for quickClean
	queryTab     [256]uint8 // quickTab with qEq for '=' and qStop for '%' and '+', for queryClean
	kinds        uint16
	card, ssn    bool // cached: the digit detectors ask for every digit run
	maxDepth     int
	macs         sync.Pool // hash.Hash keyed with secret; Reset restores the keyed state cheaply
	keyMemo      keyMemo   // the JSON walker's key decisions
}

// New returns a Redactor for cfg. It fails when the configuration is unsafe
// or unclear: an unknown mode or detector, a missing or short HMAC secret,
// an empty key or header name.
func New(cfg Config) (*Redactor, error) {
	r := &Redactor{mode: cfg.Mode, maxDepth: cfg.MaxDepth}
	r.keyMemo.seed = rand.Uint64()
	switch cfg.Mode {
	case Remove, Mask:
	case HMAC:
		if len(cfg.Secret) < MinSecretLen {
			return nil, fmt.Errorf("redact: mode hmac-sha256 needs a secret of at least %d bytes, got %d", MinSecretLen, len(cfg.Secret))
		}
	default:
		return nil, fmt.Errorf("redact: invalid mode %d", int(cfg.Mode))
	}
	if len(cfg.Secret) > 0 {
		if len(cfg.Secret) < MinSecretLen {
			return nil, fmt.Errorf("redact: secret of %d bytes is too short (want at least %d)", len(cfg.Secret), MinSecretLen)
		}
		r.secret = append([]byte(nil), cfg.Secret...)
		secret := r.secret
		r.macs.New = func() any { return hmac.New(sha256.New, secret) }
	}
	switch {
	case r.maxDepth == 0:
		r.maxDepth = DefaultMaxDepth
	case r.maxDepth < 0:
		return nil, fmt.Errorf("redact: negative max depth %d", cfg.MaxDepth)
	}

	for _, k := range defaultKeys {
		if err := r.keys.add(k); err != nil {
			panic(err) // the built-in list is wrong
		}
	}
	for _, h := range defaultHeaders {
		if err := r.headers.add(h); err != nil {
			panic(err)
		}
	}
	for _, k := range cfg.Keys {
		if err := r.keys.add(k); err != nil {
			return nil, fmt.Errorf("redact: key %q: %w", k, err)
		}
	}
	for _, h := range cfg.Headers {
		if err := r.headers.add(h); err != nil {
			return nil, fmt.Errorf("redact: header %q: %w", h, err)
		}
	}
	var err error
	if r.allowKeys, err = nameSet(cfg.AllowKeys); err != nil {
		return nil, fmt.Errorf("redact: allowed key: %w", err)
	}
	if r.allowHeaders, err = nameSet(cfg.AllowHeaders); err != nil {
		return nil, fmt.Errorf("redact: allowed header: %w", err)
	}

	r.kinds = kindBit(KindCard) | kindBit(KindJWT) | kindBit(KindBearer) | kindBit(KindAWSKey) |
		kindBit(KindPrivateKey) | kindBit(KindSSN) | kindBit(KindKeyValue)
	if cfg.Emails {
		r.kinds |= kindBit(KindEmail)
	}
	if cfg.Tokens {
		r.kinds |= kindBit(KindTrailguardToken)
	}
	for _, k := range cfg.Disable {
		b := kindBit(k)
		if b == 0 {
			return nil, fmt.Errorf("redact: cannot disable unknown detector %q", k)
		}
		r.kinds &^= b
	}
	r.card, r.ssn = r.enabled(KindCard), r.enabled(KindSSN)
	r.buildAnchors()
	return r, nil
}

func nameSet(names []string) (map[string]struct{}, error) {
	if len(names) == 0 {
		return nil, nil
	}
	m := make(map[string]struct{}, len(names))
	for _, n := range names {
		k := string(appendNorm(nil, n))
		if k == "" {
			return nil, fmt.Errorf("%q is empty after normalisation", n)
		}
		m[k] = struct{}{}
	}
	return m, nil
}

func kindBit(k Kind) uint16 {
	for i, c := range Kinds() {
		if c == k {
			return 1 << i
		}
	}
	return 0
}

func (r *Redactor) enabled(k Kind) bool { return r.kinds&kindBit(k) != 0 }

// Mode returns the replacement mode.
func (r *Redactor) Mode() Mode { return r.mode }

// SensitiveKey reports whether values named name are replaced wherever they
// appear: JSON members, query and form parameters, attributes. The name is
// normalised first (ASCII lowercase; '_', '-', '.' and space dropped).
//
// The built-in rule is deliberately a mix of exact and partial matches.
// Words that are only ever used for secrets ("password", "passwd",
// "passphrase", "secret", "apikey", "privatekey", "credential",
// "cardnumber", …) match anywhere in the name, so "new_password" and
// "client_secret" are caught. "token" matches only at the end, because a
// credential is named "access_token" or "x-csrf-token" while "tokens_used",
// "max_tokens" and "token_type" are counters and labels. Short words that
// occur inside ordinary words ("auth" in "author", "pan" in "japan", "pin"
// in "pinned", "ssn" in "classname") match only as the whole name. Names
// listed in [Config.AllowKeys] are never sensitive.
func (r *Redactor) SensitiveKey(name string) bool {
	var buf [64]byte
	return r.sensitiveKeyNorm(appendNorm(buf[:0], name))
}

func (r *Redactor) sensitiveKeyNorm(n []byte) bool {
	if len(r.allowKeys) > 0 {
		if _, ok := r.allowKeys[string(n)]; ok {
			return false
		}
	}
	return r.keys.match(n)
}

// SensitiveHeader reports whether a header is replaced whole: it is one of
// the built-in or configured headers (Authorization, Proxy-Authorization,
// Cookie, Set-Cookie, X-API-Key, X-Auth-Token, …) or its name is a
// sensitive key, and it is not in [Config.AllowHeaders].
func (r *Redactor) SensitiveHeader(name string) bool {
	var buf [64]byte
	n := appendNorm(buf[:0], name)
	if len(r.allowHeaders) > 0 {
		if _, ok := r.allowHeaders[string(n)]; ok {
			return false
		}
	}
	return r.headers.match(n) || r.sensitiveKeyNorm(n)
}

// Header returns the value to record for a header: the replacement when the
// header is sensitive (the whole value, so "Bearer xyz" leaves nothing
// behind), otherwise the value with the free-text detectors applied.
func (r *Redactor) Header(name, value string) string {
	if r.SensitiveHeader(name) {
		return r.replaceValue(value)
	}
	return r.String(value)
}

// Headers returns a scrubbed copy of h, as [Redactor.Header] scrubs each
// value. h is not modified. The map type matches net/http.Header.
func (r *Redactor) Headers(h map[string][]string) map[string][]string {
	if h == nil {
		return nil
	}
	out := make(map[string][]string, len(h))
	for name, vs := range h {
		c := make([]string, len(vs))
		for i, v := range vs {
			c[i] = r.Header(name, v)
		}
		out[name] = c
	}
	return out
}

// String returns s with every detector match replaced. It returns s itself,
// without allocating, when there is nothing to replace.
func (r *Redactor) String(s string) string {
	if uuidShaped(s) || r.quickClean(s) {
		return s
	}
	b, ok := scrub(r, nil, s)
	if !ok {
		return s
	}
	return string(b)
}

// uuidShaped reports whether s is a UUID in its canonical form: 32 hex
// digits in groups of 8-4-4-4-12. Request and event ids have this shape
// and are scrubbed on every request; none of the detectors can match in
// it, whatever the configuration: the JWT, AWS, bearer and PEM anchors
// need letters beyond f or runs of dashes, key-value and e-mail need '=',
// ':' or '@', an SSN needs dashes three digits apart, and a digit run that
// passes for a card lies in a hex identifier (see hexIdentifier), which
// is never a card. TestUUIDShapedNeverScrubbed holds String to that.
func uuidShaped(s string) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	return hexRun(s[0:8]) && hexRun(s[9:13]) && hexRun(s[14:18]) && hexRun(s[19:23]) && hexRun(s[24:36])
}

func hexRun(s string) bool {
	for i := 0; i < len(s); i++ {
		if !hexByte[s[i]] {
			return false
		}
	}
	return true
}

var hexByte = func() (t [256]bool) {
	for _, c := range "0123456789abcdefABCDEF" {
		t[c] = true
	}
	return t
}()

// Bytes appends s, scrubbed like [Redactor.String], to dst.
func (r *Redactor) Bytes(dst, s []byte) []byte {
	out, ok := scrub(r, dst, s)
	if !ok {
		return append(dst, s...)
	}
	return out
}

// Hash returns "hmac-sha256:<hex>" of value under [Config.Secret]: the token
// HMAC mode writes for it, so an analyst holding a known value (a card
// number's digits, a user's password, an API key) can find the events that
// carried it, as with Vault's /sys/audit-hash. Without a secret it returns
// "", never an unkeyed hash, which would let anyone confirm guesses.
func (r *Redactor) Hash(value string) string {
	if len(r.secret) == 0 {
		return ""
	}
	return string(appendHMAC(r, make([]byte, 0, len(HashPrefix)+64), value))
}

// replaceValue is the string form of appendValue.
func (r *Redactor) replaceValue(v string) string {
	if r.mode == Remove {
		return Marker
	}
	return string(appendValue(r, nil, v))
}

// appendHMAC appends HashPrefix and the hex HMAC of s.
func appendHMAC[T text](r *Redactor, dst []byte, s T) []byte {
	h := r.macs.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(s))
	return appendSum(r, dst, h)
}

// appendHMACDigits hashes only the digits of s, so a card number gives one
// token however it is grouped.
func appendHMACDigits[T text](r *Redactor, dst []byte, s T) []byte {
	var buf [32]byte
	d := buf[:0]
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			d = append(d, s[i])
		}
	}
	h := r.macs.Get().(hash.Hash)
	h.Reset()
	h.Write(d)
	return appendSum(r, dst, h)
}

func appendSum(r *Redactor, dst []byte, h hash.Hash) []byte {
	// Sum appends to dst rather than to a local array, which would escape
	// through the interface call and cost an allocation per secret.
	n := len(dst)
	dst = h.Sum(dst)
	r.macs.Put(h)
	var sum [sha256.Size]byte
	copy(sum[:], dst[n:])
	dst = append(dst[:n], HashPrefix...)
	return hex.AppendEncode(dst, sum[:])
}

// appendValue appends the replacement for the value of a sensitive key.
func appendValue[T text](r *Redactor, dst []byte, v T) []byte {
	switch r.mode {
	case Mask:
		if isCardValue(v) {
			return appendCardMask(dst, v)
		}
	case HMAC:
		if isCardValue(v) {
			return appendHMACDigits(r, dst, v)
		}
		return appendHMAC(r, dst, v)
	}
	return append(dst, Marker...)
}

// appendMatch appends the replacement for a detector match s of kind k.
func appendMatch[T text](r *Redactor, dst []byte, k Kind, s T) []byte {
	if k == KindKeyValue {
		return appendValue(r, dst, s)
	}
	switch r.mode {
	case Mask:
		switch k {
		case KindCard:
			return appendCardMask(dst, s)
		case KindEmail:
			return appendEmailMask(dst, s)
		}
	case HMAC:
		if k == KindCard {
			return appendHMACDigits(r, dst, s)
		}
		return appendHMAC(r, dst, s)
	}
	dst = append(dst, "[REDACTED:"...)
	dst = append(dst, k...)
	return append(dst, ']')
}

// appendCardMask keeps the last four digits behind a fixed run of twelve
// stars, so the mask does not reveal the card's length.
func appendCardMask[T text](dst []byte, s T) []byte {
	var last [4]byte
	n := 0
	for i := len(s) - 1; i >= 0 && n < 4; i-- {
		if isDigit(s[i]) {
			n++
			last[4-n] = s[i]
		}
	}
	dst = append(dst, "************"...)
	return append(dst, last[4-n:]...)
}

// appendEmailMask keeps the first character of the local part and the
// domain: "alice@example.com" becomes "a***@example.com".
func appendEmailMask[T text](dst []byte, s T) []byte {
	at := -1
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '@' {
			at = i
			break
		}
	}
	if at < 1 {
		return append(dst, "[REDACTED:email]"...)
	}
	dst = append(dst, s[0])
	dst = append(dst, "***"...)
	return append(dst, s[at:]...)
}
