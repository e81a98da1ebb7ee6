package detect

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkRunner follows a ledger of small records to its end: the
// runner's own cost per record (reading, hand-off, cursor bookkeeping) on
// top of the rules'.
func BenchmarkRunner(b *testing.B) {
	dir := b.TempDir()
	l := openLedger(b, dir)
	defer l.Close()
	const n = 200_000
	recs := make([][]byte, 0, 10_000)
	for i := 0; i < n; i += len(recs) {
		recs = recs[:0]
		for range 10_000 {
			recs = append(recs, []byte(`{"event":{"category":["web"]},"http":{"response":{"status_code":200}},"url":{"path":"/x"}}`))
		}
		if _, err := l.Append(context.Background(), recs...); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		r := &Runner{Engine: builtinEngine(b), Source: l, CursorPath: filepath.Join(b.TempDir(), "c")}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- r.Run(ctx) }()
		for r.Next() < n {
			time.Sleep(time.Millisecond)
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "records/s")
		cancel()
		<-done
	}
}
