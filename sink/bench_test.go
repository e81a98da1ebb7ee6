package sink

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchBatch is 64 records of about 500 bytes, the size of an ECS event
// for an API request.
func benchBatch() ([][]byte, int64) {
	recs := make([][]byte, 64)
	var n int64
	for i := range recs {
		recs[i] = fmt.Appendf(nil, `{"@timestamp":"2026-11-25T17:22:36.123456789Z","event":{"sequence":%d},"pad":"%s"}`,
			i, strings.Repeat("a", 420))
		n += int64(len(recs[i]) + 1)
	}
	return recs, n
}

func BenchmarkFileWrite(b *testing.B) {
	recs, n := benchBatch()
	for _, bc := range []struct {
		name     string
		noSync   bool
		parallel bool
	}{
		{"nosync", true, false},
		{"fsync", false, false},
		{"fsync-parallel", false, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f, err := OpenFile(FileOptions{Dir: b.TempDir(), NoSync: bc.noSync, OnError: func(err error) { b.Error(err) }})
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			b.SetBytes(n)
			ctx := context.Background()
			if bc.parallel {
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := f.Write(ctx, recs); err != nil {
							b.Error(err)
							return
						}
					}
				})
				return
			}
			for b.Loop() {
				if err := f.Write(ctx, recs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRawFile is the physical limit BenchmarkFileWrite is measured
// against: the same bytes appended with one write (and one fsync) per batch
// to an os.File, with no framing, validation, locking or renames.
func BenchmarkRawFile(b *testing.B) {
	recs, n := benchBatch()
	var buf []byte
	for _, r := range recs {
		buf = append(append(buf, r...), '\n')
	}
	for _, sync := range []bool{false, true} {
		b.Run(map[bool]string{false: "nosync", true: "fsync"}[sync], func(b *testing.B) {
			fh, err := os.OpenFile(filepath.Join(b.TempDir(), "raw.jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			defer fh.Close()
			b.SetBytes(n)
			var written int64
			for b.Loop() {
				if _, err := fh.Write(buf); err != nil {
					b.Fatal(err)
				}
				if sync {
					if err := fh.Sync(); err != nil {
						b.Fatal(err)
					}
				}
				// Like the sink, make every 64 MiB durable (the sink
				// fsyncs a file before rotating it) and start afresh, so
				// page cache growth favours neither side.
				if written += n; written > DefaultMaxSize {
					if err := fh.Sync(); err != nil {
						b.Fatal(err)
					}
					fh.Truncate(0)
					written = 0
				}
			}
		})
	}
}

func BenchmarkWriter(b *testing.B) {
	recs, n := benchBatch()
	w := NewWriter(io.Discard)
	b.SetBytes(n)
	ctx := context.Background()
	for b.Loop() {
		if err := w.Write(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
}
