package redact

// Tokens answers, for a JSON document that another parser walks, whether
// [Redactor.JSON] would leave each of its parts as it is: the collector's
// normaliser (event.AppendNormalizedScrubbed) asks it about every key and
// every string and number while it reads an event, and keeps its one pass
// only when every answer is "unchanged", because then JSON(doc) is doc byte
// for byte and scrubbing it first would give the same record. Any other
// answer sends the event through JSON and then the normaliser, as before,
// so an event with a secret is scrubbed by exactly the code that scrubbed
// it before (server's TestPrepareOnePassMatchesTwo, TestOnePassSequences,
// FuzzPrepare and FuzzPrepareSequence hold the two paths to the same
// bytes).
//
// The answers come from the walker JSON runs, over the one token: the same
// string scan, detectors, card check and key matching, not a copy of
// them.
//
// A Tokens keeps scratch buffers: it is for one goroutine.
type Tokens struct {
	r     *Redactor
	w     walker
	names [2 * maxTokenKey]byte
	// hour is the date and hour ("2026-11-30T15") of the last date
	// UnchangedText found clean (hourOK): see dateVerdict.
	hour   [dateHourLen]byte
	hourOK bool
}

// maxTokenKey bounds the parent and key names Sensitive decides itself:
// JSON checks a member whose ancestors' names and its own together exceed
// the walker's 256-byte name buffer by its own name alone, which Sensitive
// cannot see, so it answers "sensitive" (scrub the usual way) for longer
// names. The normaliser's ancestors are its modelled names (at most 31
// bytes together, "trailguard.http.request.headers"), so parent and key
// under 2×96 keep the walker under 256.
const maxTokenKey = 96

// NewTokens returns a Tokens for r.
func (r *Redactor) NewTokens() *Tokens { return &Tokens{r: r} }

// MaxDepth is the nesting JSON allows ([Config.MaxDepth]): a document
// nested deeper is rejected by JSON, so a caller must not keep it.
func (t *Tokens) MaxDepth() int { return t.r.maxDepth }

// Unchanged reports whether JSON leaves tok, one string (with its quotes,
// as it stands in the document, escapes included), number or literal
// token found inside depth open objects and arrays (1 for a member of the
// top-level object), as it is. A string holding a JSON document is
// scrubbed as one within what is left of the depth limit, as JSON does.
// It reports false for anything that is not exactly one valid token.
func (t *Tokens) Unchanged(tok []byte, depth int) bool {
	w := &t.w
	w.r, w.src, w.out, w.mark, w.pos, w.depth = t.r, tok, w.out[:0], 0, 0, depth
	if len(tok) == 0 || tok[0] == '{' || tok[0] == '[' || tok[0] == ' ' {
		return false
	}
	err := w.value()
	// The walker copies nothing until it rewrites something: mark stays
	// at 0 only when nothing was.
	unchanged := err == nil && w.pos == len(tok) && w.mark == 0
	// A Tokens lives as long as the collector's pooled chunk that holds
	// it: the scratch a huge escaped string grew is not kept.
	if cap(w.dec)+cap(w.tmp)+cap(w.out) > maxTokensScratch {
		w.dec, w.tmp, w.out = nil, nil, nil
	}
	w.src = nil
	return unchanged
}

// maxTokensScratch bounds the scratch a Tokens keeps between calls.
const maxTokensScratch = 64 << 10

// UnchangedText is Unchanged for a string token without escapes, given
// its content s (the bytes between the quotes, none of them a quote, a
// backslash or a control character): the detectors alone decide it, as in
// JSON's walk, without scanning the token's syntax again.
func (t *Tokens) UnchangedText(s []byte) bool {
	if isUTCDate(s) {
		if t.hourOK && string(s[:dateHourLen]) == string(t.hour[:]) {
			return true // the verdict depends on the date and hour alone
		}
		_, found := next(t.r, s, 0, 0)
		if t.hourOK = !found; t.hourOK {
			copy(t.hour[:], s)
		}
		return !found
	}
	if isHexID(s) {
		return true
	}
	_, found := next(t.r, s, 0, 0)
	return !found
}

// hexClass marks the bytes of hex identifiers: 1 a digit or '-', 2 a hex
// letter.
var hexClass = func() (c [256]uint8) {
	for _, b := range []byte("0123456789-") {
		c[b] = 1
	}
	for _, b := range []byte("abcdefABCDEF") {
		c[b] = 2
	}
	return c
}()

// isHexID reports whether s is a hex identifier as the detectors see one
// (hexIdentifier): at least 16 hex digits and dashes, a letter among
// them, nothing else: every event's event.id (a UUID), trace ids, span
// ids. The detectors find nothing in one, whatever the configuration
// (FuzzHexID holds them to it): a card or SSN inside such an identifier
// is taken for part of it, and no other detector's anchor ("AKIA", "eyJ",
// "bearer ", "-----BEGIN", '@', '=', ':') can be spelt with these bytes.
// Scanning an event's new id cost as much as the rest of its values.
func isHexID(s []byte) bool {
	if len(s) < 16 {
		return false
	}
	var seen uint8
	for _, b := range s {
		c := hexClass[b]
		if c == 0 {
			return false
		}
		seen |= c
	}
	return seen&2 != 0
}

// dateHourLen is the length of a date's "YYYY-MM-DDTHH".
const dateHourLen = 13

// isUTCDate reports whether s is an RFC 3339 date in UTC in the form
// encoders write, "YYYY-MM-DDTHH:MM:SS" with at most nine fraction digits
// and "Z", with digits where the letters Y, M, D, H and S stand: every
// event's @timestamp, a new string on every event.
//
// The detectors' verdict on such a date depends on its first dateHourLen
// bytes alone, so a Tokens remembers the last clean one (scanning a date
// was a tenth of the collector's one-pass prepare; FuzzUnchangedDate holds
// the remembered verdicts to fresh ones under several configurations):
// the only anchor bytes a date holds are digits, '-' and ':' (see
// buildAnchors); its digit runs, the date's eight joined by '-', the
// pairs of the time, and the fraction between '.' and 'Z', are below the
// nine digits next looks at more closely, or (a nine-digit fraction) below
// a card's thirteen and without an SSN's dashes; a '-' starts a PEM block
// only as "-----"; and a ':' starts a key-value pair only after a name
// holding a letter, which only the first ':' has: "YYYY-MM-DDTHH", whose
// sensitivity the configuration decides.
func isUTCDate(s []byte) bool {
	n := len(s)
	if n < 20 || n > 30 || n == 21 || s[n-1] != 'Z' || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return false
	}
	for _, i := range [...]int{0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18} {
		if !isDigit(s[i]) {
			return false
		}
	}
	if n == 20 {
		return true
	}
	if s[19] != '.' {
		return false
	}
	for _, c := range s[20 : n-1] {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// Sensitive reports whether JSON replaces the value of the member named
// key (its raw content, without quotes) in an object that is the value of
// the member named parent (nil for the top-level object): by the key's
// own name or joined to the parent's. A key with escapes, or names too
// long to decide here, are reported sensitive (the caller scrubs the usual
// way).
func (t *Tokens) Sensitive(parent, key []byte) bool {
	if len(parent) > maxTokenKey || len(key) > maxTokenKey {
		return true
	}
	for _, c := range key {
		if c == '\\' {
			return true
		}
	}
	for _, c := range parent {
		if c == '\\' {
			return true
		}
	}
	n := appendNorm(t.names[:0], parent)
	pl := len(n)
	n = appendNorm(n, key)
	return t.r.keyMemo.sensitive(t.r, n, len(n)-pl) || t.r.dottedSensitive(n[:pl], key)
}
