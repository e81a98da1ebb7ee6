package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// userSource says where a login request carries the user name.
type userSource struct {
	kind string   // "json", "form", "query", "basic"
	path []string // JSON field path, or the form/query field
}

func parseUserSource(s string) (userSource, error) {
	kind, field, _ := strings.Cut(s, ":")
	switch kind {
	case "basic":
		if field != "" {
			return userSource{}, fmt.Errorf("user %q: basic takes no field", s)
		}
		return userSource{kind: kind}, nil
	case "json":
		if field == "" {
			return userSource{}, fmt.Errorf("user %q: name the JSON field, e.g. json:username", s)
		}
		return userSource{kind: kind, path: strings.Split(field, ".")}, nil
	case "form", "query":
		if field == "" {
			return userSource{}, fmt.Errorf("user %q: name the field, e.g. %s:username", s, kind)
		}
		return userSource{kind: kind, path: []string{field}}, nil
	case "":
		return userSource{}, fmt.Errorf("user is required: json:FIELD, form:FIELD, query:PARAM or basic")
	}
	return userSource{}, fmt.Errorf("user %q: want json:FIELD, form:FIELD, query:PARAM or basic", s)
}

func (u userSource) fromBody() bool { return u.kind == "json" || u.kind == "form" }

// extract returns the user name a login request carries, or "" — never
// the password: only the configured field is read.
func (u userSource) extract(r *http.Request, ct string, body []byte) string {
	switch u.kind {
	case "basic":
		user, _, _ := r.BasicAuth()
		return user
	case "query":
		return r.URL.Query().Get(u.path[0])
	case "form", "json":
		// Either kind reads the field from whichever of the two the body
		// is: one login route may take both (nested paths only in JSON).
		if body == nil {
			return ""
		}
		if isForm(ct) {
			v, err := url.ParseQuery(string(body))
			if err != nil {
				return ""
			}
			return v.Get(strings.Join(u.path, "."))
		}
		var doc any
		if json.Unmarshal(body, &doc) != nil {
			return ""
		}
		for _, k := range u.path {
			m, ok := doc.(map[string]any)
			if !ok {
				return ""
			}
			doc = m[k]
		}
		switch v := doc.(type) {
		case string:
			return v
		case json.Number, float64:
			return fmt.Sprint(v)
		}
	}
	return ""
}

// names returns every user name a login request may carry to its
// upstream, for the user-name decisions: what extract returns, and also
// what upstreams read that extract does not (the other values of a
// repeated field, which PHP and Express take; a key in another case, which
// Go's encoding/json binds; the fields of a form with a bad escape
// elsewhere, which PHP, Express and Werkzeug keep). ok is false when the
// body is neither a form nor JSON (multipart, or JSON Go refuses): an
// upstream may still read a user from it, and the gateway cannot.
func (u userSource) names(r *http.Request, ct string, body []byte) (names []string, ok bool) {
	switch u.kind {
	case "basic":
		user, _, _ := r.BasicAuth()
		return []string{user}, true
	case "query":
		return formNames(r.URL.RawQuery, u.path[0]), true
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, true
	}
	if isForm(ct) {
		return formNames(string(body), strings.Join(u.path, ".")), true
	}
	var doc any
	if json.Unmarshal(body, &doc) != nil {
		return nil, false
	}
	level := []any{doc}
	for _, k := range u.path {
		var next []any
		for _, d := range level {
			if m, ok := d.(map[string]any); ok {
				for mk, mv := range m {
					if strings.EqualFold(mk, k) {
						next = append(next, mv)
					}
				}
			}
		}
		level = next
	}
	for _, v := range level {
		switch v := v.(type) {
		case string:
			names = append(names, v)
		case float64:
			names = append(names, fmt.Sprint(v))
		}
	}
	return names, true
}

// recorded is the user a login's event names: extract's, or else the one
// name an upstream could read in its place (the key in another case,
// which Go's encoding/json binds). A login naming two users was refused
// (Proxy.requestUsers).
func (u userSource) recorded(r *http.Request, ct string, body []byte) string {
	if v := u.extract(r, ct, body); v != "" {
		return v
	}
	if names, ok := u.names(r, ct, body); ok && len(names) > 0 {
		return names[0]
	}
	return ""
}

// formNames returns the values of field (in any case) in the form or
// query string s as upstreams read it: pairs split on '&' (PHP, Express,
// Werkzeug), and also on ';' (Python's parse_qsl before 3.9.2, Rack's
// query strings), each decoded leniently (a bad escape is kept as sent,
// as PHP's urldecode keeps it). Go's url.ParseQuery skips a pair holding
// a ';' or a bad escape, where those upstreams read a user from it.
func formNames(s, field string) []string {
	var names []string
	for _, seps := range []string{"&", "&;"} {
		for pair := range strings.FieldsFuncSeq(s, func(r rune) bool { return strings.ContainsRune(seps, r) }) {
			k, v, _ := strings.Cut(pair, "=")
			if strings.EqualFold(lenientUnescape(k), field) {
				names = append(names, lenientUnescape(v))
			}
		}
	}
	return names
}

// lenientUnescape decodes a form value: '+' is a space, %XX a byte, and
// a '%' not followed by two hex digits stays as it is.
func lenientUnescape(s string) string {
	if !strings.ContainsAny(s, "+%") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func isForm(ct string) bool {
	mt, _, _ := mime.ParseMediaType(ct)
	return mt == "application/x-www-form-urlencoded"
}

// loginRule is a compiled Login.
type loginRule struct {
	method  string
	host    string
	pattern *pattern
	user    userSource
	maxBody int
}

func newLoginRule(l Login) (*loginRule, error) {
	pt, err := compilePattern(l.Path)
	if err != nil {
		return nil, fmt.Errorf("proxy: logins: %w", err)
	}
	us, err := parseUserSource(l.User)
	if err != nil {
		return nil, fmt.Errorf("proxy: logins %s: %w", l.Path, err)
	}
	lr := &loginRule{method: l.Method, host: strings.ToLower(l.Host), pattern: pt, user: us, maxBody: l.MaxBody}
	if lr.method == "" {
		lr.method = http.MethodPost
	}
	if lr.maxBody == 0 {
		lr.maxBody = 16 << 10
	}
	return lr, nil
}

// matches reports whether r, whose matchPath is path, is a login.
func (l *loginRule) matches(r *http.Request, path string) bool {
	return methodMatch(l.method, r.Method) && hostMatch(l.host, r.Host) && l.pattern.matchOnly(path)
}

// sensRule is a compiled Sensitive.
type sensRule struct {
	method  string
	host    string
	pattern *pattern
	action  string
	target  string
	capture int
}

func newSensRule(s Sensitive) (*sensRule, error) {
	pt, err := compilePattern(s.Path)
	if err != nil {
		return nil, fmt.Errorf("proxy: sensitive: %w", err)
	}
	sr := &sensRule{method: s.Method, host: strings.ToLower(s.Host), pattern: pt, action: s.Action, target: s.TargetUser, capture: s.CaptureBody}
	if sr.method == "" {
		sr.method = "*"
	}
	switch sr.capture {
	case 0:
		sr.capture = 16 << 10
	case -1:
		sr.capture = 0
	}
	return sr, nil
}

// matches reports whether r, whose matchPath is path, is sensitive.
func (s *sensRule) matches(r *http.Request, path string) bool {
	return methodMatch(s.method, r.Method) && hostMatch(s.host, r.Host) && s.pattern.matchOnly(path)
}

func (pt *pattern) matchOnly(path string) bool {
	_, ok := pt.match(path, "\x00")
	return ok
}

// methodMatch: methods are case-sensitive (RFC 9110), but Werkzeug and
// others upper-case what they are sent, so that Flask serves "put" as
// PUT: a rule for PUT must see it too.
func methodMatch(want, got string) bool { return want == "*" || strings.EqualFold(want, got) }

func hostMatch(want, host string) bool {
	if want == "" {
		return true
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	return strings.EqualFold(strings.TrimSuffix(host, "."), want)
}

// readSecret reads an HMAC key file for redact_mode hmac-sha256.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("proxy: redact secret: %w", err)
	}
	return []byte(strings.TrimSpace(string(b))), nil
}
