package redact

import "hash/maphash"

// Memo remembers values a [Redactor] found clean, so that what a server
// sees over and over — its few hundred user agents, its paths, the same
// query strings — is scanned for secrets once rather than on every
// request. A value is let through unscanned only when it is byte for byte
// one the same Redactor, with the same method, left unchanged before: the
// memo never changes a verdict, it only skips repeating one. Values that
// had something replaced are not remembered (they are rare, and scrubbed
// again each time).
//
// The memo is a fixed table (MemoSlots entries of at most MemoMaxLen
// bytes, about 70 KiB), filled on misses and overwritten by newer values:
// a client sending a new value on every request costs only the hash and a
// copy on top of the scan it would cost anyway, and can neither grow the
// table nor choose which entries its values evict (the hash is seeded).
//
// A Memo is for one goroutine: each writer keeps its own.
type Memo struct {
	r     *Redactor
	seed  maphash.Seed
	slots []memoSlot
}

// MemoSlots is the number of values a [Memo] holds; MemoMaxLen the
// longest value it remembers.
const (
	MemoSlots  = 256
	MemoMaxLen = 256
)

// The methods a memo entry stands for: a verdict of String says nothing
// about Query's (which also looks at parameter names), and back.
const (
	memoString = 1 + iota
	memoQuery
)

type memoSlot struct {
	n      uint16 // length of the value in b
	method uint8  // memoString or memoQuery; 0: empty
	b      [MemoMaxLen]byte
}

// NewMemo returns an empty memo of r's verdicts.
func (r *Redactor) NewMemo() *Memo {
	return &Memo{r: r, seed: maphash.MakeSeed(), slots: make([]memoSlot, MemoSlots)}
}

// String is r.String(s).
func (m *Memo) String(s string) string {
	sl, hit := m.lookup(memoString, s)
	if hit {
		return s
	}
	out := m.r.String(s)
	m.remember(sl, memoString, s, out)
	return out
}

// Query is r.Query(s).
func (m *Memo) Query(s string) string {
	sl, hit := m.lookup(memoQuery, s)
	if hit {
		return s
	}
	out := m.r.Query(s)
	m.remember(sl, memoQuery, s, out)
	return out
}

// lookup returns the slot of s (nil when s is not remembered at all:
// empty or too long) and whether it holds s as clean for method.
func (m *Memo) lookup(method uint8, s string) (*memoSlot, bool) {
	if len(s) == 0 || len(s) > MemoMaxLen {
		return nil, false
	}
	h := maphash.String(m.seed, s) + uint64(method)
	sl := &m.slots[h%MemoSlots]
	return sl, sl.method == method && int(sl.n) == len(s) && string(sl.b[:len(s)]) == s
}

// remember records s as clean for method when scrubbing left it as it was.
func (m *Memo) remember(sl *memoSlot, method uint8, s, out string) {
	if sl == nil || out != s {
		return
	}
	sl.method, sl.n = method, uint16(copy(sl.b[:], s))
}
