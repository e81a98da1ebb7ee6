package event

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// encodedNotes returns the notes an encoder that wrote doc would take (doc
// being what the normaliser stores without event.ingested), and whether
// doc is such a record: the normaliser stores it as it is, with
// event.ingested added.
func encodedNotes(doc []byte) (EncodedSpans, bool) {
	var e EncodedSpans
	e.Reset()
	var sp Spans
	out, _, ok := AppendNormalizedSpans(nil, doc, time.Unix(1, 0), AppendID, &sp)
	if !ok || !sp.OK() {
		return e, false
	}
	vs, ve := sp.Span(nfIngested)
	ms := vs - len(`,"ingested":`)
	if string(out[:ms])+string(out[ve:]) != string(doc) {
		return e, false
	}
	for i := range sp.at {
		s := sp.at[i]
		if i == nfIngested || s.end == 0 {
			continue
		}
		start, end := int(s.start), int(s.end)
		if start > ms {
			start, end = start-ingestedMember, end-ingestedMember
		}
		e.Note(i, start, end)
	}
	if sp.maps {
		// Spans does not locate the maps: find the headers object (the
		// only map an encoder notes) after its key.
		if i := bytes.Index(doc, []byte(`"headers":{`)); i >= 0 {
			d := 0
			for j := i + len(`"headers":`); j < len(doc); j++ {
				switch doc[j] {
				case '{':
					d++
				case '}':
					if d--; d == 0 {
						e.NoteHeaders(i+len(`"headers":`), j+1)
						j = len(doc)
					}
				}
			}
		}
		if bytes.Contains(doc, []byte(`"labels":{`)) {
			e.Invalidate() // an encoder noting them would need NoteLabels
		}
	}
	return e, true
}

// checkEncoded holds AppendEncoded to its promise for doc and notes e:
// exactly what AppendNormalizedSpans stores (bytes, spans, event.id), or
// !ok with dst untouched.
func checkEncoded(t *testing.T, doc []byte, e *EncodedSpans) (ok bool) {
	t.Helper()
	now := time.Date(2026, 11, 30, 15, 0, 0, 7, time.UTC)
	newID := func(b []byte) []byte { return append(b, "01a22cfb-fb4e-75d4-b5cf-a2b3cfe4bcfe"...) }
	dst := []byte("prefix")
	var gotSp, wantSp Spans
	got, gotID, ok := AppendEncoded(dst, doc, e, now, newID, &gotSp)
	if !ok {
		if string(got) != "prefix" {
			t.Fatalf("!ok but dst changed: %q", got)
		}
		return false
	}
	want, wantID, wantOK := AppendNormalizedSpans([]byte("prefix"), doc, now, newID, &wantSp)
	if !wantOK || !bytes.Equal(got, want) || gotSp != wantSp || !bytes.Equal(gotID, wantID) {
		t.Fatalf("AppendEncoded of %s\n got %s (spans %+v, id %q)\nwant %s (ok %v, spans %+v, id %q)", doc, got, gotSp, gotID, want, wantOK, wantSp, wantID)
	}
	return true
}

// TestAppendEncoded: with the notes of the encoder that wrote it, every
// record the normaliser stores as it came is stored the same without
// being parsed; notes that do not describe the record (a field missed,
// moved, added, a record holding more than they say) make it refuse, and
// what it refuses the normaliser is left to.
func TestAppendEncoded(t *testing.T) {
	docs := append([]string{}, normalizedSeeds...)
	// The shapes the normaliser writes back as they came: what an
	// encoder in AppendJSON's layout writes.
	for _, d := range normalizedSeeds {
		var sp Spans
		out, _, ok := AppendNormalizedSpans(nil, []byte(d), time.Unix(1, 0), AppendID, &sp)
		if ok && sp.OK() {
			vs, ve := sp.Span(nfIngested)
			ms := vs - len(`,"ingested":`)
			docs = append(docs, string(out[:ms])+string(out[ve:]))
		}
	}
	docs = append(docs,
		`{"@timestamp":"2026-11-30T15:00:00.000000000Z","event":{"kind":"event","action":"x\u2028\"y\"","id":"a"},"message":"é\t","user":{"roles":["a\\b","c"]}}`,
		`{"@timestamp":"2026-11-30T15:00:00.000000000Z","event":{"kind":"event","id":"a"},"url":{"path":"/\ufffd"}}`, // written back as the character
		`{"@timestamp":"2026-11-30T15:00:00.000000000Z","event":{"kind":"event","id":"a"},"http":{"response":{"status_code":600}}}`,
		`{"@timestamp":"2026-11-30T15:00:00.000000000Z","event":{"kind":"event","id":"a","duration":-5}}`,
		`{"@timestamp":"2026-11-30T15:00:00.000000000Z","event":{"kind":"event","id":"a"},"source":{"ip":"10.0.0.256"}}`,
		`{"@timestamp":"2026-11-30T15:00:00.000000000Z","event":{"kind":"event","id":"a"},"trailguard":{"http":{"request":{"headers":{"b":"2","a":"1"}}}}}`,
		`{"@timestamp":"2026-11-30T15:00:00.000000000Z","event":{"kind":"event","id":"a"},"trailguard":{"http":{"request":{"headers":{"a":"1","b":"\u00e9"}}}}}`,
		`{"@timestamp":"2026-11-30T15:00:00.000000000Z","event":{"kind":"event","id":"a"},"trailguard":{"http":{"request":{"headers":{"a":"1","b":"2"}}}}}`,
		`{"@timestamp":"2026-11-30T15:00:00.000000000Z","event":{"kind":"event","id":"a"},"user":{"name":"`+string(bytes.Repeat([]byte("x"), 70000))+`"}}`,
	)
	took := 0
	for _, d := range docs {
		doc := []byte(d)
		e, asIs := encodedNotes(doc)
		ok := checkEncoded(t, doc, &e)
		if asIs && e.Valid() && len(doc)+ingestedMember <= maxSpanRecord && !ok {
			t.Errorf("refused with the notes of its encoder: %s", doc)
		}
		if ok {
			took++
			// Notes that do not describe it: each field missed, or moved
			// by a byte. (What it takes with them must still be what the
			// normaliser stores: a missed event.kind is, its default.)
			for i := range e.at {
				if e.at[i].end == 0 {
					continue
				}
				for _, bad := range []span{{}, {e.at[i].start + 1, e.at[i].end}, {e.at[i].start, e.at[i].end - 1}, {e.at[i].start - 1, e.at[i].end}} {
					m := e
					m.at[i] = bad
					checkEncoded(t, doc, &m)
				}
			}
			// A member the notes do not mention.
			more := append(append([]byte(nil), doc[:len(doc)-1]...), `,"message":"m"}`...)
			if e.at[12].end == 0 && checkEncoded(t, more, &e) {
				t.Errorf("took %s with the notes of %s", more, doc)
			}
		}
	}
	if took < 10 {
		t.Errorf("only %d of %d records taken", took, len(docs))
	}
	var none EncodedSpans
	if checkEncoded(t, []byte(docs[0]), &none) || checkEncoded(t, []byte(docs[0]), nil) {
		t.Error("took a record without notes")
	}
}

// FuzzAppendEncoded: whatever the record and the notes, AppendEncoded
// stores what the normaliser stores or refuses. The notes are the true
// ones of the record (when the normaliser stores it as it came), changed
// by the fuzzer's edits: three bytes each, a field, a kind of change,
// an amount.
func FuzzAppendEncoded(f *testing.F) {
	for _, d := range normalizedSeeds {
		f.Add([]byte(d), []byte{})
		f.Add([]byte(d), []byte{9, 1, 1, 22, 2, 3})
	}
	f.Fuzz(func(t *testing.T, doc, edits []byte) {
		e, _ := encodedNotes(doc)
		for len(edits) >= 3 {
			i, op, v := int(edits[0])%len(e.at), edits[1]%5, uint16(edits[2])
			edits = edits[3:]
			s := &e.at[i]
			switch op {
			case 0:
				*s = span{}
			case 1:
				s.start += v
			case 2:
				s.end -= v
			case 3:
				s.start -= v
			case 4:
				*s = span{v, v + uint16(len(edits))}
			}
			e.used = true
		}
		checkEncoded(t, doc, &e)
	})
}

func BenchmarkAppendEncoded(b *testing.B) {
	for _, k := range []int{0, 1} {
		// The gateway's access event, without event.ingested as its
		// writer encodes it, then the demo's (headers, body, roles).
		var sp Spans
		out, _, _ := AppendNormalizedSpans(nil, []byte(normalizedSeeds[k]), time.Unix(1, 0), AppendID, &sp)
		vs, ve := sp.Span(nfIngested)
		doc := append(append([]byte(nil), out[:vs-len(`,"ingested":`)]...), out[ve:]...)
		e, ok := encodedNotes(doc)
		if !ok {
			b.Fatal("no notes")
		}
		now := time.Now()
		for _, path := range []string{"Encoded", "Normalized"} {
			b.Run(fmt.Sprintf("%s/%d", path, k), func(b *testing.B) {
				b.SetBytes(int64(len(doc)))
				b.ReportAllocs()
				var dst []byte
				var sp Spans
				for b.Loop() {
					var ok bool
					if path == "Encoded" {
						dst, _, ok = AppendEncoded(dst[:0], doc, &e, now, AppendID, &sp)
					} else {
						dst, _, ok = AppendNormalizedSpans(dst[:0], doc, now, AppendID, &sp)
					}
					if !ok || len(dst) != len(doc)+ingestedMember {
						b.Fatalf("not stored: %s", dst)
					}
				}
			})
		}
	}
}
