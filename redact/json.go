package redact

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/trailguard/trailguard/internal/jsonscan"
)

// ErrInvalidJSON is wrapped by the errors [Redactor.JSON] returns for input
// that is not JSON or is nested deeper than the limit. Callers fall back to
// [Redactor.String] for such bodies.
var ErrInvalidJSON = errors.New("invalid JSON")

// JSON appends the scrubbed form of the JSON document body to dst. Values of
// sensitive keys — of any type; null is kept — become strings; a key is
// sensitive by its own name or joined to its parent's, since
// {"api":{"key":…}} is the field api.key wherever it is indexed, and a key
// written with dots as the nested form it stands for ("user.pin" as
// {"user":{"pin":…}}). Every other
// string (keys included) goes through the detectors, and integers that are
// card numbers become strings. Everything else is copied byte for byte, so
// the output keeps the input's structure, key order and whitespace, and is
// valid JSON whenever the input is.
//
// Strings are decoded before detection, so escaping a secret ("\u0034111…",
// "-----BEGIN\u0020…") does not hide it; a string that is rewritten is
// re-encoded with minimal escapes. A string holding a JSON document (as in
// double-encoded bodies) is scrubbed as JSON.
//
// Invalid JSON and nesting deeper than [Config.MaxDepth] give an error
// wrapping [ErrInvalidJSON], and dst is returned unchanged.
func (r *Redactor) JSON(dst, body []byte) ([]byte, error) {
	w := walker{r: r, src: body, out: dst}
	if err := w.document(); err != nil {
		return dst, err
	}
	return w.flush(len(body)), nil
}

// walker copies src to out in one pass. Bytes are not copied one by one:
// src[mark:] is pending, and only when something must change does the
// walker append the pending bytes and the replacement.
type walker struct {
	r     *Redactor
	src   []byte
	out   []byte
	mark  int
	pos   int
	depth int
	dec   []byte // a decoded string, reused
	tmp   []byte // a scrubbed string before re-encoding, reused
	// names[:nlen] holds the normalised key of each open object member,
	// one after the other; the member whose value is being walked starts
	// at parentAt (array elements keep their array's). {"api":{"key":…}}
	// is the field api.key, as sensitive as "api_key". A fixed array keeps
	// the walk free of allocations; names beyond it are checked alone.
	names    [256]byte
	nlen     int
	parentAt int
}

func (w *walker) flush(upTo int) []byte {
	w.out = append(w.out, w.src[w.mark:upTo]...)
	w.mark = upTo
	return w.out
}

func (w *walker) fail(msg string) error {
	return fmt.Errorf("redact: json: %w: %s at offset %d", ErrInvalidJSON, msg, w.pos)
}

func (w *walker) failChar(context string) error {
	if w.pos >= len(w.src) {
		return w.fail("unexpected end of input " + context)
	}
	return w.fail(fmt.Sprintf("invalid character %q %s", w.src[w.pos], context))
}

func (w *walker) document() error {
	if err := w.value(); err != nil {
		return err
	}
	w.ws()
	if w.pos != len(w.src) {
		return w.failChar("after top-level value")
	}
	return nil
}

func (w *walker) ws() {
	src, i := w.src, w.pos
	for i < len(src) && (src[i] == ' ' || src[i] == '\n' || src[i] == '\t' || src[i] == '\r') {
		i++
	}
	w.pos = i
}

func (w *walker) value() error {
	w.ws()
	if w.pos >= len(w.src) {
		return w.failChar("looking for a value")
	}
	switch c := w.src[w.pos]; {
	case c == '"':
		st := w.pos
		esc, anchor, err := w.str()
		if err != nil {
			return err
		}
		if esc || anchor > 0 {
			w.scrubString(st, esc, anchor)
		}
		return nil
	case c == '{':
		return w.object(false)
	case c == '[':
		return w.array(false)
	case c == '-' || isDigit(c):
		st := w.pos
		intOnly, err := w.number()
		if err != nil {
			return err
		}
		if intOnly && w.pos-st >= 13 && w.r.card && isCardValue(w.src[st:w.pos]) {
			w.flush(st)
			w.out = append(w.out, '"')
			w.out = appendMatch(w.r, w.out, KindCard, w.src[st:w.pos])
			w.out = append(w.out, '"')
			w.mark = w.pos
		}
		return nil
	default:
		return w.literal()
	}
}

// skip validates a value without rewriting anything: the value of a
// sensitive key is replaced whole.
func (w *walker) skip() error {
	w.ws()
	if w.pos >= len(w.src) {
		return w.failChar("looking for a value")
	}
	switch c := w.src[w.pos]; {
	case c == '"':
		_, _, err := w.str()
		return err
	case c == '{':
		return w.object(true)
	case c == '[':
		return w.array(true)
	case c == '-' || isDigit(c):
		_, err := w.number()
		return err
	default:
		return w.literal()
	}
}

func (w *walker) enter() error {
	if w.depth++; w.depth > w.r.maxDepth {
		return w.fail(fmt.Sprintf("nesting deeper than %d", w.r.maxDepth))
	}
	return nil
}

func (w *walker) object(skipping bool) error {
	if err := w.enter(); err != nil {
		return err
	}
	w.pos++ // '{'
	w.ws()
	if w.pos < len(w.src) && w.src[w.pos] == '}' {
		w.pos++
		w.depth--
		return nil
	}
	parentAt, base := w.parentAt, w.nlen
	for {
		if w.pos >= len(w.src) || w.src[w.pos] != '"' {
			return w.failChar("looking for an object key")
		}
		ks := w.pos
		esc, anchor, err := w.str()
		if err != nil {
			return err
		}
		sensitive := false
		if !skipping {
			sensitive = w.sensitive(parentAt, base, w.src[ks+1:w.pos-1], esc)
			w.parentAt = base
			if esc || anchor > 0 {
				w.scrubString(ks, esc, anchor)
			}
		}
		w.ws()
		if w.pos >= len(w.src) || w.src[w.pos] != ':' {
			return w.failChar("after object key")
		}
		w.pos++
		switch {
		case skipping:
			err = w.skip()
		case sensitive:
			err = w.sensitiveValue()
		default:
			err = w.value()
		}
		if err != nil {
			return err
		}
		w.parentAt, w.nlen = parentAt, base
		w.ws()
		if w.pos < len(w.src) && w.src[w.pos] == ',' {
			w.pos++
			w.ws()
			continue
		}
		if w.pos < len(w.src) && w.src[w.pos] == '}' {
			w.pos++
			w.depth--
			return nil
		}
		return w.failChar("after object value")
	}
}

func (w *walker) array(skipping bool) error {
	if err := w.enter(); err != nil {
		return err
	}
	w.pos++ // '['
	w.ws()
	if w.pos < len(w.src) && w.src[w.pos] == ']' {
		w.pos++
		w.depth--
		return nil
	}
	for {
		var err error
		if skipping {
			err = w.skip()
		} else {
			err = w.value()
		}
		if err != nil {
			return err
		}
		w.ws()
		if w.pos < len(w.src) && w.src[w.pos] == ',' {
			w.pos++
			continue
		}
		if w.pos < len(w.src) && w.src[w.pos] == ']' {
			w.pos++
			w.depth--
			return nil
		}
		return w.failChar("after array element")
	}
}

// sensitive records the normalised raw key content k in w.names at base
// and reports whether it names a sensitive key, alone or joined to its
// parent's name, w.names[parentAt:base].
func (w *walker) sensitive(parentAt, base int, k []byte, esc bool) bool {
	if esc {
		w.dec, _ = jsonscan.AppendUnescaped(w.dec[:0], k)
		k = w.dec
	}
	i := base
	for _, c := range k {
		if c = normTab[c]; c == 0 {
			continue
		}
		if i == len(w.names) { // too long to keep: check it alone
			w.nlen = base
			var buf [64]byte
			return w.r.sensitiveKeyNorm(appendNorm(buf[:0], k)) || w.r.dottedSensitive(nil, k)
		}
		w.names[i] = c
		i++
	}
	w.nlen = i
	return w.r.keyMemo.sensitive(w.r, w.names[parentAt:i], i-base) || w.r.dottedSensitive(w.names[parentAt:base], k)
}

// dottedSensitive reports whether a key written with dots, the ECS form
// of nested objects ("http.request.headers.authorization" is
// {"http":{"request":{"headers":{"authorization":…}}}}, as shippers and
// OpenTelemetry flatten names), names a sensitive member as its nested
// form would: one of its segments alone, or joined to the segment before
// it (the first to parent, the enclosing member's normalised name). The
// whole key with its dots dropped ("api.key" as apikey) is the caller's
// check. k is the key's raw (unescaped) text; a key without dots is not
// checked here.
func (r *Redactor) dottedSensitive(parent, k []byte) bool {
	dot := -1
	for i, c := range k {
		if c == '.' {
			dot = i
			break
		}
	}
	if dot < 0 {
		return false
	}
	var pbuf, sbuf, jbuf [64]byte
	prev := append(pbuf[:0], parent...)
	for len(k) > 0 {
		seg := k
		k = nil
		for i, c := range seg {
			if c == '.' {
				seg, k = seg[:i], seg[i+1:]
				break
			}
		}
		n := appendNorm(sbuf[:0], seg)
		if len(n) == 0 {
			continue
		}
		if r.sensitiveKeyNorm(n) || len(prev) > 0 && r.sensitiveKeyNorm(append(append(jbuf[:0], prev...), n...)) {
			return true
		}
		prev = append(prev[:0], n...)
	}
	return false
}

// sensitiveValue replaces the value of a sensitive key with a string.
func (w *walker) sensitiveValue() error {
	w.ws()
	st := w.pos
	if err := w.skip(); err != nil {
		return err
	}
	v := w.src[st:w.pos]
	switch v[0] {
	case 'n':
		return nil // null carries nothing
	case '"':
		v = v[1 : len(v)-1]
		for _, c := range v {
			if c == '\\' {
				w.dec, _ = jsonscan.AppendUnescaped(w.dec[:0], v)
				v = w.dec
				break
			}
		}
	case '{', '[':
		if w.r.mode == HMAC {
			// Hash the compact form, so whitespace does not change the token.
			w.tmp = appendCompact(w.tmp[:0], v)
			v = w.tmp
		}
	}
	w.flush(st)
	w.out = append(w.out, '"')
	w.out = appendValue(w.r, w.out, v)
	w.out = append(w.out, '"')
	w.mark = w.pos
	return nil
}

// scrubString runs the detectors over the string token at src[st:w.pos],
// whose first anchor byte is at src[anchor].
func (w *walker) scrubString(st int, esc bool, anchor int) {
	raw := w.src[st+1 : w.pos-1]
	if !esc {
		// Without escapes the raw bytes are the text, and every replacement
		// is plain ASCII that needs no escaping.
		m, ok := next(w.r, raw, 0, anchor-st-1)
		if !ok {
			return
		}
		w.flush(st + 1)
		last := 0
		for ok {
			w.out = append(w.out, raw[last:m.start]...)
			w.out = appendMatch(w.r, w.out, m.kind, raw[m.start:m.end])
			last = m.end
			m, ok = next(w.r, raw, last, last)
		}
		w.out = append(w.out, raw[last:]...)
		w.mark = w.pos - 1
		return
	}
	w.dec, _ = jsonscan.AppendUnescaped(w.dec[:0], raw)
	var (
		res     []byte
		changed bool
	)
	if looksLikeJSON(w.dec) {
		// A JSON document inside a string: scrub it as JSON so its
		// sensitive keys are found. The inner walker shares the depth
		// budget, so nesting documents in strings cannot exceed it.
		inner := walker{r: w.r, src: w.dec, depth: w.depth}
		if inner.document() == nil {
			res = inner.flush(len(w.dec))
			changed = string(res) != string(w.dec)
		}
	}
	if res == nil {
		w.tmp, changed = scrub(w.r, w.tmp[:0], w.dec)
		res = w.tmp
	}
	if !changed {
		return
	}
	w.flush(st + 1)
	w.out = appendEscape(w.out, res)
	w.mark = w.pos - 1
}

func looksLikeJSON(s []byte) bool {
	for _, c := range s {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{', '[':
			return true
		}
		return false
	}
	return false
}

// str consumes a string token. It reports whether the string holds
// escapes and the offset of the first byte a detector starts from (0 when
// there is none: offset 0 is the opening quote).
func (w *walker) str() (esc bool, anchor int, err error) {
	w.pos++ // opening quote
	tab := &w.r.strTab
	for {
		// Locals, not fields, so the compiler keeps them in registers.
		src, i := w.src, w.pos
		for i < len(src) && tab[src[i]] == 0 {
			i++
		}
		w.pos = i
		if w.pos >= len(w.src) {
			return esc, anchor, w.fail("unterminated string")
		}
		if tab[w.src[w.pos]]&special == 0 {
			if anchor == 0 {
				anchor = w.pos
			}
			w.pos++
			continue
		}
		switch c := w.src[w.pos]; c {
		case '"':
			w.pos++
			return esc, anchor, nil
		case '\\':
			esc = true
			if w.pos+1 >= len(w.src) {
				w.pos++
				return esc, anchor, w.fail("unterminated string")
			}
			switch w.src[w.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				w.pos += 2
			case 'u':
				if w.pos+6 > len(w.src) {
					return esc, anchor, w.fail("short \\u escape")
				}
				for _, h := range w.src[w.pos+2 : w.pos+6] {
					if unhex(h) < 0 {
						return esc, anchor, w.fail("invalid \\u escape")
					}
				}
				w.pos += 6
			default:
				w.pos++
				return esc, anchor, w.failChar("in string escape")
			}
		default:
			return esc, anchor, w.fail(fmt.Sprintf("control character %#02x in string", c))
		}
	}
}

// strSpecial marks the bytes that end the fast scan through a string.
// Redactor.strTab adds the detectors' anchors, so a string without any is
// never scanned twice.
var strSpecial = func() (t [256]uint8) {
	for c := 0; c < 0x20; c++ {
		t[c] = special
	}
	t['"'], t['\\'] = special, special
	return t
}()

// special marks, in strTab, the bytes that end the fast scan; the other
// bits hold the anchor class.
const special = 0x80

// number consumes a number token and reports whether it is a plain integer.
func (w *walker) number() (bool, error) {
	s, i := w.src, w.pos
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		w.pos = i
		return false, w.failChar("in number")
	}
	intOnly := s[w.pos] != '-'
	if i < len(s) && s[i] == '.' {
		intOnly = false
		i++
		if i >= len(s) || !isDigit(s[i]) {
			w.pos = i
			return false, w.failChar("after decimal point")
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		intOnly = false
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			w.pos = i
			return false, w.failChar("in exponent")
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	w.pos = i
	return intOnly, nil
}

func (w *walker) literal() error {
	for _, lit := range [...]string{"true", "false", "null"} {
		if hasPrefixAt(w.src, w.pos, lit) {
			w.pos += len(lit)
			return nil
		}
	}
	return w.failChar("looking for a value")
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// appendEscape encodes s as JSON string content. Only what JSON requires is
// escaped, plus DEL and the line separators, so a log line cannot be split.
func appendEscape(dst, s []byte) []byte {
	const hexDigits = "0123456789abcdef"
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < 0x7f {
			dst = append(dst, c)
			i++
			continue
		}
		if c >= 0x80 {
			r, n := utf8.DecodeRune(s[i:])
			if r == '\u2028' || r == '\u2029' {
				dst = append(dst, `\u202`...)
				dst = append(dst, hexDigits[r&0xf])
			} else {
				dst = append(dst, s[i:i+n]...)
			}
			i += n
			continue
		}
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
	}
	return dst
}

// appendCompact appends a validated JSON value without insignificant
// whitespace.
func appendCompact(dst, v []byte) []byte {
	in := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if in {
			dst = append(dst, c)
			switch c {
			case '\\':
				i++
				dst = append(dst, v[i])
			case '"':
				in = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r':
		case '"':
			in = true
			dst = append(dst, c)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
