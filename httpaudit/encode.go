package httpaudit

import (
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/redact"
)

// The access event of a request is most of what the writer goroutine
// encodes. Building an event.Event for it (a pooled struct of some sixty
// fields, cleared, filled, then walked by the generic encoder) cost as much
// as everything else the middleware does, so when no hook needs the event
// (Annotate) the writer encodes it straight from the captured request into
// its output buffer. The bytes are those event.AppendJSON writes for the
// event finish would build (TestAccessDirectMatchesEvent and
// FuzzAccessDirect hold the two paths to that), and every value an attacker
// controls goes through the same scrubbing code (reqFields) on both.

// reqFields are the request's values as its events record them: scrubbed
// and capped, computed once on whichever goroutine builds the event.
type reqFields struct {
	method, path, query, original, ua, referrer string
	sourceIP, clientIP                          string
	sourcePort                                  int
}

// fields scrubs and caps what st captured of its request. Every value an
// attacker controls goes through the redactor before it is stored: through
// the writer goroutine's memo of values found clean when wc is not nil.
func (l *Logger) fields(st *state, wc *writerCache) reqFields {
	ri := &st.info
	var f reqFields
	var m *redact.Memo
	if wc != nil {
		m = wc.memo
	}
	f.method = sanitizeMethod(ri.method)
	path := ri.path
	if ri.opt.path != "" {
		path = ri.opt.path // the handler's normalised path (SetPath)
	}
	f.path = l.cut(l.scrubString(m, path))
	if ri.rawQuery != "" {
		f.query = l.cut(l.scrubQuery(m, ri.rawQuery))
	}
	// url.original keeps the path as the client encoded it, which attack
	// detection needs (%2e%2e%2f is a traversal url.path shows as ../);
	// it is written only when it says more than url.path and url.query.
	if sent := escapedPath(ri.path, ri.opt.rawPath); sent != path {
		// A secret scrubbed from the decoded path may hide in its encoded
		// form from the scrubber (%20eyJ… is no word boundary), so the
		// scrubbed path is encoded instead.
		switch {
		case path == ri.path && f.path != ri.path:
			sent = (&url.URL{Path: f.path}).EscapedPath()
		case path != ri.path:
			if clean := l.scrubString(m, ri.path); clean != ri.path {
				sent = (&url.URL{Path: clean}).EscapedPath()
			}
		}
		orig := l.scrubString(m, sent)
		if ri.rawQuery != "" {
			orig += "?" + f.query
		}
		f.original = l.cut(orig)
	}
	if ri.ua != "" {
		f.ua = l.cut(l.scrubString(m, ri.ua))
	}
	if ri.referer != "" {
		f.referrer = l.cut(l.scrubString(m, ri.referer))
	}
	var src netip.Addr
	var srcText string
	var port int
	if wc != nil {
		src, srcText, port = wc.addr.split(ri.remoteAddr)
	} else {
		src, srcText, port = splitAddr(ri.remoteAddr)
	}
	if src.IsValid() {
		f.sourceIP, f.sourcePort, f.clientIP = srcText, port, srcText
		if c, ok := l.clientIP(ri, src); ok {
			f.clientIP = c.String()
		}
	}
	return f
}

// escapedPath is url.URL.EscapedPath of a request's path without building
// a URL: the path as the client sent it when RawPath holds it, else path
// itself when it needs no escaping.
func escapedPath(path, rawPath string) string {
	if rawPath == "" && plainPath(path) {
		return path
	}
	return (&url.URL{Path: path, RawPath: rawPath}).EscapedPath()
}

// plainPath reports whether path is made only of bytes a URL path carries
// unescaped (url.PathEscape's set, '/' included), so that escaping it
// gives it back unchanged.
func plainPath(path string) bool {
	for i := 0; i < len(path); i++ {
		if !pathByte[path[i]] {
			return false
		}
	}
	return true
}

var pathByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-_.~$&+,/:;=@" {
		t[c] = true
	}
	return t
}()

// hdrKey is one recorded header as the event names it: lower-case, with
// the indexes into Config.Headers (and reqInfo.headers) of the names that
// give it, in order.
type hdrKey struct {
	lower string
	idx   []int
}

// headerKeys orders Config.Headers as the encoder writes them: sorted by
// lower-case name, names that differ only in case folded together.
func headerKeys(names []string) []hdrKey {
	var keys []hdrKey
	for i, n := range names {
		lower := strings.ToLower(n)
		j := slices.IndexFunc(keys, func(k hdrKey) bool { return k.lower == lower })
		if j < 0 {
			keys = append(keys, hdrKey{lower: lower})
			j = len(keys) - 1
		}
		keys[j].idx = append(keys[j].idx, i)
	}
	slices.SortFunc(keys, func(a, b hdrKey) int { return strings.Compare(a.lower, b.lower) })
	return keys
}

// headerValue is the recorded value of one header key, as requestEvent
// stores it: the last of its names the request carried wins, scrubbed and
// capped.
func (l *Logger) headerValue(ri *reqInfo, k *hdrKey) (string, bool) {
	last := -1
	for _, i := range k.idx {
		if len(ri.opt.headers[i]) > 0 {
			last = i
		}
	}
	if last < 0 {
		return "", false
	}
	name := l.cfg.Headers[last]
	return l.cut(l.red.Header(name, strings.Join(ri.opt.headers[last], ", "))), true
}

// accessTail renders the members every event of this Logger ends with
// (service.name, host.name), as event.AppendJSON writes them, with a
// leading comma.
func accessTail(service, host string) []byte {
	ev := event.Event{ServiceName: service, HostName: host}
	b := ev.AppendJSON(nil) // {"service":{…},"host":{…}} or {}
	if len(b) <= 2 {
		return nil
	}
	tail := append([]byte{','}, b[1:len(b)-1]...)
	return tail
}

// appendAccess appends the access event of the served request st, with
// event.id id, as one line of JSON (no newline). It is what
// l.finish(st, wc.now).AppendJSON writes. When an Annotate hook is set it
// returns b unchanged and false: the hook needs the event.
func (l *Logger) appendAccess(b []byte, st *state, id []byte, wc *writerCache) ([]byte, bool) {
	u, annotate := st.actor()
	if annotate != nil {
		return b, false
	}
	ri := &st.info
	f := l.fields(st, wc)
	b = append(b, '{')
	if start := l.startOf(ri, wc.now); !start.IsZero() {
		b = append(b, `"@timestamp":"`...)
		b = wc.time.append(b, start)
		b = append(b, `",`...)
	}
	status := int(st.status)
	if status == 0 {
		status = http.StatusOK // nothing written: net/http sends 200
	}
	b = append(b, `"event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":`...)
	if status >= 400 {
		b = append(b, `"failure"`...)
	} else {
		b = append(b, `"success"`...)
	}
	if ri.dur != 0 {
		b = append(b, `,"duration":`...)
		b = strconv.AppendInt(b, int64(ri.dur), 10)
	}
	b = append(b, `,"id":"`...)
	b = append(b, id...)
	b = append(b, `","dataset":"trailguard.access"},"http":{"request":{`...)
	comma := false
	if st.requestID != "" {
		b = append(b, `"id":`...)
		b = appendQuoted(b, st.requestID)
		comma = true
	}
	b, comma = member(b, comma, `"method":`, f.method)
	b, comma = member(b, comma, `"referrer":`, f.referrer)
	reqBytes := st.requestBytes()
	var body string
	if captured := st.body.capturedBody(); captured != nil {
		body = l.scrubBody(ri.opt.contentType, captured)
	}
	if reqBytes != 0 || body != "" {
		if comma {
			b = append(b, ',')
		}
		b = append(b, `"body":{`...)
		bc := false
		if reqBytes != 0 {
			b = append(b, `"bytes":`...)
			b = strconv.AppendInt(b, reqBytes, 10)
			bc = true
		}
		b, _ = member(b, bc, `"content":`, body)
		b = append(b, '}')
		comma = true
	}
	if comma {
		b = append(b, `},`...)
	} else {
		// No request member at all: the encoder opens no request object.
		b = b[:len(b)-len(`"request":{`)]
	}
	b = append(b, `"response":{"status_code":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	if st.written != 0 {
		b = append(b, `,"body":{"bytes":`...)
		b = strconv.AppendInt(b, st.written, 10)
		b = append(b, '}')
	}
	b = append(b, `}}`...)
	if f.path != "" || f.query != "" || f.original != "" {
		b = append(b, `,"url":{`...)
		c := false
		b, c = member(b, c, `"path":`, f.path)
		b, c = member(b, c, `"query":`, f.query)
		b, _ = member(b, c, `"original":`, f.original)
		b = append(b, '}')
	}
	if f.sourceIP != "" || f.sourcePort != 0 {
		b = append(b, `,"source":{`...)
		c := false
		if f.sourceIP != "" {
			b = append(b, `"ip":`...)
			b = appendQuoted(b, f.sourceIP)
			c = true
		}
		if f.sourcePort != 0 {
			if c {
				b = append(b, ',')
			}
			b = append(b, `"port":`...)
			b = strconv.AppendInt(b, int64(f.sourcePort), 10)
		}
		b = append(b, '}')
	}
	if f.clientIP != "" {
		b = append(b, `,"client":{"ip":`...)
		b = appendQuoted(b, f.clientIP)
		b = append(b, '}')
	}
	uid, uname := l.cut(u.ID), l.cut(u.Name)
	if uid != "" || uname != "" || len(u.Roles) > 0 {
		b = append(b, `,"user":{`...)
		c := false
		b, c = member(b, c, `"id":`, uid)
		b, c = member(b, c, `"name":`, uname)
		if len(u.Roles) > 0 {
			if c {
				b = append(b, ',')
			}
			b = append(b, `"roles":[`...)
			for i, r := range u.Roles {
				if i > 0 {
					b = append(b, ',')
				}
				b = event.AppendString(b, r)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	if f.ua != "" {
		b = append(b, `,"user_agent":{"original":`...)
		b = event.AppendString(b, f.ua)
		b = append(b, '}')
	}
	if st.traceID != "" {
		b = append(b, `,"trace":{"id":`...)
		b = appendQuoted(b, st.traceID)
		b = append(b, '}')
	}
	if st.spanID != "" {
		b = append(b, `,"span":{"id":`...)
		b = appendQuoted(b, st.spanID)
		b = append(b, '}')
	}
	b = append(b, l.tail...)
	if len(l.hdrKeys) > 0 {
		open := false
		for i := range l.hdrKeys {
			v, ok := l.headerValue(ri, &l.hdrKeys[i])
			if !ok {
				continue
			}
			if open {
				b = append(b, ',')
			} else {
				b = append(b, `,"trailguard":{"http":{"request":{"headers":{`...)
				open = true
			}
			b = event.AppendString(b, l.hdrKeys[i].lower)
			b = append(b, ':')
			b = event.AppendString(b, v)
		}
		if open {
			b = append(b, `}}}}`...)
		}
	}
	return append(b, '}'), true
}

// writerCache is what the writer goroutine keeps from one event to the
// next to encode access events faster: the text of the current second, the
// last connection address, and the values the redactor found clean.
type writerCache struct {
	now  time.Time // the batch's reading of the real clock (see startOf)
	time timeCache
	addr addrCache
	memo *redact.Memo // nil: scrub every value afresh
}

// addrCache keeps the last connection address splitAddr parsed: the
// requests of a keep-alive connection, and of a proxy's pool of them,
// come in runs from the same address.
type addrCache struct {
	remote string
	ip     netip.Addr
	text   string
	port   int
}

func (c *addrCache) split(remote string) (netip.Addr, string, int) {
	if remote != c.remote || remote == "" {
		c.ip, c.text, c.port = splitAddr(remote)
		c.remote = remote
	}
	return c.ip, c.text, c.port
}

// timeCache formats timestamps as event.AppendTime does, keeping the text
// up to the seconds of the last one: the events of a batch mostly share
// their second, and only the nanoseconds need writing then.
type timeCache struct {
	sec    int64
	prefix [20]byte // "2006-01-02T15:04:05."
	ok     bool
}

func (c *timeCache) append(b []byte, t time.Time) []byte {
	sec := t.Unix()
	if !c.ok || sec != c.sec {
		var full [40]byte
		f := event.AppendTime(full[:0], t)
		if len(f) != 30 { // a year outside 0–9999: not cached
			c.ok = false
			return append(b, f...)
		}
		copy(c.prefix[:], f)
		c.sec, c.ok = sec, true
	}
	b = append(b, c.prefix[:]...)
	// Nine digits: the last alone, then four pairs from a table (five
	// divisions in a chain rather than nine).
	var ns [10]byte
	v := uint(t.Nanosecond())
	ns[8] = byte('0' + v%10)
	v /= 10
	for i := 6; i >= 0; i -= 2 {
		q := v % 100
		v /= 100
		ns[i], ns[i+1] = digitPairs[2*q], digitPairs[2*q+1]
	}
	ns[9] = 'Z'
	return append(b, ns[:]...)
}

// digitPairs holds "00" to "99".
const digitPairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// appendQuoted appends s in quotes without looking for bytes to escape.
// It is only for values whose alphabet the middleware checked or chose
// itself: request ids (validRequestID or a generated UUID), trace and span
// ids (lower-case hex), addresses as net/netip formats or parses them
// (digits, hex, '.', ':'). FuzzAccessDirect compares the result with the
// escaping encoder's.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// member appends "key":value when value is not empty, after a comma when
// one is due, and says whether the next member needs one.
func member(b []byte, comma bool, key, value string) ([]byte, bool) {
	if value == "" {
		return b, comma
	}
	if comma {
		b = append(b, ',')
	}
	b = append(b, key...)
	return event.AppendString(b, value), true
}

// scrubString is the redactor's String, through m when it is not nil.
func (l *Logger) scrubString(m *redact.Memo, s string) string {
	if m != nil {
		return m.String(s)
	}
	return l.red.String(s)
}

// scrubQuery is the redactor's Query, through m when it is not nil.
func (l *Logger) scrubQuery(m *redact.Memo, s string) string {
	if m != nil {
		return m.Query(s)
	}
	return l.red.Query(s)
}
