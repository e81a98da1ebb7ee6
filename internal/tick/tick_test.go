package tick

import (
	"errors"
	"testing"
	"time"
)

// modes are the counters this machine can test: the monotonic clock
// always, the time-stamp counter where it is usable.
func modes(t *testing.T) []bool {
	t.Logf("time-stamp counter in use: %v", tsc)
	if tsc {
		return []bool{false, true}
	}
	return []bool{false}
}

// TestDurationsMatchTheClock converts a span of ~20 ms measured in ticks
// at the scale of two readings around it, and checks it against the
// monotonic clock read just outside and just inside the span: a scale
// wrong by more than a few percent (inverted, or ticks taken for
// nanoseconds) fails.
func TestDurationsMatchTheClock(t *testing.T) {
	for _, useTSC := range modes(t) {
		r0 := read(useTSC)
		m0 := time.Now()
		t0 := now(useTSC)
		m1 := time.Now()
		time.Sleep(20 * time.Millisecond)
		m2 := time.Now()
		t1 := now(useTSC)
		m3 := time.Now()
		r1 := read(useTSC)
		d := scaleBetween(r0, r1, useTSC).Duration(t1 - t0)
		// The span lies within [m0, m3] and contains [m1, m2]; the
		// conversion may be off by the readings' pairing, microseconds.
		const slack = 500 * time.Microsecond
		if lo, hi := m2.Sub(m1)-slack, m3.Sub(m0)+slack; d < lo || d > hi {
			t.Errorf("tsc=%v: %d ticks converted to %v, want within [%v, %v]", useTSC, t1-t0, d, lo, hi)
		}
		// The readings' times and ticks convert into each other.
		if got, want := scaleBetween(r0, r1, useTSC).Duration(r1.Ticks-r0.Ticks), r1.Time.Sub(r0.Time); (got - want).Abs() > time.Microsecond {
			t.Errorf("tsc=%v: readings %v apart by the clock, %v by the ticks", useTSC, want, got)
		}
	}
}

// TestReadPairsTheCounter checks that a Reading's ticks lie between
// counter readings taken before and after it.
func TestReadPairsTheCounter(t *testing.T) {
	for _, useTSC := range modes(t) {
		for range 1000 {
			a := now(useTSC)
			r := read(useTSC)
			b := now(useTSC)
			if r.Ticks < a || r.Ticks > b {
				t.Fatalf("tsc=%v: reading's ticks %d outside [%d, %d]", useTSC, r.Ticks, a, b)
			}
		}
	}
}

func TestScaleEdges(t *testing.T) {
	r := Reading{Time: time.Now(), Ticks: 1000}
	if s := scaleBetween(r, r, true); s != 1 {
		t.Errorf("scale over no span = %v, want 1", s)
	}
	later := Reading{Time: r.Time.Add(time.Millisecond), Ticks: 500} // the counter went back
	if s := scaleBetween(r, later, true); s != 1 {
		t.Errorf("scale over a counter that went back = %v, want 1", s)
	}
	if s := scaleBetween(r, Reading{Time: r.Time.Add(time.Microsecond), Ticks: 3600}, true); s < 0.38 || s > 0.39 {
		t.Errorf("1 µs over 2600 ticks: scale %v, want 1/2.6", s)
	}
	if d := Scale(0.5).Duration(-7); d != 0 {
		t.Errorf("negative ticks = %v, want 0", d)
	}
	if d := Scale(0.4).Duration(2600); d != 1040 {
		t.Errorf("2600 ticks at 0.4 ns = %v, want 1040ns", d)
	}
}

// TestUsable checks the conditions under which the time-stamp counter
// replaces the clock: the kernel's own clocksource is the counter, and it
// is invariant (constant_tsc and nonstop_tsc).
func TestUsable(t *testing.T) {
	const flagsBoth = "processor\t: 0\nflags\t\t: fpu tsc constant_tsc rep_good nopl nonstop_tsc cpuid\n\nprocessor\t: 1\nflags\t\t: fpu\n"
	tests := []struct {
		name        string
		clocksource string
		csErr       error
		cpuinfo     string
		want        bool
	}{
		{"tsc and invariant", "tsc\n", nil, flagsBoth, true},
		{"kvm-clock", "kvm-clock\n", nil, flagsBoth, false},
		{"no clocksource file", "", errors.New("no such file"), flagsBoth, false},
		{"not nonstop", "tsc\n", nil, "flags\t\t: fpu tsc constant_tsc\n", false},
		{"not constant", "tsc\n", nil, "flags\t\t: fpu tsc nonstop_tsc\n", false},
		{"flags only of a later processor", "tsc\n", nil, "processor\t: 0\nflags\t\t: fpu\nflags\t\t: constant_tsc nonstop_tsc\n", false},
		{"no flags", "tsc\n", nil, "processor\t: 0\n", false},
		{"prefix of a flag", "tsc\n", nil, "flags\t\t: constant_tsc_x nonstop_tsc\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			readFile := func(string) ([]byte, error) { return []byte(tt.clocksource), tt.csErr }
			head := func(string) ([]byte, error) { return []byte(tt.cpuinfo), nil }
			if got := usable(readFile, head); got != tt.want {
				t.Errorf("usable = %v, want %v", got, tt.want)
			}
		})
	}
}

func BenchmarkNow(b *testing.B) {
	var sum int64
	for range b.N {
		sum += Now()
	}
	if sum == 0 {
		b.Fatal("no ticks")
	}
}

func BenchmarkClock(b *testing.B) {
	var sum time.Duration
	for range b.N {
		sum += time.Since(base)
	}
	if sum == 0 {
		b.Fatal("no time")
	}
}
