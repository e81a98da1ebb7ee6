package index

import (
	"encoding/binary"
	"runtime"
	"time"
	"unsafe"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
)

// rec is one record decoded for insertion (off the writer's goroutine).
type rec struct {
	idx uint64
	c   cols
}

// decode extracts the column values of a ledger entry: from the fields
// the collector located when it checked the event (the entry's Aux, when
// it holds event.Spans that describe the record), or else by parsing the
// record. Both give the same values (TestDecodeSpans, FuzzDecodeSpans).
func decode(e ledger.Entry) rec {
	var x extracted
	return decodeWith(e, &x)
}

// decodeWith is decode with x as its scratch space (Run's follower reuses
// one: allocated per record, it was a tenth of the collector's
// allocations under ingest load).
func decodeWith(e ledger.Entry, x *extracted) rec {
	r, _ := decodeChecked(e, x)
	return r
}

// decodeChecked is decodeWith that also reports spans it found not to
// describe the record (the record was parsed instead).
func decodeChecked(e ledger.Entry, x *extracted) (r rec, wrongSpans bool) {
	if sps, ok := e.Aux.([]event.Spans); ok && e.AuxPos < len(sps) && sps[e.AuxPos].OK() {
		if r, ok := decodeSpans(e, &sps[e.AuxPos], x); ok {
			return r, false
		}
		wrongSpans = true
	}
	extract(e.Data, x)
	return rec{idx: e.Index, c: x.columns(e.Time)}, wrongSpans
}

// decodeSpans is decode for a record sp describes: such a record is one
// JSON object holding each field at most once and nothing Event does not
// model, so each column field's value is the token sp locates, read as
// extract reads a value at that field (same strings, numbers, arrays).
//
// ok is false when sp is found not to describe the record (a bug in
// whatever located the fields, or a record changed since): a span past
// the record's end, a plain string token without its quotes, or a token
// the scanner runs off (it trusts its input to be valid JSON, which the
// spans are taken to locate: checking each token would cost a pass over
// it on every record, and a recovered panic costs nothing until then).
// The caller then parses the record. Spans that locate other valid
// tokens of the right length are not detected.
func decodeSpans(e ledger.Entry, sp *event.Spans, x *extracted) (r rec, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			if _, isRuntime := p.(runtime.Error); !isRuntime {
				panic(p)
			}
			ok = false
		}
	}()
	*x = extracted{cats: x.cats[:0]}
	s := scanner{x: x, alias: true}
	for f := range nFields {
		start, end := sp.Span(spanField[f])
		if end == 0 {
			continue
		}
		if start >= end || end > len(e.Data) {
			return rec{}, false
		}
		tok := e.Data[start:end:end]
		if sp.Plain(spanField[f]) {
			if len(tok) < 2 || tok[0] != '"' || tok[len(tok)-1] != '"' {
				return rec{}, false
			}
			// A string without escapes: its value is between the quotes
			// (what s.value would find, without reading it byte by byte).
			s.add(f, 's', unsafe.String(unsafe.SliceData(tok[1:]), len(tok)-2))
			continue
		}
		s.b, s.i = tok, 0
		s.value(&leaves[f], 1)
	}
	x.ts, x.hasTS = sp.Timestamp()
	return rec{idx: e.Index, c: x.columns(e.Time)}, true
}

// spanField is each column field's number in event.Spans, and leaves the
// trie nodes of the column fields alone.
var spanField, leaves = func() (sf [nFields]int, lv [nFields]tnode) {
	for f, name := range fieldNames {
		if sf[f] = event.SpanField(name); sf[f] < 0 {
			panic("index: column field " + name + " has no event.Spans number")
		}
		lv[f] = tnode{field: f}
	}
	return sf, lv
}()

// idHash is the 48-bit hash of field f's id under the index's salt, as a
// signed integer SQLite stores in 6 bytes: SipHash-2-4 keyed with the
// salt (16 bytes) of the field's number followed by the id. Collisions only
// cost a ledger read: every candidate is checked against the record. The
// salt keeps writers of events from choosing ids that collide on purpose.
func idHash(salt []byte, f int, s string) int64 {
	k0, k1 := binary.LittleEndian.Uint64(salt[0:8]), binary.LittleEndian.Uint64(salt[8:16])
	// The message in one buffer on the stack for the usual short ids.
	var small [128]byte
	msg := append(append(small[:0], byte(f)), s...)
	return int64(sipHash24(k0, k1, msg)>>16) - 1<<47
}

func clampNanos(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return minTime.UnixNano()
	case t.After(maxTime):
		return maxTime.UnixNano()
	}
	return t.UnixNano()
}

// The instants UnixNano can represent.
var (
	minTime = time.Unix(0, -1<<63)
	maxTime = time.Unix(0, 1<<63-1)
)
