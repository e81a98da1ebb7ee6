package server

import (
	"hash/maphash"
	"sync"
)

// recentIDs remembers the event.id of the last n events stored, so that a
// shipper resending a batch it could not confirm (a timeout, a crash
// between the POST and saving its cursor: shipping is at-least-once) does
// not store the events twice. It keeps 64-bit keyed hashes, not the ids:
// a million ids cost about 30 MB, and a false match needs a 64-bit
// collision (about 1 in 10^13 per lookup with a full window).
type recentIDs struct {
	seed maphash.Seed
	mu   sync.Mutex
	set  map[uint64]struct{}
	ring []uint64
	next int
	full bool
}

func newRecentIDs(n int) *recentIDs {
	if n <= 0 {
		return nil
	}
	return &recentIDs{seed: maphash.MakeSeed(), set: make(map[uint64]struct{}, n), ring: make([]uint64, n)}
}

func (r *recentIDs) key(id string) uint64 { return maphash.String(r.seed, id) }

// dups reports, for each id, whether it was stored recently or appears
// earlier in ids; "" is never a duplicate. One lock for the whole batch.
func (r *recentIDs) dups(ids []string) []bool {
	out := make([]bool, len(ids))
	if r == nil {
		return out
	}
	keys := make([]uint64, len(ids))
	batch := make(map[uint64]struct{}, len(ids))
	for i, id := range ids {
		if id == "" {
			continue
		}
		keys[i] = r.key(id)
		if _, ok := batch[keys[i]]; ok {
			out[i] = true
		}
		batch[keys[i]] = struct{}{}
	}
	r.mu.Lock()
	for i, id := range ids {
		if id != "" && !out[i] {
			_, out[i] = r.set[keys[i]]
		}
	}
	r.mu.Unlock()
	return out
}

// add records ids that are now durably stored, evicting the oldest.
func (r *recentIDs) add(ids []string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if id == "" {
			continue
		}
		k := r.key(id)
		if _, ok := r.set[k]; ok {
			continue
		}
		if r.full {
			delete(r.set, r.ring[r.next])
		}
		r.ring[r.next] = k
		r.set[k] = struct{}{}
		if r.next++; r.next == len(r.ring) {
			r.next, r.full = 0, true
		}
	}
}
