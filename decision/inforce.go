package decision

import (
	"cmp"
	"container/heap"
	"iter"
	"net/netip"
	"slices"
	"time"
)

// inForce is the decisions in force with the indexes that let a decision
// find what it needs without a pass over all of them: at 100,000 in force
// a pass cost ~20 ms per decision (more under -race at load), under the
// lock every decision and every decision stream poll takes, so an
// attacker spraying addresses slowed the very bans that block him.
//
// Every change goes through add and remove, which keep the indexes in
// step; nothing outside this file touches the fields
// (TestInForceFieldsPrivate checks it, TestInForceIndexesRandom checks the
// indexes against a recomputation from byID after each step of random
// histories).
type inForce struct {
	byID map[int64]*inForceEntry
	// byKey holds each (scope, value)'s decisions: one as a rule, more
	// only from a state file or ledger that says so.
	byKey map[inForceKey][]*inForceEntry
	// dueHeap orders the decisions by Until, soonest first, so expiry
	// looks at the due ones only. A decision's Until never changes (a
	// longer ban is a new decision), and add of an id in force replaces
	// the entry, so the heap holds exactly the entries of byID.
	dueHeap placedHeap[*inForceEntry]
	// byNet holds the Ip and Range decisions by their network (masked),
	// and netLens counts them by family (0 IPv4, 1 IPv6) and prefix
	// length, so that the networks holding an address are found by one
	// look-up per length in use, as the gateway's blocklist does.
	byNet   map[netip.Prefix][]*inForceEntry
	netLens [2][129]int
	// in holds the rules' Ip and Range decisions by the networks they
	// are widened to: in[narrow] by the /48 (IPv6) or /24 (IPv4) of each
	// one narrower than that, in[wide] by the /32 or /16 of each one
	// narrower than that. mid32 counts the IPv6 ones of /33 to /48 by
	// their /32. What widening counts (WidenAt, IPv6) and ends, and what
	// compact widens at MaxActive.
	in    [2]map[netip.Prefix]map[int64]*inForceEntry
	mid32 map[netip.Prefix]int
	// largest ranks the groups of in[k] of two or more decisions whose
	// network touches no allowlisted one, most decisions first, and
	// ranked finds a group's place in it: compact takes the first rather
	// than counting every decision in force, which it did at each
	// decision once MaxActive was reached (an address spray keeps it
	// there).
	largest [2]placedHeap[*group]
	ranked  [2]map[netip.Prefix]*group
	// allow is the allowlist (Options.Allowlist): a widened ban never
	// touches it.
	allow []netip.Prefix
	// otherScopes counts the decisions by scope for the scopes other than
	// Ip and Range, so that covering finds a value's among them by one
	// byKey look-up per scope in use.
	otherScopes map[string]int
}

type inForceKey struct{ scope, value string }

// inForceEntry is one decision in force with what the indexes need.
type inForceEntry struct {
	d *Decision
	// net is the network of an Ip or Range decision (netOf), invalid for
	// the others.
	net netip.Prefix
	// index is the ledger index of the decision's creation record, if
	// known (hasIndex).
	index    uint64
	hasIndex bool
	// at is the entry's position in dueHeap.
	at int
}

// The levels of inForce.in and largest.
const (
	narrow = 0 // IPv6 /48, IPv4 /24
	wide   = 1 // IPv6 /32, IPv4 /16
)

// levelBits is the prefix length of level k's networks for an address.
func levelBits(k int, a netip.Addr) int {
	if a.Is6() {
		return [2]int{48, 32}[k]
	}
	return [2]int{24, 16}[k]
}

func newInForce(allow []netip.Prefix) inForce {
	return inForce{
		byID:   map[int64]*inForceEntry{},
		byKey:  map[inForceKey][]*inForceEntry{},
		byNet:  map[netip.Prefix][]*inForceEntry{},
		in:     [2]map[netip.Prefix]map[int64]*inForceEntry{{}, {}},
		ranked: [2]map[netip.Prefix]*group{{}, {}},
		allow:  allow,
		mid32:  map[netip.Prefix]int{},

		otherScopes: map[string]int{},
		dueHeap:     placedHeap[*inForceEntry]{less: soonerDue},
		largest:     [2]placedHeap[*group]{{less: larger}, {less: larger}},
	}
}

// family is netLens' first index for a network's address.
func family(a netip.Addr) int {
	if a.Is6() {
		return 1
	}
	return 0
}

// add puts a copy of d in force (replacing a decision of the same id) with
// the ledger index of its creation record (if hasIndex), and returns the
// copy.
func (f *inForce) add(d Decision, index uint64, hasIndex bool) *Decision {
	if _, ok := f.byID[d.ID]; ok {
		f.remove(d.ID)
	}
	e := &inForceEntry{d: &d, index: index, hasIndex: hasIndex}
	if n, ok := netOf(d.Scope, d.Value); ok {
		e.net = n
	}
	f.byID[d.ID] = e
	k := inForceKey{d.Scope, d.Value}
	f.byKey[k] = append(f.byKey[k], e)
	heap.Push(&f.dueHeap, e)
	if d.Scope != ScopeIP && d.Scope != ScopeRange {
		f.otherScopes[d.Scope]++
	}
	if n := e.net; n.IsValid() {
		f.byNet[n] = append(f.byNet[n], e)
		f.netLens[family(n.Addr())][n.Bits()]++
		groups, mid := widening(e)
		for k, p := range groups {
			if p.IsValid() {
				addTo(f.in[k], p, e)
				f.rerank(k, p)
			}
		}
		if mid {
			f.mid32[groups[wide]]++
		}
	}
	return e.d
}

// widening is where e counts for widening, if it is a rules' Ip or Range
// ban: groups[k] is the network of level k holding it if it is narrower
// than that (invalid if not), and mid whether it is an IPv6 one of /33 to
// /48 (counted in its /32). add and remove both ask it, so that they
// agree.
func widening(e *inForceEntry) (groups [2]netip.Prefix, mid bool) {
	n := e.net
	if !n.IsValid() || !isRules(e.d) {
		return
	}
	for k := range groups {
		if bits := levelBits(k, n.Addr()); n.Bits() > bits {
			groups[k] = netip.PrefixFrom(n.Addr(), bits).Masked()
		}
	}
	return groups, n.Addr().Is6() && n.Bits() > 32 && n.Bits() <= 48
}

// rerank puts group p of level k in its place in largest after its
// decisions changed: out of it below two or touching the allowlist.
func (f *inForce) rerank(k int, p netip.Prefix) {
	n, g := len(f.in[k][p]), f.ranked[k][p]
	switch {
	case n < 2:
		if g != nil {
			heap.Remove(&f.largest[k], g.at)
			delete(f.ranked[k], p)
		}
	case g != nil:
		g.n = n
		heap.Fix(&f.largest[k], g.at)
	case !slices.ContainsFunc(f.allow, p.Overlaps):
		g = &group{p: p, n: n}
		heap.Push(&f.largest[k], g)
		f.ranked[k][p] = g
	}
}

// largestGroup is the network of level k holding the most rules'
// decisions narrower than it, at least two, touching no allowlisted
// network — of those with as many, the lowest — with its decisions,
// oldest first; false when there is none.
func (f *inForce) largestGroup(k int) (netip.Prefix, []*Decision, bool) {
	if f.largest[k].Len() == 0 {
		return netip.Prefix{}, nil, false
	}
	p := f.largest[k].s[0].p
	var members []*Decision
	for _, e := range f.in[k][p] {
		members = append(members, e.d)
	}
	slices.SortFunc(members, func(a, b *Decision) int { return cmp.Compare(a.ID, b.ID) })
	return p, members, true
}

func addTo(m map[netip.Prefix]map[int64]*inForceEntry, p netip.Prefix, e *inForceEntry) {
	g := m[p]
	if g == nil {
		g = map[int64]*inForceEntry{}
		m[p] = g
	}
	g[e.d.ID] = e
}

func removeFrom(m map[netip.Prefix]map[int64]*inForceEntry, p netip.Prefix, id int64) {
	if g := m[p]; g != nil {
		delete(g, id)
		if len(g) == 0 {
			delete(m, p)
		}
	}
}

// without is s without e (order not kept), nil when empty.
func without(s []*inForceEntry, e *inForceEntry) []*inForceEntry {
	for i, x := range s {
		if x == e {
			s[i] = s[len(s)-1]
			s[len(s)-1] = nil
			s = s[:len(s)-1]
			break
		}
	}
	if len(s) == 0 {
		return nil
	}
	return s
}

// remove ends decision id; it returns the decision, or false when none
// with that id is in force.
func (f *inForce) remove(id int64) (*Decision, bool) {
	e := f.byID[id]
	if e == nil {
		return nil, false
	}
	delete(f.byID, id)
	k := inForceKey{e.d.Scope, e.d.Value}
	if s := without(f.byKey[k], e); s != nil {
		f.byKey[k] = s
	} else {
		delete(f.byKey, k)
	}
	heap.Remove(&f.dueHeap, e.at)
	if sc := e.d.Scope; sc != ScopeIP && sc != ScopeRange {
		if f.otherScopes[sc]--; f.otherScopes[sc] == 0 {
			delete(f.otherScopes, sc)
		}
	}
	if n := e.net; n.IsValid() {
		if s := without(f.byNet[n], e); s != nil {
			f.byNet[n] = s
		} else {
			delete(f.byNet, n)
		}
		f.netLens[family(n.Addr())][n.Bits()]--
		groups, mid := widening(e)
		for k, p := range groups {
			if p.IsValid() {
				removeFrom(f.in[k], p, id)
				f.rerank(k, p)
			}
		}
		if p := groups[wide]; mid {
			if f.mid32[p]--; f.mid32[p] == 0 {
				delete(f.mid32, p)
			}
		}
	}
	return e.d, true
}

// get is decision id, nil when none is in force.
func (f *inForce) get(id int64) *Decision {
	if e := f.byID[id]; e != nil {
		return e.d
	}
	return nil
}

func (f *inForce) len() int { return len(f.byID) }

// all yields every decision in force (in no order).
func (f *inForce) all() iter.Seq[*Decision] {
	return func(yield func(*Decision) bool) {
		for _, e := range f.byID {
			if !yield(e.d) {
				return
			}
		}
	}
}

// nets yields every Ip and Range decision in force with its network.
func (f *inForce) nets() iter.Seq2[*Decision, netip.Prefix] {
	return func(yield func(*Decision, netip.Prefix) bool) {
		for _, e := range f.byID {
			if e.net.IsValid() && !yield(e.d, e.net) {
				return
			}
		}
	}
}

// inForceRef is a decision in force with the ledger index of its
// creation record, if known (hasIndex).
type inForceRef struct {
	d        *Decision
	index    uint64
	hasIndex bool
}

// refs returns every decision in force (in no order) with its creation
// record's ledger index: what a save of the state file takes under the
// store's lock. A decision in force is never changed (add keeps its own
// copy; a longer ban is a new decision), so the decisions may be read
// after the lock is released: a copy of each under it, 100,000 of them,
// held every decision and poll for ~100 ms.
func (f *inForce) refs() []inForceRef {
	out := make([]inForceRef, 0, len(f.byID))
	for _, e := range f.byID {
		out = append(out, inForceRef{e.d, e.index, e.hasIndex})
	}
	return out
}

// ledgerIndexes yields each decision's id and the ledger index of its
// creation record, where known.
func (f *inForce) ledgerIndexes() iter.Seq2[int64, uint64] {
	return func(yield func(int64, uint64) bool) {
		for id, e := range f.byID {
			if e.hasIndex && !yield(id, e.index) {
				return
			}
		}
	}
}

// ledgerIndex is the ledger index of decision id's creation record.
func (f *inForce) ledgerIndex(id int64) (uint64, bool) {
	e := f.byID[id]
	if e == nil || !e.hasIndex {
		return 0, false
	}
	return e.index, true
}

// holds reports whether a decision on exactly (scope, value) is in force.
func (f *inForce) holds(scope, value string) bool {
	return len(f.byKey[inForceKey{scope, value}]) > 0
}

// own yields the decisions in force on exactly (scope, value).
func (f *inForce) own(scope, value string) iter.Seq[*Decision] {
	return func(yield func(*Decision) bool) {
		for _, e := range f.byKey[inForceKey{scope, value}] {
			if !yield(e.d) {
				return
			}
		}
	}
}

// covering yields the Ip and Range decisions whose network holds a (one
// look-up per prefix length in use, as holding) and the decisions of the
// other scopes whose value is exactly value. An invalid or zoned a holds
// no network.
func (f *inForce) covering(a netip.Addr, value string) iter.Seq[*Decision] {
	return func(yield func(*Decision) bool) {
		if a.IsValid() && a.Zone() == "" {
			lens := &f.netLens[family(a)]
			for bits := 0; bits <= a.BitLen(); bits++ {
				if lens[bits] == 0 {
					continue
				}
				for _, e := range f.byNet[netip.PrefixFrom(a, bits).Masked()] {
					if !yield(e.d) {
						return
					}
				}
			}
		}
		for scope := range f.otherScopes {
			for _, e := range f.byKey[inForceKey{scope, value}] {
				if !yield(e.d) {
					return
				}
			}
		}
	}
}

// holding is the rules' decision of a network strictly wider than n that
// holds it and lasts longest, nil if none: one look-up per prefix length
// in use.
func (f *inForce) holding(n netip.Prefix) *Decision {
	var best *Decision
	lens := &f.netLens[family(n.Addr())]
	for bits := range n.Bits() {
		if lens[bits] == 0 {
			continue
		}
		for _, e := range f.byNet[netip.PrefixFrom(n.Addr(), bits).Masked()] {
			if isRules(e.d) && (best == nil || e.d.Until.After(best.Until)) {
				best = e.d
			}
		}
	}
	return best
}

// rulesIn counts the rules' IPv6 decisions inside parent (a /48 or a /32)
// of the lengths widening counts there: /49 to /128 in a /48, /33 to /48
// in a /32.
func (f *inForce) rulesIn(parent netip.Prefix) int {
	switch parent.Bits() {
	case 48:
		return len(f.in[narrow][parent])
	case 32:
		return f.mid32[parent]
	}
	return 0
}

// rulesUnder yields the rules' IPv6 decisions strictly inside n, a /48 or
// a /32 (what its widened ban ends).
func (f *inForce) rulesUnder(n netip.Prefix) iter.Seq[*Decision] {
	var g map[int64]*inForceEntry
	switch n.Bits() {
	case 48:
		g = f.in[narrow][n]
	case 32:
		g = f.in[wide][n]
	}
	return func(yield func(*Decision) bool) {
		for _, e := range g {
			if !yield(e.d) {
				return
			}
		}
	}
}

// popDue removes and returns a decision whose Until is not after now, or
// false when none is due: expiry looks at the due ones only.
func (f *inForce) popDue(now time.Time) (*Decision, bool) {
	if f.dueHeap.Len() == 0 || now.Before(f.dueHeap.s[0].d.Until) {
		return nil, false
	}
	return f.remove(f.dueHeap.s[0].d.ID)
}

// placedHeap is a container/heap whose items know their place in it
// (setAt), so that one can be fixed or removed where it is; less orders
// them.
type placedHeap[T interface{ setAt(int) }] struct {
	s    []T
	less func(a, b T) bool
}

func (h *placedHeap[T]) Len() int           { return len(h.s) }
func (h *placedHeap[T]) Less(i, j int) bool { return h.less(h.s[i], h.s[j]) }
func (h *placedHeap[T]) Swap(i, j int) {
	h.s[i], h.s[j] = h.s[j], h.s[i]
	h.s[i].setAt(i)
	h.s[j].setAt(j)
}
func (h *placedHeap[T]) Push(x any) {
	e := x.(T)
	e.setAt(len(h.s))
	h.s = append(h.s, e)
}
func (h *placedHeap[T]) Pop() any {
	n := len(h.s) - 1
	e := h.s[n]
	var none T
	h.s[n] = none
	h.s = h.s[:n]
	e.setAt(-1)
	return e
}

func (e *inForceEntry) setAt(i int) { e.at = i }

// soonerDue orders the due heap: by Until, soonest first.
func soonerDue(a, b *inForceEntry) bool { return a.d.Until.Before(b.d.Until) }

// group is a network of inForce.in in inForce.largest: n decisions in it,
// at its place in the heap.
type group struct {
	p  netip.Prefix
	n  int
	at int
}

func (g *group) setAt(i int) { g.at = i }

// larger orders inForce.largest: the most decisions first and, of as
// many, the lowest network, so that compact's choice is the same on every
// run of the same history.
func larger(a, b *group) bool {
	if a.n != b.n {
		return a.n > b.n
	}
	return a.p.Addr().Less(b.p.Addr())
}
