package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// checkSpans holds AppendNormalizedSpans to AppendNormalized's output and
// every span to the value a JSON decoder finds at the field's path.
func checkSpans(t *testing.T, doc []byte) {
	t.Helper()
	now := time.Date(2026, 11, 30, 1, 2, 3, 456789000, time.UTC)
	prefix := []byte("prefix:")
	want, _, ok := AppendNormalized(prefix, doc, now, fixedID)
	var sp Spans
	got, _, ok2 := AppendNormalizedSpans(prefix, doc, now, fixedID, &sp)
	if ok != ok2 || !bytes.Equal(got, want) {
		t.Fatalf("%s: with spans %q (%v), without %q (%v)", doc, got, ok2, want, ok)
	}
	if !ok {
		return
	}
	rec := got[len(prefix):]
	if !sp.OK() {
		if len(rec) <= maxSpanRecord {
			t.Fatalf("%s: no spans for a record of %d bytes", doc, len(rec))
		}
		return
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(rec))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("%s: record %s: %v", doc, rec, err)
	}
	maps := false
	for i := range normFields {
		name := normFields[i].name
		v, present := m, true
		var val any = m
		for _, seg := range strings.Split(name, ".") {
			obj, isObj := val.(map[string]any)
			if !isObj {
				present = false
				break
			}
			if val, present = obj[seg]; !present {
				break
			}
		}
		_ = v
		if normFields[i].kind == nkMap {
			if present && len(val.(map[string]any)) > 0 {
				maps = true
			}
			if SpanField(name) != -1 {
				t.Fatalf("SpanField(%q) = %d, want -1 for a map", name, SpanField(name))
			}
			continue
		}
		if f := SpanField(name); f != i {
			t.Fatalf("SpanField(%q) = %d, want %d", name, f, i)
		}
		tok := sp.Token(rec, i)
		if !present {
			if tok != nil {
				t.Fatalf("%s: %s absent from %s, span %q", doc, name, rec, tok)
			}
			continue
		}
		if tok == nil {
			t.Fatalf("%s: %s present in %s, no span", doc, name, rec)
		}
		var tv any
		td := json.NewDecoder(bytes.NewReader(tok))
		td.UseNumber()
		if err := td.Decode(&tv); err != nil || td.More() {
			t.Fatalf("%s: %s: span %q is not one JSON value: %v", doc, name, tok, err)
		}
		a, _ := json.Marshal(tv)
		b, _ := json.Marshal(val)
		if !bytes.Equal(a, b) {
			t.Fatalf("%s: %s: span %s, record holds %s", doc, name, a, b)
		}
		// A plain token's value is its bytes between the quotes.
		if sp.Plain(i) {
			s, isStr := tv.(string)
			if !isStr || len(tok) < 2 || tok[0] != '"' || string(tok[1:len(tok)-1]) != s {
				t.Fatalf("%s: %s: span %q is Plain, its value is %q", doc, name, tok, tv)
			}
			for _, c := range []byte(s) {
				if c < 0x20 || c >= 0x7f || c == '\\' || c == '"' {
					t.Fatalf("%s: %s: span %q is Plain, holds byte %#x", doc, name, tok, c)
				}
			}
		}
	}
	if sp.Maps() != maps {
		t.Fatalf("%s: Maps() %v, record %s", doc, sp.Maps(), rec)
	}
	// The instants carried are those the record's text says.
	for _, c := range []struct {
		name string
		get  func() (int64, bool)
	}{{"@timestamp", sp.Timestamp}, {"ingested", sp.Ingested}} {
		var text string
		if c.name == "@timestamp" {
			text, _ = m["@timestamp"].(string)
		} else {
			text, _ = m["event"].(map[string]any)["ingested"].(string)
		}
		pt, err := time.Parse(time.RFC3339Nano, text)
		if err != nil {
			t.Fatalf("%s: %s %q: %v", doc, c.name, text, err)
		}
		ns, ok := c.get()
		if representable := time.Unix(0, pt.UnixNano()).Equal(pt); ok != representable || ok && ns != pt.UnixNano() {
			t.Fatalf("%s: %s %q: spans give %d (%v), want %d (%v)", doc, c.name, text, ns, ok, pt.UnixNano(), representable)
		}
	}
	if SpanField("labels.x") != -1 || SpanField("custom") != -1 {
		t.Fatal("SpanField of a name Event does not model")
	}
}

func TestSpans(t *testing.T) {
	for _, doc := range normalizedSeeds {
		checkSpans(t, []byte(doc))
	}
	// A record over 64 KiB gets none.
	big := []byte(`{"message":"` + strings.Repeat("x", 70000) + `"}`)
	var sp Spans
	if _, _, ok := AppendNormalizedSpans(nil, big, time.Now(), fixedID, &sp); !ok || sp.OK() {
		t.Fatalf("big record: ok %v, spans %v", ok, sp.OK())
	}
	if _, ok := sp.Timestamp(); ok {
		t.Fatal("big record: spans give a @timestamp")
	}
	// Instants UnixNano cannot represent (after 2262) are not carried;
	// those it can are, at the nanosecond.
	for _, ts := range []string{"2263-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "2262-04-11T23:47:16.854775807Z", "1970-01-01T00:00:00.000000001Z"} {
		checkSpans(t, []byte(`{"@timestamp":"`+ts+`","message":"m"}`))
	}
}

// TestSpansPlain: Plain marks the string values written as they came
// (checkSpans holds every Plain token to its decoded value) and only those.
func TestSpansPlain(t *testing.T) {
	doc := []byte(`{"@timestamp":"2026-11-30T01:02:03Z","event":{"action":"log\\u0069n","outcome":"failure","category":["web"]},"user":{"name":"b\\\"ob"},"url":{"path":"/café"},"http":{"request":{"method":"POST"},"response":{"status_code":401}},"service":{"name":"api"}}`)
	checkSpans(t, doc)
	var sp Spans
	if _, _, ok := AppendNormalizedSpans(nil, doc, time.Now(), fixedID, &sp); !ok || !sp.OK() {
		t.Fatal("declined")
	}
	for name, plain := range map[string]bool{
		"@timestamp": true, "event.kind": true, "event.id": true, "event.ingested": true, "event.outcome": true,
		"http.request.method": true, "service.name": true,
		"event.action": false, "user.name": false, "url.path": false, // escaped, or not ASCII
		"http.response.status_code": false, "event.category": false, // not a string
	} {
		if got := sp.Plain(SpanField(name)); got != plain {
			t.Errorf("Plain(%s) = %v, want %v", name, got, plain)
		}
	}
}

func TestSpansAllocations(t *testing.T) {
	doc := []byte(normalizedSeeds[0])
	dst := make([]byte, 0, 4096)
	now := time.Now()
	var sp Spans
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, ok := AppendNormalizedSpans(dst[:0], doc, now, fixedID, &sp); !ok {
			t.Fatal("declined")
		}
	})
	if allocs > 0 {
		t.Fatalf("%.1f allocations per event, want 0", allocs)
	}
}

func TestSpanAbsent(t *testing.T) {
	for name, absent := range map[string]bool{
		"user.name": false, "user": false, "event": false, "http.request": false, "labels": false, "labels.env": false,
		"trailguard.http.request.headers.accept": false, "trailguard": false,
		"user.name.first": true, "destination.ip": true, "custom": true, "event.actions": true, "use": true, "": true,
	} {
		if got := SpanAbsent(name); got != absent {
			t.Errorf("SpanAbsent(%q) = %v, want %v", name, got, absent)
		}
	}
}
