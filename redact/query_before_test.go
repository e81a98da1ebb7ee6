package redact

import "strings"

// urlencodedBefore is urlencoded as it was before it found a parameter's
// end, its '=' and its escapes in one pass (2026-11-30): FuzzQuery holds
// the two to the same output.
func urlencodedBefore(r *Redactor, s string) string {
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
		j := strings.IndexByte(s[i:], '&')
		if j < 0 {
			j = len(s)
		} else {
			j += i
		}
		name, val, hasVal := strings.Cut(s[i:j], "=")
		// Plain parameters are examined in place; only encoded ones are
		// decoded, so a clean query costs no allocation.
		var sensitive bool
		if formEncodedBefore(name) {
			scratch = appendFormDecode(scratch[:0], name)
			sensitive = sensitiveParam(r, scratch)
			if t, ok := scrub(r, nil, scratch); ok {
				rewrite(i, i+len(name), t)
			}
		} else {
			sensitive = sensitiveParam(r, name)
			if t, ok := scrub(r, nil, name); ok {
				rewrite(i, i+len(name), t)
			}
		}
		if hasVal && val != "" {
			vs := i + len(name) + 1
			var t []byte
			var ok bool
			if formEncodedBefore(val) {
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

// formEncodedBefore reports whether s holds '%' or '+', which decoding changes.
// (strings.ContainsAny builds a byte set on every call.)
func formEncodedBefore(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '%' || c == '+' {
			return true
		}
	}
	return false
}

// queryCleanBefore is queryClean as it was before it took the string in
// one pass (2026-12-03): the table eight bytes at a time, then each
// parameter's '&' and '=' found again. FuzzQuery holds the two to the
// same answers.
func queryCleanBefore(r *Redactor, s string, memo *Memo) bool {
	t := &r.queryTab
	var acc uint8
	digits, eqs := 0, 0
	for i := 0; i < len(s); i++ {
		q := t[s[i]]
		if q == qAmp {
			continue // the table had no class for '&' then
		}
		acc |= q
		digits += int(q & qDigit)
		eqs += int(q&qEq) >> 2
	}
	if acc&qStop != 0 || digits >= 9 {
		return false
	}
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
