package decision

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/detect"
)

// checkInForce recomputes every index of f from its decisions (byID) and
// reports the first difference, and checks the look-ups plan and expire
// use against a pass over all of them.
func checkInForce(f *inForce, now time.Time) error {
	type set = map[*inForceEntry]bool
	byKey := map[inForceKey]set{}
	byNet := map[netip.Prefix]set{}
	var lens [2][129]int
	in := [2]map[netip.Prefix]map[int64]bool{{}, {}}
	mid32 := map[netip.Prefix]int{}
	others := map[string]int{}
	add := func(m map[netip.Prefix]map[int64]bool, p netip.Prefix, id int64) {
		if m[p] == nil {
			m[p] = map[int64]bool{}
		}
		m[p][id] = true
	}
	for id, e := range f.byID {
		d := e.d
		if d.ID != id {
			return fmt.Errorf("byID[%d] holds decision %d", id, d.ID)
		}
		k := inForceKey{d.Scope, d.Value}
		if byKey[k] == nil {
			byKey[k] = set{}
		}
		byKey[k][e] = true
		if d.Scope != ScopeIP && d.Scope != ScopeRange {
			others[d.Scope]++
		}
		n, ok := netOf(d.Scope, d.Value)
		if !ok {
			n = netip.Prefix{}
		}
		if e.net != n {
			return fmt.Errorf("decision %d (%s %s): net %v, want %v", id, d.Scope, d.Value, e.net, n)
		}
		if !ok {
			continue
		}
		if byNet[n] == nil {
			byNet[n] = set{}
		}
		byNet[n][e] = true
		lens[family(n.Addr())][n.Bits()]++
		if isRules(d) {
			levels := [2]int{24, 16}
			if n.Addr().Is6() {
				levels = [2]int{48, 32}
			}
			for k, bits := range levels {
				if n.Bits() > bits {
					add(in[k], netip.PrefixFrom(n.Addr(), bits).Masked(), id)
				}
			}
			if n.Addr().Is6() && n.Bits() > 32 && n.Bits() <= 48 {
				mid32[netip.PrefixFrom(n.Addr(), 32).Masked()]++
			}
		}
	}
	asSets := func(m map[inForceKey][]*inForceEntry) map[inForceKey]set {
		out := map[inForceKey]set{}
		for k, s := range m {
			out[k] = set{}
			for _, e := range s {
				out[k][e] = true
			}
		}
		return out
	}
	if got := asSets(f.byKey); !maps.EqualFunc(got, byKey, maps.Equal) {
		return fmt.Errorf("byKey has %d keys, want %d (%v)", len(got), len(byKey), got)
	}
	gotNet := map[netip.Prefix]set{}
	for p, s := range f.byNet {
		gotNet[p] = set{}
		for _, e := range s {
			gotNet[p][e] = true
		}
	}
	if !maps.EqualFunc(gotNet, byNet, maps.Equal) {
		return fmt.Errorf("byNet: %d networks, want %d", len(gotNet), len(byNet))
	}
	if f.netLens != lens {
		return errors.New("netLens differ from the decisions' networks")
	}
	ids := func(m map[netip.Prefix]map[int64]*inForceEntry) map[netip.Prefix]map[int64]bool {
		out := map[netip.Prefix]map[int64]bool{}
		for p, g := range m {
			out[p] = map[int64]bool{}
			for id, e := range g {
				out[p][id] = f.byID[id] == e
			}
		}
		return out
	}
	for k := range in {
		if got := ids(f.in[k]); !maps.EqualFunc(got, in[k], maps.Equal) {
			return fmt.Errorf("in[%d] %v, want %v", k, got, in[k])
		}
		// The ranking, against counting the groups as compact did: every
		// group of two or more not touching the allowlist, in place, and
		// the first the largest, the lowest of as many.
		want := map[netip.Prefix]int{}
		var best netip.Prefix
		for p, g := range in[k] {
			if len(g) < 2 || slices.ContainsFunc(f.allow, p.Overlaps) {
				continue
			}
			want[p] = len(g)
			if !best.IsValid() || len(g) > want[best] || len(g) == want[best] && p.Addr().Less(best.Addr()) {
				best = p
			}
		}
		got := map[netip.Prefix]int{}
		for i, g := range f.largest[k].s {
			if g.at != i || f.ranked[k][g.p] != g {
				return fmt.Errorf("level %d: group %v at %d, ranked %v", k, g.p, g.at, f.ranked[k][g.p] == g)
			}
			got[g.p] = g.n
		}
		if !maps.Equal(got, want) || len(f.ranked[k]) != len(want) {
			return fmt.Errorf("level %d ranks %v, want %v", k, got, want)
		}
		p, members, ok := f.largestGroup(k)
		if ok != best.IsValid() || p != best {
			return fmt.Errorf("level %d: largest group %v (%v), want %v", k, p, ok, best)
		}
		if ok && (len(members) != want[best] || !slices.IsSortedFunc(members, func(a, b *Decision) int { return int(a.ID - b.ID) })) {
			return fmt.Errorf("level %d: %d members of %v, want %d oldest first", k, len(members), p, want[best])
		}
	}
	if !maps.Equal(f.mid32, mid32) {
		return fmt.Errorf("mid32 %v, want %v", f.mid32, mid32)
	}
	if !maps.Equal(f.otherScopes, others) {
		return fmt.Errorf("otherScopes %v, want %v", f.otherScopes, others)
	}
	if f.dueHeap.Len() != len(f.byID) {
		return fmt.Errorf("%d in the due heap, %d in force", f.dueHeap.Len(), len(f.byID))
	}
	for i, e := range f.dueHeap.s {
		if e.at != i || f.byID[e.d.ID] != e {
			return fmt.Errorf("due heap entry %d (decision %d) at %d, in force %v", i, e.d.ID, e.at, f.byID[e.d.ID] == e)
		}
		if i > 0 && e.d.Until.Before(f.dueHeap.s[(i-1)/2].d.Until) {
			return fmt.Errorf("due heap out of order at %d", i)
		}
	}
	// The look-ups, against passes over all.
	probes := []string{"192.0.1.5", "192.0.0.0", "2001:db8:1:2::3", "2001:db9:2:1::1", "::ffff:192.0.1.3", "fe80::1%eth0", "u3", " 192.0.2.1", "not an address"}
	for _, e := range f.byID {
		probes = append(probes, e.d.Value)
		if e.net.IsValid() {
			probes = append(probes, e.net.Addr().String())
		}
	}
	for _, v := range probes {
		a, aerr := netip.ParseAddr(strings.TrimSpace(v))
		var want []int64
		for _, e := range f.byID {
			d := e.d
			switch d.Scope {
			case ScopeIP:
				if aerr == nil && d.Value == a.Unmap().String() {
					want = append(want, d.ID)
				}
			case ScopeRange:
				if p, err := netip.ParsePrefix(d.Value); err == nil && aerr == nil && p.Contains(a.Unmap()) {
					want = append(want, d.ID)
				}
			default:
				if d.Value == v {
					want = append(want, d.ID)
				}
			}
		}
		if aerr == nil {
			a = a.Unmap()
		}
		var got []int64
		for d := range f.covering(a, v) {
			got = append(got, d.ID)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("covering(%q) = %v, want %v", v, got, want)
		}
	}
	for _, e := range f.byID {
		if !now.Before(e.d.Until) {
			return fmt.Errorf("decision %d ended at %v, still in force at %v", e.d.ID, e.d.Until, now)
		}
		n := e.net
		if !n.IsValid() {
			continue
		}
		var want *Decision
		for _, o := range f.byID {
			if o.net.IsValid() && isRules(o.d) && o.net.Bits() < n.Bits() && o.net.Contains(n.Addr()) && (want == nil || o.d.Until.After(want.Until)) {
				want = o.d
			}
		}
		if got := f.holding(n); (got == nil) != (want == nil) || got != nil && !got.Until.Equal(want.Until) {
			return fmt.Errorf("holding(%v) = %+v, want %+v", n, got, want)
		}
		for _, lv := range [...]struct{ bits, under int }{{48, 128}, {32, 48}} {
			if !n.Addr().Is6() || n.Bits() < lv.bits {
				continue
			}
			parent := netip.PrefixFrom(n.Addr(), lv.bits).Masked()
			count, under := 0, map[int64]bool{}
			for _, o := range f.byID {
				if o.net.IsValid() && isRules(o.d) && o.net.Bits() > lv.bits && parent.Contains(o.net.Addr()) {
					under[o.d.ID] = true
					if o.net.Bits() <= lv.under {
						count++
					}
				}
			}
			if got := f.rulesIn(parent); got != count {
				return fmt.Errorf("rulesIn(%v) = %d, want %d", parent, got, count)
			}
			got := map[int64]bool{}
			for d := range f.rulesUnder(parent) {
				got[d.ID] = true
			}
			if !maps.Equal(got, under) {
				return fmt.Errorf("rulesUnder(%v) = %v, want %v", parent, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(under)))
			}
		}
	}
	return nil
}

// TestInForceIndexesRandom runs seeded random histories of decisions —
// rules' bans that escalate, widen (a small WidenAt) and make room at a
// small MaxActive, bans by hand, unbans, expiries, re-opens from the state
// file and the ledger, with and without a save, and from the file alone —
// and after each step checks the indexes of the decisions in force
// against a recomputation from them: a change of the decisions in force
// that bypassed inForce's add and remove shows.
func TestInForceIndexesRandom(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			randomHistory(t, seed, 400)
		})
	}
}

func randomHistory(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 36))
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	defer l.Close()
	ctx := context.Background()
	o := Options{Path: filepath.Join(dir, "decisions.json"), Now: c.now, MaxActive: 20, WidenAt: 3, Allowlist: []netip.Prefix{netip.MustParsePrefix("192.0.2.4/30")},
		Default: 10 * time.Minute, Max: 4 * time.Hour, Append: func(ctx context.Context, rec []byte) (uint64, error) { return l.Append(ctx, rec) }}
	open := func(src Source) *Store {
		t.Helper()
		s, err := Open(o, src)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open(l)
	var total Stats
	// Values from a few networks, so that bans repeat, hold each other,
	// widen and fill MaxActive.
	v6 := func() string {
		return fmt.Sprintf("2001:db8:%x:%x::%x", rng.IntN(3), rng.IntN(4), rng.IntN(5))
	}
	v6in32 := func() string { // /48s of another /32, for its widening
		return fmt.Sprintf("2001:db9:%x:%x::1", rng.IntN(6), rng.IntN(3))
	}
	v4 := func() string { return fmt.Sprintf("192.0.%d.%d", rng.IntN(3), rng.IntN(8)) }
	rules := []*detect.Rule{rule("client.ip", 10*time.Minute), rule("client.ip", time.Hour), rule("user.name", 0)}
	alerts := 0
	for step := range steps {
		what := ""
		switch k := rng.IntN(100); {
		case k < 55: // a rule's decision
			r := rules[rng.IntN(len(rules))]
			alerts++
			var a *detect.Alert
			switch {
			case r.Response.Block == "user.name":
				a = &detect.Alert{ID: fmt.Sprint("a", alerts), Rule: r, Time: c.now(),
					Group: []detect.Field{{Name: "user.name", ECS: "user.name", Value: fmt.Sprint("u", rng.IntN(6))}}}
			case rng.IntN(3) == 0:
				a = alert(fmt.Sprint("a", alerts), r, v4())
			case rng.IntN(3) == 0:
				a = alert(fmt.Sprint("a", alerts), r, v6in32())
			default:
				a = alert(fmt.Sprint("a", alerts), r, v6())
			}
			what = fmt.Sprintf("decide %v", a.Group)
			if _, err := s.Decide(ctx, a); err != nil && !strings.Contains(err.Error(), "max_active") {
				t.Fatal(err)
			}
		case k < 65: // by hand
			scope, value := ScopeRange, []string{"2001:db8::/32", "2001:db8:1::/48", "192.0.0.0/16", "192.0.1.0/24", "2001:db9:2::/47"}[rng.IntN(5)]
			switch rng.IntN(3) {
			case 0:
				scope, value = ScopeIP, v4()
			case 1:
				scope, value = ScopeUser, fmt.Sprint("u", rng.IntN(6))
			}
			what = "manual " + scope + " " + value
			if _, err := s.Manual(ctx, scope, value, time.Duration(rng.IntN(3))*20*time.Minute, "test", "admin"); err != nil && !strings.Contains(err.Error(), "max_active") {
				t.Fatal(err)
			}
		case k < 75: // an unban
			if act := s.Active(); len(act) > 0 {
				d := act[rng.IntN(len(act))]
				what = fmt.Sprint("delete ", d.ID)
				if _, err := s.Delete(ctx, d.ID, "admin", "test"); err != nil {
					t.Fatal(err)
				}
			}
		case k < 90: // time passes: expiries, by Run's tick or a poll
			c.add(time.Duration(rng.IntN(20)) * time.Minute)
			what = "time to " + c.now().Format(time.TimeOnly)
			if rng.IntN(2) == 0 {
				s.mu.Lock()
				s.expire(c.now())
				s.mu.Unlock()
			} else {
				s.Stream("b", false, nil)
			}
		default: // a restart
			total.add(s.Stats())
			switch rng.IntN(4) {
			case 0: // saved, then caught up from the ledger
				if err := s.Flush(); err != nil {
					t.Fatal(err)
				}
				what = "reopen after a save"
				s = open(l)
			case 1: // killed: the file is older than the ledger
				what = "reopen without a save"
				s = open(l)
			case 2: // the file lost: rebuilt from the ledger
				if err := os.Remove(o.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
				what = "reopen without the file"
				s = open(l)
			default: // the file alone
				if err := s.Flush(); err != nil {
					t.Fatal(err)
				}
				what = "reopen from the file alone"
				s = open(nil)
			}
		}
		s.mu.Lock()
		err := checkInForce(&s.st.active, c.now())
		n := s.st.active.len()
		s.mu.Unlock()
		if err != nil {
			t.Fatalf("step %d (%s), %d in force: %v", step, what, n, err)
		}
	}
	total.add(s.Stats())
	t.Logf("%d in force; %d created, %d widened, %d expired, %d refused", s.Stats().Active, total.Created, total.Widened, total.Expired, total.Refused)
	// The bans compact made at MaxActive, as the ledger has them.
	compacted := 0
	for e, err := range l.Entries(0) {
		if err != nil {
			t.Fatal(err)
		}
		if ev, ok := parseEvent(e.Data); ok && ev.Action == ActionCreated && strings.HasSuffix(ev.Decision.Reason, "(max_active)") {
			compacted++
		}
	}
	t.Logf("%d widened at max_active", compacted)
	if total.Widened == 0 || compacted == 0 || total.Expired == 0 || total.Created < 100 {
		t.Errorf("the history did not exercise widening, widening at max_active and expiry: %+v, %d at max_active", total, compacted)
	}
	// No one edits the state file here: a rejected decision is the store's
	// own error (see TestRestartKeepsEndedBansEnded).
	if total.Rejected != 0 {
		t.Errorf("%d decisions of the state file rejected", total.Rejected)
	}
}

// TestInForceFieldsPrivate: only inforce.go touches inForce's fields, so
// every change of the decisions in force goes through add and remove and
// keeps the indexes in step.
func TestInForceFieldsPrivate(t *testing.T) {
	fields := map[string]bool{}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "inforce.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, decl := range f.Decls {
		if g, ok := decl.(*ast.GenDecl); ok {
			for _, sp := range g.Specs {
				if ts, ok := sp.(*ast.TypeSpec); ok && (ts.Name.Name == "inForce") {
					for _, fl := range ts.Type.(*ast.StructType).Fields.List {
						for _, n := range fl.Names {
							fields[n.Name] = true
						}
					}
				}
			}
		}
	}
	if !fields["byID"] || !fields["dueHeap"] {
		t.Fatalf("inForce's fields not found: %v", fields)
	}
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if name == "inforce.go" || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && fields[sel.Sel.Name] {
				t.Errorf("%s: .%s: inForce's fields are inforce.go's alone (use add, remove and the look-ups)", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
}

func (s *Stats) add(o Stats) {
	s.Created += o.Created
	s.Widened += o.Widened
	s.Expired += o.Expired
	s.Refused += o.Refused
	s.Rejected += o.Rejected
}
