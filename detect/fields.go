package detect

import (
	"github.com/trailguard/trailguard/internal/username"
	"strconv"
	"strings"
)

// WebFieldMap maps Sigma's web taxonomy (logsource category webserver and
// proxy; W3C extended log format names) onto the ECS fields trailguard's
// events carry. Names not in the map are used as they are, so a web rule
// may also name ECS fields directly. Three targets are computed rather
// than read (see the package documentation): url.original (the request
// target as the client sent it), cs-uri-stem (its path part) and
// c-uri-extension; time-taken is event.duration in milliseconds.
var WebFieldMap = map[string]string{
	"c-ip":            "client.ip",
	"src_ip":          "client.ip",
	"clientip":        "client.ip",
	"c-uri":           "url.original",
	"cs-uri":          "url.original",
	"cs-uri-stem":     "cs-uri-stem",
	"c-uri-stem":      "cs-uri-stem",
	"cs-uri-query":    "url.query",
	"c-uri-query":     "url.query",
	"c-uri-extension": "c-uri-extension",
	"cs-method":       "http.request.method",
	"c-useragent":     "user_agent.original",
	"cs-user-agent":   "user_agent.original",
	"cs(user-agent)":  "user_agent.original",
	"sc-status":       "http.response.status_code",
	"cs-referer":      "http.request.referrer",
	"cs-referrer":     "http.request.referrer",
	"cs(referer)":     "http.request.referrer",
	"cs-host":         "url.domain",
	"cs(host)":        "url.domain",
	"r-dns":           "url.domain",
	"cs-cookie":       "trailguard.http.request.headers.cookie",
	"cs(cookie)":      "trailguard.http.request.headers.cookie",
	"cs-username":     "user.name",
	"cs-bytes":        "http.request.body.bytes",
	"sc-bytes":        "http.response.body.bytes",
	"cs-version":      "http.version",
	"time-taken":      "time-taken",
	"s-ip":            "host.ip",
	"dst_ip":          "destination.ip",
	"s-port":          "url.port",
	"s-computername":  "host.name",
	"s-sitename":      "service.name",
}

// fieldKind says how a field's values are found.
type fieldKind uint8

const (
	fDirect    fieldKind = iota // one ECS path
	fClientIP                   // client.ip, else source.ip
	fOriginal                   // url.original, else url.path[?url.query]
	fStem                       // the path part of fOriginal
	fExtension                  // url.extension, else from the path
	fTimeTaken                  // event.duration / 1e6
	fKeywords                   // every string of the event, and fOriginal
)

// fieldDef is a field rules test, resolved to ECS slots.
type fieldDef struct {
	name  string
	kind  fieldKind
	slots []int32
	// user: the field holds a user name (isUserName), tested as its
	// account's spelling (matchName), not as sent.
	user bool
}

// resolveField maps a field name as written in a rule to the name the
// engine reads, under the rule's logsource.
func resolveField(name string, web bool) string {
	if web {
		if m, ok := WebFieldMap[strings.ToLower(name)]; ok {
			return m
		}
	}
	return name
}

// defineField builds the definition of a resolved field name, registering
// the ECS paths it reads.
func defineField(x *extractor, name string) fieldDef {
	switch name {
	case "client.ip":
		return fieldDef{name: name, kind: fClientIP, slots: []int32{x.slot("client.ip"), x.slot("source.ip")}}
	case "url.original":
		return fieldDef{name: name, kind: fOriginal, slots: []int32{x.slot("url.original"), x.slot("url.path"), x.slot("url.query")}}
	case "cs-uri-stem":
		return fieldDef{name: name, kind: fStem, slots: []int32{x.slot("url.original"), x.slot("url.path"), x.slot("url.query")}}
	case "c-uri-extension":
		return fieldDef{name: name, kind: fExtension, slots: []int32{x.slot("url.extension"), x.slot("url.original"), x.slot("url.path"), x.slot("url.query")}}
	case "time-taken":
		return fieldDef{name: name, kind: fTimeTaken, slots: []int32{x.slot("event.duration")}}
	case "":
		return fieldDef{name: name, kind: fKeywords, slots: []int32{x.slot("url.original"), x.slot("url.path"), x.slot("url.query")}}
	}
	return fieldDef{name: name, kind: fDirect, slots: []int32{x.slot(name)}, user: isUserName(name)}
}

// matchName is the value a condition on a user name field tests: the
// name with the characters whose NFKC form is ASCII replaced by it and
// without spaces around, as the account stores and logins that fold them
// see it (username.Key; case is folded as in every Sigma test unless the
// rule says cased). Rule conditions on user.name compared the name as
// sent, so `user.name: admin` missed ａｄｍｉｎ and " admin", names the
// upstream's login takes for admin, while correlations already grouped
// them by account.
func matchName(v string) string {
	return strings.TrimSpace(username.FoldCompat(v))
}

// appendValues appends each value of the field in the document to dst,
// and reports whether the field is present at all (for exists and null).
// Computed values are written to buf.
func (f *fieldDef) appendValues(dst []string, d *document, buf *[]byte) ([]string, bool) {
	switch f.kind {
	case fDirect:
		if d.spans[f.slots[0]].kind == vAbsent {
			return dst, false
		}
		return d.appendEach(dst, f.slots[0]), true
	case fClientIP:
		for _, s := range f.slots {
			if v, ok := d.str(s); ok && v != "" {
				return append(dst, v), true
			}
		}
		return dst, d.spans[f.slots[0]].kind != vAbsent || d.spans[f.slots[1]].kind != vAbsent
	case fOriginal, fStem:
		u, ok := original(d, f.slots, buf)
		if !ok {
			return dst, false
		}
		if f.kind == fStem {
			if q := strings.IndexByte(u, '?'); q >= 0 {
				u = u[:q]
			}
		}
		return append(dst, u), true
	case fExtension:
		if v, ok := d.str(f.slots[0]); ok {
			return append(dst, v), true
		}
		u, ok := original(d, f.slots[1:], buf)
		if !ok {
			return dst, false
		}
		if q := strings.IndexByte(u, '?'); q >= 0 {
			u = u[:q]
		}
		u = u[strings.LastIndexByte(u, '/')+1:]
		if dot := strings.LastIndexByte(u, '.'); dot >= 0 {
			return append(dst, u[dot+1:]), true
		}
		return dst, false
	case fTimeTaken:
		v, ok := d.str(f.slots[0])
		if !ok {
			return dst, false
		}
		ns, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return dst, false
		}
		start := len(*buf)
		*buf = strconv.AppendInt(*buf, ns/1e6, 10)
		return append(dst, bview((*buf)[start:])), true
	case fKeywords:
		dst = d.appendAllStrings(dst)
		// A web server's log line holds the request as sent: so does the
		// keyword search, when url.original is not stored.
		if d.spans[f.slots[0]].kind == vAbsent {
			if u, ok := original(d, f.slots, buf); ok {
				dst = append(dst, u)
			}
		}
		return dst, true
	}
	return dst, false
}

// original is the request target as sent: url.original, or url.path with
// url.query (httpaudit stores url.original whenever the two differ).
func original(d *document, slots []int32, buf *[]byte) (string, bool) {
	if v, ok := d.str(slots[0]); ok {
		return v, true
	}
	p, okP := d.str(slots[1])
	q, okQ := d.str(slots[2])
	if !okP && !okQ {
		return "", false
	}
	if !okQ || q == "" {
		return p, true
	}
	start := len(*buf)
	*buf = append(append(append(*buf, p...), '?'), q...)
	return bview((*buf)[start:]), true
}
