package ship

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// benchBatch returns n records of about 500 bytes with distinct ids.
func benchBatch(n, from int) [][]byte {
	b := make([][]byte, n)
	for i := range b {
		b[i] = rec(fmt.Sprintf("0193b1c2-7e4f-7a0b-beb8-%012d", from+i), 500)
	}
	return b
}

// BenchmarkWrite measures Write into the spool: batches of 64 records of
// ~500 B, each Write fsynced. The far end is unreachable so only the spool
// is measured.
func BenchmarkWrite(b *testing.B) {
	s, err := New(Options{URL: "http://127.0.0.1:1/", SpoolDir: b.TempDir(), MaxSpoolBytes: 8 << 30,
		MinBackoff: time.Hour, MaxBackoff: time.Hour, DrainTimeout: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batch := benchBatch(64, 0)
	n := 0
	for _, r := range batch {
		n += len(r)
	}
	b.SetBytes(int64(n))
	b.ResetTimer()
	for b.Loop() {
		if err := s.Write(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if st := s.Stats(); st.Spooled != uint64(b.N*len(batch)) || st.Pending != st.Spooled {
		b.Fatalf("wrote %d records; spooled %d, pending %d", b.N*len(batch), st.Spooled, st.Pending)
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkShip measures the whole path: Write batches of 64 into the spool,
// then Flush until a local server that discards the bodies has received
// everything. Reported per record shipped.
func BenchmarkShip(b *testing.B) {
	for _, p := range []Protocol{NDJSON, Bulk} {
		b.Run(p.String(), func(b *testing.B) {
			// The far end counts body lines and discards them: cheap
			// enough not to weigh on the measure, and it shows that
			// every record written really left the process.
			var lines atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(lineCounter{&lines}, r.Body)
				io.WriteString(w, `{"errors":false}`)
			}))
			defer srv.Close()
			s, err := New(Options{URL: srv.URL, Protocol: p, SpoolDir: b.TempDir(), MaxSpoolBytes: 8 << 30})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			batch := benchBatch(64, 0)
			size := 0
			for _, r := range batch {
				size += len(r)
			}
			b.SetBytes(int64(size) / 64)
			ctx := context.Background()
			written := 0
			b.ResetTimer()
			for i := 0; i < b.N; i += 64 {
				if err := s.Write(ctx, batch); err != nil {
					b.Fatal(err)
				}
				written += len(batch)
			}
			if err := s.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			st := s.Stats()
			perRecord := int64(1)
			if p == Bulk {
				perRecord = 2 // an action line and the document
			}
			if st.Shipped != uint64(written) || st.Pending != 0 || lines.Load() != int64(written)*perRecord {
				b.Fatalf("wrote %d records; shipped %d, pending %d, far end got %d lines (want %d)",
					written, st.Shipped, st.Pending, lines.Load(), int64(written)*perRecord)
			}
			b.ReportMetric(float64(st.Shipped)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// lineCounter counts the newlines written to it.
type lineCounter struct{ n *atomic.Int64 }

func (c lineCounter) Write(p []byte) (int, error) {
	c.n.Add(int64(bytes.Count(p, []byte{'\n'})))
	return len(p), nil
}

// BenchmarkRawAppend is the physical limit BenchmarkWrite is measured
// against: the same bytes appended to a plain file with one fsync per batch,
// no framing, no checksums, no bookkeeping.
func BenchmarkRawAppend(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var buf []byte
	for _, r := range benchBatch(64, 0) {
		buf = append(append(buf, r...), '\n')
	}
	b.SetBytes(int64(len(buf) - 64))
	for b.Loop() {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if fi, err := f.Stat(); err != nil || fi.Size() != int64(b.N*len(buf)) {
		b.Fatalf("file holds %v bytes (%v), want %d", fi.Size(), err, b.N*len(buf))
	}
	b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "records/s")
}
