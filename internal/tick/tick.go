// Package tick measures elapsed time cheaply: with the processor's
// time-stamp counter where the kernel keeps its own time with it (Linux on
// amd64, an invariant TSC, the "tsc" clocksource), with the monotonic
// clock elsewhere.
//
// A reading of the counter costs ~10 ns; a reading of the monotonic clock
// costs 40-100 ns in a virtual machine (the vDSO's paravirtual clock, on
// this project's test machine), and the middleware takes two per request,
// on the request's own path. Tick counts become durations and times later,
// off that path: against a Reading of the real clock and the counter
// taken together (Read), at the Scale measured between two such readings
// (ScaleBetween).
//
// A duration converted at the scale measured over a span of time that
// contains it is off by at most the uncertainty of the two readings'
// pairings (Read keeps it to a few microseconds at worst, tens of
// nanoseconds as a rule), however long the span: the error of the scale
// shrinks as the span grows. Callers must therefore convert only spans
// that lie between their two readings.
package tick

import "time"

// base is the origin of the monotonic-clock ticks (when the counter is
// not used).
var base = time.Now()

// Now returns the counter: time-stamp counter ticks, or nanoseconds of
// the monotonic clock since the process started. Only differences of its
// values, converted by a Scale, mean anything.
func Now() int64 { return now(tsc) }

func now(useTSC bool) int64 {
	if useTSC {
		return rdtsc()
	}
	return int64(time.Since(base))
}

// Reading is a reading of the real clock (with its monotonic reading) and
// of the counter, taken together.
type Reading struct {
	Time  time.Time
	Ticks int64
}

// maxPairTicks bounds the ticks between the two counter readings that
// bracket Read's clock reading: more, and the goroutine was interrupted
// in between (its thread descheduled, a signal), and the pairing of the
// clock with the counter is too loose. 1<<14 ticks is ~6 µs at 2.6 GHz.
const maxPairTicks = 1 << 14

// Read reads the real clock and the counter together: the counter's value
// is the middle of two readings around the clock's, taken again (up to
// four times) when they lie far apart.
func Read() Reading { return read(tsc) }

func read(useTSC bool) Reading {
	if !useTSC {
		t := time.Now()
		return Reading{Time: t, Ticks: int64(t.Sub(base))}
	}
	var r Reading
	for range 4 {
		a := rdtsc()
		r.Time = time.Now()
		b := rdtsc()
		r.Ticks = a + (b-a)/2
		if b-a >= 0 && b-a < maxPairTicks {
			break
		}
	}
	return r
}

// Scale is the length of a tick, in nanoseconds.
type Scale float64

// ScaleBetween is the length of the counter's ticks between readings a
// and b, b taken after a. Without a measurable span between them (the
// same tick, or a clock that did not move) it is 1: durations within such
// a span are nothing anyway.
func ScaleBetween(a, b Reading) Scale { return scaleBetween(a, b, tsc) }

func scaleBetween(a, b Reading, useTSC bool) Scale {
	if !useTSC {
		return 1 // the ticks are nanoseconds
	}
	dt, dm := b.Ticks-a.Ticks, b.Time.Sub(a.Time)
	if dt <= 0 || dm <= 0 {
		return 1
	}
	return Scale(float64(dm) / float64(dt))
}

// Duration converts a count of ticks to a duration; a negative count (two
// cores whose counters disagree, by a few ticks) is zero.
func (s Scale) Duration(ticks int64) time.Duration {
	if ticks <= 0 {
		return 0
	}
	return time.Duration(float64(ticks)*float64(s) + 0.5)
}
