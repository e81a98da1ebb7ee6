package decision

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/trailguard/trailguard/detect"
)

// benchNow is the benchmarks' clock: fixed, so that nothing seeded ends
// while they run.
var benchNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// seedStore returns a store without a ledger holding n decisions in
// force, mixed as a spray of attackers leaves them: rules' IPv4 bans,
// rules' bans of IPv6 /64s spread four to a /48 over many /48s (under
// WidenAt, so none is widened), rules' IPv4 /24 ranges, operators' user
// bans. Their ends are spread over the next hour or two.
func seedStore(tb testing.TB, n int) *Store {
	tb.Helper()
	s, err := Open(Options{Now: func() time.Time { return benchNow }, MaxActive: 10_000_000}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range n {
		d := Decision{ID: int64(i + 1), Origin: "trailguard", Type: "ban", Scenario: "r-1", Created: benchNow,
			Until: benchNow.Add(time.Hour + time.Duration(i%3600)*time.Second), AlertID: fmt.Sprint("seed", i), Offence: 1}
		switch i % 10 {
		case 0, 1, 2, 3:
			d.Scope, d.Value = ScopeIP, fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		case 4, 5, 6, 7:
			// /48 number i/16 (four /64s of each /48), over as many /32s
			// as it takes.
			k := i / 10 * 4 / 16
			d.Scope, d.Value = ScopeRange, fmt.Sprintf("2001:%x:%x:%x::/64", 0xdb8+k>>16, k&0xffff, i%10)
		case 8:
			d.Scope, d.Value = ScopeRange, fmt.Sprintf("100.%d.%d.0/24", i>>16&63, i>>8&255)
		default:
			d.Scope, d.Value, d.Scenario, d.By = ScopeUser, fmt.Sprint("user", i), "manual", "admin"
		}
		d.UUID = decisionUUID(d)
		s.apply(Event{Action: ActionCreated, Decision: d}, uint64(i))
	}
	if got := s.st.active.len(); got != n {
		tb.Fatalf("seeded %d, want %d", got, n)
	}
	return s
}

// BenchmarkDecide is a rule's decision on a new value with 0, 20,000 and
// 100,000 decisions in force, without a ledger (Append nil): what the
// store itself costs under the lock every decision and every decision
// stream poll takes. The values alternate: an IPv4 address, an IPv6
// address (its /64 banned, among others in its /48), a user name.
func BenchmarkDecide(b *testing.B) {
	ipRule := rule("client.ip", time.Hour)
	userRule := rule("user.name", time.Hour)
	ctx := context.Background()
	inForceSizes(b, func(b *testing.B, s *Store, _ int) {
		i := 0
		for b.Loop() {
			var a *detect.Alert
			switch i % 3 {
			case 0:
				a = alert(fmt.Sprint("b", i), ipRule, fmt.Sprintf("172.%d.%d.%d", 16+i>>16&15, i>>8&255, i&255))
			case 1:
				// A fresh /48 each time: the benchmark measures the
				// look-ups, not a widening now and then.
				a = alert(fmt.Sprint("b", i), ipRule, fmt.Sprintf("2a00:%x:%x:1::5", i>>16&0xffff, i&0xffff))
			default:
				a = &detect.Alert{ID: fmt.Sprint("b", i), Rule: userRule, Time: benchNow,
					Group: []detect.Field{{Name: "user.name", ECS: "user.name", Value: fmt.Sprint("victim", i)}}}
			}
			if d, err := s.Decide(ctx, a); err != nil || d == nil {
				b.Fatalf("decision %d: %+v %v", i, d, err)
			}
			i++
		}
	})
}

// BenchmarkExpireTick is one expiry tick (Run's, and the one at the start
// of every Decide, Stream and Covering) with 0, 20,000 and 100,000
// decisions in force of which none is due.
func BenchmarkExpireTick(b *testing.B) {
	inForceSizes(b, func(b *testing.B, s *Store, n int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for b.Loop() {
			s.expire(benchNow)
		}
		if s.st.active.len() != n {
			b.Fatalf("%d in force after the ticks, want %d", s.st.active.len(), n)
		}
	})
}

// inForceSizes runs bench on stores of 0, 20,000 and 100,000 decisions in
// force (seedStore), one sub-benchmark each.
func inForceSizes(b *testing.B, bench func(b *testing.B, s *Store, n int)) {
	for _, n := range []int{0, 20_000, 100_000} {
		b.Run(fmt.Sprintf("inForce=%d", n), func(b *testing.B) {
			s := seedStore(b, n)
			b.ReportAllocs()
			bench(b, s, n)
		})
	}
}

// BenchmarkCovering is one look-up of the decisions covering a value
// (Covering: GET /v1/decisions?ip=) with 0, 20,000 and 100,000 decisions
// in force: an address banned by a range, one banned by its own ban, one
// banned nowhere, a user name.
func BenchmarkCovering(b *testing.B) {
	values := []string{"100.1.2.9", "10.0.1.4", "198.51.100.1", "user9"}
	inForceSizes(b, func(b *testing.B, s *Store, _ int) {
		i := 0
		for b.Loop() {
			s.Covering(values[i%len(values)])
			i++
		}
	})
}

// BenchmarkDecideAtMaxActive is a rule's decision on a new address with
// the store at MaxActive (100,000), as an address spray keeps it: the
// decisions in force are rules' IPv4 bans two to a /24, and every new
// address is in a /24 of its own, so each decision first widens one pair
// to its /24 (compact) to make room.
func BenchmarkDecideAtMaxActive(b *testing.B) {
	const n = 100_000
	s, err := Open(Options{Now: func() time.Time { return benchNow }, MaxActive: n}, nil)
	if err != nil {
		b.Fatal(err)
	}
	s.mu.Lock()
	for i := range n {
		q := i / 2
		d := Decision{ID: int64(i + 1), Origin: "trailguard", Type: "ban", Scenario: "r-1", Created: benchNow,
			Until: benchNow.Add(time.Hour + time.Duration(i%3600)*time.Second), AlertID: fmt.Sprint("seed", i), Offence: 1,
			Scope: ScopeIP, Value: fmt.Sprintf("10.%d.%d.%d", q>>8&255, q&255, 1+i%2)}
		d.UUID = decisionUUID(d)
		s.apply(Event{Action: ActionCreated, Decision: d}, uint64(i))
	}
	s.mu.Unlock()
	r := rule("client.ip", time.Hour)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i >= 1<<16 {
			b.Fatal("more decisions than fresh /24s")
		}
		a := alert(fmt.Sprint("b", i), r, fmt.Sprintf("11.%d.%d.9", i>>8&255, i&255))
		if d, err := s.Decide(ctx, a); err != nil || d == nil {
			b.Fatalf("decision %d: %+v %v", i, d, err)
		}
		i++
	}
	if st := s.Stats(); st.Widened < uint64(i) || st.Active != n {
		b.Fatalf("%d widened for %d decisions, %d in force", st.Widened, i, st.Active)
	}
}

// BenchmarkStreamStartup is a bouncer's first poll (startup=true: every
// decision in force) with 100,000 in force; TestStreamHoldsTheLockBriefly
// measures the part of it under the store's lock.
func BenchmarkStreamStartup(b *testing.B) {
	s := seedStore(b, 100_000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		added, _ := s.Stream(fmt.Sprint("bouncer", i), true, nil)
		if len(added) != 100_000 {
			b.Fatalf("%d decisions at startup, want 100000", len(added))
		}
		i++
	}
}
