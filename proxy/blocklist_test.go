package proxy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/costtest"
)

// modelEntry is a decision in the test's model of the blocklist.
type modelEntry struct {
	source      string
	until       time.Time
	provisional bool
}

// blockModel is the blocklist's rules written the plain way: every entry
// held by value, expired ones dropped at each update by a look at all.
type blockModel struct {
	single map[string]modelEntry   // an address or user name: one entry
	ranges map[string][]modelEntry // a range: one entry per source
}

func (m *blockModel) apply(source string, u Update, now time.Time) {
	if u.Full {
		for k, e := range m.single {
			if e.source == source {
				delete(m.single, k)
			}
		}
		for k, es := range m.ranges {
			m.ranges[k] = without(es, func(e modelEntry) bool { return e.source == source })
		}
	}
	for _, d := range u.Deleted {
		k := modelKey(d)
		if e, ok := m.single[k]; ok && e.source == source {
			delete(m.single, k)
		}
		if es := m.ranges[k]; len(es) > 0 {
			for i, e := range es {
				if e.source == source {
					m.ranges[k] = append(es[:i:i], es[i+1:]...)
					break
				}
			}
		}
	}
	for _, d := range u.New {
		dur, _ := time.ParseDuration(d.Duration)
		e := modelEntry{source: source, until: now.Add(dur), provisional: source == laneSource}
		k := modelKey(d)
		if d.Scope == "Range" {
			m.ranges[k] = append(without(m.ranges[k], func(o modelEntry) bool {
				return o.source == source || o.provisional && !e.provisional
			}), e)
			continue
		}
		if old, ok := m.single[k]; !ok || old.until.Before(e.until) || old.provisional && !e.provisional {
			m.single[k] = e
		}
	}
	for k, e := range m.single {
		if !now.Before(e.until) {
			delete(m.single, k)
		}
	}
	for k, es := range m.ranges {
		m.ranges[k] = without(es, func(e modelEntry) bool { return !now.Before(e.until) })
	}
}

func (m *blockModel) len() int {
	n := len(m.single)
	for _, es := range m.ranges {
		n += len(es)
	}
	return n
}

// blocked reports whether an entry in force covers address a.
func (m *blockModel) blocked(a netip.Addr, now time.Time) bool {
	if e, ok := m.single[a.String()]; ok && now.Before(e.until) {
		return true
	}
	for k, es := range m.ranges {
		if !netip.MustParsePrefix(k).Contains(a) {
			continue
		}
		for _, e := range es {
			if now.Before(e.until) {
				return true
			}
		}
	}
	return false
}

func without(es []modelEntry, drop func(modelEntry) bool) []modelEntry {
	var kept []modelEntry
	for _, e := range es {
		if !drop(e) {
			kept = append(kept, e)
		}
	}
	return kept
}

func modelKey(d Decision) string {
	if d.Scope == "Username" {
		return "user:" + d.Value
	}
	return d.Value
}

// TestBlocklistModel applies random updates from three sources (one of
// them the request lane's provisional blocks) on a small set of values,
// with time moving on between them, and checks after each that the
// blocklist blocks what the plain model blocks and holds as many
// decisions: decisions that expire, are replaced by longer ones, deleted
// and added again, or dropped by a full refresh must leave nothing behind
// and remove nothing still in force.
func TestBlocklistModel(t *testing.T) {
	t.Parallel()
	values := []Decision{
		{Scope: "Ip", Value: "10.0.0.1"}, {Scope: "Ip", Value: "10.0.0.2"}, {Scope: "Ip", Value: "2001:db8::1"},
		{Scope: "Range", Value: "10.0.0.0/30"}, {Scope: "Range", Value: "10.0.0.0/29"}, {Scope: "Range", Value: "2001:db8::/64"},
		{Scope: "Username", Value: "alice"}, {Scope: "Username", Value: "bob"},
	}
	probes := []netip.Addr{
		netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.5"),
		netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"),
	}
	sources := []string{"detection", "crowdsec", laneSource}
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
		b := NewBlocklist(func() time.Time { return now })
		m := &blockModel{single: map[string]modelEntry{}, ranges: map[string][]modelEntry{}}
		for step := range 2000 {
			now = now.Add(time.Duration(rng.IntN(40)) * time.Second)
			src := sources[rng.IntN(len(sources))]
			var u Update
			switch r := rng.IntN(20); {
			case r == 0:
				u.Full = true
				fallthrough
			case r < 14:
				for range 1 + rng.IntN(3) {
					d := values[rng.IntN(len(values))]
					d.Type, d.Duration = "ban", fmt.Sprintf("%ds", 1+rng.IntN(300))
					u.New = append(u.New, d)
				}
			default:
				u.Deleted = append(u.Deleted, values[rng.IntN(len(values))])
			}
			if _, _, err := b.Apply(src, u); err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			m.apply(src, u, now)
			if got, want := b.Len(), m.len(); got != want {
				t.Fatalf("seed %d step %d (%s %+v): %d decisions held, the model %d", seed, step, src, u, got, want)
			}
			for _, a := range probes {
				if _, _, _, got := b.Blocked(a); got != m.blocked(a, now) {
					t.Fatalf("seed %d step %d (%s %+v): %s blocked=%v, the model %v", seed, step, src, u, a, got, !got)
				}
			}
			for _, name := range []string{"alice", "bob"} {
				_, inForce := m.single["user:"+name]
				if _, _, _, got := b.BlockedUser(name); got != inForce {
					t.Fatalf("seed %d step %d (%s %+v): user %s blocked=%v, the model %v", seed, step, src, u, name, got, inForce)
				}
			}
			checkBlocklistInternals(t, b)
		}
	}
}

// checkBlocklistInternals checks the counts kept beside the maps against
// the maps, and that the expiry heap stays within its bound.
func checkBlocklistInternals(t *testing.T, b *Blocklist) {
	t.Helper()
	b.mu.RLock()
	defer b.mu.RUnlock()
	n := 0
	var bits4 [33]int
	var bits6 [129]int
	for p, es := range b.ranges {
		if len(es) == 0 {
			t.Fatalf("range %s held with no entry", p)
		}
		n += len(es)
		if p.Addr().Is4() {
			bits4[p.Bits()] += len(es)
		} else {
			bits6[p.Bits()] += len(es)
		}
	}
	if n != b.nranges || bits4 != b.nbits4 || bits6 != b.nbits6 {
		t.Fatalf("ranges: %d held, counted %d; per length %v / %v counted %v / %v", n, b.nranges, bits4, bits6, b.nbits4, b.nbits6)
	}
	var lens4, lens6 []int
	for bits := 32; bits >= 0; bits-- {
		if bits4[bits] > 0 {
			lens4 = append(lens4, bits)
		}
	}
	for bits := 128; bits >= 0; bits-- {
		if bits6[bits] > 0 {
			lens6 = append(lens6, bits)
		}
	}
	if fmt.Sprint(lens4, lens6) != fmt.Sprint(b.lens4, b.lens6) {
		t.Fatalf("lengths tried %v %v, want %v %v", b.lens4, b.lens6, lens4, lens6)
	}
	if live := len(b.ips) + b.nranges + len(b.users); len(b.expiry) > 2*live+1024 {
		t.Fatalf("expiry heap %d entries for %d held", len(b.expiry), live)
	}
}

// TestBlocklistReplacedOften: a source that sends the same decisions
// again and again (a poll that re-sends what it holds, each time for a
// longer ban) leaves replaced entries in the expiry heap; it stays within
// twice what is held (plus a constant), so memory follows the decisions
// in force, not the updates.
func TestBlocklistReplacedOften(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	b := NewBlocklist(func() time.Time { return now })
	for i := range 50_000 {
		now = now.Add(time.Millisecond)
		b.Apply("detection", Update{New: []Decision{
			{Type: "ban", Scope: "Ip", Value: "192.0.2.1", Duration: "1h"},
			{Type: "ban", Scope: "Range", Value: "198.51.100.0/24", Duration: fmt.Sprintf("%ds", 3600+i)},
		}})
	}
	checkBlocklistInternals(t, b)
	if b.Len() != 2 {
		t.Fatalf("%d held, want 2", b.Len())
	}
}

// TestBlocklistApplyCostFlat: one new ban costs about the same with
// 100,000 addresses and 100,000 ranges held as with 1,000 of each. Each
// update swept every map for expired decisions, the write lock held:
// 22 ms at 100,000 of each, during which no request could be looked up,
// and the request lane applies one update per provisional block.
func TestBlocklistApplyCostFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 200,000 decisions")
	}
	t.Parallel()
	one := func(bl *Blocklist) time.Duration {
		return costtest.Median(301, func(i int) {
			a := netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)})
			bl.Apply(laneSource, Update{New: []Decision{{Type: "ban", Scope: "Ip", Value: a.String(), Duration: "1m"}}})
		})
	}
	small := one(heldBlocklist(t, 1_000, nil))
	large := one(heldBlocklist(t, 100_000, nil))
	t.Logf("one ban: %v with 1,000 of each held, %v with 100,000", small, large)
	// The sweep made it 100× (linear); a heap's log grows by ~2×. The
	// absolute bound keeps the test from failing on two quick medians.
	if large > 8*small && large > 200*time.Microsecond {
		t.Fatalf("one ban took %v with 100,000 of each held, %v with 1,000: grows with what is held", large, small)
	}
}
