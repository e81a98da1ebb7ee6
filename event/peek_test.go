package event

import "testing"

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
	f.Fuzz(func(t *testing.T, doc []byte) {
		id, ok := PeekID(doc)
		// Whenever the full decoder finds an id in a well-formed document,
		// PeekID finds the same one (it may stop early on ids Decode would
		// later overwrite, so only a document with one id is compared).
		ev, err := Decode(doc)
		if err == nil && ok && ev.ID != id && countID(doc) == 1 {
			t.Fatalf("PeekID %q, Decode %q for %s", id, ev.ID, doc)
		}
	})
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
