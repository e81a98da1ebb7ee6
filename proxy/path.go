package proxy

import (
	"errors"
	"net/url"
	"strings"
)

// Every routing and policy decision (route, login and sensitive routes,
// per-route rate limits, body capture) is made on the path the upstream
// will serve, not on the bytes the client sent: most upstreams (nginx,
// Werkzeug, Express, Spring, Go's ServeMux) decode escapes, merge repeated
// slashes and resolve dot segments before they route, so that
// /api//users/./7/../7/role%2f... would otherwise reach PUT
// /api/users/{id}/role without its audit event, a login without its
// failure being counted, or a rate-limited route without its bucket. The
// client's path is still what is forwarded (nginx's proxy_pass without a
// URI does the same).

// errPathAboveRoot and errPathEncodedSlash are the paths refused with 400.
var (
	errPathAboveRoot    = errors.New("path climbs above the root with ..")
	errPathEncodedSlash = errors.New("path has an encoded slash or backslash (%2F, %5C, \\), which upstreams disagree on")
)

// matchPath returns the path decisions are made on: u.Path (escapes
// already decoded by the request parser, as the upstream decodes them)
// with ";" path parameters dropped from each segment, repeated slashes
// merged and "." and ".." segments resolved as RFC 3986 §5.2.4 and nginx
// do; a trailing slash is kept. It refuses a path
// that climbs above the root (nginx answers 400) and one with an encoded
// slash or a backslash: some upstreams take %2F as a separator and others
// as part of a segment, and some take \ for /, so no single reading is
// what the upstream will see (Apache httpd and Tomcat refuse %2F too).
//
// A path with none of "//", "/.", ";", "\\" and no escaped slash costs one
// scan and no allocation.
func matchPath(u *url.URL) (string, error) {
	p := u.Path
	if u.RawPath != "" && hasEncodedSlash(u.RawPath) {
		return "", errPathEncodedSlash
	}
	if p == "" || p[0] != '/' {
		return p, nil // "*" (OPTIONS) or absent: no route matches it
	}
	work := false
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			return "", errPathEncodedSlash
		case '/':
			if i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.') {
				work = true
			}
		case ';':
			work = true
		}
	}
	if !work {
		return p, nil
	}
	return cleanPath(p)
}

// hasEncodedSlash reports whether a raw path has %2F or %5C (any case).
func hasEncodedSlash(raw string) bool {
	for i := 0; i+2 < len(raw); i++ {
		if raw[i] == '%' {
			a, b := raw[i+1], raw[i+2]|0x20
			if (a == '2' && b == 'f') || (a == '5' && b == 'c') {
				return true
			}
		}
	}
	return false
}

// cleanPath merges slashes and resolves dot segments of an absolute path,
// keeping a trailing slash (and adding one where the last segment was "."
// or "..", as RFC 3986 does: /a/b/.. is /a/).
func cleanPath(p string) (string, error) {
	segs := make([]string, 0, 8)
	trailing := false
	for s := range strings.SplitSeq(p[1:], "/") {
		if i := strings.IndexByte(s, ';'); i >= 0 {
			// A path parameter (/login;jsessionid=x, /..;/admin):
			// Tomcat, Jetty and Spring route without it, so the
			// decision does too (nginx and Go keep it, and answer 404).
			s = s[:i]
		}
		trailing = false
		switch s {
		case "":
			trailing = true
		case ".":
			trailing = true
		case "..":
			if len(segs) == 0 {
				return "", errPathAboveRoot
			}
			segs = segs[:len(segs)-1]
			trailing = true
		default:
			segs = append(segs, s)
		}
	}
	var b strings.Builder
	b.Grow(len(p))
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(s)
	}
	if trailing || len(segs) == 0 {
		b.WriteByte('/')
	}
	return b.String(), nil
}
