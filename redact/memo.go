package redact

import (
	"encoding/binary"
	"sync/atomic"
)

// keyMemo remembers the JSON walker's decisions on keys: whether a member
// is sensitive by its own normalised name or joined to its parent's. JSON
// events repeat the same few dozen keys, and matching each against the
// patterns, twice, was a fifth of scrubbing an event. Entries go only into
// empty slots and are never replaced, so a body of random keys costs at
// most the table's few hundred small allocations, ever, and then only the
// matching it cost before.
type keyMemo struct {
	seed  uint64
	slots [keyMemoSlots]atomic.Pointer[keyDecision]
}

const keyMemoSlots = 1024

// keyDecision is one remembered decision: joined is the parent's
// normalised name followed by the key's (klen bytes).
type keyDecision struct {
	joined    string
	klen      int
	sensitive bool
}

// sensitive reports whether the key that ends joined (its last klen
// bytes) is sensitive alone or joined to the parent name before it.
func (m *keyMemo) sensitive(r *Redactor, joined []byte, klen int) bool {
	if len(joined) > 64 {
		return r.keyDecide(joined, klen)
	}
	slot := &m.slots[m.hash(joined, klen)%keyMemoSlots]
	if d := slot.Load(); d != nil {
		if d.klen == klen && d.joined == string(joined) {
			return d.sensitive
		}
		return r.keyDecide(joined, klen)
	}
	s := r.keyDecide(joined, klen)
	slot.CompareAndSwap(nil, &keyDecision{joined: string(joined), klen: klen, sensitive: s})
	return s
}

// hash mixes joined eight bytes at a time with the memo's random seed
// (maphash cost as much as the matching it saves on names this short).
// The seed keeps an attacker from choosing keys that share a slot; a
// shared slot costs only speed anyway.
func (m *keyMemo) hash(b []byte, klen int) uint64 {
	h := m.seed ^ uint64(klen)*0x9E3779B97F4A7C15
	for len(b) >= 8 {
		h = (h ^ binary.LittleEndian.Uint64(b)) * 0xff51afd7ed558ccd
		h ^= h >> 29
		b = b[8:]
	}
	var tail uint64
	for i, c := range b {
		tail |= uint64(c) << (8 * i)
	}
	h = (h ^ tail ^ uint64(len(b))<<56) * 0xc4ceb9fe1a85ec53
	return h ^ h>>32
}

// keyDecide is the decision itself: the key alone, then joined to its
// parent's name ({"api":{"key":…}} is api.key).
func (r *Redactor) keyDecide(joined []byte, klen int) bool {
	key := joined[len(joined)-klen:]
	if r.sensitiveKeyNorm(key) {
		return true
	}
	return len(joined) > klen && klen > 0 && r.sensitiveKeyNorm(joined)
}
