package index

import (
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/query"
)

// checkExtract fails unless the columns extract gives data say exactly
// what query.Flatten (which search results are matched with) says, or the
// record is marked odd.
func checkExtract(t *testing.T, data []byte) {
	t.Helper()
	appended := time.Unix(1700000000, 5)
	var x extracted
	extract(data, &x)
	c := x.columns(appended)
	doc, err := query.Flatten(data)
	if err != nil {
		if !c.odd {
			t.Fatalf("%q: Flatten fails (%v) but the record is not odd", data, err)
		}
		return
	}
	if c.odd {
		return
	}
	ts, _ := doc["@timestamp"].(string)
	if tm, err := time.Parse(time.RFC3339Nano, ts); err != nil || tm.UnixNano() != c.ts {
		t.Fatalf("%q: ts %d, @timestamp %q", data, c.ts, ts)
	}
	for f := fEventID; f < nFields; f++ {
		v, present := doc[fieldNames[f]]
		if !c.has[f] {
			l, isList := v.([]any)
			if present && v != nil && !(isList && len(l) == 0) {
				t.Fatalf("%q: %s = %#v but no column value", data, fieldNames[f], v)
			}
			continue
		}
		switch {
		case f == fCategory:
			l, isList := v.([]any)
			if !isList {
				l = []any{v}
			}
			var s []string
			for _, e := range l {
				str, ok := e.(string)
				if !ok {
					t.Fatalf("%q: category element %#v", data, e)
				}
				s = append(s, str)
			}
			if strings.Join(s, ",") != c.str[f] {
				t.Fatalf("%q: category %q, column %q", data, s, c.str[f])
			}
		case f == fStatus:
			n, ok := v.(json.Number)
			i, err := strconv.ParseInt(string(n), 10, 64)
			if !ok || err != nil || i != c.status {
				t.Fatalf("%q: status %#v, column %d", data, v, c.status)
			}
		case f == fSourceIP || f == fClientIP:
			s, _ := v.(string)
			a, err := netip.ParseAddr(s)
			if err != nil || a.Unmap().WithZone("") != c.ip[f-fSourceIP] {
				t.Fatalf("%q: %s %#v, column %v", data, fieldNames[f], v, c.ip[f-fSourceIP])
			}
		default:
			if s, ok := v.(string); !ok || s != c.str[f] {
				t.Fatalf("%q: %s %#v, column %q", data, fieldNames[f], v, c.str[f])
			}
		}
	}
}

func extractSeeds() []string {
	seeds := append([]string{}, oddRecords...)
	for i := range 20 {
		seeds = append(seeds, string(genEvent(i, time.Second).AppendJSON(nil)))
	}
	return append(seeds,
		`{}`, `{"@timestamp":"2026-01-01T00:00:00Z"}`, `null`, `"x"`, `{"a":1} {"b":2}`,
		`{"@timestamp":"2026-01-01T00:00:00Z","event":{"category":[["web"],"iam"]}}`,
		`{"@timestamp":"2026-01-01T00:00:00Z","event":[{"action":"a"},{"outcome":"b"}]}`,
		`{"@timestamp":"2026-01-01T00:00:00Z","event":[{"action":"a"},{"action":"b"}]}`,
		`{"@timestamp":"2026-01-01T00:00:00Z","event.action":"a","event":{"outcome":"x"}}`,
		`{"@timestamp":"2026-01-01T00:00:00Z","user":{"name":"a\"b\\c"},"url":{"path":"\/p"}}`,
		`{"@timestamp":"2026-01-01T00:00:00Z","user":{"":{"name":"x"}},"user.":{"name":"y"}}`,
		`{"@timestamp":"2026-01-01T00:00:00Z","source":{"ip":"fe80::1%eth0"},"client":{"ip":"1.2.3.4"}}`,
		`{"@timestamp":"2026-01-01T00:00:00Z","http":{"response":{"status_code":-0}}}`,
		`{"@timestamp":"2026-01-01T00:00:00Z","http":{"response":{"status_code":1e3}}}`,
		`{"@timestamp":"2026-01-01T00:00:00+02:00","user":{"name":true}}`,
	)
}

func TestExtractAgreesWithFlatten(t *testing.T) {
	for _, s := range extractSeeds() {
		checkExtract(t, []byte(s))
	}
	// What is odd and what is not.
	for _, tt := range []struct {
		rec string
		odd bool
	}{
		{string(genEvent(3, time.Second).AppendJSON(nil)), false},
		{`{"@timestamp":"2026-11-25T17:00:01Z","user.name":"alice"}`, false},
		{`{"@timestamp":"2026-11-25T17:00:01Z","User":{"Name":"alice"}}`, false},
		{`{"@timestamp":"2026-11-25T17:00:01Z","user":[{"name":"alice"}]}`, false},
		{`{"@timestamp":"2026-11-25T17:00:01Z","user":{"name":"alice"},"user":{"id":"1"}}`, true},
		{`{"@timestamp":"2026-11-25T17:00:01Z","user":{"name":"alice"},"user.name":"alice"}`, true},
		{`{"@timestamp":"2026-11-25T17:00:01Z","http":{"response":{"status_code":"401"}}}`, true},
		{`{"user":{"name":"alice"}}`, true},
		{`not json`, true},
	} {
		var x extracted
		extract([]byte(tt.rec), &x)
		if c := x.columns(time.Now()); c.odd != tt.odd {
			t.Errorf("%s: odd = %v, want %v", tt.rec, c.odd, tt.odd)
		}
	}
}

func FuzzExtract(f *testing.F) {
	for _, s := range extractSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkExtract(t, data)
	})
}

func BenchmarkExtract(b *testing.B) {
	data := genEvent(3, time.Second).AppendJSON(nil)
	b.SetBytes(int64(len(data)))
	var x extracted
	for b.Loop() {
		extract(data, &x)
		if c := x.columns(t0); c.odd || !c.has[fUserName] {
			b.Fatal("not extracted")
		}
	}
}

// TestPlain8: event.Plain8, which the scanner skips plain bytes with, agrees with a byte-wise check for every byte value
// in every position of a word of plain bytes.
func TestPlain8(t *testing.T) {
	plain := func(c byte) bool { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' }
	for pos := range 8 {
		for c := range 256 {
			w := []byte("abcdefgh")
			w[pos] = byte(c)
			if got := event.Plain8(binary.LittleEndian.Uint64(w)); got != plain(byte(c)) {
				t.Fatalf("Plain8 with %#02x at %d = %v", c, pos, got)
			}
		}
	}
}
