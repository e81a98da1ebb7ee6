package index

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
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

// TestIDHashStable: the id hash is SHA-256 of salt, field and id, as
// indexes on disk were written with (a change would make their ids
// unfindable without a rebuild).
func TestIDHashStable(t *testing.T) {
	salt := []byte("0123456789abcdef")
	for _, id := range []string{"", "ev-1", strings.Repeat("x", 500)} {
		h := sha256.New()
		h.Write(salt)
		h.Write([]byte{byte(fRequestID)})
		h.Write([]byte(id))
		sum := h.Sum(nil)
		var b [8]byte
		copy(b[2:], sum[:6])
		want := int64(binary.BigEndian.Uint64(b[:])) - 1<<47
		if got := idHash(salt, fRequestID, id); got != want {
			t.Fatalf("idHash(%q) = %d, want %d", id, got, want)
		}
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
