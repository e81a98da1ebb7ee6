package redact

import (
	"encoding/binary"
	"hash/maphash"
	"unsafe"
)

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
// bytes, about 70 KiB) in sets of two, filled on misses, where a new value
// replaces the one of its set used least recently: a client sending a new
// value on every request costs only the hash and a copy on top of the
// scan it would cost anyway, and can neither grow the table nor choose
// which entries its values evict (the hash is seeded); and two hot values
// that share a set do not evict each other.
//
// A Memo is for one goroutine: each writer keeps its own.
type Memo struct {
	r     *Redactor
	seed  maphash.Seed
	nseed uint64 // nameHash's
	slots []memoSlot
	names *[nameSlots]nameSlot // Query's verdicts on parameter names
	noted bool                 // the note of the entry lookup found last
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
	memoStringNote // String, with a caller's note on the value (StringHitNote)
)

type memoSlot struct {
	n      uint16 // length of the value in b
	method uint8  // memoString or memoQuery; 0: empty
	recent bool   // the set's entry used last (only one of a set has it)
	note   bool   // memoStringNote: the caller's note on the value
	b      [MemoMaxLen]byte
}

// NewMemo returns an empty memo of r's verdicts.
func (r *Redactor) NewMemo() *Memo {
	seed := maphash.MakeSeed()
	return &Memo{r: r, seed: seed, nseed: maphash.String(seed, "names") | 1, slots: make([]memoSlot, MemoSlots), names: new([nameSlots]nameSlot)}
}

// Query strings whose values change on every request (page numbers, ids,
// times) never repeat whole, but their parameter names do. Query's work on
// a name — whether it is a sensitive key (normalised, then matched against
// every pattern) and whether the detectors find something in it — depends
// on the name's bytes alone, so the memo also remembers, per name byte for
// byte, names the detectors left unchanged and whether each is sensitive.
// Values are scanned every time (a value's verdict is a function of the
// value and its name's sensitivity, and values are what changes). The
// table is fixed (nameSlots entries of at most nameMaxLen bytes, in
// seeded slots a new name simply replaces), like the rest of the memo.
const (
	nameSlots  = 64
	nameMaxLen = 32
)

type nameSlot struct {
	n         uint8 // length of the name in b; 0: empty
	sensitive bool
	b         [nameMaxLen]byte
}

// nameVerdict returns whether name (as written in the query, not encoded) is
// remembered and, if it is, whether it is sensitive; the detectors left a
// remembered name unchanged.
func (m *Memo) nameVerdict(name string) (sensitive, known bool) {
	if m == nil || len(name) == 0 || len(name) > nameMaxLen {
		return false, false
	}
	sl := &m.names[m.nameHash(name)]
	if int(sl.n) == len(name) && string(sl.b[:len(name)]) == name {
		return sl.sensitive, true
	}
	return false, false
}

// rememberName records a name the detectors left unchanged and its
// sensitivity.
func (m *Memo) rememberName(name string, sensitive bool) {
	if len(name) == 0 || len(name) > nameMaxLen {
		return
	}
	sl := &m.names[m.nameHash(name)]
	sl.n, sl.sensitive = uint8(copy(sl.b[:], name)), sensitive
}

// nameHash is the slot of a name of 1 to nameMaxLen bytes: its words
// (the last one overlapping the one before; the first and last four
// bytes of a shorter name, or its first, middle and last byte) mixed with
// the memo's seed. maphash cost as much as the rest of the lookup on names
// this short. The seed keeps an attacker from choosing names that share a
// slot; a shared slot costs only speed anyway (the lookup compares the
// whole name).
func (m *Memo) nameHash(name string) uint64 {
	n := len(name)
	h := m.nseed ^ uint64(n)<<58
	switch {
	case n >= 8:
		for i := 0; i+8 < n; i += 8 {
			h = (h ^ load64(name, i)) * 0xff51afd7ed558ccd
			h ^= h >> 29
		}
		h ^= load64(name, n-8)
	case n >= 4:
		h ^= uint64(load32(name, 0))<<32 | uint64(load32(name, n-4))
	default:
		h ^= uint64(name[0]) | uint64(name[n/2])<<8 | uint64(name[n-1])<<16
	}
	h *= 0xc4ceb9fe1a85ec53
	return (h ^ h>>32) % nameSlots
}

// load64 and load32 read name[i:i+8] and name[i:i+4] little-endian with
// one load each (the compiler does not combine byte loads from a string);
// the caller guarantees the bytes are there.
func load64(s string, i int) uint64 {
	return binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s), len(s))[i : i+8])
}

func load32(s string, i int) uint32 {
	return binary.LittleEndian.Uint32(unsafe.Slice(unsafe.StringData(s), len(s))[i : i+4])
}

// QueryScan is Query without looking the whole query string up (for a
// caller that knows its queries seldom repeat): only parameter names are
// looked up, and the query string is not remembered.
func (m *Memo) QueryScan(s string) string { return m.r.urlencoded(s, m) }

// String is r.String(s).
func (m *Memo) String(s string) string {
	out, _ := m.StringHit(s)
	return out
}

// StringHit is String, and whether s was found in the memo (its scan
// skipped): a caller whose values of some kind seldom repeat can learn
// that the memo costs it more than it saves.
func (m *Memo) StringHit(s string) (string, bool) {
	set, victim, hit := m.lookup(memoString, s)
	if hit {
		return s, true
	}
	out := m.r.String(s)
	m.remember(set, victim, memoString, s, out)
	return out, false
}

// StringHitNote is StringHit, and note(s) for a value the memo answers
// for or has just remembered (false for any other): a caller whose next
// step on the scrubbed value is a test of its bytes alone (whether it
// needs escaping, say) has the test's answer remembered with the value,
// and note is called only when a value is remembered. note must be a
// function of the bytes alone, and the same on every call of one Memo;
// its entries are apart from String's.
func (m *Memo) StringHitNote(s string, note func(string) bool) (out string, hit, noted bool) {
	set, victim, hit := m.lookup(memoStringNote, s)
	if hit {
		return s, true, m.noted
	}
	out = m.r.String(s)
	if set != nil && out == s {
		m.remember(set, victim, memoStringNote, s, out)
		noted = note(s)
		set[victim].note = noted
	}
	return out, false, noted
}

// Query is r.Query(s).
func (m *Memo) Query(s string) string {
	out, _ := m.QueryHit(s)
	return out
}

// QueryHit is Query, and whether s was found in the memo (see StringHit).
func (m *Memo) QueryHit(s string) (string, bool) {
	set, victim, hit := m.lookup(memoQuery, s)
	if hit {
		return s, true
	}
	out := m.r.urlencoded(s, m)
	m.remember(set, victim, memoQuery, s, out)
	return out, false
}

// lookup returns whether s is remembered as clean for method and, when it
// is not, the set of slots s belongs in (nil when s is not remembered at
// all: empty or too long) and which of them it would replace.
func (m *Memo) lookup(method uint8, s string) ([]memoSlot, int, bool) {
	if len(s) == 0 || len(s) > MemoMaxLen {
		return nil, 0, false
	}
	h := maphash.String(m.seed, s) + uint64(method)
	set := m.slots[h%(MemoSlots/2)*2:][:2]
	for i := range set {
		if sl := &set[i]; sl.method == method && int(sl.n) == len(s) && string(sl.b[:len(s)]) == s {
			sl.recent, set[1-i].recent = true, false
			m.noted = sl.note
			return nil, 0, true
		}
	}
	if set[0].recent {
		return set, 1, false
	}
	return set, 0, false
}

// remember records s as clean for method in set[victim], when scrubbing
// left it as it was.
func (m *Memo) remember(set []memoSlot, victim int, method uint8, s, out string) {
	if set == nil || out != s {
		return
	}
	sl := &set[victim]
	sl.method, sl.n = method, uint16(copy(sl.b[:], s))
	sl.recent, set[1-victim].recent = true, false
}
