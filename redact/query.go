package redact

// Query returns a URL query string (URL.RawQuery, without '?') with the
// values of sensitive parameters replaced and every other name and value
// run through the detectors. Parameters keep their order and untouched ones
// keep their exact encoding; rewritten ones are re-encoded. Names and values
// are percent-decoded before they are examined ("access%5Ftoken",
// "%34111…"); a malformed escape is taken literally rather than hiding the
// rest of the value. An empty value stays empty: it holds no secret.
func (r *Redactor) Query(rawQuery string) string { return r.urlencoded(rawQuery, nil) }

// Form scrubs an application/x-www-form-urlencoded body by the rules of
// [Redactor.Query].
func (r *Redactor) Form(body string) string { return r.urlencoded(body, nil) }

// urlencoded is Query and Form; memo, when not nil, answers for the plain
// names it remembers (see Memo.nameVerdict).
func (r *Redactor) urlencoded(s string, memo *Memo) string {
	if r.queryClean(s, memo) {
		return s
	}
	var (
		out     []byte // nil until something changes
		last    int    // s[last:] is not yet copied to out
		scratch []byte // the decoded name or value, only for encoded ones
	)
	rewrite := func(from, to int, repl []byte) {
		if out == nil {
			out = make([]byte, 0, len(s)+32)
		}
		out = append(out, s[last:from]...)
		out = appendQueryEscape(out, repl)
		last = to
	}
	for i := 0; i < len(s); {
		// One pass over the parameter finds its end, the first '=' and
		// whether its name or value holds an escape ('%' or '+').
		j, eq := i, -1
		encName, encVal := false, false
		for ; j < len(s); j++ {
			c := s[j]
			if !queryDelim[c] {
				continue
			}
			if c == '&' {
				break
			}
			switch {
			case c == '=' && eq < 0:
				eq = j
			case c == '=':
			case eq < 0:
				encName = true
			default:
				encVal = true
			}
		}
		name, val, hasVal := s[i:j], "", false
		if eq >= 0 {
			name, val, hasVal = s[i:eq], s[eq+1:j], true
		}
		// Plain parameters are examined in place; only encoded ones are
		// decoded, so a clean query costs no allocation.
		var sensitive bool
		if encName {
			scratch = appendFormDecode(scratch[:0], name)
			sensitive = sensitiveParam(r, scratch)
			if t, ok := scrub(r, nil, scratch); ok {
				rewrite(i, i+len(name), t)
			}
		} else if sens, known := memo.nameVerdict(name); known {
			sensitive = sens
		} else {
			sensitive = sensitiveParam(r, name)
			if t, ok := scrub(r, nil, name); ok {
				rewrite(i, i+len(name), t)
			} else if memo != nil {
				memo.rememberName(name, sensitive)
			}
		}
		if hasVal && val != "" {
			vs := i + len(name) + 1
			var t []byte
			var ok bool
			if encVal {
				scratch = appendFormDecode(scratch[:0], val)
				t, ok = scrubParam(r, scratch, sensitive)
			} else {
				t, ok = scrubParam(r, val, sensitive)
			}
			if ok {
				rewrite(vs, j, t)
			}
		}
		i = j + 1
	}
	if out == nil {
		return s
	}
	return string(append(out, s[last:]...))
}

// queryClean reports, for the common query string, that urlencoded
// would leave s as it is, at less cost: no parameter is encoded ('%',
// '+'), no byte is an anchor of a detector but the '=' after each name
// and digits (fewer than nine in all, so no run of nine), nothing joins
// digit groups (' ', '-'), and no name with a value is sensitive. A name
// or value of such a query holds nothing the detectors can start a match
// at (see quickClean), so scanning each, as urlencoded does, finds
// nothing either; the names' verdicts come from the same memo and
// sensitiveParam as urlencoded's. One pass of one table lookup per byte,
// which stops at the first byte that rules the shortcut out, and a
// branch only at the delimiters, rather than urlencoded's branch on
// every byte. false says only that urlencoded must do the work (FuzzQuery
// and FuzzMemo hold the two to the same answers, and FuzzQuery this pass
// to the two passes it replaced).
func (r *Redactor) queryClean(s string, memo *Memo) bool {
	t := &r.queryTab
	digits := 0
	name, eq := 0, -1 // where the parameter began, its '=' (-1: none yet)
	for i := 0; i < len(s); i++ {
		q := t[s[i]]
		digits += int(q & qDigit)
		if q&(qStop|qEq|qAmp) == 0 {
			continue
		}
		switch q {
		case qEq:
			// Each '=' must be the one after a name: a second in a
			// parameter is part of its value, where the key-value
			// detector looks at it.
			if eq >= 0 {
				return false
			}
			eq = i
		case qAmp:
			if !r.paramClean(s[name:i], eq-name, digits, memo) {
				return false
			}
			name, eq = i+1, -1
		default:
			return false
		}
	}
	return r.paramClean(s[name:], eq-name, digits, memo)
}

// paramClean is queryClean's verdict on one parameter p, whose '=' is at
// eq (negative: none), once every byte up to its end has passed the
// table: the name of a parameter with a value must not be sensitive. The
// digits counted so far must be fewer than nine before a name is looked
// up, so that the memo remembers only names the detectors find nothing in.
func (r *Redactor) paramClean(p string, eq, digits int, memo *Memo) bool {
	if digits >= 9 {
		return false
	}
	if eq < 0 || eq+1 == len(p) {
		return true // no value, or an empty one: no secret
	}
	name := p[:eq]
	sensitive, known := memo.nameVerdict(name)
	if !known {
		sensitive = sensitiveParam(r, name)
		if memo != nil {
			memo.rememberName(name, sensitive)
		}
	}
	return !sensitive
}

// queryDelim marks the bytes urlencoded's scan stops at: the parameter
// separator, '=', and the bytes decoding changes.
var queryDelim = func() (t [256]bool) {
	for _, c := range []byte("&=%+") {
		t[c] = true
	}
	return t
}()

func sensitiveParam[T text](r *Redactor, name T) bool {
	var buf [64]byte
	return r.sensitiveKeyNorm(appendNorm(buf[:0], name))
}

// scrubParam returns the replacement for a parameter value, and false when
// the value stays as it is.
func scrubParam[T text](r *Redactor, v T, sensitive bool) ([]byte, bool) {
	if sensitive {
		return appendValue(r, nil, v), true
	}
	return scrub(r, nil, v)
}

// appendFormDecode decodes '+' and %XX. Unlike net/url it never fails: a
// malformed escape is kept as written.
func appendFormDecode(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			dst = append(dst, ' ')
		case '%':
			if i+2 < len(s) {
				if h, l := unhex(s[i+1]), unhex(s[i+2]); h >= 0 && l >= 0 {
					dst = append(dst, byte(h<<4|l))
					i += 2
					continue
				}
			}
			dst = append(dst, c)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// queryLiteral marks the bytes written unescaped in a rewritten value. The
// brackets, ':' and '*' of the replacements stay readable; the delimiters
// '&', '=', '+', ';', '#' and '%' are always escaped.
var queryLiteral = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = isAlnum(byte(c))
	}
	for _, c := range []byte("-._~!$'()*,:@/?[]") {
		t[c] = true
	}
	return t
}()

func appendQueryEscape(dst, s []byte) []byte {
	const hexDigits = "0123456789ABCDEF"
	for _, c := range s {
		switch {
		case queryLiteral[c]:
			dst = append(dst, c)
		case c == ' ':
			dst = append(dst, '+')
		default:
			dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&0xf])
		}
	}
	return dst
}
