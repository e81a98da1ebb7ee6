package detect

import (
	"container/heap"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/trailguard/trailguard/internal/ipnet"
	"github.com/trailguard/trailguard/internal/username"
)

// Per-group state lives in a two-generation table: groups are found in the
// current map or moved to it from the previous one, and at each rotation
// the previous map is dropped whole. A group untouched for a generation
// (at least the correlation's timespan) holds only expired events, so
// dropping it loses nothing, and expiry costs no sweep and no timers. When
// the current map reaches the group limit it rotates early: under a flood
// of distinct keys the oldest groups are forgotten (counted in
// Stats.Evicted) and memory stays bounded by twice the limit.
type table[V any] struct {
	cur, prev map[uint64]V
	genStart  int64
	genLen    int64
	max       int
	evicted   uint64
}

func newTable[V any](genLen int64, max int) *table[V] {
	if genLen < 1e9 {
		genLen = 1e9
	}
	return &table[V]{cur: map[uint64]V{}, prev: map[uint64]V{}, genLen: genLen, max: max, genStart: math.MinInt64}
}

func (t *table[V]) get(h uint64) (V, bool) {
	if v, ok := t.cur[h]; ok {
		return v, true
	}
	if v, ok := t.prev[h]; ok {
		delete(t.prev, h)
		t.put(h, v)
		return v, true
	}
	var zero V
	return zero, false
}

func (t *table[V]) put(h uint64, v V) {
	if len(t.cur) >= t.max {
		t.evicted += uint64(len(t.prev))
		t.prev, t.cur = t.cur, make(map[uint64]V, len(t.cur)/2)
	}
	t.cur[h] = v
}

func (t *table[V]) del(h uint64) {
	delete(t.cur, h)
	delete(t.prev, h)
}

// rotate starts a new generation when the current one is over.
func (t *table[V]) rotate(now int64) {
	if t.genStart == math.MinInt64 {
		t.genStart = now
		return
	}
	if now-t.genStart < t.genLen {
		return
	}
	if now-t.genStart >= 2*t.genLen {
		clear(t.cur)
	}
	t.prev, t.cur = t.cur, make(map[uint64]V, len(t.cur)/2)
	t.genStart = now
}

func (t *table[V]) size() int { return len(t.cur) + len(t.prev) }

// ent is one counted event: its time and record.
type ent struct {
	t int64
	i uint64
}

// countState is an event_count group: its newest events, oldest first,
// at most cap of them (enough to decide the condition).
type countState struct{ ents []ent }

// valueState is a value_count group: the newest event of each distinct
// value (by hash), at most cap values.
type valueState struct{ vals []vent }

type vent struct {
	h uint64
	t int64
	i uint64
}

// seqState is a temporal or temporal_ordered group: per correlated rule,
// when it last matched (temporal) or when the chain that reached it
// started (temporal_ordered), and the evidence.
type seqState struct {
	at    []int64 // math.MinInt64: not seen
	start []int64 // temporal_ordered: chain start per step
	ev    [][]uint64
	idx   []uint64 // record of the step, so one event is not two steps
	// pat and pstart are each step as it was before the event idx set
	// it (temporal_ordered).
	pat, pstart []int64
}

// windowState is a group of a correlation judged when its window closes
// (an upper-bounded condition): counts within [start, start+timespan].
type windowState struct {
	start   int64
	keyVals []string
	n       int
	vals    []uint64 // value_count: distinct hashes (up to cap)
	seen    uint64   // temporal: bitmask of rules seen
	ev      []uint64
	last    int64
}

// rorState is a rate_of_rise group: event counts in rorSubs sub-buckets
// of timespan/rorSubs each (the rate is their sum: a window sliding by a
// tenth), and the EWMA baseline of that rate.
type rorState struct {
	key    []string // group-by values, for the cursor file
	sub    [rorSubs]uint32
	head   int64 // absolute number of the newest sub-bucket
	base   float64
	firing bool
	ev     []uint64
}

const rorSubs = 10

// closing is a window waiting to be judged.
type closing struct {
	at, start int64
	h         uint64
	seq       uint64
}

type closeHeap []closing

func (h closeHeap) Len() int { return len(h) }
func (h closeHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h closeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *closeHeap) Push(x any)   { *h = append(*h, x.(closing)) }
func (h *closeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// corrRule is a compiled correlation rule and its state.
type corrRule struct {
	rule    *Rule
	c       *Correlation
	span    int64
	groupBy [][]int32 // per input: the field of each group-by entry
	// groupECS names those fields as the engine reads them.
	groupECS [][]string
	// groupKind says how each group-by field's values are compared: user
	// names by account, client addresses by host.
	groupKind [][]keyKind
	values    []int32   // value_count: per input, the counted field
	valueKind []keyKind // value_count: how the counted values compare
	alert     bool      // raises alerts (not only feeds other correlations)
	parents   []feed
	closeAt   bool // judged at window close
	cap       int
	alpha     float64 // rate_of_rise: EWMA weight per sub-bucket

	// Groups holding one event are kept inline (counts1, vals1): most
	// groups of a flood of distinct keys never see a second event.
	counts1 *table[ent]
	counts  *table[*countState]
	vals1   *table[vent]
	vals    *table[*valueState]
	seqs    *table[*seqState]
	windows *table[*windowState]
	rors    *table[*rorState]
	pending closeHeap
	seq     uint64
}

// feed is an edge from a rule to a correlation that correlates it.
type feed struct {
	c   *corrRule
	pos int
}

func (c *corrRule) init(maxGroups int) {
	gen := c.span
	switch {
	case c.closeAt:
		c.windows = newTable[*windowState](gen, maxGroups)
	case c.c.Type == EventCount:
		c.counts = newTable[*countState](gen, maxGroups)
		c.counts1 = newTable[ent](gen, maxGroups)
	case c.c.Type == ValueCount:
		c.vals = newTable[*valueState](gen, maxGroups)
		c.vals1 = newTable[vent](gen, maxGroups)
	case c.c.Type == Temporal || c.c.Type == TemporalOrdered:
		c.seqs = newTable[*seqState](gen, maxGroups)
	case c.c.Type == RateOfRise:
		c.rors = newTable[*rorState](5*int64(c.c.Baseline), maxGroups)
		w := float64(c.span) / rorSubs
		c.alpha = 1 - math.Exp(-w/float64(c.c.Baseline))
	}
}

func (c *corrRule) groups() int {
	switch {
	case c.windows != nil:
		return c.windows.size()
	case c.counts != nil:
		return c.counts.size() + c.counts1.size()
	case c.vals != nil:
		return c.vals.size() + c.vals1.size()
	case c.seqs != nil:
		return c.seqs.size()
	case c.rors != nil:
		return c.rors.size()
	}
	return 0
}

func (c *corrRule) evicted() uint64 {
	switch {
	case c.windows != nil:
		return c.windows.evicted
	case c.counts != nil:
		return c.counts.evicted + c.counts1.evicted
	case c.vals != nil:
		return c.vals.evicted + c.vals1.evicted
	case c.seqs != nil:
		return c.seqs.evicted
	case c.rors != nil:
		return c.rors.evicted
	}
	return 0
}

// rotate expires generations and judges the windows that closed by now.
func (c *corrRule) advance(e *Engine, now int64, emit func(*Alert)) {
	for len(c.pending) > 0 && c.pending[0].at <= now {
		p := heap.Pop(&c.pending).(closing)
		st, _ := c.windows.get(p.h)
		if st == nil || st.start != p.start {
			continue
		}
		c.windows.del(p.h)
		n := float64(st.n)
		switch c.c.Type {
		case ValueCount:
			n = float64(len(st.vals))
		case Temporal:
			n = float64(popcount(st.seen))
		}
		if c.c.Condition.Holds(n) && c.alert {
			a := e.newAlert(c.rule, p.at, int(n))
			a.First, a.Last = ns(st.start), ns(st.last)
			a.Group = c.groupFields(0, st.keyVals)
			a.Evidence = st.ev
			a.fromEvent = false
			e.emitAlert(a, emit)
		}
	}
	switch {
	case c.windows != nil:
		c.windows.rotate(now)
	case c.counts != nil:
		c.counts.rotate(now)
		c.counts1.rotate(now)
	case c.vals != nil:
		c.vals.rotate(now)
		c.vals1.rotate(now)
	case c.seqs != nil:
		c.seqs.rotate(now)
	case c.rors != nil:
		c.rors.rotate(now)
	}
}

func popcount(x uint64) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// key hashes the current event's group-by values for input pos; ok is
// false when one is missing (such events are not counted).
func (c *corrRule) key(e *Engine, pos int) (uint64, bool) {
	e.hash.Reset()
	e.keyVals = e.keyVals[:0]
	for k, f := range c.groupBy[pos] {
		v, ok := e.ctx.first(f)
		if !ok || v == "" {
			return 0, false
		}
		// The alert shows a name or an address as the event that fired
		// sent it (the trail records that, and an ECS ip field holds an
		// address, not a network); the group is the account or the host.
		e.keyVals = append(e.keyVals, v)
		e.hash.WriteString(c.groupKind[pos][k].key(v))
		e.hash.WriteByte(0)
	}
	return e.hash.Sum64(), true
}

// isUserName reports whether an ECS field holds a user name, compared by
// account: user.name and the names of the other users ECS describes
// (user.target.name, source.user.name, ...). Detection then counts the
// failed logins of alice, Alice and ａｌｉｃｅ as one account's, as the
// upstream's login and the gateway's user-name bans do.
func isUserName(ecs string) bool {
	return ecs == "user.name" || strings.HasSuffix(ecs, ".user.name") ||
		(strings.HasPrefix(ecs, "user.") && strings.HasSuffix(ecs, ".name") && strings.Count(ecs, ".") == 2)
}

// keyKind is how a correlation compares the values of a group-by or
// counted field.
type keyKind uint8

const (
	keyExact keyKind = iota
	// keyUser: a user name, compared by account (username.Key).
	keyUser
	// keyAddr: a client address, compared by host (ipnet.HostNet): an
	// IPv6 client picks any address of its /64 at will, so counted per
	// address ten failed logins from ten addresses of one /64 were ten
	// clients with one failure each, and nothing fired.
	keyAddr
)

// fieldKeyKind is the keyKind of an ECS field: address fields (*.ip, as
// decisions read them) by host, user names by account.
func fieldKeyKind(ecs string) keyKind {
	switch {
	case isUserName(ecs):
		return keyUser
	case strings.HasSuffix(ecs, ".ip"):
		return keyAddr
	}
	return keyExact
}

// key is the form of v that k compares.
func (k keyKind) key(v string) string {
	switch k {
	case keyUser:
		return username.Key(v)
	case keyAddr:
		// Without a colon it is an IPv4 address, its own host, or no
		// address: as it is, without parsing it for every event.
		if strings.IndexByte(v, ':') < 0 {
			return v
		}
		if n, ok := ipnet.HostNet(v); ok {
			return n
		}
	}
	return v
}

func (c *corrRule) groupFields(pos int, vals []string) []Field {
	out := make([]Field, 0, len(vals))
	for k, v := range vals {
		out = append(out, Field{Name: c.c.GroupBy[k], ECS: c.groupECS[pos][k], Value: strings.Clone(v)})
	}
	return out
}

// feed counts one match of input pos at time t; ev is its evidence (the
// matching record, or the evidence of a correlation that fired).
func (c *corrRule) feed(e *Engine, pos int, t int64, ev []uint64, emit func(*Alert)) {
	h, ok := c.key(e, pos)
	if !ok {
		return
	}
	idx := ev[len(ev)-1]
	if c.closeAt {
		c.feedWindow(e, pos, h, t, ev)
		return
	}
	switch c.c.Type {
	case EventCount:
		st, ok := c.counts.get(h)
		if !ok {
			first, ok := c.counts1.get(h)
			if !ok {
				if c.c.Condition.Holds(1) {
					c.fire(e, pos, t, 1, t, t, []uint64{idx}, emit)
				} else {
					c.counts1.put(h, ent{t, idx})
				}
				return
			}
			c.counts1.del(h)
			st = &countState{ents: make([]ent, 1, 2)}
			st.ents[0] = first
			c.counts.put(h, st)
		}
		i := len(st.ents)
		for i > 0 && st.ents[i-1].t > t {
			i--
		}
		st.ents = slices.Insert(st.ents, i, ent{t, idx})
		cut := st.ents[len(st.ents)-1].t - c.span
		j := 0
		for j < len(st.ents) && st.ents[j].t < cut {
			j++
		}
		if over := len(st.ents) - j - c.cap; over > 0 {
			j += over
		}
		if j > 0 {
			st.ents = append(st.ents[:0], st.ents[j:]...)
		}
		if n := len(st.ents); c.c.Condition.Holds(float64(n)) {
			evid := make([]uint64, n)
			for k, en := range st.ents {
				evid[k] = en.i
			}
			first, last := st.ents[0].t, st.ents[n-1].t
			c.counts.del(h)
			c.fire(e, pos, t, n, first, last, evid, emit)
		}
	case ValueCount:
		v, ok := e.ctx.first(c.values[pos])
		if !ok || v == "" {
			return
		}
		v = c.valueKind[pos].key(v) // distinct accounts and hosts, not spellings
		e.hash.Reset()
		e.hash.WriteString(v)
		vh := e.hash.Sum64()
		st, ok := c.vals.get(h)
		if !ok {
			first, ok := c.vals1.get(h)
			switch {
			case !ok && c.c.Condition.Holds(1):
				c.fire(e, pos, t, 1, t, t, []uint64{idx}, emit)
				return
			case !ok:
				c.vals1.put(h, vent{vh, t, idx})
				return
			case first.h == vh || first.t < t-c.span:
				// The same value again, or the old one expired: still one.
				if first.h != vh || t >= first.t {
					c.vals1.put(h, vent{vh, t, idx})
				}
				return
			}
			c.vals1.del(h)
			st = &valueState{vals: make([]vent, 1, 2)}
			st.vals[0] = first
			c.vals.put(h, st)
		}
		found := false
		tmax := t
		for k := range st.vals {
			if st.vals[k].h == vh {
				if t >= st.vals[k].t {
					st.vals[k].t, st.vals[k].i = t, idx
				}
				found = true
			}
			tmax = max(tmax, st.vals[k].t)
		}
		if !found {
			st.vals = append(st.vals, vent{vh, t, idx})
		}
		cut := tmax - c.span
		st.vals = slices.DeleteFunc(st.vals, func(x vent) bool { return x.t < cut })
		if len(st.vals) > c.cap {
			oldest := 0
			for k := range st.vals {
				if st.vals[k].t < st.vals[oldest].t {
					oldest = k
				}
			}
			st.vals = slices.Delete(st.vals, oldest, oldest+1)
		}
		if n := len(st.vals); n > 0 && c.c.Condition.Holds(float64(n)) {
			slices.SortFunc(st.vals, func(a, b vent) int { return cmpInt(a.t, b.t) })
			evid := make([]uint64, n)
			for k, x := range st.vals {
				evid[k] = x.i
			}
			first, last := st.vals[0].t, st.vals[n-1].t
			c.vals.del(h)
			c.fire(e, pos, t, n, first, last, evid, emit)
		}
	case Temporal, TemporalOrdered:
		st, _ := c.seqs.get(h)
		if st == nil {
			k := len(c.c.Rules)
			st = &seqState{at: make([]int64, k), ev: make([][]uint64, k), idx: make([]uint64, k)}
			for i := range st.at {
				st.at[i] = math.MinInt64
			}
			if c.c.Type == TemporalOrdered {
				st.start = make([]int64, k)
				st.pat, st.pstart = make([]int64, k), make([]int64, k)
				for i := range st.pat {
					st.pat[i] = math.MinInt64
				}
			}
			c.seqs.put(h, st)
		}
		if c.c.Type == Temporal {
			if t >= st.at[pos] {
				st.at[pos], st.ev[pos], st.idx[pos] = t, slices.Clone(ev), idx
			}
			n, first := 0, t
			for k, at := range st.at {
				if at != math.MinInt64 && at >= t-c.span {
					n++
					first = min(first, st.at[k])
				}
			}
			if c.c.Condition.Holds(float64(n)) {
				var evid []uint64
				for k, at := range st.at {
					if at != math.MinInt64 && at >= t-c.span {
						evid = append(evid, st.ev[k]...)
					}
				}
				c.seqs.del(h)
				c.fire(e, pos, t, n, first, t, evid, emit)
			}
			return
		}
		last := len(st.at) - 1
		// One event may match several steps: each step reads the step
		// before it as it was before this event.
		prevAt, prevStart := st.at, st.start
		if pos > 0 && st.idx[pos-1] == idx {
			prevAt, prevStart = st.pat, st.pstart
		}
		set := func(at, start int64) {
			if st.idx[pos] != idx {
				st.pat[pos], st.pstart[pos] = st.at[pos], st.start[pos]
			}
			st.at[pos], st.start[pos], st.ev[pos], st.idx[pos] = at, start, slices.Clone(ev), idx
		}
		switch {
		case pos == 0:
			set(t, t)
		case prevAt[pos-1] != math.MinInt64 && t >= prevAt[pos-1] && t-prevStart[pos-1] <= c.span:
			set(t, prevStart[pos-1])
		default:
			return
		}
		if pos == last {
			var evid []uint64
			for _, x := range st.ev {
				evid = append(evid, x...)
			}
			first := st.start[last]
			c.seqs.del(h)
			c.fire(e, pos, t, len(st.at), first, t, evid, emit)
		}
	case RateOfRise:
		if !e.warm { // baselines are restored, not replayed
			c.feedRate(e, pos, h, t, idx, emit)
		}
	}
}

// rateSaved is a rate_of_rise group as the cursor file keeps it.
type rateSaved struct {
	Rule   string          `json:"rule"`
	Key    []string        `json:"key"`
	Head   int64           `json:"head"`
	Sub    [rorSubs]uint32 `json:"sub"`
	Base   float64         `json:"base"`
	Firing bool            `json:"firing,omitempty"`
}

func (e *Engine) rateSnapshot() []rateSaved {
	var out []rateSaved
	for _, c := range e.corrs {
		if c.rors == nil {
			continue
		}
		for _, m := range []map[uint64]*rorState{c.rors.prev, c.rors.cur} {
			for _, st := range m {
				out = append(out, rateSaved{Rule: c.rule.Ref(), Key: st.key, Head: st.head, Sub: st.sub, Base: st.base, Firing: st.firing})
			}
		}
	}
	slices.SortFunc(out, func(a, b rateSaved) int {
		if a.Rule != b.Rule {
			return strings.Compare(a.Rule, b.Rule)
		}
		return slices.Compare(a.Key, b.Key)
	})
	return out
}

func (e *Engine) restoreRates(saved []rateSaved) {
	for _, s := range saved {
		for _, c := range e.corrs {
			if c.rors == nil || c.rule.Ref() != s.Rule || len(s.Key) != len(c.c.GroupBy) {
				continue
			}
			// Hashed as key hashes the values the alert shows (a
			// user name's spelling gives its account's group, an
			// address its host's).
			e.hash.Reset()
			for k, v := range s.Key {
				e.hash.WriteString(c.groupKind[0][k].key(v))
				e.hash.WriteByte(0)
			}
			c.rors.put(e.hash.Sum64(), &rorState{key: s.Key, head: s.Head, sub: s.Sub, base: s.Base, firing: s.Firing})
		}
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (c *corrRule) feedWindow(e *Engine, pos int, h uint64, t int64, ev []uint64) {
	st, _ := c.windows.get(h)
	if st == nil {
		st = &windowState{start: t, last: t}
		for _, v := range e.keyVals {
			st.keyVals = append(st.keyVals, strings.Clone(v))
		}
		c.windows.put(h, st)
		c.seq++
		heap.Push(&c.pending, closing{at: t + c.span, start: t, h: h, seq: c.seq})
	}
	st.last = max(st.last, t)
	if st.n < c.cap {
		st.n++
	}
	switch c.c.Type {
	case ValueCount:
		if v, ok := e.ctx.first(c.values[pos]); ok && v != "" && len(st.vals) < c.cap {
			v = c.valueKind[pos].key(v)
			e.hash.Reset()
			e.hash.WriteString(v)
			vh := e.hash.Sum64()
			if !slices.Contains(st.vals, vh) {
				st.vals = append(st.vals, vh)
			}
		}
	case Temporal:
		if pos < 64 {
			st.seen |= 1 << pos
		}
	}
	if len(st.ev) < e.opts.MaxEvidence {
		st.ev = append(st.ev, ev[len(ev)-1])
	}
}

func (c *corrRule) feedRate(e *Engine, pos int, h uint64, t int64, idx uint64, emit func(*Alert)) {
	w := c.span / rorSubs
	if w <= 0 {
		w = 1
	}
	b := t / w
	if t < 0 && t%w != 0 {
		b--
	}
	st, _ := c.rors.get(h)
	if st == nil {
		st = &rorState{head: b}
		for _, v := range e.keyVals {
			st.key = append(st.key, strings.Clone(v))
		}
		c.rors.put(h, st)
	}
	cond := c.c.Condition
	thr := func() float64 { return max(*cond.GTE, cond.Factor*st.base) }
	if b > st.head {
		steps := b - st.head
		for k := int64(0); k < steps && k < rorSubs; k++ {
			// Close the newest sub-bucket: the rate over the last
			// timespan is a sample of the baseline.
			sum := 0.0
			for _, n := range st.sub {
				sum += float64(n)
			}
			st.base += c.alpha * (sum - st.base)
			if sum < thr() {
				st.firing = false
			}
			st.head++
			st.sub[st.head%rorSubs] = 0
		}
		if steps > rorSubs {
			// The window emptied; the rest of the gap decays the baseline.
			st.base *= math.Pow(1-c.alpha, float64(steps-rorSubs))
			st.head = b
			st.firing = false
		}
	}
	if b <= st.head-rorSubs {
		return // too late to count
	}
	st.sub[((b%rorSubs)+rorSubs)%rorSubs]++
	if len(st.ev) >= e.opts.MaxEvidence {
		st.ev = append(st.ev[:0], st.ev[1:]...)
	}
	st.ev = append(st.ev, idx)
	cur := 0.0
	for _, n := range st.sub {
		cur += float64(n)
	}
	if cur >= thr() && !st.firing {
		st.firing = true
		c.fireRate(e, pos, t, int(cur), st, emit)
	}
}

func (c *corrRule) fireRate(e *Engine, pos int, t int64, n int, st *rorState, emit func(*Alert)) {
	if !c.alert {
		return
	}
	a := e.newAlert(c.rule, t, n)
	a.First, a.Last = ns(t-c.span), ns(t)
	a.Rate, a.Baseline = float64(n), st.base
	a.Group = c.groupFields(pos, e.keyVals)
	a.Evidence = slices.Clone(st.ev)
	e.emitAlert(a, emit)
	// rate_of_rise does not feed other correlations: its firing is not an
	// event count.
}

// fire raises the correlation's alert and feeds the correlations that
// correlate it.
func (c *corrRule) fire(e *Engine, pos int, t int64, n int, first, last int64, evid []uint64, emit func(*Alert)) {
	if len(evid) > e.opts.MaxEvidence {
		evid = evid[len(evid)-e.opts.MaxEvidence:]
	}
	if c.alert {
		a := e.newAlert(c.rule, t, n)
		a.First, a.Last = ns(first), ns(last)
		a.Group = c.groupFields(pos, e.keyVals)
		a.Evidence = evid
		e.emitAlert(a, emit)
	}
	for _, p := range c.parents {
		p.c.feed(e, p.pos, t, evid, emit)
	}
}

func ns(t int64) time.Time { return time.Unix(0, t).UTC() }
