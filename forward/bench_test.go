package forward

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkForward measures the forwarder's own cost per record: a ledger
// of ~500-byte events forwarded as VictoriaLogs jsonline (no verification)
// to a loopback server that only counts lines, so the engine costs nothing.
// It fails unless every record arrived.
func BenchmarkForward(b *testing.B) {
	var lines atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		n := 0
		for sc.Scan() {
			n++
		}
		io.Copy(io.Discard, r.Body)
		lines.Add(int64(n))
	}))
	defer srv.Close()
	dir := b.TempDir()
	l := openLedger(b, filepath.Join(dir, "ledger"), nil)
	defer l.Close()
	n := max(b.N, 10000)
	appendEvents(b, l, 0, n, time.Now())
	off, noVerify := false, false
	cfg := Config{Name: "bench", Type: TypeVictoriaLogs, URL: srv.URL, Verify: &noVerify, Gzip: &off,
		BatchEvents: 2000, BatchBytes: 16 << 20, Workers: 2, FlushInterval: 10 * time.Millisecond}
	m, err := Open([]Config{cfg}, Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	m.Start(l)
	for statsOf(m, "bench").Cursor < uint64(n) {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	m.Close()
	if got := lines.Load(); got != int64(n) {
		b.Fatalf("server got %d lines, want %d", got, n)
	}
	b.ReportMetric(float64(n)/el.Seconds(), "records/s")
	b.ReportMetric(float64(el.Nanoseconds())/float64(n), "ns/record")
}
