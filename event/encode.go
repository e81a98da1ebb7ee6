package event

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

// TimeFormat is the layout of @timestamp and event.ingested: RFC 3339 in UTC
// with a fixed nine-digit fraction, so that encoded events sort as text and
// every line of a trail has the same shape.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// The encoder writes nested objects lazily from a static description of
// every field: the object (group) it lives in and its pre-quoted key.
// Tracking the current group as an integer, not a path of strings, keeps
// the encoder free of pointer writes, which cost write barriers while the
// garbage collector runs.
type group struct {
	parent, depth int
	open          string // `"name":{`
}

var (
	groups   = []group{{parent: -1}} // 0 is the document itself
	groupIDs = map[string]int{"": 0}
)

// groupOf returns the group of the object at the dotted path of parents,
// registering it and its ancestors on first use (at package init).
func groupOf(parents []string) int {
	key := ""
	g := 0
	for i, p := range parents {
		if i > 0 {
			key += "."
		}
		key += p
		id, ok := groupIDs[key]
		if !ok {
			id = len(groups)
			groups = append(groups, group{parent: g, depth: i + 1, open: string(appendString(nil, p)) + ":{"})
			groupIDs[key] = id
		}
		g = id
	}
	return g
}

// fieldSpec is where one modelled field goes.
type fieldSpec struct {
	g   int
	key string // `"name":`
}

func spec(path ...string) fieldSpec {
	return fieldSpec{g: groupOf(path[:len(path)-1]), key: string(appendString(nil, path[len(path)-1])) + ":"}
}

var (
	fTimestamp     = spec("@timestamp")
	fKind          = spec("event", "kind")
	fCategory      = spec("event", "category")
	fType          = spec("event", "type")
	fAction        = spec("event", "action")
	fOutcome       = spec("event", "outcome")
	fReason        = spec("event", "reason")
	fSeverity      = spec("event", "severity")
	fDuration      = spec("event", "duration")
	fID            = spec("event", "id")
	fDataset       = spec("event", "dataset")
	fIngested      = spec("event", "ingested")
	fMessage       = spec("message")
	fLogLevel      = spec("log", "level")
	fError         = spec("error", "message")
	fRequestID     = spec("http", "request", "id")
	fMethod        = spec("http", "request", "method")
	fReferrer      = spec("http", "request", "referrer")
	fReqBytes      = spec("http", "request", "body", "bytes")
	fReqBody       = spec("http", "request", "body", "content")
	fStatus        = spec("http", "response", "status_code")
	fRespBytes     = spec("http", "response", "body", "bytes")
	fPath          = spec("url", "path")
	fQuery         = spec("url", "query")
	fOriginal      = spec("url", "original")
	fSourceIP      = spec("source", "ip")
	fSourcePort    = spec("source", "port")
	fClientIP      = spec("client", "ip")
	fUserID        = spec("user", "id")
	fUserName      = spec("user", "name")
	fUserRoles     = spec("user", "roles")
	fTargetID      = spec("user", "target", "id")
	fTargetName    = spec("user", "target", "name")
	fUserAgent     = spec("user_agent", "original")
	fTraceID       = spec("trace", "id")
	fSpanID        = spec("span", "id")
	fServiceName   = spec("service", "name")
	fHostName      = spec("host", "name")
	gLabels        = groupOf([]string{labelsPrefix})
	gHeaders       = groupOf([]string{"trailguard", "http", "request", "headers"})
	fAuditResource = spec("trailguard", "audit", "resource")
	fAuditBefore   = spec("trailguard", "audit", "before")
	fAuditAfter    = spec("trailguard", "audit", "after")
	fAttrs         = spec("trailguard", "attrs")
)

const labelsPrefix = "labels"

// encoder is the state of one AppendJSON: the group whose object is open
// and whether a member was written in it.
type encoder struct {
	cur   int
	comma bool
}

// to closes and opens objects so that group g is the open one.
func (e *encoder) to(buf []byte, g int) []byte {
	if g == e.cur {
		return buf
	}
	a, b := e.cur, g
	for groups[a].depth > groups[b].depth {
		a = groups[a].parent
	}
	for groups[b].depth > groups[a].depth {
		b = groups[b].parent
	}
	for a != b {
		a, b = groups[a].parent, groups[b].parent
	}
	for n := groups[e.cur].depth - groups[a].depth; n > 0; n-- {
		buf = append(buf, '}')
		e.comma = true
	}
	var chain [8]int
	n := 0
	for x := g; x != a; x = groups[x].parent {
		chain[n] = x
		n++
	}
	for i := n - 1; i >= 0; i-- {
		if e.comma {
			buf = append(buf, ',')
		}
		buf = append(buf, groups[chain[i]].open...)
		e.comma = false
	}
	e.cur = g
	return buf
}

func (e *encoder) key(buf []byte, f fieldSpec) []byte {
	if f.g != e.cur {
		buf = e.to(buf, f.g)
	}
	if e.comma {
		buf = append(buf, ',')
	}
	e.comma = true
	return append(buf, f.key...)
}

// dynKey writes a member name that is data (a label, a header, an extra
// field) in group g.
func (e *encoder) dynKey(buf []byte, g int, name string) []byte {
	buf = e.to(buf, g)
	if e.comma {
		buf = append(buf, ',')
	}
	e.comma = true
	buf = appendString(buf, name)
	return append(buf, ':')
}

func (e *encoder) str(buf []byte, f fieldSpec, v string) []byte {
	if v == "" {
		return buf
	}
	return appendString(e.key(buf, f), v)
}

func (e *encoder) strs(buf []byte, f fieldSpec, v []string) []byte {
	if len(v) == 0 {
		return buf
	}
	buf = append(e.key(buf, f), '[')
	for i, s := range v {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, s)
	}
	return append(buf, ']')
}

// strMap writes a map of strings as the members of group g, sorted by key
// so that the encoding is deterministic.
func (e *encoder) strMap(buf []byte, g int, m map[string]string) []byte {
	if len(m) == 0 {
		return buf
	}
	var small [16]string
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		buf = appendString(e.dynKey(buf, g, k), m[k])
	}
	return buf
}

func (e *encoder) int(buf []byte, f fieldSpec, v int64) []byte {
	if v == 0 {
		return buf
	}
	return strconv.AppendInt(e.key(buf, f), v, 10)
}

func (e *encoder) time(buf []byte, f fieldSpec, t time.Time) []byte {
	if t.IsZero() {
		return buf
	}
	buf = append(e.key(buf, f), '"')
	buf = AppendTime(buf, t)
	return append(buf, '"')
}

func (e *encoder) raw(buf []byte, f fieldSpec, v json.RawMessage) []byte {
	if len(v) == 0 {
		return buf
	}
	return appendRaw(e.key(buf, f), v)
}

// AppendJSON appends the event as one line of JSON (without a trailing
// newline) to dst and returns the extended buffer. Keys come in a fixed
// order; no raw control character, newline included, can appear in the
// output whatever the field values hold.
func (ev *Event) AppendJSON(dst []byte) []byte {
	var e encoder
	b := append(dst, '{')
	b = e.time(b, fTimestamp, ev.Timestamp)
	b = e.str(b, fKind, ev.Kind)
	b = e.strs(b, fCategory, ev.Category)
	b = e.strs(b, fType, ev.Type)
	b = e.str(b, fAction, ev.Action)
	b = e.str(b, fOutcome, ev.Outcome)
	b = e.str(b, fReason, ev.Reason)
	b = e.int(b, fSeverity, int64(ev.Severity))
	b = e.int(b, fDuration, int64(ev.Duration))
	b = e.str(b, fID, ev.ID)
	b = e.str(b, fDataset, ev.Dataset)
	b = e.time(b, fIngested, ev.Ingested)
	b = e.str(b, fMessage, ev.Message)
	b = e.str(b, fLogLevel, ev.LogLevel)
	b = e.str(b, fError, ev.ErrorMessage)
	b = e.str(b, fRequestID, ev.RequestID)
	b = e.str(b, fMethod, ev.Method)
	b = e.str(b, fReferrer, ev.Referrer)
	b = e.int(b, fReqBytes, ev.RequestBodyBytes)
	b = e.str(b, fReqBody, ev.RequestBody)
	b = e.int(b, fStatus, int64(ev.StatusCode))
	b = e.int(b, fRespBytes, ev.ResponseBodyBytes)
	b = e.str(b, fPath, ev.Path)
	b = e.str(b, fQuery, ev.Query)
	b = e.str(b, fOriginal, ev.Original)
	b = e.str(b, fSourceIP, ev.SourceIP)
	b = e.int(b, fSourcePort, int64(ev.SourcePort))
	b = e.str(b, fClientIP, ev.ClientIP)
	b = e.str(b, fUserID, ev.UserID)
	b = e.str(b, fUserName, ev.UserName)
	b = e.strs(b, fUserRoles, ev.UserRoles)
	b = e.str(b, fTargetID, ev.TargetUserID)
	b = e.str(b, fTargetName, ev.TargetUserName)
	b = e.str(b, fUserAgent, ev.UserAgent)
	b = e.str(b, fTraceID, ev.TraceID)
	b = e.str(b, fSpanID, ev.SpanID)
	b = e.str(b, fServiceName, ev.ServiceName)
	b = e.str(b, fHostName, ev.HostName)
	b = e.strMap(b, gLabels, ev.Labels)
	b = e.strMap(b, gHeaders, ev.RequestHeaders)
	if a := ev.Audit; a != nil {
		b = e.str(b, fAuditResource, a.Resource)
		b = e.raw(b, fAuditBefore, a.Before)
		b = e.raw(b, fAuditAfter, a.After)
	}
	b = e.raw(b, fAttrs, ev.Attrs)
	if len(ev.Extra) > 0 {
		keys := make([]string, 0, len(ev.Extra))
		for k := range ev.Extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b = appendRaw(e.dynKey(b, 0, k), ev.Extra[k])
		}
	}
	b = e.to(b, 0)
	return append(b, '}')
}

// AppendTime appends t in TimeFormat. It writes the digits directly:
// time.Time.AppendFormat interprets its layout on every call, which was a
// fifth of the cost of encoding an access event.
func AppendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, min, sec := t.Clock()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, TimeFormat)
	}
	var b [30]byte
	put := func(i, v, n int) {
		for j := i + n - 1; j >= i; j-- {
			b[j] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, year, 4)
	b[4] = '-'
	put(5, int(month), 2)
	b[7] = '-'
	put(8, day, 2)
	b[10] = 'T'
	put(11, hour, 2)
	b[13] = ':'
	put(14, min, 2)
	b[16] = ':'
	put(17, sec, 2)
	b[19] = '.'
	put(20, t.Nanosecond(), 9)
	b[29] = 'Z'
	return append(dst, b[:]...)
}

// MarshalJSON implements json.Marshaler with AppendJSON.
func (ev *Event) MarshalJSON() ([]byte, error) {
	return ev.AppendJSON(nil), nil
}

// appendRaw appends a JSON value that came from outside the encoder. It is
// compacted when it holds raw whitespace, since a newline between tokens is
// valid JSON but would split a log line; a value that is not valid JSON is
// kept, as a string, rather than dropped or trusted.
func appendRaw(dst []byte, v json.RawMessage) []byte {
	hasCtl := false
	for _, c := range v {
		if c < 0x20 {
			hasCtl = true
			break
		}
	}
	if hasCtl {
		var b bytes.Buffer
		if err := json.Compact(&b, v); err == nil {
			return append(dst, b.Bytes()...)
		}
		return appendString(dst, string(v))
	}
	if !json.Valid(v) {
		return appendString(dst, string(v))
	}
	return append(dst, v...)
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string. Beyond what JSON demands it
// escapes DEL, U+0085, U+2028 and U+2029, which some log viewers and
// JavaScript treat as line breaks, and replaces invalid UTF-8 with U+FFFD,
// so a hostile value cannot change how a line is split or displayed.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	// Most values (paths, ids, names, user agents) are plain ASCII: one
	// test, then one copy.
	if plainString(s) {
		dst = append(dst, s...)
		return append(dst, '"')
	}
	start := 0
	for i := 0; i < len(s); {
		// Eight bytes at a time while none needs attention.
		for i+8 <= len(s) && plain8(load8(s, i)) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if plainByte[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
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
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == 0x85 || r == 0x2028 || r == 0x2029:
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', hex[r>>12], hex[(r>>8)&0xf], hex[(r>>4)&0xf], hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// plainByte marks the bytes a JSON string holds as they are: printable
// ASCII other than '"' and '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plainString reports whether every byte of s is plain (see plainByte),
// eight at a time; the last word overlaps the one before it rather than
// leaving a tail to test byte by byte.
func plainString(s string) bool {
	n := len(s)
	if n < 8 {
		for i := 0; i < n; i++ {
			if !plainByte[s[i]] {
				return false
			}
		}
		return true
	}
	for i := 0; i < n-8; i += 8 {
		if !plain8(load8(s, i)) {
			return false
		}
	}
	return plain8(load8(s, n-8))
}

// load8 reads s[i:i+8] as a little-endian word with one load (the
// byte-by-byte form is not combined into one by the compiler for strings).
// The caller guarantees i+8 <= len(s).
func load8(s string, i int) uint64 {
	return binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s), len(s))[i : i+8])
}

// plain8 reports whether none of the eight bytes in x needs escaping or
// UTF-8 checking: no byte below 0x20, none of '"', '\\' or DEL, and no byte
// with the high bit set. A borrow or carry between bytes can only set a
// high bit where one of those bytes already is, so a false answer may be
// wrong (the caller then looks byte by byte) but a true one never is.
func plain8(x uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	return (x|(x-lo*0x20)|(x+lo)|((x^(lo*'"'))-lo)|((x^(lo*'\\'))-lo))&hi == 0
}

// Plain8 is the test the encoder makes on eight bytes at a time (loaded
// little-endian into x): true only when none of them is a control
// character, a quote, a backslash, DEL or non-ASCII. Readers of records
// use it to pass over the plain bytes of a string eight at a time.
func Plain8(x uint64) bool { return plain8(x) }

// PlainString reports whether AppendString writes s as it is, between
// quotes: no byte of it needs escaping or replacing.
func PlainString(s string) bool { return plainString(s) }

// AppendString appends s to dst as a JSON string literal, escaped the way
// the event encoder escapes every value (see Event.AppendJSON).
func AppendString(dst []byte, s string) []byte { return appendString(dst, s) }
