package redact

import "strings"

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
// sensitiveParam as urlencoded's. One table lookup per byte and a few
// IndexByte per parameter, rather than urlencoded's branch on every
// byte. false says only that urlencoded must do the work (FuzzQuery and
// FuzzMemo hold the two to the same answers).
func (r *Redactor) queryClean(s string, memo *Memo) bool {
	t := &r.queryTab
	var acc uint8
	digits, eqs := 0, 0
	rest := s
	for len(rest) >= 8 {
		q0, q1, q2, q3 := t[rest[0]], t[rest[1]], t[rest[2]], t[rest[3]]
		q4, q5, q6, q7 := t[rest[4]], t[rest[5]], t[rest[6]], t[rest[7]]
		acc |= q0 | q1 | q2 | q3 | q4 | q5 | q6 | q7
		if acc&qStop != 0 {
			return false
		}
		digits += int(q0&qDigit + q1&qDigit + q2&qDigit + q3&qDigit + q4&qDigit + q5&qDigit + q6&qDigit + q7&qDigit)
		eqs += int((q0&qEq + q1&qEq + q2&qEq + q3&qEq + q4&qEq + q5&qEq + q6&qEq + q7&qEq) >> 2)
		rest = rest[8:]
	}
	for i := 0; i < len(rest); i++ {
		q := t[rest[i]]
		acc |= q
		digits += int(q & qDigit)
		eqs += int(q&qEq) >> 2
	}
	if acc&qStop != 0 || digits >= 9 {
		return false
	}
	// Each '=' must be the one after a name: a second in a parameter is
	// part of its value, where the key-value detector looks at it.
	withEq := 0
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '&')
		if j < 0 {
			j = len(s)
		} else {
			j += i
		}
		name, val, hasVal := s[i:j], "", false
		if eq := strings.IndexByte(name, '='); eq >= 0 {
			name, val, hasVal = s[i:i+eq], s[i+eq+1:j], true
			withEq++
		}
		if hasVal && val != "" {
			sensitive, known := memo.nameVerdict(name)
			if !known {
				sensitive = sensitiveParam(r, name)
				if memo != nil {
					memo.rememberName(name, sensitive)
				}
			}
			if sensitive {
				return false
			}
		}
		i = j + 1
	}
	return withEq == eqs
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
