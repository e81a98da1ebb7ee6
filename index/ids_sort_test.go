package index

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// TestSortIDs: sortIDs gives what sorting and compacting gives, for the
// shapes it sees (sorted runs one after another, a sorted prefix and a
// new suffix) and for any order.
func TestSortIDs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	entry := func() idEntry { return idEntry{uint64(rng.IntN(500)), uint64(rng.IntN(50))} }
	for trial := range 300 {
		var es []idEntry
		switch trial % 3 {
		case 0: // runs
			for range rng.IntN(10) {
				run := make([]idEntry, rng.IntN(100))
				for i := range run {
					run[i] = entry()
				}
				slices.SortFunc(run, cmpID)
				es = append(es, run...)
			}
		case 1: // sorted prefix, new suffix
			for range rng.IntN(300) {
				es = append(es, entry())
			}
			slices.SortFunc(es, cmpID)
			for range rng.IntN(300) {
				es = append(es, entry())
			}
		default:
			for range rng.IntN(1000) {
				es = append(es, entry())
			}
		}
		want := slices.Clone(es)
		slices.SortFunc(want, cmpID)
		want = slices.Compact(want)
		if got := sortIDs(es); !slices.Equal(got, want) {
			t.Fatalf("trial %d: sortIDs gave %d entries, want %d (or different ones)", trial, len(got), len(want))
		}
	}
}

// TestBucketSort: bucketSort sorts as slices.SortFunc does, for the hashes
// a batch adds (48 bits, spread), with repeats, with the same id many
// times, with hashes in a narrow range, with few and with many entries.
func TestBucketSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 200 {
		n := rng.IntN(5000)
		es := make([]idEntry, n)
		for i := range es {
			h := rng.Uint64() >> 16 // idKey's range
			switch trial % 5 {
			case 1: // repeats
				h = h % 64 << 40
			case 2: // one hot id among spread ones
				if rng.IntN(2) == 0 {
					h = 12345 << 20
				}
			case 3: // a narrow range
				h = 1<<47 + h%1000
			case 4: // any 64-bit value, idx in any order
				h = rng.Uint64()
			}
			idx := uint64(i)
			if trial%5 == 4 {
				idx = rng.Uint64N(100)
			}
			es[i] = idEntry{h, idx}
		}
		want := slices.Clone(es)
		slices.SortFunc(want, cmpID)
		bucketSort(es)
		if !slices.Equal(es, want) {
			t.Fatalf("trial %d (%d entries): bucketSort differs from slices.SortFunc", trial, n)
		}
	}
}

// TestSipHash: sipHash24 gives the reference implementation's vectors
// (key 00 01 … 0f, message 00 01 … n-1), for messages ending at every
// position of a word and spanning two.
func TestSipHash(t *testing.T) {
	key := make([]byte, 16)
	msg := make([]byte, 16)
	for i := range key {
		key[i], msg[i] = byte(i), byte(i)
	}
	k0, k1 := binary.LittleEndian.Uint64(key), binary.LittleEndian.Uint64(key[8:])
	want := []uint64{
		0x726fdb47dd0e0e31, 0x74f839c593dc67fd, 0x0d6c8009d9a94f5a, 0x85676696d7fb7e2d,
		0xcf2794e0277187b7, 0x18765564cd99a68d, 0xcbc9466e58fee3ce, 0xab0200f58b01d137,
		0x93f5f5799a932462, 0x9e0082df0ba9e4b0, 0x7a5dbbc594ddb9f3, 0xf4b32f46226bada7,
		0x751e8fbc860ee5fb, 0x14ea5627c0843d90, 0xf723ca908e7af2ee, 0xa129ca6149be45e5,
		0x3f2acc7f57c29bdb,
	}
	for n, w := range want {
		if got := sipHash24(k0, k1, msg[:n]); got != w {
			t.Errorf("SipHash-2-4 of %d bytes = %#x, want %#x", n, got, w)
		}
	}
}

// TestIDHashStable: the id hash is the top 48 bits of SipHash-2-4 keyed
// with the salt, of the field's number and the id, as indexes on disk
// were written with (a change would make their ids unfindable without a
// rebuild: bump schemaVersion with it).
func TestIDHashStable(t *testing.T) {
	salt := []byte("0123456789abcdef")
	k0, k1 := binary.LittleEndian.Uint64(salt), binary.LittleEndian.Uint64(salt[8:])
	for _, id := range []string{"", "ev-1", strings.Repeat("x", 500)} {
		want := int64(sipHash24(k0, k1, append([]byte{byte(fRequestID)}, id...))>>16) - 1<<47
		if got := idHash(salt, fRequestID, id); got != want {
			t.Fatalf("idHash(%q) = %d, want %d", id, got, want)
		}
		if other := idHash(salt, fEventID, id); other == want {
			t.Fatalf("idHash(%q) is the same for both fields", id)
		}
	}
	// Pinned: a hash an index of schema 4 holds.
	if got := idHash(salt, fEventID, "0193a1b2-c3d4-7e5f-8000-000000000001"); got != -94407980216839 {
		t.Fatalf("idHash changed: %d, was %d (bump schemaVersion)", got, int64(-94407980216839))
	}
}

// BenchmarkSortIDs: the writer's last block's entries, sorted, and a
// batch's new ones, as storeTail sorts them with every batch.
func BenchmarkSortIDs(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	old := make([]idEntry, 6000)
	for i := range old {
		old[i] = idEntry{rng.Uint64(), uint64(i)}
	}
	slices.SortFunc(old, cmpID)
	es := make([]idEntry, 0, 8192)
	for b.Loop() {
		es = append(es[:0], old...)
		for i := range 2000 {
			es = append(es, idEntry{rng.Uint64(), uint64(6000 + i)})
		}
		if got := sortIDs(es); len(got) != 8000 || !slices.IsSortedFunc(got, cmpID) {
			b.Fatal("not sorted")
		}
	}
}

// BenchmarkMerge: idFanout runs of level 0 (a block's two ids a record
// each, random hashes) merged into one of level 1, as the writer does
// every idFanout blocks: read back, sorted together, written. Each
// iteration merges the same runs in a transaction it then rolls back.
// cpu-ns/id is the merge's CPU time on its thread per id merged.
func BenchmarkMerge(b *testing.B) {
	ix := openIndex(b, filepath.Join(b.TempDir(), "i.db"))
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	tx, err := ix.w.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	ids := 0
	for blk := range uint64(idFanout) {
		es := make([]idEntry, 2*blockSize)
		for i := range es {
			es[i] = idEntry{rng.Uint64() >> 16, blk*blockSize + uint64(i/2)}
		}
		ids += len(es)
		if err := writeRun(ctx, tx, idRun{run: int64(blk + 1), lvl: 0, lo: blk, hi: blk}, sortIDs(es)); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	var cpu time.Duration
	for b.Loop() {
		tx, err := ix.w.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		wt := ix.writeTx(tx)
		cpu += testenv.ThreadCPU(func() { err = merge(ctx, wt, math.MaxUint64) })
		if err != nil {
			b.Fatal(err)
		}
		rs, err := runs(ctx, wt, 1)
		if err != nil || len(rs) != 1 {
			b.Fatalf("runs of level 1: %v, %v", rs, err)
		}
		got, err := readRun(ctx, wt, rs[0])
		if err != nil || len(got) != ids {
			b.Fatalf("merged run holds %d ids (%v), want %d", len(got), err, ids)
		}
		tx.Rollback()
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*ids), "cpu-ns/id")
}
