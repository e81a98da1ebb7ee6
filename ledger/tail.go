package ledger

import (
	"bytes"
	"context"
	"iter"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// appendedTail keeps copies of the records this process appended most
// recently, up to Options.TailBytes, for FollowAppended. A copy is taken
// once its records are durable and before followers are told so (by the
// sync that made them durable, while Append waits), from the bytes Append hashed
// into their leaves (the caller's buffers, which Append's contract says
// stay unchanged until it returns), so a follower served from it gets
// exactly the bytes the Merkle tree commits to, without reading them back
// from disk and hashing them again.
type appendedTail struct {
	max int
	// readBack counts records FollowAppended read from disk instead
	// (older than the tail, or not appended here).
	readBack atomic.Uint64

	mu     sync.Mutex
	bytes  int
	chunks []tailChunk // sorted by first, disjoint
}

// tailChunk is the records of one Append: data back to back, ends[k] the
// end of record first+k. Its slices are never written after add, so
// entries handed out stay valid for as long as their holder keeps them.
type tailChunk struct {
	first uint64
	at    int64 // append time (Unix ns), as in the records' frames
	data  []byte
	ends  []int
	aux   any // AppendAux's value
}

func (c *tailChunk) end() uint64 { return c.first + uint64(len(c.ends)) }

func (c *tailChunk) entry(i uint64) Entry {
	k := int(i - c.first)
	start := 0
	if k > 0 {
		start = c.ends[k-1]
	}
	e := Entry{Index: i, Time: time.Unix(0, c.at), Data: c.data[start:c.ends[k]:c.ends[k]]}
	if c.aux != nil {
		// AuxPos means something only with Aux (a record read back
		// from disk has neither).
		e.Aux, e.AuxPos = c.aux, k
	}
	return e
}

// add keeps a copy of records [first, first+len(recs)), appended at at,
// dropping the oldest chunks beyond the limit.
func (t *appendedTail) add(first uint64, at int64, recs [][]byte, aux any) {
	n := 0
	for _, r := range recs {
		n += len(r)
	}
	if n > t.max {
		return
	}
	// bytes.Join allocates without zeroing what it then overwrites: a
	// chunk zeroed first and then copied into cost ~1 % of the
	// collector's CPU under ingest load (the zeroing alone, in
	// mallocgcLarge: perf, 1M events, twenty-fifth session).
	c := tailChunk{first: first, at: at, data: bytes.Join(recs, nil), ends: make([]int, len(recs)), aux: aux}
	end := 0
	for k, r := range recs {
		end += len(r)
		c.ends[k] = end
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Appends finish in any order; nearly always this one is the newest.
	k := len(t.chunks)
	for k > 0 && t.chunks[k-1].first > first {
		k--
	}
	t.chunks = append(t.chunks, tailChunk{})
	copy(t.chunks[k+1:], t.chunks[k:])
	t.chunks[k] = c
	t.bytes += n
	drop := 0
	for t.bytes > t.max && drop < len(t.chunks) {
		t.bytes -= len(t.chunks[drop].data)
		drop++
	}
	if drop > 0 {
		t.chunks = append(t.chunks[:0], t.chunks[drop:]...)
	}
}

// find returns the chunk holding record i, or else the first index above i
// that a chunk holds (^0 for none).
func (t *appendedTail) find(i uint64) (tailChunk, bool, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := sort.Search(len(t.chunks), func(k int) bool { return t.chunks[k].end() > i })
	if k == len(t.chunks) {
		return tailChunk{}, false, ^uint64(0)
	}
	if c := t.chunks[k]; c.first <= i {
		return c, true, 0
	}
	return tailChunk{}, false, t.chunks[k].first
}

// FollowAppended is Follow for a consumer inside the writing process (the
// collector's index and detection): records that this Ledger appended
// recently (the last Options.TailBytes of them) come from the copies
// Append kept of the bytes it hashed, instead of being read back from the
// segment and checked against their leaf hashes; older ones, and those of
// other writers, are read and checked as Follow does. Without TailBytes it
// is Follow.
func (l *Ledger) FollowAppended(ctx context.Context, from uint64) iter.Seq2[Entry, error] {
	if l.tail == nil {
		return l.Follow(ctx, from)
	}
	return func(yield func(Entry, error) bool) {
		countReadBack := func(e Entry, err error) bool {
			if err == nil {
				l.tail.readBack.Add(1)
			}
			return yield(e, err)
		}
		next := from
		for {
			checked := false // read the rest the checked way (pruned, short)
			for size := l.Size(); next < size && !checked; size = l.Size() {
				if next < l.Pruned() {
					checked = true
					break
				}
				c, ok, held := l.tail.find(next)
				if ok {
					for end := min(c.end(), size); next < end; next++ {
						if !yield(c.entry(next), nil) {
							return
						}
					}
					continue
				}
				// Not held: read from disk up to the next held record.
				upTo := min(held, size)
				if next, ok = l.drain(next, upTo, countReadBack); !ok {
					return
				}
				checked = next < upTo
			}
			if checked {
				// Follow's path, which yields the error (pruned records,
				// a segment that ends early) as Follow does.
				var ok bool
				if next, ok = l.drain(next, ^uint64(0), yield); !ok {
					return
				}
			}
			if err := l.Wait(ctx, next); err != nil {
				yield(Entry{}, err)
				return
			}
		}
	}
}
