package ledger

import (
	"testing"
	"time"

	"github.com/klauspost/compress/dict"
	"github.com/klauspost/compress/zstd"

	"github.com/trailguard/trailguard/internal/demotraffic"
)

// BenchmarkCompressOptions weighs the compressed segment's options against
// the format's (SpeedFastest, 128 KiB blocks, no dictionary) on the demo's
// traffic: two 16 MiB segments' worth of records cut into blocks as
// compaction cuts them (blockEnd, encodeBlock's columns), the first
// segment's records training a dictionary (what a dictionary stored in the
// compressed segment would be), the second compressed block by block. It
// reports the bytes per event, the encoder's CPU per event and the time to
// decode one block (what a random Read pays on top of its leaf check), so
// that a change of level, block size or dictionary is judged on all three
// (docs/ledger.md, "Storage per event").
func BenchmarkCompressOptions(b *testing.B) {
	gen := demotraffic.New(1, time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), time.Millisecond)
	const n = 48000 // ~750-byte events: two 16 MiB segments
	recs := make([]zRec, n)
	for i := range recs {
		recs[i] = zRec{time: int64(i) * 1e6, data: gen.Next(nil)}
	}
	blocks := func(size int) (train, test [][]byte, events int) {
		for i := 0; i < n; {
			j, sz := i, 3+4
			for ; j < n; j++ {
				d := varintLen(1e6) + uvarintLen(uint64(len(recs[j].data))) + len(recs[j].data)
				if j > i && sz+d > size {
					break
				}
				sz += d
			}
			_, raw := encodeBlock(nil, recs[i:j], nil)
			if i < n/2 {
				train = append(train, append([]byte(nil), raw...))
			} else {
				test = append(test, append([]byte(nil), raw...))
				events += j - i
			}
			i = j
		}
		return train, test, events
	}
	samples := make([][]byte, 0, n/2)
	for _, r := range recs[:n/2] {
		samples = append(samples, r.data)
	}
	d, err := dict.BuildZstdDict(samples, dict.Options{MaxDictSize: 64 << 10, HashBytes: 6, ZstdDictID: 1})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		level zstd.EncoderLevel
		block int
		dict  bool
	}{
		{"format", zstd.SpeedFastest, zBlockSize, false},
		{"better", zstd.SpeedBetterCompression, zBlockSize, false},
		{"block=256k", zstd.SpeedFastest, 256 << 10, false},
		{"dict", zstd.SpeedFastest, zBlockSize, true},
		{"dict+better", zstd.SpeedBetterCompression, zBlockSize, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			_, test, events := blocks(c.block)
			eo := []zstd.EOption{zstd.WithWindowSize(max(c.block, zBlockSize)), zstd.WithEncoderLevel(c.level), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false)}
			do := []zstd.DOption{zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(zMaxBlock)}
			if c.dict {
				eo = append(eo, zstd.WithEncoderDict(d))
				do = append(do, zstd.WithDecoderDicts(d))
			}
			enc, err := zstd.NewWriter(nil, eo...)
			if err != nil {
				b.Fatal(err)
			}
			dec, err := zstd.NewReader(nil, do...)
			if err != nil {
				b.Fatal(err)
			}
			defer dec.Close()
			comp := make([][]byte, len(test))
			var cpu time.Duration
			var out []byte
			for b.Loop() {
				total := 0
				cpu0 := cpuTime()
				for i, raw := range test {
					out = enc.EncodeAll(raw, comp[i][:0])
					comp[i] = out
					total += len(out)
				}
				cpu += cpuTime() - cpu0
				b.ReportMetric(float64(total)/float64(events), "B/event")
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*events)/1000, "enc-cpu-µs/event")
			// Decoding: every block once, and the time per block.
			t0 := time.Now()
			var buf []byte
			for i, cb := range comp {
				if buf, err = dec.DecodeAll(cb, buf[:0]); err != nil || len(buf) != len(test[i]) {
					b.Fatalf("block %d: %v", i, err)
				}
			}
			b.ReportMetric(float64(time.Since(t0).Microseconds())/float64(len(comp)), "dec-µs/block")
			b.ReportMetric(float64(len(d))*float64(boolInt(c.dict))/float64(events), "dict-B/event")
		})
	}
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}
