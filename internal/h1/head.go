// Package h1 parses HTTP/1.1 request heads for the gateway's lean front
// end: strictly, and only the plain requests it serves itself (GET, HEAD
// or OPTIONS with an origin-form target, HTTP/1.1, a Host, no body, no
// upgrade, no expectation). For such a head it yields exactly what
// net/http's server hands a handler (FuzzParseMatchesNetHTTP compares
// them); for anything else, or anything it is not sure of, it declines,
// and the connection is handed to net/http with the bytes read so far.
// It must never take a message net/http would read differently: a
// disagreement about where a request ends or what it carries is request
// smuggling (CWE-444).
package h1

import (
	"bytes"
	"net/http"
	"net/url"
)

// Result says what Parse made of the bytes.
type Result int

const (
	// Incomplete: a head that may yet be one Parse takes; read more.
	Incomplete Result = iota
	// OK: a head Parse takes, in Head.
	OK
	// Decline: not a head Parse takes (or one it is not sure of): leave
	// it to net/http.
	Decline
)

// Head is a parsed request head.
type Head struct {
	Method     string      // GET, HEAD or OPTIONS
	RequestURI string      // the request-target as sent (origin form)
	URL        *url.URL    // url.ParseRequestURI(RequestURI), as net/http
	Host       string      // the Host field
	Header     http.Header // canonical keys, values in order; no Host (as http.Server)
	Len        int         // bytes of the head, through its empty line
}

// Parse parses the request head at the start of b. max is the most bytes
// a head may take (http.Server reads MaxHeaderBytes + 4096): a longer one
// is declined, and net/http answers it (431).
func Parse(b []byte, max int) (Head, Result) {
	var h Head
	// The method first: anything else is declined as soon as it shows,
	// so that a connection that is not one of ours (an h2c preface, TLS
	// on the plain port) is handed over without waiting.
	m, ok := method(b)
	if !ok {
		return h, Decline
	}
	if m == "" {
		return h, Incomplete
	}
	// The head ends at the first empty line; every line ends in CRLF (a
	// bare LF, which net/http accepts as a line end, is declined).
	end := headEnd(b)
	if end < 0 {
		return h, Decline
	}
	if end == 0 {
		if len(b) >= max {
			return h, Decline
		}
		return h, Incomplete
	}
	if end > max {
		return h, Decline
	}
	s := string(b[:end]) // every string below is a piece of this one
	h.Method = m
	h.Len = end
	// Request line: METHOD SP origin-form SP HTTP/1.1 CRLF.
	i := len(m) + 1
	sp := i
	for sp < len(s) && s[sp] != ' ' {
		c := s[sp]
		if c < 0x21 || c > 0x7e {
			return h, Decline
		}
		sp++
	}
	if sp == i || s[i] != '/' || !hasPrefix(s[sp:], " HTTP/1.1\r\n") {
		return h, Decline
	}
	h.RequestURI = s[i:sp]
	i = sp + len(" HTTP/1.1\r\n")
	var hosts int
	h.Header, ok = fields(s, i, end, func(key, v string) fieldAction {
		switch key {
		case "Host":
			hosts++
			if hosts > 1 || !validHost(v) {
				return reject
			}
			h.Host = v
			return skip
		case "Content-Length", "Transfer-Encoding", "Expect", "Upgrade", "Trailer", "Pragma", "Http2-Settings":
			// A body, an upgrade, a 100-continue, or a field net/http
			// rewrites (Pragma: no-cache adds Cache-Control).
			return reject
		case "Connection":
			// Only the default of HTTP/1.1; "close" and the hop-by-hop
			// fields a Connection names are net/http's to handle.
			if !equalFold(v, "keep-alive") {
				return reject
			}
		}
		return keep
	})
	if !ok {
		return h, Decline
	}
	if hosts != 1 {
		return h, Decline
	}
	u, err := url.ParseRequestURI(h.RequestURI)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return h, Decline
	}
	h.URL = u
	return h, OK
}

type fieldAction int

const (
	keep fieldAction = iota
	skip
	reject
)

// fields parses the header fields of s[i:end] (the head's lines after
// the first, through the empty line) as textproto.ReadMIMEHeader does,
// strictly (see eachField). check sees each field (canonical key, trimmed
// value) and says whether it is kept in the map.
func fields(s string, i, end int, check func(key, v string) fieldAction) (http.Header, bool) {
	// Count the lines for one allocation of the values.
	n := 0
	for k := i; k < end-2; k++ {
		if s[k] == '\n' {
			n++
		}
	}
	h := make(http.Header, n)
	vals := make([]string, n)
	nv := 0
	ok := eachField(s, i, end, func(key, v string) bool {
		switch check(key, v) {
		case reject:
			return false
		case skip:
			return true
		}
		if old, ok := h[key]; ok {
			h[key] = append(old, v)
			return true
		}
		vals[nv] = v
		h[key] = vals[nv : nv+1 : nv+1]
		nv++
		return true
	})
	if !ok {
		return nil, false
	}
	return h, true
}

// eachField calls f with each header field of s[i:end] (the head's lines
// after the first, through the empty line; every line ends in CRLF,
// which the caller checked), its canonical key and its value trimmed as
// textproto.ReadMIMEHeader does, strictly: a line that is not token ":"
// value, or a value with a control byte, ends the walk with false, as
// does f returning false.
func eachField(s string, i, end int, f func(key, v string) bool) bool {
	for i < end-2 {
		eol := i + indexByte(s[i:], '\n') // preceded by '\r' (checked by the caller)
		line := s[i : eol-1]
		i = eol + 1
		colon := -1
		for k := 0; k < len(line); k++ {
			c := line[k]
			if c == ':' {
				colon = k
				break
			}
			if !tokenByte(c) {
				return false // also white space before the colon, obs-fold
			}
		}
		if colon <= 0 {
			return false
		}
		v := line[colon+1:]
		for k := 0; k < len(v); k++ {
			if c := v[k]; c < 0x20 && c != '\t' || c == 0x7f {
				return false
			}
		}
		if !f(canonical(line[:colon]), trim(v)) {
			return false
		}
	}
	return true
}

// headEnd returns the length of the head at the start of b (through its
// empty line), 0 if b holds no complete head yet, or -1 if a line of it
// ends in a bare LF.
func headEnd(b []byte) int {
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		j += i
		if j == 0 || b[j-1] != '\r' {
			return -1
		}
		if j >= 3 && b[j-2] == '\n' && b[j-3] == '\r' {
			return j + 1
		}
		i = j + 1
	}
	return 0
}

// method returns the method b starts with ("" if b is too short to tell
// yet), or false if b starts with none Parse takes.
func method(b []byte) (string, bool) {
	for _, m := range [...]string{"GET /", "HEAD /", "OPTIONS /"} {
		n := min(len(b), len(m))
		if string(b[:n]) == m[:n] {
			if n < len(m) {
				return "", true
			}
			return m[:len(m)-2], true
		}
	}
	return "", false
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// trim trims SP and HTAB from both ends, as textproto does.
func trim(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// tokenByte: an RFC 9110 tchar.
func tokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' || c == '*' || c == '+' ||
		c == '-' || c == '.' || c == '^' || c == '_' || c == '`' || c == '|' || c == '~'
}

// canonical is textproto.CanonicalMIMEHeaderKey of a token: the key
// itself when it is canonical already (most are), without a copy.
func canonical(k string) string {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return canonicalCopy(k)
		}
		upper = c == '-'
	}
	return k
}

func canonicalCopy(k string) string {
	b := []byte(k)
	upper := true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		} else if !upper && 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
	return string(b)
}

// validHost: a Host made only of the bytes of a name, an IPv4 or a
// bracketed IPv6 address and a port, a strict subset of what net/http
// accepts (httpguts.ValidHostHeader).
func validHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' ||
			c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return true
}

func equalFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
