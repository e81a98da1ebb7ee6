package index

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
)

// decodeNoPanic is decode, with a panic returned as an error.
func decodeNoPanic(e ledger.Entry) (r rec, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return decode(e), nil
}

// TestDecodeSpansThatDisagree: spans that do not describe the record they
// come with (a bug elsewhere, or a record changed after ingest located its
// fields) never make decode panic, and where decode can tell (a span past
// the record's end, a string token that is not one, a token the scanner
// cannot read) it parses the record instead.
func TestDecodeSpansThatDisagree(t *testing.T) {
	now := time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
	docs := spanDocs()
	tried := 0
	for i, doc := range docs {
		var sp event.Spans
		data, _, ok := event.AppendNormalizedSpans(nil, doc, now, fixedID, &sp)
		if !ok || !sp.OK() {
			continue
		}
		tried++
		other := docs[(i+1)%len(docs)]
		variants := []struct {
			name     string
			rec      []byte
			fallback bool // decode must give what parsing gives
		}{
			{"empty", nil, true},
			{"first half", data[:len(data)/2], true},
			{"spaces", bytes.Repeat([]byte(" "), len(data)), true},
			{"brackets", bytes.Repeat([]byte("["), len(data)), true},
			{"backslashes", bytes.Repeat([]byte(`"\`), len(data)/2+1), true},
			// The plain strings intact, the other tokens unreadable.
			{"open arrays", fillTokens(data, &sp, "["), true},
			{"open strings", fillTokens(data, &sp, `"\`), true},
			{"quotes", bytes.Repeat([]byte(`"`), len(data)), false},
			{"without the last byte", data[:len(data)-1], false},
			{"another record", other, false},
			{"shifted right", append([]byte("    "), data...), false},
			{"shifted left", data[3:], false},
		}
		for _, v := range variants {
			e := ledger.Entry{Index: 7, Time: now, Data: v.rec, Aux: []event.Spans{sp}}
			got, err := decodeNoPanic(e)
			if err != nil {
				t.Fatalf("doc %d, %s: %v", i, v.name, err)
			}
			if v.fallback {
				e.Aux = nil
				if want := decode(e); got != want {
					t.Errorf("doc %d, %s:\n got    %+v\n parsed %+v", i, v.name, got, want)
				}
			}
		}
	}
	if tried < 40 {
		t.Fatalf("only %d documents had spans", tried)
	}
}

// fillTokens is a copy of rec with the tokens sp locates that are not
// plain strings overwritten with repeats of fill.
func fillTokens(rec []byte, sp *event.Spans, fill string) []byte {
	out := bytes.Clone(rec)
	for f := range event.SpanFields {
		start, end := sp.Span(f)
		if end == 0 || sp.Plain(f) {
			continue
		}
		for i := start; i < end; i++ {
			out[i] = fill[(i-start)%len(fill)]
		}
	}
	return out
}

// wrongAux yields recs as a ledger follower would, each with the spans in
// aux (which need not describe it), then waits for the end.
type wrongAux struct {
	recs [][]byte
	aux  []event.Spans
}

func (w *wrongAux) Follow(ctx context.Context, from uint64) iter.Seq2[ledger.Entry, error] {
	return func(yield func(ledger.Entry, error) bool) {
		for i := from; i < uint64(len(w.recs)); i++ {
			e := ledger.Entry{Index: i, Time: t0, Data: w.recs[i]}
			if w.aux != nil {
				e.Aux, e.AuxPos = w.aux, int(i)
			}
			if !yield(e, nil) {
				return
			}
		}
		<-ctx.Done()
		yield(ledger.Entry{}, ctx.Err())
	}
}

// syncBuffer is a bytes.Buffer a logger and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunSurvivesSpansThatDisagree: the indexer fed records with spans
// located in other, longer records keeps running, warns, and indexes them
// as it indexes the same records without spans.
func TestRunSurvivesSpansThatDisagree(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
	var recs [][]byte
	var spans []event.Spans
	for j := range 300 {
		ev := genEvent(j, time.Second)
		data, _, ok := event.AppendNormalizedSpans(nil, ev.AppendJSON(nil), now, fixedID, new(event.Spans))
		if !ok {
			continue // a shape ingest decodes: no spans
		}
		// The spans of the same event with a longer id: every field after
		// the id lies elsewhere, some past the record's end.
		ev.ID += strings.Repeat("x", 40+j%60)
		var sp event.Spans
		if _, _, ok := event.AppendNormalizedSpans(nil, ev.AppendJSON(nil), now, fixedID, &sp); !ok {
			t.Fatalf("event %d: not normalized", j)
		}
		recs, spans = append(recs, data), append(spans, sp)
	}
	if len(recs) < 200 {
		t.Fatalf("only %d of 300 events had spans", len(recs))
	}
	dir := t.TempDir()
	var logs syncBuffer
	wrong, err := Open(filepath.Join(dir, "wrong.db"), Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	runUntil(t, wrong, &wrongAux{recs: recs, aux: spans}, uint64(len(recs)))
	parsed := openIndex(t, filepath.Join(dir, "parsed.db"))
	runUntil(t, parsed, &wrongAux{recs: recs}, uint64(len(recs)))
	if a, b := dumpIndex(t, wrong), dumpIndex(t, parsed); !reflect.DeepEqual(a, b) {
		t.Fatalf("the index fed wrong spans differs from the one that parsed the records:\n%+v\n%+v", a.blocks, b.blocks)
	}
	if !strings.Contains(logs.String(), "spans") {
		t.Fatalf("no warning about the spans; logs:\n%s", logs.String())
	}
}
