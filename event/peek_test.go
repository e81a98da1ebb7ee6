package event

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestPeekID(t *testing.T) {
	tests := []struct {
		doc, id string
		ok      bool
	}{
		{`{"event":{"id":"a1"}}`, "a1", true},
		{`{"@timestamp":"x","event":{"kind":"event","id":"a2","x":[1,{"id":"no"}]},"id":"top"}`, "a2", true},
		{`{"event.id":"a3"}`, "a3", true},
		{`{"user":{"id":"u"},"event":{"id":"a4"}}`, "a4", true},
		{`{"event":{"kind":"event"},"event.id":"a5"}`, "a5", true},
		{`{"event":{"id":"\u0061\"6"}}`, `a"6`, true},
		{`{"event":{"id":5}}`, "", false},
		{`{"event":"flat"}`, "", false},
		{`{"user":{"id":"u"}}`, "", false},
		{`{}`, "", false},
		{`[]`, "", false},
		{`{"event":{"id"`, "", false},
		{`{"a":1 "event":{"id":"x"}}`, "", false},
	}
	for _, tt := range tests {
		id, ok := PeekID([]byte(tt.doc))
		if id != tt.id || ok != tt.ok {
			t.Errorf("PeekID(%s) = %q, %v; want %q, %v", tt.doc, id, ok, tt.id, tt.ok)
		}
	}
	for name, ev := range samples() {
		if id, ok := PeekID(ev.AppendJSON(nil)); !ok || id != ev.ID {
			t.Errorf("%s: PeekID = %q, %v; want %q", name, id, ok, ev.ID)
		}
	}
}

func FuzzPeekID(f *testing.F) {
	f.Add([]byte(`{"event":{"id":"a"}}`))
	f.Add([]byte(`{"event.id":"b","event":{}}`))
	f.Add([]byte(`{"event":{"id":5,"id":"c"},"event.id":"d"}`))
	f.Add([]byte(`{"ev\u0065nt":{"i\u0064":"e\u00e9"}}`))
	f.Add([]byte(`{"event":[{"id":"no"}],"x":{"event.id":"no"},"event.id":"f"}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		id, ok := PeekID(doc)
		// Whenever the full decoder finds an id in a well-formed document,
		// PeekID finds the same one (it may stop early on ids Decode would
		// later overwrite, so only a document with one id is compared).
		ev, err := Decode(doc)
		if err == nil && ok && ev.ID != id && countID(doc) == 1 {
			t.Fatalf("PeekID %q, Decode %q for %s", id, ev.ID, doc)
		}
		// On valid JSON PeekID is exactly the first string event.id in
		// document order, as encoding/json's tokenizer reads it: a
		// shipper's idempotency key must not depend on how the sender
		// escaped or spaced the document.
		if !json.Valid(doc) || !utf8.Valid(doc) {
			return
		}
		wid, wok, deep := refPeekID(doc)
		if deep {
			return // nesting past MaxDecodeDepth: PeekID may refuse
		}
		if wid != id || wok != ok {
			t.Fatalf("PeekID(%s) = %q, %v; encoding/json reads %q, %v", doc, id, ok, wid, wok)
		}
	})
}

// refPeekID is PeekID's meaning written with encoding/json's tokenizer;
// deep reports nesting past MaxDecodeDepth before the answer was found.
func refPeekID(doc []byte) (id string, ok, deep bool) {
	d := json.NewDecoder(bytes.NewReader(doc))
	tok := func() json.Token { t, _ := d.Token(); return t }
	// skip consumes one value whose first token is t, at nesting depth.
	var skip func(t json.Token, depth int) bool
	skip = func(t json.Token, depth int) bool {
		if t != json.Delim('{') && t != json.Delim('[') {
			return true
		}
		if depth > MaxDecodeDepth-2 {
			return false
		}
		for d.More() {
			if t == json.Delim('{') {
				tok() // key
			}
			if !skip(tok(), depth+1) {
				return false
			}
		}
		tok() // closing delimiter
		return true
	}
	if tok() != json.Delim('{') {
		return "", false, false
	}
	for d.More() {
		k, _ := tok().(string)
		v := tok()
		switch {
		case k == "event.id":
			if s, isStr := v.(string); isStr {
				return s, true, false
			}
		case k == "event" && v == json.Delim('{'):
			for d.More() {
				ik, _ := tok().(string)
				iv := tok()
				if s, isStr := iv.(string); isStr && ik == "id" {
					return s, true, false
				}
				if !skip(iv, 2) {
					return "", false, true
				}
			}
			tok()
			continue
		}
		if !skip(v, 1) {
			return "", false, true
		}
	}
	return "", false, false
}

func countID(doc []byte) int {
	n := 0
	for i := 0; i+4 <= len(doc); i++ {
		if string(doc[i:i+4]) == `"id"` || (i+10 <= len(doc) && string(doc[i:i+10]) == `"event.id"`) {
			n++
		}
	}
	return n
}
