package httpaudit

import (
	"bytes"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/tick"
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
	// portText: sourcePort in decimal when the writer's cache holds it
	// (nil otherwise: formatted by the encoder).
	portText []byte
	// uaPlain: ua needs no escaping (event.PlainString), known from the
	// writer's memo, which remembered the answer with the user agent.
	uaPlain bool
	// methodPlain: method is one of the standard methods, which need no
	// escaping.
	methodPlain bool
	// pathPlain: path is the request's path as it came, unscrubbed and
	// uncut, and made only of bytes url.PathEscape leaves alone, none of
	// which JSON escapes.
	pathPlain bool
	// addr: source and client as the writer's address cache wrote them
	// last (nil: written by appendAddr), when the client is the source.
	addr *addrCache
}

// fields scrubs and caps what st captured of its request. Every value an
// attacker controls goes through the redactor before it is stored: through
// the writer goroutine's memo of values found clean when wc is not nil
// (and its gate for the field lets it).
//
// f is filled in place (it is some two hundred bytes, which a return by
// value copied once more on every event).
func (l *Logger) fields(st *state, wc *writerCache, f *reqFields) {
	ri := &st.info
	*f = reqFields{}
	var m *memoGates
	if wc != nil && wc.memo != nil {
		m = &wc.gates
		m.memo = wc.memo
	}
	if st.method != 0 {
		f.method, f.methodPlain = methods[st.method-1], true
	} else {
		f.method = sanitizeMethod(ri.opt.method)
	}
	path := ri.path
	if ri.opt.path != "" {
		path = ri.opt.path // the handler's normalised path (SetPath)
	}
	f.path = l.cut(l.scrubString(m, gatePath, path))
	if ri.rawQuery != "" {
		f.query = l.cut(l.scrubQuery(m, ri.rawQuery))
	}
	plain := ri.opt.rawPath == "" && plainPath(ri.path)
	f.pathPlain = plain && path != "" && path == ri.path && f.path == path
	sent := ri.path // escapedPath's answer for a plain path, tested once
	if !plain {
		sent = escapedPath(ri.path, ri.opt.rawPath)
	}
	// url.original keeps the path as the client encoded it, which attack
	// detection needs (%2e%2e%2f is a traversal url.path shows as ../);
	// it is written only when it says more than url.path and url.query.
	if sent != path {
		// A secret scrubbed from the decoded path may hide in its encoded
		// form from the scrubber (%20eyJ… is no word boundary), so the
		// scrubbed path is encoded instead.
		switch {
		case path == ri.path && f.path != ri.path:
			sent = (&url.URL{Path: f.path}).EscapedPath()
		case path != ri.path:
			if clean := l.scrubString(m, gatePath, ri.path); clean != ri.path {
				sent = (&url.URL{Path: clean}).EscapedPath()
			}
		}
		orig := l.scrubString(m, gatePath, sent)
		if ri.rawQuery != "" {
			orig += "?" + f.query
		}
		f.original = l.cut(orig)
	}
	if ri.ua != "" {
		f.ua, f.uaPlain = l.scrubUA(m, ri.ua)
	}
	if ri.referer != "" {
		f.referrer = l.cut(l.scrubString(m, gateReferrer, ri.referer))
	}
	var src netip.Addr
	var srcText string
	var port int
	if wc != nil {
		src, srcText, port = wc.addr.split(ri.remoteAddr)
		f.portText = wc.addr.portText()
	} else {
		src, srcText, port = splitAddr(ri.remoteAddr)
	}
	if src.IsValid() {
		f.sourceIP, f.sourcePort, f.clientIP = srcText, port, srcText
		if c, ok := l.clientIP(ri, src); ok {
			f.clientIP = c.String()
		} else if wc != nil {
			f.addr = &wc.addr
		}
	}
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

// accessTailSpans says where accessTail(service, host) holds the two
// names (nil if not where AppendJSON's layout puts them, which AppendEncoded
// would find out anyway).
func accessTailSpans(tail []byte, service, host string) []fixedSpan {
	var at []fixedSpan
	pos := 0
	for _, m := range []struct{ key, value, field string }{
		{`,"service":{"name":`, service, "service.name"},
		{`,"host":{"name":`, host, "host.name"},
	} {
		if m.value == "" {
			continue
		}
		tok := event.AppendString([]byte(m.key), m.value)
		if !bytes.HasPrefix(tail[pos:], tok) {
			return nil
		}
		at = append(at, fixedSpan{f: event.SpanField(m.field), start: pos + len(m.key) - len(tail), end: pos + len(tok) - len(tail)})
		pos += len(tok) + 1 // and the object's '}'
	}
	return at
}

// appendAccess appends the access event of the served request st, with
// event.id id, as one line of JSON (no newline). It is what
// l.finish(st, wc.now).AppendJSON writes. When an Annotate hook is set it
// returns b unchanged and false: the hook needs the event.
//
// With enc not nil it also notes in enc where the event holds each field
// (see EncodedSink).
func (l *Logger) appendAccess(b []byte, st *state, id []byte, wc *writerCache, enc *event.EncodedSpans) ([]byte, bool) {
	u, annotate := st.actor()
	if annotate != nil {
		return b, false
	}
	ri := &st.info
	var f reqFields
	l.fields(st, wc, &f)
	n := notes{enc: enc, base: len(b)}
	b = append(b, '{')
	if l.realClock {
		// startOf's time as seconds and nanoseconds since 1970, without
		// time.Time's arithmetic: the same instant, the same text.
		sec, nsec := wc.startUnix(ri.startTick)
		b = append(b, `"@timestamp":`...)
		vs := len(b)
		b = append(b, '"')
		b = wc.time.appendUnix(b, sec, nsec)
		b = append(b, '"')
		n.note(spTimestamp, vs, b)
		b = append(b, ',')
	} else if start := l.startOf(ri, wc.now); !start.IsZero() {
		b = append(b, `"@timestamp":`...)
		vs := len(b)
		b = append(b, '"')
		b = wc.time.append(b, start)
		b = append(b, '"')
		n.note(spTimestamp, vs, b)
		b = append(b, ',')
	}
	status := int(st.status)
	if status == 0 {
		status = http.StatusOK // nothing written: net/http sends 200
	}
	b = append(b, `"event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":`...)
	n.fixed(b, accessFixed)
	vs := len(b)
	if status >= 400 {
		b = append(b, `"failure"`...)
	} else {
		b = append(b, `"success"`...)
	}
	n.note(spOutcome, vs, b)
	if dur := l.duration(ri, wc.now); dur != 0 {
		b = append(b, `,"duration":`...)
		vs = len(b)
		b = appendInt(b, int64(dur))
		n.note(spDuration, vs, b)
	}
	b = append(b, `,"id":`...)
	vs = len(b)
	b = append(b, '"')
	b = append(b, id...)
	b = append(b, '"')
	n.note(spID, vs, b)
	b = append(b, `,"dataset":"trailguard.access"},"http":{"request":{`...)
	n.fixed(b, accessDataset)
	comma := false
	if st.requestID != "" {
		b = append(b, `"id":`...)
		vs = len(b)
		b = appendQuoted(b, st.requestID)
		n.note(spRequestID, vs, b)
		comma = true
	}
	if f.methodPlain {
		if comma {
			b = append(b, ',')
		}
		b = append(b, `"method":`...)
		vs = len(b)
		b = appendQuoted(b, f.method)
		n.note(spMethod, vs, b)
		comma = true
	} else {
		b, comma = n.member(b, comma, `"method":`, f.method, spMethod)
	}
	b, comma = n.member(b, comma, `"referrer":`, f.referrer, spReferrer)
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
			vs = len(b)
			b = appendInt(b, reqBytes)
			n.note(spReqBytes, vs, b)
			bc = true
		}
		b, _ = n.member(b, bc, `"content":`, body, spReqBody)
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
	vs = len(b)
	b = appendStatus(b, status)
	n.note(spStatus, vs, b)
	if st.written != 0 {
		b = append(b, `,"body":{"bytes":`...)
		vs = len(b)
		b = appendInt(b, st.written)
		n.note(spRespBytes, vs, b)
		b = append(b, '}')
	}
	b = append(b, `}}`...)
	if f.path != "" || f.query != "" || f.original != "" {
		b = append(b, `,"url":{`...)
		c := false
		if f.pathPlain { // the first member: no comma
			b = append(b, `"path":`...)
			vs = len(b)
			b = appendQuoted(b, f.path)
			n.note(spPath, vs, b)
			c = true
		} else {
			b, c = n.member(b, c, `"path":`, f.path, spPath)
		}
		b, c = n.member(b, c, `"query":`, f.query, spQuery)
		b, _ = n.member(b, c, `"original":`, f.original, spOriginal)
		b = append(b, '}')
	}
	if f.addr != nil {
		b = f.addr.append(b, n)
	} else {
		var at addrSpans
		start := len(b)
		b = appendAddr(b, f.sourceIP, f.sourcePort, f.portText, f.clientIP, &at)
		at.note(n, b[:start])
	}
	uid, uname := l.cut(u.ID), l.cut(u.Name)
	if uid != "" || uname != "" || len(u.Roles) > 0 {
		b = append(b, `,"user":{`...)
		c := false
		b, c = n.member(b, c, `"id":`, uid, spUserID)
		b, c = n.member(b, c, `"name":`, uname, spUserName)
		if len(u.Roles) > 0 {
			if c {
				b = append(b, ',')
			}
			b = append(b, `"roles":`...)
			vs = len(b)
			b = append(b, '[')
			for i, r := range u.Roles {
				if i > 0 {
					b = append(b, ',')
				}
				b = event.AppendString(b, r)
			}
			b = append(b, ']')
			n.note(spUserRoles, vs, b)
		}
		b = append(b, '}')
	}
	if f.ua != "" {
		b = append(b, `,"user_agent":{"original":`...)
		vs = len(b)
		if f.uaPlain {
			b = appendQuoted(b, f.ua)
		} else {
			b = event.AppendString(b, f.ua)
		}
		n.note(spUserAgent, vs, b)
		b = append(b, '}')
	}
	if traceID, spanID := st.traceIDs(); len(traceID) == 32 && len(spanID) == 16 {
		// W3C's lengths, as traceIDs always gives them: the members in
		// one constant, the ids copied into it.
		at := len(b)
		b = append(b, traceMembers...)
		copy(b[at+traceAt:], traceID)
		copy(b[at+spanAt:], spanID)
		n.note(spTraceID, at+traceAt-1, b[:at+traceAt+33])
		n.note(spSpanID, at+spanAt-1, b[:at+spanAt+17])
	} else if traceID != "" {
		b = append(b, `,"trace":{"id":`...)
		vs = len(b)
		b = appendQuoted(b, traceID)
		n.note(spTraceID, vs, b)
		b = append(b, `},"span":{"id":`...)
		vs = len(b)
		b = appendQuoted(b, spanID)
		n.note(spSpanID, vs, b)
		b = append(b, '}')
	}
	b = append(b, l.tail...)
	n.fixed(b, l.tailSpans)
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
				b = append(b, `,"trailguard":{"http":{"request":{"headers":`...)
				vs = len(b)
				b = append(b, '{')
				open = true
			}
			b = event.AppendString(b, l.hdrKeys[i].lower)
			b = append(b, ':')
			b = event.AppendString(b, v)
		}
		if open {
			b = append(b, '}')
			if n.enc != nil {
				n.enc.NoteHeaders(vs-n.base, len(b)-n.base)
			}
			b = append(b, `}}}`...)
		}
	}
	return append(b, '}'), true
}

// writerCache is what the writer goroutine keeps from one event to the
// next to encode access events faster: the text of the current second, the
// last connection address, and the values the redactor found clean.
type writerCache struct {
	now   stamp // the batch's reading of the real clock and the ticks (see startOf)
	time  timeCache
	addr  addrCache
	memo  *redact.Memo // nil: scrub every value afresh
	gates memoGates
	// unixOf is the stamp whose wall-clock time unixSec and unixNsec
	// hold (startUnix).
	unixOf            tick.Reading
	unixSec, unixNsec int64
}

// addrCache keeps the last connection address splitAddr parsed: the
// requests of a keep-alive connection, and of a proxy's pool of them,
// come in runs from the same address.
type addrCache struct {
	remote string
	ip     netip.Addr
	text   string
	port   int
	// The port in decimal, as strconv.AppendInt writes it (the address
	// may have written it otherwise: "080"), formatted once per address.
	portBuf [20]byte // any int, sign included
	portLen uint8
	// The source and client members of an event from this address
	// whose client is the source (appendAddr's bytes, and where it wrote
	// each token), written on first use: one copy where there were a
	// dozen appends.
	members []byte
	spans   addrSpans
	written bool // members holds this address's
}

func (c *addrCache) split(remote string) (netip.Addr, string, int) {
	if remote != c.remote || remote == "" {
		c.ip, c.text, c.port = splitAddr(remote)
		c.remote = remote
		c.portLen = uint8(len(strconv.AppendInt(c.portBuf[:0], int64(c.port), 10)))
		c.written = false
	}
	return c.ip, c.text, c.port
}

// append appends the source and client members of an event from the
// address split last, whose client is the source.
func (c *addrCache) append(b []byte, n notes) []byte {
	start := len(b)
	if c.written {
		b = append(b, c.members...)
	} else {
		b = appendAddr(b, c.text, c.port, c.portText(), c.text, &c.spans)
		c.members = append(c.members[:0], b[start:]...)
		c.written = true
	}
	c.spans.note(n, b[:start])
	return b
}

// addrSpans says where appendAddr wrote each token, as offsets from where
// it began (end 0: not written).
type addrSpans struct {
	ipStart, ipEnd, portStart, portEnd, clientStart, clientEnd int
}

// note records the tokens of the members appended to before.
func (a *addrSpans) note(n notes, before []byte) {
	if n.enc == nil {
		return
	}
	base := len(before)
	if a.ipEnd != 0 {
		n.note(spSourceIP, base+a.ipStart, before[:base+a.ipEnd])
	}
	if a.portEnd != 0 {
		n.note(spSourcePort, base+a.portStart, before[:base+a.portEnd])
	}
	if a.clientEnd != 0 {
		n.note(spClientIP, base+a.clientStart, before[:base+a.clientEnd])
	}
}

// appendAddr appends the source and client members of an event (each
// left out when empty), noting in at where it wrote their tokens. The
// port is written as portText when that is not nil.
func appendAddr(b []byte, sourceIP string, sourcePort int, portText []byte, clientIP string, at *addrSpans) []byte {
	start := len(b)
	*at = addrSpans{}
	if sourceIP != "" || sourcePort != 0 {
		b = append(b, `,"source":{`...)
		c := false
		if sourceIP != "" {
			b = append(b, `"ip":`...)
			at.ipStart = len(b) - start
			b = appendQuoted(b, sourceIP)
			at.ipEnd = len(b) - start
			c = true
		}
		if sourcePort != 0 {
			if c {
				b = append(b, ',')
			}
			b = append(b, `"port":`...)
			at.portStart = len(b) - start
			if portText != nil {
				b = append(b, portText...)
			} else {
				b = strconv.AppendInt(b, int64(sourcePort), 10)
			}
			at.portEnd = len(b) - start
		}
		b = append(b, '}')
	}
	if clientIP != "" {
		b = append(b, `,"client":{"ip":`...)
		at.clientStart = len(b) - start
		b = appendQuoted(b, clientIP)
		at.clientEnd = len(b) - start
		b = append(b, '}')
	}
	return b
}

// portText is the last split address's port in decimal.
func (c *addrCache) portText() []byte { return c.portBuf[:c.portLen] }

// timeCache formats timestamps as event.AppendTime does, keeping the text
// up to the seconds of the last one: the events of a batch mostly share
// their second, and only the nanoseconds need writing then.
type timeCache struct {
	sec    int64
	prefix [20]byte // "2006-01-02T15:04:05."
	ok     bool
}

func (c *timeCache) append(b []byte, t time.Time) []byte {
	return c.appendUnix(b, t.Unix(), int64(t.Nanosecond()))
}

// appendUnix is append of the time sec seconds and nsec (0 to 999,999,999)
// nanoseconds after 1970 began, UTC.
func (c *timeCache) appendUnix(b []byte, sec, nsec int64) []byte {
	if !c.ok || sec != c.sec {
		var full [40]byte
		f := event.AppendTime(full[:0], time.Unix(sec, nsec))
		if len(f) != 30 { // a year outside 0–9999: not cached
			c.ok = false
			return append(b, f...)
		}
		copy(c.prefix[:], f)
		c.sec, c.ok = sec, true
	}
	b = append(b, c.prefix[:]...)
	// Nine digits and the 'Z', written in place (read back from a
	// buffer of their own, the bytes just stored stalled the copy): the
	// last digit alone, then four pairs from a table (five divisions in
	// a chain rather than nine).
	at := len(b)
	b = append(b, "000000000Z"...)
	ns := b[at : at+10]
	v := uint(nsec)
	ns[8] = byte('0' + v%10)
	v /= 10
	for i := 6; i >= 0; i -= 2 {
		q := v % 100
		v /= 100
		ns[i], ns[i+1] = digitPairs[2*q], digitPairs[2*q+1]
	}
	return b
}

// startUnix is l.startOf(ri, wc.now) with the real clock, as seconds and
// nanoseconds since 1970: wc.now's wall-clock time, split once per stamp,
// less the ticks since the request's start.
func (wc *writerCache) startUnix(startTick int64) (sec, nsec int64) {
	if wc.unixOf != wc.now.Reading {
		wc.unixOf = wc.now.Reading
		wc.unixSec, wc.unixNsec = wc.now.Time.Unix(), int64(wc.now.Time.Nanosecond())
	}
	d := int64(wc.now.scale.Duration(wc.now.Ticks - startTick))
	sec, nsec = wc.unixSec-d/1e9, wc.unixNsec-d%1e9
	if nsec < 0 {
		sec, nsec = sec-1, nsec+1e9
	}
	return sec, nsec
}

// appendInt appends v in decimal as strconv.AppendInt(b, v, 10) does,
// the digits written in place, two at a time from the table (AppendInt
// formats into a buffer of its own and copies it).
func appendInt(b []byte, v int64) []byte {
	if v < 0 {
		return strconv.AppendInt(b, v, 10)
	}
	u := uint64(v)
	n := 1 // digits: compares, not the divisions that write them
	for p := uint64(10); u >= p; p *= 10 {
		n++
		if n == 19 { // u < 2⁶³ < 10¹⁹
			break
		}
	}
	at := len(b)
	b = append(b, "0000000000000000000"[:n]...)
	d := b[at : at+n]
	i := n
	for u >= 100 {
		q := u % 100
		u /= 100
		i -= 2
		d[i], d[i+1] = digitPairs[2*q], digitPairs[2*q+1]
	}
	if u >= 10 {
		d[i-2], d[i-1] = digitPairs[2*u], digitPairs[2*u+1]
	} else {
		d[i-1] = byte('0' + u)
	}
	return b
}

// appendStatus appends an HTTP status code as strconv.AppendInt does:
// three digits (net/http takes no other code) from the table, without
// AppendInt's general loop.
func appendStatus(b []byte, code int) []byte {
	if code < 100 || code > 999 {
		return strconv.AppendInt(b, int64(code), 10)
	}
	r := code % 100
	return append(b, byte('0'+code/100), digitPairs[2*r], digitPairs[2*r+1])
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

// traceMembers are the trace and span members of an event, with the
// places of their ids (32 and 16 bytes) at traceAt and spanAt.
const (
	traceMembers = `,"trace":{"id":"________________________________"},"span":{"id":"________________"}`
	traceAt      = len(`,"trace":{"id":"`)
	spanAt       = traceAt + 32 + len(`"},"span":{"id":"`)
)

// appendQuoted appends s in quotes without looking for bytes to escape.
// It is only for values whose alphabet the middleware checked or chose
// itself: request ids (validRequestID or a generated UUID), trace and span
// ids (lower-case hex), addresses as net/netip formats or parses them
// (digits, hex, '.', ':'), user agents event.PlainString passed
// (scrubUA). FuzzAccessDirect compares the result with the escaping
// encoder's.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// notes records in enc, when it is not nil, where appendAccess writes
// each field of the record that starts at base.
type notes struct {
	enc  *event.EncodedSpans
	base int
}

// note records that field f's token is b[vs:].
func (n notes) note(f, vs int, b []byte) {
	if n.enc != nil {
		n.enc.Note(f, vs-n.base, len(b)-n.base)
	}
}

// fixed records the fields of a constant appendAccess has just written
// (the end of b), from where they lie in it.
func (n notes) fixed(b []byte, at []fixedSpan) {
	if n.enc != nil {
		for _, s := range at {
			n.enc.Note(s.f, len(b)+s.start-n.base, len(b)+s.end-n.base)
		}
	}
}

// member is the package's member, noting the value as field f.
func (n notes) member(b []byte, comma bool, key, value string, f int) ([]byte, bool) {
	if value == "" {
		return b, comma
	}
	if comma {
		b = append(b, ',')
	}
	b = append(b, key...)
	vs := len(b)
	b = event.AppendString(b, value)
	n.note(f, vs, b)
	return b, true
}

// fixedSpan is a field's token in a constant part of an access event,
// as offsets from the constant's end (negative).
type fixedSpan struct{ f, start, end int }

// fixedSpans finds, in the constant c, the tokens that follow each of
// the given keys (`"kind":`), which name the fields (dotted ECS names)
// in the same order.
func fixedSpans(c string, keysAndFields ...string) []fixedSpan {
	var at []fixedSpan
	from := 0
	for i := 0; i < len(keysAndFields); i += 2 {
		k := strings.Index(c[from:], keysAndFields[i])
		f := event.SpanField(keysAndFields[i+1])
		if k < 0 || f < 0 {
			panic("httpaudit: no " + keysAndFields[i] + " in " + c)
		}
		start := from + k + len(keysAndFields[i])
		end := start + tokenLen(c[start:])
		at = append(at, fixedSpan{f: f, start: start - len(c), end: end - len(c)})
		from = end
	}
	return at
}

// tokenLen is the length of the string or array of strings (without
// escapes) s starts with.
func tokenLen(s string) int {
	if s[0] == '[' {
		return strings.IndexByte(s, ']') + 1
	}
	return strings.IndexByte(s[1:], '"') + 2
}

// The fields appendAccess notes (event.SpanField).
var (
	spTimestamp  = event.SpanField("@timestamp")
	spOutcome    = event.SpanField("event.outcome")
	spDuration   = event.SpanField("event.duration")
	spID         = event.SpanField("event.id")
	spRequestID  = event.SpanField("http.request.id")
	spMethod     = event.SpanField("http.request.method")
	spReferrer   = event.SpanField("http.request.referrer")
	spReqBytes   = event.SpanField("http.request.body.bytes")
	spReqBody    = event.SpanField("http.request.body.content")
	spStatus     = event.SpanField("http.response.status_code")
	spRespBytes  = event.SpanField("http.response.body.bytes")
	spPath       = event.SpanField("url.path")
	spQuery      = event.SpanField("url.query")
	spOriginal   = event.SpanField("url.original")
	spSourceIP   = event.SpanField("source.ip")
	spSourcePort = event.SpanField("source.port")
	spClientIP   = event.SpanField("client.ip")
	spUserID     = event.SpanField("user.id")
	spUserName   = event.SpanField("user.name")
	spUserRoles  = event.SpanField("user.roles")
	spUserAgent  = event.SpanField("user_agent.original")
	spTraceID    = event.SpanField("trace.id")
	spSpanID     = event.SpanField("span.id")

	accessFixed = fixedSpans(`"event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":`,
		`"kind":`, "event.kind", `"category":`, "event.category", `"type":`, "event.type", `"action":`, "event.action")
	accessDataset = fixedSpans(`,"dataset":"trailguard.access"},"http":{"request":{`, `"dataset":`, "event.dataset")
)

// memoGates decide, for each kind of value the writer scrubs (paths,
// queries, user agents, referrers), whether looking its values up in the
// memo pays. A hit saves the scan; a miss costs a hash of the value, a
// compare and a copy into the memo on top of the scan (~35 ns for a path
// or query here). User agents repeat; paths with ids in them and query
// strings often never do, and then every lookup is a miss. Each gate
// counts the hits of its kind over windows of memoWindow lookups; after a
// window with fewer than memoMinHits, values of that kind are scanned
// directly, but for one in memoProbe, which is still looked up (and
// remembered), so that a kind whose values start repeating is found out
// within a few thousand values. Either way every value is scrubbed by the
// same Redactor: a gate only chooses whether the memo is asked first.
type memoGates struct {
	memo *redact.Memo
	g    [gateKinds]memoGate
}

const (
	gatePath = iota
	gateQuery
	gateUA
	gateReferrer
	gateKinds
)

const (
	memoWindow  = 64
	memoMinHits = 16 // a hit saves about three times what a miss costs
	memoProbe   = 16
)

type memoGate struct {
	looks, hits uint8
	skipped     uint8 // values scanned directly since the last lookup
	bypass      bool
}

// ask says whether the next value should be looked up.
func (g *memoGate) ask() bool {
	if !g.bypass {
		return true
	}
	if g.skipped < memoProbe-1 {
		g.skipped++
		return false
	}
	g.skipped = 0
	return true
}

// saw counts a lookup's outcome.
func (g *memoGate) saw(hit bool) {
	g.looks++
	if hit {
		g.hits++
	}
	if g.looks == memoWindow {
		g.bypass = g.hits < memoMinHits
		g.looks, g.hits = 0, 0
	}
}

// scrubString is the redactor's String, through m's memo when it is not
// nil and its gate for kind lets it.
func (l *Logger) scrubString(m *memoGates, kind int, s string) string {
	if m == nil || !m.g[kind].ask() {
		return l.red.String(s)
	}
	out, hit := m.memo.StringHit(s)
	m.g[kind].saw(hit)
	return out
}

// scrubUA is the user agent as its events record it (scrubbed and cut),
// and whether it needs no JSON escaping: a user agent the memo answered
// for comes with that answer, remembered with it (a function of its bytes;
// redact.Memo.StringHitNote), so that the few a server sees are not
// tested again on every request. A value cut short, or scrubbed, or not
// remembered, is tested by the encoder as usual.
func (l *Logger) scrubUA(m *memoGates, s string) (string, bool) {
	if m == nil || !m.g[gateUA].ask() {
		return l.cut(l.red.String(s)), false
	}
	out, hit, plain := m.memo.StringHitNote(s, event.PlainString)
	m.g[gateUA].saw(hit)
	if c := l.cut(out); len(c) != len(out) {
		return c, false
	}
	return out, plain
}

// scrubQuery is the redactor's Query, through m's memo when it is not nil
// and its gate lets it; a query the gate does not look up whole still has
// its parameter names' verdicts answered by the memo (redact.Memo.QueryScan).
func (l *Logger) scrubQuery(m *memoGates, s string) string {
	if m == nil {
		return l.red.Query(s)
	}
	if !m.g[gateQuery].ask() {
		return m.memo.QueryScan(s)
	}
	out, hit := m.memo.QueryHit(s)
	m.g[gateQuery].saw(hit)
	return out
}
