package event

import "time"

// EncodedSpans is where an encoder that writes records in AppendJSON's
// layout (httpaudit's writer) put each modelled field's value while it
// wrote one: what AppendNormalizedSpans would otherwise find by parsing
// the record again. AppendEncoded takes it.
//
// An encoder notes only what it knows; a field it does not note is taken
// to be absent, and a record that holds more than its notes say is not
// taken (AppendEncoded then reports !ok and the caller parses it).
type EncodedSpans struct {
	at   [len(normFields)]span
	ok   bool // Reset was called and every span fits in a uint16
	used bool // at least one field was noted
}

// Reset starts the notes of a new record.
func (e *EncodedSpans) Reset() { *e = EncodedSpans{ok: true} }

// Note records that the record holds the JSON token of field f (a number
// from SpanField) at [start, end): a string with its quotes, an integer's
// digits, an array for event.category, event.type and user.roles, an
// object for labels and the HTTP headers.
func (e *EncodedSpans) Note(f, start, end int) {
	if f < 0 || f >= len(e.at) || start < 0 || end <= start || end > maxSpanRecord {
		e.ok = false
		return
	}
	e.at[f] = span{uint16(start), uint16(end)}
	e.used = true
}

// Invalidate says the notes do not describe the record (an encoder that
// wrote something it does not note).
func (e *EncodedSpans) Invalidate() { e.ok = false }

// Valid reports whether the notes may describe a record: Reset was called,
// something was noted and nothing invalidated them.
func (e *EncodedSpans) Valid() bool { return e != nil && e.ok && e.used }

// ingestedMember is what AppendNormalized adds to a record an encoder
// wrote without event.ingested: the member, before the closing brace of
// the event object (always there: event.kind is).
const ingestedMember = len(`,"ingested":"`) + len("2006-01-02T15:04:05.000000000Z") + len(`"`)

// AppendEncoded is AppendNormalizedSpans for a record whose fields an
// encoder noted in enc while it wrote it: the same bytes and the same
// Spans, or !ok with dst as it was, exactly when AppendNormalizedSpans
// would not take the record or enc does not describe it; the caller then
// takes AppendNormalizedSpans.
//
// It reads each value where enc says it is, with the same reader and the
// same checks as the one-pass normaliser, and writes the record as the
// normaliser writes it; what it skips is finding the values: reading the
// keys, looking them up, walking the objects. It then checks that the
// record it wrote is doc with event.ingested added, byte for byte: doc
// held nothing but the fields enc noted, in AppendJSON's layout, which is
// what the normaliser's parse would have established. sp must not be nil;
// when !ok is reported it holds nothing of use.
func AppendEncoded(dst, doc []byte, enc *EncodedSpans, now time.Time, newID func([]byte) []byte, sp *Spans) (out []byte, id []byte, ok bool) {
	if !enc.Valid() || sp == nil || len(doc) < 2 || doc[0] != '{' || len(doc)+ingestedMember > maxSpanRecord {
		return dst, nil, false
	}
	var n normalizer
	n.doc = doc
	n.maxDepth = 1 << 30
	for i := range enc.at {
		s := enc.at[i]
		if s.end == 0 {
			continue
		}
		if s.start >= s.end || int(s.end) > len(doc) || doc[s.start] <= ' ' {
			return dst, nil, false
		}
		sc := newScanner(doc[:s.end], int(s.start))
		if !n.field(&sc, i, 1, nil) || sc.Pos != int(s.end) {
			return dst, nil, false
		}
	}
	n.sp = sp // where emit says it put event.ingested
	base := len(dst)
	out, ok = n.emit(dst, now, newID)
	if !ok || !sp.ok {
		return dst, nil, false
	}
	// The member emit wrote for event.ingested, from its comma to its
	// closing quote.
	ms, me := int(sp.at[nfIngested].start)-len(`,"ingested":`), int(sp.at[nfIngested].end)
	if got := out[base:]; me-ms != ingestedMember || len(got) != len(doc)+ingestedMember ||
		string(got[:ms]) != string(doc[:ms]) || string(got[me:]) != string(doc[ms:]) {
		return dst, nil, false
	}
	return out, n.id, true
}

// NoteHeaders is Note for trailguard.http.request.headers, the object of
// recorded headers (which SpanField does not number).
func (e *EncodedSpans) NoteHeaders(start, end int) { e.Note(nfHeaders, start, end) }

// nfHeaders is trailguard.http.request.headers in normFields.
var nfHeaders = func() int {
	for i := range normFields {
		if normFields[i].name == headersPrefix {
			return i
		}
	}
	panic("event: no headers field")
}()
