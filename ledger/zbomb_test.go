package ledger

import (
	"bytes"
	"errors"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestBlockFrameSizeChecked: a compressed block whose zstd frame does not
// say what it decodes to, or says more than a block of its record count
// can hold, is refused from its header, before anything is decoded; the
// blocks this package writes, one record over zBlockSize included,
// decode. Before, a streamed bomb (a few KiB, no size in its header)
// decoded 65 MiB of zeros before it was refused, in every block of a
// crafted segment.
func TestBlockFrameSizeChecked(t *testing.T) {
	streamed := func(n int, opts ...zstd.EOption) []byte {
		var buf bytes.Buffer
		w, err := zstd.NewWriter(&buf, append([]zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithSingleSegment(false)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(make([]byte, n))
		w.Close()
		return buf.Bytes()
	}
	sized := func(n int) []byte { return zEncoder().EncodeAll(make([]byte, n), nil) }
	block := func(recs ...[]byte) []byte {
		zr := make([]zRec, len(recs))
		for i, r := range recs {
			zr[i] = zRec{time: int64(i + 1), data: r}
		}
		comp, _ := encodeBlock(nil, zr, nil)
		return comp
	}
	big := bytes.Repeat([]byte(`{"message":"a long record"}`), 40_000) // ~1 MiB, alone in its block
	for _, tc := range []struct {
		name  string
		comp  []byte
		count uint32
		ok    bool
	}{
		{"two records", block([]byte(`{"a":1}`), []byte(`{"b":2}`)), 2, true},
		{"one record past the block size", block(big), 1, true},
		{"streamed bomb, one record", streamed(256 << 20), 1, false},
		{"streamed bomb, many records", streamed(256 << 20), 500, false},
		{"one small record", block([]byte(`{"a":1}`)), 1, true},
		{"streamed, small", streamed(1000), 2, false},
		{"streamed bomb, 1 KiB window", streamed(256<<20, zstd.WithWindowSize(1<<10)), 1, false},
		{"256 KiB declared for 2 records", sized(256 << 10), 2, false},
		{"80 MiB declared for 1 record", sized(80 << 20), 1, false},
		{"not zstd", []byte("not a zstd frame at all"), 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			recs, _, err := decodeBlock(tc.comp, tc.count, nil)
			runtime.ReadMemStats(&after)
			if tc.ok {
				if err != nil || len(recs) != int(tc.count) {
					t.Fatalf("%d records, %v; want %d", len(recs), err, tc.count)
				}
				return
			}
			if !errors.Is(err, errZseg) {
				t.Fatalf("decoded (%d records, %v), want it refused as damage", len(recs), err)
			}
			// Refused from the header: nothing near a block's size was
			// decoded (the bombs decode to 65 MiB before the decoder's
			// own bound stops them).
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
				t.Fatalf("refused (%v) after allocating %d bytes: it was decoded first", err, grew)
			}
			t.Log(err)
		})
	}
}
