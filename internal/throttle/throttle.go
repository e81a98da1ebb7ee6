// Package throttle decides when a condition that keeps recurring is
// logged: its first occurrence at once, then at most one line per
// interval, with the counts of what happened since the previous line.
//
// A full disk refuses every shipper's retry, a failing sink is retried
// every second, an attacker's connections are refused by the thousand:
// a line per occurrence filled the log the operator reads (perhaps on the
// same full disk) and buried everything else in it, while a line per
// interval without counts hid how bad it was. A Gate keeps both the
// promptness of the first line and the totals, and loses no occurrence
// from its counts however many goroutines report them at once.
//
// A Gate only decides and counts: its callers keep their own messages and
// metrics, and pass the time in (their clock: time.Now, a ticker's tick,
// a request's arrival), so that tests drive it with times they choose.
package throttle

import (
	"sync"
	"time"
)

// Gate throttles the log lines of one recurring condition. Note each
// occurrence; log when Note (or Due) says so, with the Line it returns.
// The zero Gate lets every occurrence through; set Every before its first
// use. A Gate is safe for concurrent use and must not be copied after it.
type Gate struct {
	// Every is the least time between two lines.
	Every time.Duration

	mu      sync.Mutex
	last    time.Time // of the last line; zero: none yet
	count   uint64    // occurrences since the last line (all held back)
	sum     uint64    // their weights
	run     Run
	runLine bool // a line about the current run was let through
}

// Run is a run of occurrences: those since the Gate's first or since the
// last End, whether logged or held back. A condition that ends and may
// come back (a sink failing, then writing again) is one run per outage.
type Run struct {
	Start time.Time // its first occurrence; zero when there was none
	Count uint64    // occurrences in it
	Sum   uint64    // their weights
}

// Line is what a line let through covers.
type Line struct {
	// First reports that no line about the current run was let through
	// before: the caller says the condition began rather than goes on.
	First bool
	// Count and Sum are the occurrences this line covers, and their
	// weights: those since the previous line, the one being noted
	// included.
	Count, Sum uint64
	// Since is how long ago the previous line was (0: there was none).
	Since time.Duration
	// Run is the current run, the occurrence being noted included.
	Run Run
}

// Note records an occurrence at now, of weight (events refused, bytes
// lost: what the caller sums; 1 when only occurrences count), and
// reports whether to log it: yes for the first occurrence, and then for
// the first one at least Every after the previous line. When not, it is
// held back, counted in the next line.
func (g *Gate) Note(now time.Time, weight uint64) (Line, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.run.Count == 0 {
		g.run.Start = now
	}
	g.run.Count++
	g.run.Sum += weight
	g.count++
	g.sum += weight
	return g.let(now)
}

// Due lets the occurrences held back through once Every has passed since
// the previous line, without a new one: for a caller that looks at its
// condition periodically, so that what was held back is not left
// unlogged until the condition recurs. It reports false while nothing is
// held back or the interval has not passed.
func (g *Gate) Due(now time.Time) (Line, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.count == 0 {
		return Line{}, false
	}
	return g.let(now)
}

// let decides, under g.mu, on what is counted since the last line.
func (g *Gate) let(now time.Time) (Line, bool) {
	var since time.Duration
	if !g.last.IsZero() {
		since = now.Sub(g.last)
		if since < g.Every {
			return Line{}, false
		}
	}
	l := Line{First: !g.runLine, Count: g.count, Sum: g.sum, Since: since, Run: g.run}
	g.last, g.count, g.sum, g.runLine = now, 0, 0, true
	return l, true
}

// End ends the current run (the condition cleared: the sink writes
// again) and returns it, with whether a line about it was let through,
// so that the caller says the condition ended only if it said it began.
// The interval still runs from the last line: a condition that comes and
// goes is not logged more often than one that stays. Occurrences held
// back stay counted for the next line.
func (g *Gate) End() (Run, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, logged := g.run, g.runLine
	g.run, g.runLine = Run{}, false
	return r, logged
}
