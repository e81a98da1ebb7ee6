package index

import (
	"context"
	"io"
	"iter"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/ledger"
)

// BenchmarkRunFollow measures Run whole, its follower and its writer,
// catching up on 65,536 of the benchmark loader's events held in the
// ledger's memory with the spans ingest located (as the collector's index
// follows it), into a new index each op. cpu-ns/event is the process's
// CPU per event (decoding, the hand-over to the writer, the writer's
// transactions, the garbage collector).
func BenchmarkRunFollow(b *testing.B) {
	const n = 1 << 16
	dir := b.TempDir()
	skey, _, err := ledger.GenerateKey(testOrigin)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		b.Fatal(err)
	}
	l, err := ledger.Open(filepath.Join(dir, "ledger"), ledger.Options{Origin: testOrigin, Signer: signer, TailBytes: 256 << 20,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	// The documents ingest gives spans for (the loader's among them).
	var docs [][]byte
	for _, d := range spanDocs() {
		var sp event.Spans
		if _, _, ok := event.AppendNormalizedSpans(nil, d, time.Now(), event.AppendID, &sp); ok {
			docs = append(docs, d)
		}
	}
	if len(docs) == 0 {
		b.Fatal("no document normalised with spans")
	}
	now := time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
	for i := 0; i < n; i += 1000 {
		var recs [][]byte
		var spans []event.Spans
		for j := i; j < min(n, i+1000); j++ {
			var sp event.Spans
			rec, _, ok := event.AppendNormalizedSpans(nil, docs[j%len(docs)], now.Add(time.Duration(j)*time.Microsecond), event.AppendID, &sp)
			if !ok {
				b.Fatalf("doc %d not normalised with spans", j%len(docs))
			}
			recs, spans = append(recs, rec), append(spans, sp)
		}
		if _, err := l.AppendAux(context.Background(), spans, recs...); err != nil {
			b.Fatal(err)
		}
	}
	src := appended{l}
	var cpu time.Duration
	k := 0
	for b.Loop() {
		b.StopTimer()
		ix := openIndexOn(b, filepath.Join(dir, "i"+time.Now().Format("150405.000000000")+".db"), l)
		b.StartTimer()
		c0 := testenv.CPUTime()
		runUntil(b, ix, src, n)
		cpu += testenv.CPUTime() - c0
		k++
		b.StopTimer()
		ix.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(k*n), "cpu-ns/event")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(k*n), "ns/event")
}

// appended is the ledger followed as the collector follows it
// (FollowAppended), with its Size.
type appended struct{ *ledger.Ledger }

func (a appended) Follow(ctx context.Context, from uint64) iter.Seq2[ledger.Entry, error] {
	return a.Ledger.FollowAppended(ctx, from)
}
