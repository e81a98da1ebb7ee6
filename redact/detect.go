package redact

// The free-text detectors. They run on every string trailguard records, so
// the common case — nothing to find — must cost about a table lookup per
// byte: next only stops at anchor bytes (a digit, 'A' of AKIA, 'J' of eyJ,
// 'b' of bearer, '-' of -----BEGIN, '@', '=' and ':') and each detector
// rejects a non-match after looking at a few bytes. No regular expressions:
// they would cost a pass per pattern over every string.

// text is what the detectors read: JSON bodies arrive as []byte, headers
// and messages as string, and neither should be copied to be scanned.
type text interface{ ~string | ~[]byte }

// Anchor classes; a byte belongs to at most one.
const (
	aDigit = 1 + iota
	aAWS
	aJWT
	aBearer
	aPEM
	aEmail
	aKV
	aTG
)

func (r *Redactor) buildAnchors() {
	set := func(k Kind, class uint8, bytes string) {
		if r.enabled(k) {
			for i := 0; i < len(bytes); i++ {
				r.anchor[bytes[i]] = class
			}
		}
	}
	if r.enabled(KindCard) || r.enabled(KindSSN) {
		for c := '0'; c <= '9'; c++ {
			r.anchor[c] = aDigit
		}
	}
	set(KindAWSKey, aAWS, "A")
	set(KindJWT, aJWT, "J")
	set(KindBearer, aBearer, "bB")
	set(KindPrivateKey, aPEM, "-")
	set(KindEmail, aEmail, "@")
	set(KindKeyValue, aKV, "=:")
	set(KindTrailguardToken, aTG, "_")
	for c := range 256 {
		r.strTab[c] = strSpecial[c] | r.anchor[c]
		switch {
		case r.anchor[c] == aDigit:
			r.quickTab[c] = qDigit
		case r.anchor[c] != 0 || c == ' ' || c == '-':
			r.quickTab[c] = qStop
		}
		switch r.queryTab[c] = r.quickTab[c]; c {
		case '=':
			r.queryTab[c] = qEq
		case '&':
			r.queryTab[c] = qAmp
		case '%', '+':
			r.queryTab[c] = qStop
		}
	}
}

// quickTab's classes: qDigit for the bytes of digit runs when a digit
// detector is on, qStop for every other anchor and for the bytes that
// join digit groups (' ' and '-').
const (
	qDigit = 1
	qStop  = 2
	qEq    = 4 // queryTab's: the '=' after a parameter's name
	qAmp   = 8 // queryTab's: the '&' between parameters
)

// quickClean reports whether next can find nothing in s without running
// it: s holds no anchor but digits, no byte that joins digit groups, and
// no run of nine digits or more. next skips every digit run of fewer
// than nine digits that no ' ' or '-' follows (its first test), and every
// detector but the digit ones starts at another anchor, so for such an s
// the full scan finds nothing either (FuzzQuickClean holds the two to
// that). It is one table lookup per byte, without the branch on every
// digit run that the full scan mispredicts: paths with ids in them
// ("/api/v1/orders/734213") are its case. false says only that the full
// scan must run.
func (r *Redactor) quickClean(s string) bool {
	// Two sums without a branch per byte: whether any byte stops the
	// shortcut, and how many digits there are, eight bytes at a time so
	// that text with an anchor early on (most prose) gives up early.
	// Fewer than nine digits make no run of nine; with more, the runs
	// are measured.
	t := &r.quickTab
	var acc uint8
	digits := 0
	rest := s
	for len(rest) >= 8 {
		q0, q1, q2, q3 := t[rest[0]], t[rest[1]], t[rest[2]], t[rest[3]]
		q4, q5, q6, q7 := t[rest[4]], t[rest[5]], t[rest[6]], t[rest[7]]
		acc |= q0 | q1 | q2 | q3 | q4 | q5 | q6 | q7
		if acc&qStop != 0 {
			return false
		}
		digits += int(q0&qDigit + q1&qDigit + q2&qDigit + q3&qDigit + q4&qDigit + q5&qDigit + q6&qDigit + q7&qDigit)
		rest = rest[8:]
	}
	for i := 0; i < len(rest); i++ {
		q := t[rest[i]]
		acc |= q
		digits += int(q & qDigit)
	}
	if acc&qStop != 0 {
		return false
	}
	if digits < 9 {
		return true
	}
	run := 0
	for i := 0; i < len(s); i++ {
		if t[s[i]] != qDigit {
			run = 0
		} else if run++; run >= 9 {
			return false
		}
	}
	return true
}

// span is a secret at s[start:end].
type span struct {
	start, end int
	kind       Kind
}

// scrub appends s with every match replaced to dst. When there is no match
// it returns dst unchanged and false, so callers can keep the original.
func scrub[T text](r *Redactor, dst []byte, s T) ([]byte, bool) {
	m, ok := next(r, s, 0, 0)
	if !ok {
		return dst, false
	}
	last := 0
	for ok {
		dst = append(dst, s[last:m.start]...)
		dst = appendMatch(r, dst, m.kind, s[m.start:m.end])
		last = m.end
		m, ok = next(r, s, last, last)
	}
	return append(dst, s[last:]...), true
}

// next returns the first match anchored at or after start. Matches never
// reach back before from, the end of the previous match.
func next[T text](r *Redactor, s T, from, start int) (span, bool) {
	anchor := &r.anchor
	for i := start; i < len(s); i++ {
		class := anchor[s[i]]
		if class == 0 {
			continue
		}
		var m span
		ok := false
		switch class {
		case aDigit:
			if i > from && isDigit(s[i-1]) {
				continue
			}
			// digitsAt's first test, here without a call: most digit runs
			// (versions, dates, ports, ids) are too short to be a secret.
			// A run of fewer than nine digits that no ' ' or '-' joins
			// to more is skipped whole.
			j := i + 1
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			if j-i < 9 && (j+1 >= len(s) || s[j] != ' ' && s[j] != '-' || !isDigit(s[j+1])) {
				i = j - 1
				continue
			}
			if n := shortDigitRun(s, i); n > 0 {
				i = n - 1
				continue
			}
			var end int
			m, ok, end = digitsAt(r, s, i)
			if !ok {
				i = end - 1
				continue
			}
		case aAWS:
			m, ok = awsAt(s, i)
		case aJWT:
			m, ok = jwtAt(s, from, i)
		case aBearer:
			m, ok = bearerAt(s, i)
		case aPEM:
			m, ok = pemAt(s, i)
		case aEmail:
			m, ok = emailAt(s, from, i)
		case aKV:
			m, ok = keyValueAt(r, s, from, i)
		case aTG:
			m, ok = tgTokenAt(s, from, i)
		}
		if ok {
			return m, true
		}
	}
	return span{}, false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isLetter(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
func isAlnum(c byte) bool  { return isLetter(c) || isDigit(c) }
func isB64URL(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }

func hasPrefixAt[T text](s T, i int, p string) bool {
	if len(s)-i < len(p) {
		return false
	}
	for j := 0; j < len(p); j++ {
		if s[i+j] != p[j] {
			return false
		}
	}
	return true
}

// shortDigitRun returns the end of the run of digit groups at i when it
// holds fewer than the nine digits of the shortest secret, and 0 when it
// holds more (digitsAt then looks closer).
func shortDigitRun[T text](s T, i int) int {
	n, j := 0, i
	for j < len(s) && n < 9 {
		if isDigit(s[j]) {
			n++
			j++
		} else if j+1 < len(s) && (s[j] == ' ' || s[j] == '-') && isDigit(s[j+1]) {
			j++
		} else {
			break
		}
	}
	if n < 9 {
		return j
	}
	return 0
}

// digitsAt looks at the run of digit groups (digits joined by single spaces
// or dashes) that starts at i. A card or SSN may start at any group, since
// "order 100 4111 1111 1111 1111" is one run; a card is the longest window
// of whole groups from that group that passes the checks. When nothing
// matches it returns the run's end so the scan skips the run.
func digitsAt[T text](r *Redactor, s T, i int) (span, bool, int) {
	// The caller has skipped runs of fewer than nine digits (shortDigitRun),
	// which most digit runs (dates, ids, ports, prices) are.
	card, ssn := r.card, r.ssn
	g := i
	for {
		if ssn {
			if e, ok := ssnAt(s, g); ok {
				if end, id := hexIdentifier(s, g, e); id {
					return span{}, false, end
				}
				return span{g, e, KindSSN}, true, e
			}
		}
		if card && !maskTail(s, g) {
			if e, ok := cardAt(s, g); ok {
				e = overlappingCards(s, g, e)
				if end, id := hexIdentifier(s, g, e); id {
					return span{}, false, end
				}
				return span{g, e, KindCard}, true, e
			}
		}
		j := g
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j+1 < len(s) && (s[j] == ' ' || s[j] == '-') && isDigit(s[j+1]) {
			g = j + 1
			continue
		}
		return span{}, false, j
	}
}

// maskTail reports whether the digit group at g is the last four digits
// of a card mask ("************1111"): a second pass must not read them,
// with the digits after them, as a new card.
func maskTail[T text](s T, g int) bool {
	if g < 12 || g+4 > len(s) || (g+4 < len(s) && isDigit(s[g+4])) {
		return false
	}
	for k := g - 12; k < g; k++ {
		if s[k] != '*' {
			return false
		}
	}
	return true
}

// hexIdentifier reports whether the match [g, e) lies in an identifier
// made of hex digits and dashes, such as a UUID ("01a229fa-2162-7447-9974-
// 6531957ed1d0": its middle groups pass for a card one time in thousands)
// or a trace id, and returns the identifier's end. Such a token is at least
// 16 characters long and holds a hex letter, or is UUID-shaped (8-4-4-4-12).
// A card glued to other letters ("cc4111…end") is still a card.
func hexIdentifier[T text](s T, g, e int) (int, bool) {
	tokenChar := func(c byte) bool { return isDigit(c) || isLetter(c) || c == '-' }
	st, end := g, e
	for st > 0 && tokenChar(s[st-1]) {
		st--
	}
	for end < len(s) && tokenChar(s[end]) {
		end++
	}
	if end-st < 16 {
		return 0, false
	}
	letter := false
	for k := st; k < end; k++ {
		switch c := s[k] | 0x20; {
		case 'a' <= c && c <= 'f':
			letter = true
		case isDigit(s[k]) || s[k] == '-':
		default:
			return 0, false
		}
	}
	if letter {
		return end, true
	}
	// All digits: only the UUID shape makes it an identifier.
	if end-st != 36 {
		return 0, false
	}
	for k := st; k < end; k++ {
		if dash := k-st == 8 || k-st == 13 || k-st == 18 || k-st == 23; dash != (s[k] == '-') {
			return 0, false
		}
	}
	return end, true
}

// overlappingCards extends a card found at [g, e) over every card that
// starts at a later group inside it and ends beyond it: in "41111111111
// 3856-4851-6688-6038" the first 15 digits pass Luhn, and stopping there
// would leave the real card's last twelve digits in clear.
func overlappingCards[T text](s T, g, e int) int {
	for h := g; ; {
		for h < e && isDigit(s[h]) {
			h++
		}
		if h >= e || !(s[h] == ' ' || s[h] == '-') {
			return e
		}
		h++
		if e2, ok := cardAt(s, h); ok && e2 > e {
			e = e2
		}
	}
}

// cardAt returns the end of the longest card number starting at the digit
// group at g. The first digit must be a payment network's (2–6 for Mastercard,
// Visa, Amex, Discover, JCB, UnionPay, Maestro; 8 for RuPay and UnionPay),
// which keeps millisecond timestamps (1…) out even when they pass Luhn.
func cardAt[T text](s T, g int) (int, bool) {
	if c := s[g]; c < '2' || c > '6' && c != '8' {
		return 0, false
	}
	end, total, j := -1, 0, g
	for {
		k := j
		for k < len(s) && isDigit(s[k]) {
			k++
		}
		if total += k - j; total > 19 {
			break // more than 19 digits: an id, not a card
		}
		if total >= 13 && luhn(s[g:k]) {
			end = k
		}
		if k+1 < len(s) && (s[k] == ' ' || s[k] == '-') && isDigit(s[k+1]) {
			j = k + 1
			continue
		}
		break
	}
	return end, end > 0
}

// luhn checks the Luhn (mod 10) check digit over the digits of s.
func luhn[T text](s T) bool {
	sum, double := 0, false
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if !isDigit(c) {
			continue
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// isCardValue reports whether all of v (trimmed of spaces) is one card
// number, as when a "card_number" field holds it.
func isCardValue[T text](v T) bool {
	i, j := 0, len(v)
	for i < j && v[i] == ' ' {
		i++
	}
	for j > i && v[j-1] == ' ' {
		j--
	}
	if i == j || !isDigit(v[i]) {
		return false
	}
	e, ok := cardAt(v[:j], i)
	return ok && e == j
}

// ssnAt matches ddd-dd-dddd at g, rejecting numbers the SSA never issues
// (area 000, 666 or 9xx, group 00, serial 0000) and longer dashed numbers.
func ssnAt[T text](s T, g int) (int, bool) {
	e := g + 11
	if len(s) < e || g > 0 && s[g-1] == '-' {
		return 0, false
	}
	for k := g; k < e; k++ {
		if k == g+3 || k == g+6 {
			if s[k] != '-' {
				return 0, false
			}
		} else if !isDigit(s[k]) {
			return 0, false
		}
	}
	if e < len(s) && (isDigit(s[e]) || s[e] == '-' && e+1 < len(s) && isDigit(s[e+1])) {
		return 0, false
	}
	a0, a1, a2 := s[g], s[g+1], s[g+2]
	if a0 == '9' || a0 == '0' && a1 == '0' && a2 == '0' || a0 == '6' && a1 == '6' && a2 == '6' {
		return 0, false
	}
	if s[g+4] == '0' && s[g+5] == '0' {
		return 0, false
	}
	if s[g+7] == '0' && s[g+8] == '0' && s[g+9] == '0' && s[g+10] == '0' {
		return 0, false
	}
	return e, true
}

// tgTokenAt matches a trailguard API token, tg_<8>_<32> in lower-case
// base32 (access.Store.Create); the anchor is the '_' after "tg".
func tgTokenAt[T text](s T, from, i int) (span, bool) {
	st, e := i-2, i+42
	if st < from || len(s) < e || s[st] != 't' || s[st+1] != 'g' || st > 0 && isAlnum(s[st-1]) || e < len(s) && isAlnum(s[e]) || s[i+9] != '_' {
		return span{}, false
	}
	for k := i + 1; k < e; k++ {
		if c := s[k]; k != i+9 && !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return span{}, false
		}
	}
	return span{st, e, KindTrailguardToken}, true
}

// awsAt matches an AWS access key id: AKIA (long-term) or ASIA (temporary)
// followed by 16 upper-case letters and digits.
func awsAt[T text](s T, i int) (span, bool) {
	e := i + 20
	if len(s) < e || i > 0 && isAlnum(s[i-1]) || e < len(s) && isAlnum(s[e]) {
		return span{}, false
	}
	if !hasPrefixAt(s, i, "AKIA") && !hasPrefixAt(s, i, "ASIA") {
		return span{}, false
	}
	for k := i + 4; k < e; k++ {
		if !isUpper(s[k]) && !isDigit(s[k]) {
			return span{}, false
		}
	}
	return span{i, e, KindAWSKey}, true
}

// jwtAt matches a JWS (header.payload.signature) or JWE (five parts) whose
// header is base64url JSON, which always starts "eyJ" ({"). The anchor is
// the 'J'.
func jwtAt[T text](s T, from, i int) (span, bool) {
	st := i - 2
	if st < from || s[st] != 'e' || s[st+1] != 'y' || st > 0 && isB64URL(s[st-1]) {
		return span{}, false
	}
	seg := func(j int) int {
		for j < len(s) && isB64URL(s[j]) {
			j++
		}
		return j
	}
	e := seg(i + 1)
	if e-st < 10 || e >= len(s) || s[e] != '.' {
		return span{}, false
	}
	e2 := seg(e + 1)
	if e2-e-1 < 4 || e2 >= len(s) || s[e2] != '.' {
		return span{}, false
	}
	end := seg(e2 + 1) // the signature is empty for alg "none"
	for parts := 3; parts < 5 && end+1 < len(s) && s[end] == '.' && isB64URL(s[end+1]); parts++ {
		end = seg(end + 1)
	}
	return span{st, end, KindJWT}, true
}

// bearerAt matches the credential after "Bearer " (RFC 6750 b64token). To
// leave prose such as "bearer authentication" alone, the credential must be
// at least 8 characters and contain something other than letters.
func bearerAt[T text](s T, i int) (span, bool) {
	if i > 0 && isAlnum(s[i-1]) || len(s)-i < 8 {
		return span{}, false
	}
	for k := 0; k < 6; k++ {
		if s[i+k]|0x20 != "bearer"[k] {
			return span{}, false
		}
	}
	j := i + 6
	if s[j] != ' ' && s[j] != '\t' {
		return span{}, false
	}
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	st, other := j, false
	for j < len(s) {
		c := s[j]
		if isLetter(c) {
			j++
			continue
		}
		if isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' {
			other = true
			j++
			continue
		}
		break
	}
	for j < len(s) && s[j] == '=' {
		other = true
		j++
	}
	if j-st < 8 || !other {
		return span{}, false
	}
	return span{st, j, KindBearer}, true
}

// pemAt matches a PEM private key block from its BEGIN line through its END
// line. Without an END line (a truncated key) everything to the end of the
// text goes: a partial key is still a secret.
func pemAt[T text](s T, i int) (span, bool) {
	const begin, end = "-----BEGIN ", "-----END "
	if !hasPrefixAt(s, i, begin) {
		return span{}, false
	}
	j := i + len(begin)
	for j < len(s) && j-i < 80 && (isUpper(s[j]) || isDigit(s[j]) || s[j] == ' ') {
		j++
	}
	if !hasPrefixAt(s, j, "-----") || !containsPrivateKey(s[i+len(begin):j]) {
		return span{}, false
	}
	for k := j + 5; k < len(s); k++ {
		if s[k] != '-' || !hasPrefixAt(s, k, end) {
			continue
		}
		m := k + len(end)
		for m < len(s) && m-k < 80 && (isUpper(s[m]) || isDigit(s[m]) || s[m] == ' ') {
			m++
		}
		if hasPrefixAt(s, m, "-----") {
			return span{i, m + 5, KindPrivateKey}, true
		}
	}
	return span{i, len(s), KindPrivateKey}, true
}

func containsPrivateKey[T text](label T) bool {
	for k := 0; k+len("PRIVATE KEY") <= len(label); k++ {
		if hasPrefixAt(label, k, "PRIVATE KEY") {
			return true
		}
	}
	return false
}

func isEmailLocal(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

// emailAt matches local@domain.tld around the '@' at i. A domain followed
// at once by another '@' is the local part of a second address
// ("a@b.cc@d.ee"): the chain is one match. Matched alone, the first left
// the second's local part in the text, for a second scrub (the
// collector's, after the middleware's) to find and mask.
func emailAt[T text](s T, from, i int) (span, bool) {
	m, ok := emailOne(s, from, i)
	for ok && m.end < len(s) && s[m.end] == '@' {
		next, found := emailOne(s, i+1, m.end)
		if !found {
			break
		}
		i, m.end = m.end, next.end
	}
	return m, ok
}

// emailOne matches one local@domain.tld around the '@' at i.
func emailOne[T text](s T, from, i int) (span, bool) {
	st := i
	for st > from && i-st < 64 && isEmailLocal(s[st-1]) {
		st--
	}
	for st < i && s[st] == '.' {
		st++
	}
	if st == i {
		return span{}, false
	}
	j := i + 1
	for j < len(s) && j-i <= 253 && (isAlnum(s[j]) || s[j] == '-' || s[j] == '.') {
		j++
	}
	for j > i+1 && (s[j-1] == '.' || s[j-1] == '-') {
		j--
	}
	dot := -1
	for k := j - 1; k > i+1; k-- {
		if s[k] == '.' {
			dot = k
			break
		}
	}
	if dot < 0 || j-dot-1 < 2 {
		return span{}, false
	}
	for k := dot + 1; k < j; k++ {
		if !isLetter(s[k]) {
			return span{}, false
		}
	}
	return span{st, j, KindEmail}, true
}

func isKeyChar(c byte) bool { return isAlnum(c) || c == '_' || c == '-' || c == '.' }

// keyValueAt matches the value in "name=value", "name: value" and
// "\"name\": \"value\"" when name is a sensitive key: credentials in URLs,
// in log messages and in JSON that failed to parse.
func keyValueAt[T text](r *Redactor, s T, from, i int) (span, bool) {
	sep := s[i]
	ke := i
	var quote byte
	if sep == ':' && ke > from && (s[ke-1] == '"' || s[ke-1] == '\'') {
		quote = s[ke-1]
		ke--
	}
	ks, letter := ke, false
	for ks > from && ke-ks < 64 && isKeyChar(s[ks-1]) {
		ks--
		letter = letter || isLetter(s[ks])
	}
	if ks == ke || !letter {
		return span{}, false
	}
	if quote != 0 {
		if ks == from || s[ks-1] != quote {
			return span{}, false
		}
	} else if ks > from && isKeyChar(s[ks-1]) {
		return span{}, false // longer than we look at: not a name
	}
	var buf [64]byte
	if !r.sensitiveKeyNorm(appendNorm(buf[:0], s[ks:ke])) {
		return span{}, false
	}
	j := i + 1
	if sep == ':' {
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
	}
	if j < len(s) && (s[j] == '"' || s[j] == '\'') {
		q := s[j]
		vs := j + 1
		k := vs
		for k < len(s) && s[k] != q {
			if s[k] == '\\' && q == '"' {
				k++
			}
			k++
		}
		k = min(k, len(s))
		if k == vs {
			return span{}, false
		}
		return span{vs, k, KindKeyValue}, true
	}
	if alreadyScrubbed(s, j) {
		return span{}, false
	}
	vs, k := j, j
	for k < len(s) && !endsValue(sep, s[k]) {
		k++
	}
	for k > vs && (s[k-1] == ' ' || s[k-1] == '\t') {
		k--
	}
	if k == vs {
		return span{}, false
	}
	return span{vs, k, KindKeyValue}, true
}

// endsValue reports whether c ends an unquoted value. After '=' (URLs,
// logfmt, cookies) a value ends at a space; after ':' (headers, YAML) it
// runs to the end of the line, so "Authorization: Bearer x" goes whole.
// alreadyScrubbed reports whether s[vs:] starts with a replacement this
// package writes, "[REDACTED]" or "[REDACTED:<kind>]". Its ']' ends an
// unquoted value, so a second pass (the middleware scrubs, then the
// collector) would otherwise replace "[REDACTED" and leave "]]".
func alreadyScrubbed[T text](s T, vs int) bool {
	const m = "[REDACTED"
	if len(s)-vs <= len(m) {
		return false
	}
	for i := range len(m) {
		if s[vs+i] != m[i] {
			return false
		}
	}
	k := vs + len(m)
	if s[k] == ':' {
		for k++; k < len(s) && (isLetter(s[k]) || s[k] == '-'); k++ {
		}
	}
	return k < len(s) && s[k] == ']'
}

func endsValue(sep, c byte) bool {
	switch c {
	case '\n', '\r', ',', ';', '&', '"', '\'', '}', ']':
		return true
	case ' ', '\t', '#', '<', '>', ')':
		return sep == '='
	}
	return false
}
