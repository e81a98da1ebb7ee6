package server

import (
	"hash/maphash"
	"sync"
)

// recentIDs remembers the event.id of the last n events stored, so that a
// shipper resending a batch it could not confirm (a timeout, a crash
// between the POST and saving its cursor: shipping is at-least-once) does
// not store the events twice. It keeps 64-bit keyed hashes, not the ids
// (a false match needs a 64-bit collision: about 1 in 10^13 per lookup
// with a full window), in a ring that sets the eviction order and an
// open-addressing table of twice the ring's size (linear probing,
// deletion by backward shift): 24 bytes per remembered id, 6 MB for the
// default window, one or two cache misses per lookup where a Go map took
// several.
type recentIDs struct {
	seed  maphash.Seed
	mu    sync.Mutex
	table []uint64 // 0: empty
	mask  uint64
	ring  []uint64
	next  int
	full  bool
	batch []uint64 // dups' table of one batch's keys
	sink  uint64   // what touch read (kept, so the loads are made)
	// held counts the keys claimed by requests storing them now (claim,
	// release); released is signalled on mu at each release.
	held     map[uint64]int
	released *sync.Cond
}

func newRecentIDs(n int) *recentIDs {
	if n <= 0 {
		return nil
	}
	size := 1
	for size < 2*n {
		size <<= 1
	}
	r := &recentIDs{seed: maphash.MakeSeed(), table: make([]uint64, size), mask: uint64(size - 1), ring: make([]uint64, n), held: map[uint64]int{}}
	r.released = sync.NewCond(&r.mu)
	return r
}

// keyOf is the key of an event.id; 0 for none ("" or the window off).
func (r *recentIDs) keyOf(id []byte) uint64 {
	if r == nil || len(id) == 0 {
		return 0
	}
	return nonZero(maphash.Bytes(r.seed, id))
}

// keyOfString is keyOf for an id held as a string.
func (r *recentIDs) keyOfString(id string) uint64 {
	if r == nil || id == "" {
		return 0
	}
	return nonZero(maphash.String(r.seed, id))
}

// nonZero keeps 0 free to mean "no id" and "empty slot".
func nonZero(k uint64) uint64 {
	if k == 0 {
		return 1
	}
	return k
}

// slot is where the table's probe for k starts: the hash is already
// uniform, but its low bits also index the ring's neighbours, so mix.
func (r *recentIDs) slot(k uint64) uint64 { return (k * 0x9E3779B97F4A7C15 >> 32) & r.mask }

// has reports whether k is in the table; r.mu held.
func (r *recentIDs) has(k uint64) bool {
	// At most half the table is in use, so an empty slot ends every
	// probe; the bound only keeps a broken invariant from hanging.
	for i, n := r.slot(k), 0; n < len(r.table); i, n = (i+1)&r.mask, n+1 {
		switch r.table[i] {
		case k:
			return true
		case 0:
			return false
		}
	}
	return false
}

// insertNew adds k unless it is in the table, in one probe, and reports
// whether it did; r.mu held.
func (r *recentIDs) insertNew(k uint64) bool {
	i := r.slot(k)
	for n := 0; r.table[i] != 0; n++ {
		if r.table[i] == k {
			return false
		}
		if n == len(r.table) {
			panic("server: resend window table full") // cannot happen: it is twice the ring
		}
		i = (i + 1) & r.mask
	}
	r.table[i] = k
	return true
}

// remove deletes k from the table, shifting back the entries after it
// that would otherwise no longer be found; r.mu held.
func (r *recentIDs) remove(k uint64) {
	i := r.slot(k)
	for r.table[i] != k {
		if r.table[i] == 0 {
			return
		}
		i = (i + 1) & r.mask
	}
	for {
		r.table[i] = 0
		j := i
		for {
			j = (j + 1) & r.mask
			e := r.table[j]
			if e == 0 {
				return
			}
			// e may move to the hole at i unless its home slot lies
			// cyclically in (i, j].
			h := r.slot(e)
			if (j-h)&r.mask >= (j-i)&r.mask {
				r.table[i] = e
				i = j
				break
			}
		}
	}
}

// touch reads the table slot where the probe for each key starts, ahead
// of the probes themselves; r.mu held. The table (4 MiB at the default
// window) is out of the caches by the time a batch comes (the append, the
// followers and compaction ran in between), so each probe was a cache
// miss, one after the other: these loads depend on nothing before them,
// and the processor overlaps their misses. The probes then find the
// lines cached (BenchmarkRecentIDs/cold).
func (r *recentIDs) touch(keys []uint64) {
	s := r.sink
	for _, k := range keys {
		if k != 0 {
			s += r.table[r.slot(k)]
		}
	}
	r.sink = s
}

// touchEvicted is touch for the keys the next n additions evict.
func (r *recentIDs) touchEvicted(n int) {
	if !r.full {
		return
	}
	s, j := r.sink, r.next
	for range min(n, len(r.ring)) {
		s += r.table[r.slot(r.ring[j])]
		if j++; j == len(r.ring) {
			j = 0
		}
	}
	r.sink = s
}

// claim is dups for a request about to store the keys it does not report
// as duplicates: it holds them until release, and while another request
// holds one of them it waits for that one's release and looks again, so
// that of two requests with the same event.id — a shipper's resend while
// its first try is still being stored — one stores it and the other
// finds it stored (or, if the first failed, stores it). Checked when a
// request began and filled when it had stored, the window let both store
// it. A request holds all its keys or none, so two never wait for each
// other.
func (r *recentIDs) claim(keys []uint64) []bool {
	if r == nil {
		return make([]bool, len(keys))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		out := r.dupsHeld(keys)
		others := false
		for i, k := range keys {
			if k != 0 && !out[i] && r.held[k] > 0 {
				others = true
				break
			}
		}
		if !others {
			for i, k := range keys {
				if k != 0 && !out[i] {
					r.held[k]++
				}
			}
			return out
		}
		r.released.Wait()
	}
}

// release ends a claim: the keys it held that dup does not mark are
// stored now (added to the window) if stored, and free to store again if
// not (the append failed).
func (r *recentIDs) release(keys []uint64, dup []bool, stored bool) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, k := range keys {
		if k != 0 && !dup[i] {
			if r.held[k]--; r.held[k] <= 0 {
				delete(r.held, k)
			}
		}
	}
	if stored {
		r.addHeld(keys, dup)
	}
	r.released.Broadcast()
}

// dups reports, for each key, whether it was stored recently or appears
// earlier in keys; 0 is never a duplicate. One lock for the whole batch.
func (r *recentIDs) dups(keys []uint64) []bool {
	if r == nil {
		return make([]bool, len(keys))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dupsHeld(keys)
}

// dupsHeld is dups with r.mu held.
func (r *recentIDs) dupsHeld(keys []uint64) []bool {
	out := make([]bool, len(keys))
	r.touch(keys)
	// Repeats within the batch, in a small table of its own.
	size := 1
	for size < 2*len(keys) {
		size <<= 1
	}
	if cap(r.batch) < size {
		r.batch = make([]uint64, size)
	}
	batch := r.batch[:size]
	clear(batch)
	mask := uint64(size - 1)
	for i, k := range keys {
		if k == 0 {
			continue
		}
		if r.has(k) {
			out[i] = true
			continue
		}
		j := r.slot(k) & mask
		for batch[j] != 0 && batch[j] != k {
			j = (j + 1) & mask
		}
		out[i] = batch[j] == k
		batch[j] = k
	}
	return out
}

// add records keys of events that are now durably stored, evicting the
// oldest (the window's priming at start; requests claim and release).
func (r *recentIDs) add(keys []uint64) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addHeld(keys, nil)
}

// addHeld adds the keys whose dup entry is false (all when dup is nil);
// r.mu held.
func (r *recentIDs) addHeld(keys []uint64, dup []bool) {
	r.touch(keys)
	r.touchEvicted(len(keys))
	for i, k := range keys {
		// A key another request added meanwhile is there already. The
		// table is twice the ring, so k goes in before the oldest goes
		// out (which is not k: every key in the ring is in the table).
		if k == 0 || (dup != nil && dup[i]) || !r.insertNew(k) {
			continue
		}
		if r.full {
			r.remove(r.ring[r.next])
		}
		r.ring[r.next] = k
		if r.next++; r.next == len(r.ring) {
			r.next, r.full = 0, true
		}
	}
}
