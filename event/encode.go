package event

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// TimeFormat is the layout of @timestamp and event.ingested: RFC 3339 in UTC
// with a fixed nine-digit fraction, so that encoded events sort as text and
// every line of a trail has the same shape.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// Field paths, as package variables so that passing them allocates nothing.
var (
	pTimestamp     = []string{"@timestamp"}
	pKind          = []string{"event", "kind"}
	pCategory      = []string{"event", "category"}
	pType          = []string{"event", "type"}
	pAction        = []string{"event", "action"}
	pOutcome       = []string{"event", "outcome"}
	pReason        = []string{"event", "reason"}
	pSeverity      = []string{"event", "severity"}
	pDuration      = []string{"event", "duration"}
	pID            = []string{"event", "id"}
	pDataset       = []string{"event", "dataset"}
	pIngested      = []string{"event", "ingested"}
	pMessage       = []string{"message"}
	pLogLevel      = []string{"log", "level"}
	pError         = []string{"error", "message"}
	pRequestID     = []string{"http", "request", "id"}
	pMethod        = []string{"http", "request", "method"}
	pReferrer      = []string{"http", "request", "referrer"}
	pReqBytes      = []string{"http", "request", "body", "bytes"}
	pReqBody       = []string{"http", "request", "body", "content"}
	pStatus        = []string{"http", "response", "status_code"}
	pRespBytes     = []string{"http", "response", "body", "bytes"}
	pPath          = []string{"url", "path"}
	pQuery         = []string{"url", "query"}
	pSourceIP      = []string{"source", "ip"}
	pSourcePort    = []string{"source", "port"}
	pClientIP      = []string{"client", "ip"}
	pUserID        = []string{"user", "id"}
	pUserName      = []string{"user", "name"}
	pUserRoles     = []string{"user", "roles"}
	pTargetID      = []string{"user", "target", "id"}
	pTargetName    = []string{"user", "target", "name"}
	pUserAgent     = []string{"user_agent", "original"}
	pTraceID       = []string{"trace", "id"}
	pSpanID        = []string{"span", "id"}
	pServiceName   = []string{"service", "name"}
	pHostName      = []string{"host", "name"}
	pLabels        = []string{labelsPrefix}
	pHeaders       = []string{"trailguard", "http", "request", "headers"}
	pAuditResource = []string{"trailguard", "audit", "resource"}
	pAuditBefore   = []string{"trailguard", "audit", "before"}
	pAuditAfter    = []string{"trailguard", "audit", "after"}
	pAttrs         = []string{"trailguard", "attrs"}
)

const (
	labelsPrefix = "labels"
	// maxObjectNesting is the deepest object path a modelled field has
	// (a header under trailguard.http.request.headers opens four).
	maxObjectNesting = 5
)

// encoder writes nested JSON objects lazily: a field's enclosing objects are
// opened when the first field inside them is written and closed when a field
// outside them comes, so empty objects are never emitted. Fields must be
// written grouped by their enclosing objects.
type encoder struct {
	buf   []byte
	open  [maxObjectNesting]string
	depth int
	comma bool
}

func (e *encoder) key(path []string) {
	parents := path[:len(path)-1]
	c := 0
	for c < e.depth && c < len(parents) && e.open[c] == parents[c] {
		c++
	}
	for e.depth > c {
		e.buf = append(e.buf, '}')
		e.depth--
		e.comma = true
	}
	for _, p := range parents[c:] {
		if e.comma {
			e.buf = append(e.buf, ',')
		}
		e.buf = appendString(e.buf, p)
		e.buf = append(e.buf, ':', '{')
		e.open[e.depth] = p
		e.depth++
		e.comma = false
	}
	if e.comma {
		e.buf = append(e.buf, ',')
	}
	e.buf = appendString(e.buf, path[len(path)-1])
	e.buf = append(e.buf, ':')
	e.comma = true
}

func (e *encoder) closeAll() {
	for e.depth > 0 {
		e.buf = append(e.buf, '}')
		e.depth--
		e.comma = true
	}
}

func (e *encoder) str(path []string, v string) {
	if v != "" {
		e.key(path)
		e.buf = appendString(e.buf, v)
	}
}

func (e *encoder) strs(path []string, v []string) {
	if len(v) == 0 {
		return
	}
	e.key(path)
	e.buf = append(e.buf, '[')
	for i, s := range v {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.buf = appendString(e.buf, s)
	}
	e.buf = append(e.buf, ']')
}

// strMap writes a map of strings as members of the object at path, sorted
// by key so that the encoding is deterministic.
func (e *encoder) strMap(path []string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	full := append(path[:len(path):len(path)], "")
	for _, k := range keys {
		full[len(full)-1] = k
		e.key(full)
		e.buf = appendString(e.buf, m[k])
	}
}

func (e *encoder) int(path []string, v int64) {
	if v != 0 {
		e.key(path)
		e.buf = strconv.AppendInt(e.buf, v, 10)
	}
}

func (e *encoder) time(path []string, t time.Time) {
	if !t.IsZero() {
		e.key(path)
		e.buf = append(e.buf, '"')
		e.buf = t.UTC().AppendFormat(e.buf, TimeFormat)
		e.buf = append(e.buf, '"')
	}
}

func (e *encoder) raw(path []string, v json.RawMessage) {
	if len(v) != 0 {
		e.key(path)
		e.buf = appendRaw(e.buf, v)
	}
}

// AppendJSON appends the event as one line of JSON (without a trailing
// newline) to dst and returns the extended buffer. Keys come in a fixed
// order; no raw control character, newline included, can appear in the
// output whatever the field values hold.
func (ev *Event) AppendJSON(dst []byte) []byte {
	e := encoder{buf: append(dst, '{')}
	e.time(pTimestamp, ev.Timestamp)
	e.str(pKind, ev.Kind)
	e.strs(pCategory, ev.Category)
	e.strs(pType, ev.Type)
	e.str(pAction, ev.Action)
	e.str(pOutcome, ev.Outcome)
	e.str(pReason, ev.Reason)
	e.int(pSeverity, int64(ev.Severity))
	e.int(pDuration, int64(ev.Duration))
	e.str(pID, ev.ID)
	e.str(pDataset, ev.Dataset)
	e.time(pIngested, ev.Ingested)
	e.str(pMessage, ev.Message)
	e.str(pLogLevel, ev.LogLevel)
	e.str(pError, ev.ErrorMessage)
	e.str(pRequestID, ev.RequestID)
	e.str(pMethod, ev.Method)
	e.str(pReferrer, ev.Referrer)
	e.int(pReqBytes, ev.RequestBodyBytes)
	e.str(pReqBody, ev.RequestBody)
	e.int(pStatus, int64(ev.StatusCode))
	e.int(pRespBytes, ev.ResponseBodyBytes)
	e.str(pPath, ev.Path)
	e.str(pQuery, ev.Query)
	e.str(pSourceIP, ev.SourceIP)
	e.int(pSourcePort, int64(ev.SourcePort))
	e.str(pClientIP, ev.ClientIP)
	e.str(pUserID, ev.UserID)
	e.str(pUserName, ev.UserName)
	e.strs(pUserRoles, ev.UserRoles)
	e.str(pTargetID, ev.TargetUserID)
	e.str(pTargetName, ev.TargetUserName)
	e.str(pUserAgent, ev.UserAgent)
	e.str(pTraceID, ev.TraceID)
	e.str(pSpanID, ev.SpanID)
	e.str(pServiceName, ev.ServiceName)
	e.str(pHostName, ev.HostName)
	e.strMap(pLabels, ev.Labels)
	e.strMap(pHeaders, ev.RequestHeaders)
	if a := ev.Audit; a != nil {
		e.str(pAuditResource, a.Resource)
		e.raw(pAuditBefore, a.Before)
		e.raw(pAuditAfter, a.After)
	}
	e.raw(pAttrs, ev.Attrs)
	e.closeAll()
	if len(ev.Extra) > 0 {
		keys := make([]string, 0, len(ev.Extra))
		for k := range ev.Extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			e.key([]string{k})
			e.buf = appendRaw(e.buf, ev.Extra[k])
		}
	}
	return append(e.buf, '}')
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
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < 0x7f {
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

// AppendString appends s to dst as a JSON string literal, escaped the way
// the event encoder escapes every value (see Event.AppendJSON).
func AppendString(dst []byte, s string) []byte { return appendString(dst, s) }
