package event

import "time"

// Spans says where a record written by AppendNormalizedSpans holds the
// value of each field Event models, so that a reader of the record (the
// collector's index, detection and overview, which follow the ledger)
// need not parse it again: the record is one JSON object written in
// AppendJSON's layout, each field at most once, and every field it holds
// is one of these (no Extra), except the members of labels and of
// trailguard.http.request.headers (Maps reports them).
//
// It also carries the instants the record's @timestamp and
// event.ingested hold, which the normaliser had parsed or chosen, so that
// no reader parses them again.
//
// A Spans is 184 bytes; records longer than 64 KiB get none (OK false).
type Spans struct {
	at [len(normFields)]span
	// plain has bit f set when field f's token is a string written
	// without escapes or bytes outside printable ASCII (Plain).
	plain uint64
	// ts and ing are @timestamp and event.ingested in Unix nanoseconds,
	// each valid when its flag is set (an instant UnixNano cannot
	// represent, after 2262, has none: readers parse the record's text).
	ts, ing     int64
	hasTS, hasI bool
	maps        bool
	ok          bool
}

// span is a value's bytes [start, end) in the record; end 0: absent.
type span struct{ start, end uint16 }

// maxSpanRecord is the longest record Spans can describe.
const maxSpanRecord = 1<<16 - 1

// OK reports whether sp describes a record (AppendNormalizedSpans wrote
// it and the record is not longer than 64 KiB).
func (sp *Spans) OK() bool { return sp != nil && sp.ok }

// Maps reports whether the record holds labels or HTTP headers, whose
// members Spans does not locate.
func (sp *Spans) Maps() bool { return sp.maps }

// Token returns the JSON token of field f (a number from SpanField) in
// rec, the record sp describes, or nil when the record does not hold the
// field: a string token with its quotes (escaped as AppendJSON escapes),
// an integer's digits, or, for event.category, event.type and user.roles,
// an array of string tokens.
func (sp *Spans) Token(rec []byte, f int) []byte {
	s := sp.at[f]
	if s.end == 0 || int(s.end) > len(rec) {
		return nil
	}
	return rec[s.start:s.end:s.end]
}

// Plain reports whether field f's token (Token) is a string whose value
// is its bytes between the quotes: no escapes, printable ASCII only. A
// reader then takes the value without scanning it (false only means it
// must scan: the value may still be plain).
func (sp *Spans) Plain(f int) bool { return sp.plain&(1<<uint(f)) != 0 }

// Timestamp returns the instant the record's @timestamp holds, in Unix
// nanoseconds, exactly as parsing the record's text with time.Parse and
// RFC 3339 gives it; ok is false when sp does not know it (a record it
// does not describe, or an instant UnixNano cannot represent).
func (sp *Spans) Timestamp() (ns int64, ok bool) { return sp.ts, sp.ok && sp.hasTS }

// Ingested is Timestamp for event.ingested.
func (sp *Spans) Ingested() (ns int64, ok bool) { return sp.ing, sp.ok && sp.hasI }

// unixNanos returns t in Unix nanoseconds if UnixNano represents it.
func unixNanos(t time.Time) (int64, bool) {
	ns := t.UnixNano()
	return ns, time.Unix(0, ns).Equal(t)
}

// SpanField is the number Spans.Token takes for the dotted ECS name of a
// field Event models (one the record holds at most once, as a string, an
// integer or an array of strings), or -1: labels, headers and names Event
// does not model (which a record Spans describes never holds) have none.
func SpanField(name string) int {
	for i := range normFields {
		if normFields[i].name == name && normFields[i].kind != nkMap {
			return i
		}
	}
	return -1
}

// SpanFields is the number of fields Spans locates: SpanField returns
// numbers below it.
const SpanFields = len(normFields)

// Spans.plain has a bit per field.
var _ [64 - SpanFields]struct{}

// Span returns where field f's value lies in the record sp describes
// (the bytes Token returns), or 0, 0 when the record does not hold it.
func (sp *Spans) Span(f int) (start, end int) {
	s := sp.at[f]
	return int(s.start), int(s.end)
}

// SpanAbsent reports whether a record Spans describes never holds a value
// at the dotted name: it is neither a field Event models, nor an object on
// the way to one, nor labels, the HTTP headers or a name below them.
// (SpanField gives the modelled fields; what SpanAbsent does not rule out
// and SpanField does not number must be read from the record.)
func SpanAbsent(name string) bool {
	for i := range normFields {
		f := normFields[i].name
		switch {
		case f == name,
			len(f) > len(name) && f[:len(name)] == name && f[len(name)] == '.':
			return false // the field, or an object on its way
		case normFields[i].kind == nkMap && len(name) > len(f) && name[:len(f)] == f && name[len(f)] == '.':
			return false // a label or a header
		}
	}
	return true
}
