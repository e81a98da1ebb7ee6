package index

import (
	"context"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
)

// spanDocs are submitted events of the shapes the collector's one-pass
// path takes: the index must read the same columns from their spans as
// from their records.
func spanDocs() [][]byte {
	var docs [][]byte
	for i := range 40 {
		docs = append(docs, genEvent(i, time.Second).AppendJSON(nil))
	}
	for _, d := range []string{
		// The benchmark loader's event (bench/cmd/ingestload).
		`{"@timestamp":"2026-11-25T12:00:01.000001Z","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":1834000,"id":"0193a1b2-c3d4-7e5f-RRRRRRRR000000000001","dataset":"trailguard.access"},"http":{"request":{"id":"req-00000001","method":"GET"},"response":{"status_code":200,"body":{"bytes":512}}},"url":{"path":"/api/orders/1","query":"page=2"},"source":{"ip":"10.1.1.1","port":51234},"user":{"name":"user001"},"user_agent":{"original":"Mozilla/5.0 (X11; Linux x86_64)"},"service":{"name":"orders-api"}}`,
		// Escapes, non-ASCII, IPv6 and mapped addresses, no timestamp, several categories.
		`{"event.action":"caf\u00e9 \"x\"","user":{"name":"\u00e9l\u00e8ve","id":"a\\b"},"client.ip":"::ffff:10.0.0.1","source.ip":"2001:db8::1","event.category":["authentication","web"],"url.path":"/a\tb","user_agent.original":"\u2028"}`,
		`{"@timestamp":"2026-11-25T12:00:00+02:00","event":{"kind":"alert","outcome":"","category":"authentication","type":[]},"labels":{"b":"2","a":"1"},"http.request.id":"","host.name":"h"}`,
		`{"event.id":"","http.response.status_code":0,"source.ip":""}`,
		`{}`,
	} {
		docs = append(docs, []byte(d))
	}
	return docs
}

func fixedID(b []byte) []byte { return append(b, "0193a1b2-0000-7000-8000-000000000001"...) }

// checkDecodeSpans compares the two ways decode reads one document's
// record; it reports whether the one-pass path took the document.
func checkDecodeSpans(t *testing.T, doc []byte) bool {
	t.Helper()
	now := time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
	var sp event.Spans
	data, _, ok := event.AppendNormalizedSpans(nil, doc, now, fixedID, &sp)
	if !ok || !sp.OK() {
		return false
	}
	e := ledger.Entry{Index: 7, Time: now.Add(time.Second), Data: data}
	parsed := decode(e)
	e.Aux, e.AuxPos = []event.Spans{{}, sp}, 1
	fromSpans := decode(e)
	var x extracted
	if direct, _ := decodeSpans(e, &sp, &x); direct != fromSpans {
		t.Fatalf("%s: decode did not take the spans", data)
	}
	if parsed != fromSpans {
		t.Fatalf("%s:\n parsed     %+v\n from spans %+v", data, parsed, fromSpans)
	}
	return true
}

func TestDecodeSpans(t *testing.T) {
	took := 0
	for _, doc := range spanDocs() {
		if checkDecodeSpans(t, doc) {
			took++
		}
	}
	if took < 40 {
		t.Fatalf("the one-pass path took %d of the documents, want at least 40", took)
	}
	// Without spans, or with spans that describe nothing, the record is
	// parsed.
	data := genEvent(1, time.Second).AppendJSON(nil)
	want := decode(ledger.Entry{Index: 1, Data: data})
	for _, aux := range []any{nil, "x", []event.Spans{{}}, []event.Spans{}} {
		if got := decode(ledger.Entry{Index: 1, Data: data, Aux: aux}); got != want {
			t.Fatalf("aux %v: %+v, want %+v", aux, got, want)
		}
	}
}

func FuzzDecodeSpans(f *testing.F) {
	for _, doc := range spanDocs() {
		f.Add(doc)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		checkDecodeSpans(t, doc)
	})
}

// auxCounter is a ledger followed the way the collector follows it
// (FollowAppended), counting the records that came with spans.
type auxCounter struct {
	l       *ledger.Ledger
	withAux int
}

// Size is the ledger's: Run's follower hands runs over as from the
// collector's source.
func (a *auxCounter) Size() uint64 { return a.l.Size() }

func (a *auxCounter) Follow(ctx context.Context, from uint64) iter.Seq2[ledger.Entry, error] {
	return func(yield func(ledger.Entry, error) bool) {
		for e, err := range a.l.FollowAppended(ctx, from) {
			if e.Aux != nil {
				a.withAux++
			}
			if !yield(e, err) {
				return
			}
		}
	}
}

// TestIndexFromSpansMatchesRebuild: an index fed the spans ingest located
// (records appended with AppendAux, followed from the ledger's memory)
// holds the same rows, terms and ids as one rebuilt from the ledger's
// bytes alone.
func TestIndexFromSpansMatchesRebuild(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	skey, _, err := ledger.GenerateKey(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(filepath.Join(dir, "ledger"), ledger.Options{Origin: testOrigin, Signer: signer, TailBytes: 64 << 20,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	docs := spanDocs()
	n := int(3 * blockSize / 2) // two blocks
	now := time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
	for i := 0; i < n; i += 700 {
		var recs [][]byte
		var spans []event.Spans
		for j := i; j < min(n, i+700); j++ {
			var sp event.Spans
			doc := genEvent(j, time.Second).AppendJSON(nil)
			if j%5 == 0 {
				doc = docs[len(docs)-5+j/5%5]
			}
			rec, _, ok := event.AppendNormalizedSpans(nil, doc, now, event.AppendID, &sp)
			if !ok {
				// As ingest does: the decoded path, no spans.
				rec, sp = doc, event.Spans{}
			}
			recs, spans = append(recs, rec), append(spans, sp)
		}
		if _, err := l.AppendAux(context.Background(), spans, recs...); err != nil {
			t.Fatal(err)
		}
	}
	live := openIndexOn(t, filepath.Join(dir, "live.db"), l)
	src := &auxCounter{l: l}
	runUntil(t, live, src, uint64(n))
	if src.withAux < n/2 {
		t.Fatalf("only %d of %d records were followed with spans", src.withAux, n)
	}
	if _, err := Rebuild(context.Background(), filepath.Join(dir, "rebuilt.db"), l); err != nil {
		t.Fatal(err)
	}
	rebuilt := openIndexOn(t, filepath.Join(dir, "rebuilt.db"), l)
	a, b := dumpIndex(t, live), dumpIndex(t, rebuilt)
	if len(a.blocks) != 2 || len(a.terms) < 10 {
		t.Fatalf("dump of %d blocks, %d terms: the test indexed too little", len(a.blocks), len(a.terms))
	}
	if !reflect.DeepEqual(a, b) {
		for i := range a.blocks {
			if i < len(b.blocks) && !reflect.DeepEqual(a.blocks[i], b.blocks[i]) {
				t.Errorf("block %d differs:\n live    %+v\n rebuilt %+v", i, *a.blocks[i], *b.blocks[i])
			}
		}
		t.Fatalf("the live index and the rebuilt one differ (terms equal: %v)", reflect.DeepEqual(a.terms, b.terms))
	}
	// Ids are found through both.
	for _, j := range []int{1, 2, n - 1} {
		id := fmt.Sprintf("ev-%08d", j)
		for _, ix := range []*Index{live, rebuilt} {
			if _, err := ix.ByEventID(context.Background(), id); err != nil {
				t.Fatalf("%s: %v", id, err)
			}
		}
	}
}

// indexDump is every block's columns and every term of an index.
type indexDump struct {
	blocks []*block
	terms  []string
}

func dumpIndex(t *testing.T, ix *Index) indexDump {
	t.Helper()
	ctx := context.Background()
	tx, err := ix.readTx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var d indexDump
	rows, err := tx.QueryContext(ctx, `SELECT f, n, v FROM terms ORDER BY f, n`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var f, n int
		var v string
		if err := rows.Scan(&f, &n, &v); err != nil {
			t.Fatal(err)
		}
		d.terms = append(d.terms, fmt.Sprintf("%d/%d=%s", f, n, v))
	}
	rows.Close()
	for blk := uint64(0); ; blk++ {
		b, err := blockMeta(ctx, tx, blk)
		if err != nil {
			t.Fatal(err)
		}
		if b == nil {
			break
		}
		if err := b.load(ctx, tx, allNeeded); err != nil {
			t.Fatal(err)
		}
		d.blocks = append(d.blocks, b)
	}
	return d
}

// BenchmarkDecode: what the index's follower spends per record, parsing
// the record or reading the fields ingest located (the benchmark loader's
// event).
func BenchmarkDecode(b *testing.B) {
	var sp event.Spans
	doc := spanDocs()[40]
	data, _, ok := event.AppendNormalizedSpans(nil, doc, time.Now(), fixedID, &sp)
	if !ok || !sp.OK() {
		b.Fatal("no spans")
	}
	for _, c := range []struct {
		name string
		aux  any
	}{{"parse", nil}, {"spans", []event.Spans{sp}}} {
		b.Run(c.name, func(b *testing.B) {
			var x extracted
			e := ledger.Entry{Index: 1, Time: time.Now(), Data: data, Aux: c.aux}
			for b.Loop() {
				if r := decodeWith(e, &x); !r.c.has[fEventID] {
					b.Fatal("no event.id")
				}
			}
			b.SetBytes(int64(len(data)))
		})
	}
}
