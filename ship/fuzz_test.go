package ship

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzParseFrame: arbitrary bytes never panic the parser, and whatever it
// accepts re-encodes to exactly the bytes it consumed.
func FuzzParseFrame(f *testing.F) {
	f.Add(appendFrame(nil, 42, []byte(`{"a":1}`)))
	f.Add([]byte{1, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte("TGSPOOL1garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, p, n, err := parseFrame(b)
		switch err {
		case nil:
			if n != frameHeader+len(p) || n > len(b) || len(p) == 0 {
				t.Fatalf("n=%d len(p)=%d len(b)=%d", n, len(p), len(b))
			}
			if re := appendFrame(nil, ts, p); !bytes.Equal(re, b[:n]) {
				t.Fatalf("re-encoding differs")
			}
		case errShort:
			if len(b) >= 4 && frameHeader+int(binary.LittleEndian.Uint32(b)) <= len(b) {
				t.Fatal("short with the whole frame present")
			}
		case errCorrupt:
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzSpoolRecovery builds a segment from records, cuts it at a random point
// and appends garbage (a crash mid-write, or damage), then reopens it: the
// records that survive in full are recovered in order, the spool accepts new
// writes, and reading never panics or yields a record that was not written.
func FuzzSpoolRecovery(f *testing.F) {
	f.Add(uint8(5), uint16(300), uint16(17), []byte("garbage"))
	f.Add(uint8(1), uint16(0), uint16(0), []byte{})
	f.Add(uint8(20), uint16(1000), uint16(7), []byte{3, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Fuzz(func(t *testing.T, nrec uint8, cut uint16, seed uint16, garbage []byte) {
		var recs [][]byte
		data := []byte(segMagic)
		var ends []int
		for i := range int(nrec%30) + 1 {
			r := bytes.Repeat([]byte{'a' + byte((i+int(seed))%26)}, 1+(i*int(seed+1))%200)
			recs = append(recs, r)
			data = appendFrame(data, int64(i), r)
			ends = append(ends, len(data))
		}
		keep := len(data) - int(cut)%(len(data)-len(segMagic)+1)
		data = append(data[:keep:keep], garbage...)
		// Records wholly before the cut survive.
		want := 0
		for _, e := range ends {
			if e <= keep {
				want++
			}
		}
		dir := t.TempDir()
		path := filepath.Join(dir, segName(0))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s := &Shipper{core: core{dir: dir, opts: Options{Now: time.Now}}}
		g := &segment{first: 0, path: path, size: int64(len(data))}
		count, err := s.repairLast(g)
		if err != nil {
			t.Fatal(err)
		}
		// Garbage may, with negligible odds, hold a valid frame; it
		// cannot make us lose a record that was whole.
		if count < want {
			t.Fatalf("recovered %d records, %d were whole", count, want)
		}
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		r := newFrameReader(fh, int64(len(segMagic)), g.size, nil)
		for i := 0; i < want; i++ {
			_, p, err := r.next()
			if err != nil || !bytes.Equal(p, recs[i]) {
				t.Fatalf("record %d: %q, %v; want %q", i, p, err, recs[i])
			}
		}
	})
}

// FuzzEventID: the id scanner never panics and agrees with encoding/json on
// documents that are valid JSON.
func FuzzEventID(f *testing.F) {
	for _, s := range []string{`{"event":{"id":"a"}}`, `{"event.id":"b"}`, `{"x":[{"y":"\""}],"event":{"id":"\u00e9"}}`,
		`{"event":{"kind":"event","id":"c","x":{}}}`, `{"event":{"id":1}}`, `{`, `"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		id, ok := eventID(doc)
		if ok && (id == "" || len(id) > maxDocID) {
			t.Fatalf("bad id %q accepted", id)
		}
		if !json.Valid(doc) {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(doc, &m) != nil {
			if ok {
				t.Fatalf("id %q from a non-object", id)
			}
			return
		}
		if !ok {
			return
		}
		// The scanner takes the first "event" or "event.id" key it meets;
		// encoding/json keeps the last duplicate, so check the common case.
		var want string
		if raw, has := m["event"]; has {
			var e map[string]json.RawMessage
			if json.Unmarshal(raw, &e) == nil {
				json.Unmarshal(e["id"], &want)
			}
		}
		if want == "" {
			json.Unmarshal(m["event.id"], &want)
		}
		if want != id && !bytes.Contains(doc, []byte(`\`)) && bytes.Count(doc, []byte(`"id"`)) == 1 && bytes.Count(doc, []byte(`"event`)) == 1 {
			t.Fatalf("eventID = %q, encoding/json says %q", id, want)
		}
	})
}
