package index

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/query"
)

// FuzzCursor feeds arbitrary search cursors (an untrusted query parameter
// of GET /v1/events) to Search over a real index: an invalid cursor is an
// error and never reaches SQL; a valid one decodes to what encoding it
// again gives; the page holds only events strictly after the cursor, in
// order, at most limit of them, and its own cursor is not before its last
// hit.
func FuzzCursor(f *testing.F) {
	dir := f.TempDir()
	l := openLedger(f, filepath.Join(dir, "ledger"))
	const n = 60
	appendEvents(f, l.Ledger, 0, n, 7*time.Second)
	// A small scan budget, so that some pages end short (Partial).
	ix, err := Open(filepath.Join(dir, "index.db"), Options{Ledger: l, ScanBudget: 25})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ix.Close() })
	runUntil(f, ix, l, n)
	q, err := query.Parse(`not user.name:bob and not labels.tier:gold`)
	if err != nil {
		f.Fatal(err)
	}
	mid := t0.Add(30 * 7 * time.Second).UnixNano()
	for _, c := range []string{"", "x", "!!!!", encodeCursor(pos{mid, 30}), encodeCursor(pos{mid, 30})[:5], encodeCursor(pos{-1, 1 << 63}),
		encodeCursor(pos{}), encodeCursor(pos{1 << 62, ^uint64(0)}), "AAAAAAAAAAAAAAAAAAAAAA==", "AAAAAAAAAAAAAAAAAAAAAA"} {
		f.Add(c, false, uint8(7))
		f.Add(c, true, uint8(0))
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, cursor string, desc bool, limit uint8) {
		c, derr := decodeCursor(cursor)
		ts, idx := c.ts, c.idx
		if derr == nil {
			c2, err := decodeCursor(encodeCursor(c))
			if err != nil || c2 != c {
				t.Fatalf("cursor %q = %+v re-encodes to %+v, %v", cursor, c, c2, err)
			}
		}
		res, err := ix.Search(ctx, Request{Query: q, Desc: desc, Limit: int(limit), Cursor: cursor})
		if cursor != "" && (err != nil) != (derr != nil) {
			t.Fatalf("cursor %q: decode error %v, search error %v", cursor, derr, err)
		}
		if err != nil {
			return
		}
		want := int(limit)
		if want == 0 {
			want = 100
		}
		if len(res.Hits) > want {
			t.Fatalf("%d hits for limit %d", len(res.Hits), limit)
		}
		// after reports whether (ts, i) comes strictly after (pts, pi) in
		// the page order.
		after := func(ts int64, i uint64, pts int64, pi uint64) bool {
			if desc {
				return ts < pts || ts == pts && i < pi
			}
			return ts > pts || ts == pts && i > pi
		}
		pts, pi := ts, idx
		for k, h := range res.Hits {
			hts := h.Time.UnixNano()
			if (cursor != "" || k > 0) && !after(hts, h.Index, pts, pi) {
				t.Fatalf("cursor %q desc=%v: hit %d (%d,%d) does not come after (%d,%d)", cursor, desc, k, hts, h.Index, pts, pi)
			}
			pts, pi = hts, h.Index
		}
		// The next page starts at the last hit or, when the scan budget
		// cut the page short, where the scan stopped: never before.
		if res.Next != "" {
			next, err := decodeCursor(res.Next)
			if err != nil {
				t.Fatalf("next cursor %q: %v", res.Next, err)
			}
			if len(res.Hits) > 0 && next != lastPos(res.Hits[len(res.Hits)-1]) && (!res.Partial || !after(next.ts, next.idx, pts, pi)) {
				t.Fatalf("next cursor %+v; last hit (%d,%d), partial %v", next, pts, pi, res.Partial)
			}
		}
	})
}

// FuzzBlockColumn decodes arbitrary bytes as each column of a block and as
// an id chunk (what someone with write access to the index file controls):
// never a panic, and a column that decodes encodes to bytes that decode to
// the same values (varints may come in non-canonical forms).
func FuzzBlockColumn(f *testing.F) {
	b := newBlock(0)
	for i := range 50 {
		c := decode(ledger.Entry{Index: uint64(i), Time: t0, Data: genEvent(i, time.Second).AppendJSON(nil)}).c
		var nums [nFields]uint32
		for f := fAction; f <= fAgent; f++ {
			nums[f] = uint32(i % (f + 1))
		}
		b.appendRow(&c, &nums)
	}
	b.appendRow(nil, nil)
	flags := b.encode(cFlags, 0, nil)
	for c := range nCols {
		f.Add(uint8(c), uint16(b.n), flags, b.encode(c, 0, nil))
	}
	es := []idEntry{{5, 0}, {5, 3}, {1 << 40, 2}, {1<<48 - 1, 50}}
	var chunk []byte
	chunk = binary.AppendUvarint(chunk, uint64(len(es)))
	for i, e := range es {
		chunk = binary.AppendUvarint(chunk, e.h-es[max(i-1, 0)].h)
		chunk = binary.AppendUvarint(chunk, e.idx)
	}
	f.Add(uint8(nCols), uint16(0), flags, chunk)
	f.Fuzz(func(t *testing.T, c uint8, n uint16, flags, data []byte) {
		if c >= nCols {
			decodeChunk(data, 0, 0, func(idEntry) {})
			return
		}
		b := &block{n: int(n) % (defaultBlockSize + 1)}
		if b.decode(cFlags, flags) != nil {
			b.flags = make([]byte, b.n)
		}
		if err := b.decode(int(c), data); err != nil {
			return
		}
		again := &block{n: b.n, flags: b.flags}
		if err := again.decode(int(c), b.encode(int(c), 0, nil)); err != nil {
			t.Fatalf("column %d: %x decodes, its encoding does not: %v", c, data, err)
		}
		if !reflect.DeepEqual([]any{again.ts, again.flags, again.stat, again.ip, again.terms}, []any{b.ts, b.flags, b.stat, b.ip, b.terms}) {
			t.Fatalf("column %d: %x decodes to other values after encoding", c, data)
		}
	})
}
