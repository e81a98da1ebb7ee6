package throttle

import (
	"sync"
	"testing"
	"time"
)

// step is one call on a Gate at t0 plus at: Note(weight), Due, or End,
// and what it must answer.
type step struct {
	at     time.Duration
	op     string // "note", "due", "end"
	weight uint64
	ok     bool // Note/Due: a line; End: a line about the run was let through
	line   Line // Note/Due when ok (Run.Start as an offset from t0 in runAt)
	runAt  time.Duration
	run    Run // End (Start as runAt)
}

func TestGate(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		every time.Duration
		steps []step
	}{
		{"first occurrence at once, then held back within the interval", time.Minute, []step{
			{at: 0, op: "note", weight: 1000, ok: true, line: Line{First: true, Count: 1, Sum: 1000, Run: Run{Count: 1, Sum: 1000}}},
			{at: time.Second, op: "note", weight: 1000},
			{at: 59 * time.Second, op: "note", weight: 500},
		}},
		{"summary after the interval counts what was held back and the one noted", time.Minute, []step{
			{at: 0, op: "note", weight: 1, ok: true, line: Line{First: true, Count: 1, Sum: 1, Run: Run{Count: 1, Sum: 1}}},
			{at: 10 * time.Second, op: "note", weight: 2},
			{at: 20 * time.Second, op: "note", weight: 3},
			{at: 70 * time.Second, op: "note", weight: 4, ok: true, line: Line{Count: 3, Sum: 9, Since: 70 * time.Second, Run: Run{Count: 4, Sum: 10}}},
			{at: 80 * time.Second, op: "note", weight: 5},
			{at: 130 * time.Second, op: "note", weight: 6, ok: true, line: Line{Count: 2, Sum: 11, Since: time.Minute, Run: Run{Count: 6, Sum: 21}}},
		}},
		{"exactly one interval on is due", time.Minute, []step{
			{at: 0, op: "note", weight: 1, ok: true, line: Line{First: true, Count: 1, Sum: 1, Run: Run{Count: 1, Sum: 1}}},
			{at: time.Minute, op: "note", weight: 1, ok: true, line: Line{Count: 1, Sum: 1, Since: time.Minute, Run: Run{Count: 2, Sum: 2}}},
		}},
		{"Due logs what was held back once the interval passed, only then, and only once", 10 * time.Second, []step{
			{at: 0, op: "due"},
			{at: 0, op: "note", weight: 3, ok: true, line: Line{First: true, Count: 1, Sum: 3, Run: Run{Count: 1, Sum: 3}}},
			{at: time.Second, op: "due"},
			{at: 2 * time.Second, op: "note", weight: 4},
			{at: 9 * time.Second, op: "due"},
			{at: 11 * time.Second, op: "due", ok: true, line: Line{Count: 1, Sum: 4, Since: 11 * time.Second, Run: Run{Count: 2, Sum: 7}}},
			{at: 30 * time.Second, op: "due"},
		}},
		{"a run that ends: the next one begins with a first line", time.Minute, []step{
			{at: 0, op: "note", weight: 1, ok: true, line: Line{First: true, Count: 1, Sum: 1, Run: Run{Count: 1, Sum: 1}}},
			{at: time.Second, op: "note", weight: 1},
			{at: 2 * time.Second, op: "end", ok: true, runAt: 0, run: Run{Count: 2, Sum: 2}},
			{at: 3 * time.Second, op: "end"},
			{at: 2 * time.Minute, op: "note", weight: 5, ok: true, runAt: 2 * time.Minute,
				line: Line{First: true, Count: 2, Sum: 6, Since: 2 * time.Minute, Run: Run{Count: 1, Sum: 5}}},
		}},
		{"a run that comes back within the interval is held back, and its first line says it began", time.Minute, []step{
			{at: 0, op: "note", weight: 1, ok: true, line: Line{First: true, Count: 1, Sum: 1, Run: Run{Count: 1, Sum: 1}}},
			{at: time.Second, op: "end", ok: true, run: Run{Count: 1, Sum: 1}},
			{at: 2 * time.Second, op: "note", weight: 1},
			{at: 3 * time.Second, op: "note", weight: 1},
			{at: 90 * time.Second, op: "note", weight: 1, ok: true, runAt: 2 * time.Second,
				line: Line{First: true, Count: 3, Sum: 3, Since: 90 * time.Second, Run: Run{Count: 3, Sum: 3}}},
			{at: 91 * time.Second, op: "end", ok: true, runAt: 2 * time.Second, run: Run{Count: 3, Sum: 3}},
		}},
		{"a run never logged ends without a line about it", time.Minute, []step{
			{at: 0, op: "note", weight: 1, ok: true, line: Line{First: true, Count: 1, Sum: 1, Run: Run{Count: 1, Sum: 1}}},
			{at: time.Second, op: "end", ok: true, run: Run{Count: 1, Sum: 1}},
			{at: 2 * time.Second, op: "note", weight: 1},
			{at: 3 * time.Second, op: "end", runAt: 2 * time.Second, run: Run{Count: 1, Sum: 1}},
		}},
		{"Every 0 lets every occurrence through", 0, []step{
			{at: 0, op: "note", weight: 1, ok: true, line: Line{First: true, Count: 1, Sum: 1, Run: Run{Count: 1, Sum: 1}}},
			{at: 0, op: "note", weight: 2, ok: true, line: Line{Count: 1, Sum: 2, Run: Run{Count: 2, Sum: 3}}},
		}},
		{"a clock that steps back holds back rather than logs", time.Minute, []step{
			{at: time.Hour, op: "note", weight: 1, ok: true, runAt: time.Hour, line: Line{First: true, Count: 1, Sum: 1, Run: Run{Count: 1, Sum: 1}}},
			{at: 0, op: "note", weight: 1},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := &Gate{Every: c.every}
			for i, s := range c.steps {
				now := t0.Add(s.at)
				switch s.op {
				case "note", "due":
					var l Line
					var ok bool
					if s.op == "note" {
						l, ok = g.Note(now, s.weight)
					} else {
						l, ok = g.Due(now)
					}
					want := Line{}
					if s.ok {
						want = s.line
						want.Run.Start = t0.Add(s.runAt)
					}
					if ok != s.ok || l != want {
						t.Fatalf("step %d (%s at %v): %v %+v; want %v %+v", i, s.op, s.at, ok, l, s.ok, want)
					}
				case "end":
					r, ok := g.End()
					want := s.run
					if want.Count > 0 {
						want.Start = t0.Add(s.runAt)
					}
					if ok != s.ok || r != want {
						t.Fatalf("step %d (end at %v): %v %+v; want %v %+v", i, s.at, ok, r, s.ok, want)
					}
				default:
					t.Fatalf("step %d: unknown op %q", i, s.op)
				}
			}
		})
	}
}

// TestGateConcurrentCountsComplete: goroutines noting at once on the real
// clock (lines let through every millisecond or so) must lose nothing:
// the lines' counts plus what is still held back are every occurrence
// and every weight noted, the run counts them all, and no two lines come
// within the interval of each other.
func TestGateConcurrentCountsComplete(t *testing.T) {
	const (
		workers = 8
		each    = 20000
		every   = time.Millisecond
	)
	g := &Gate{Every: every}
	var (
		mu         sync.Mutex
		lines      []Line
		count, sum uint64
		wg         sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if l, ok := g.Note(time.Now(), uint64(w+1)); ok {
					mu.Lock()
					lines = append(lines, l)
					mu.Unlock()
				}
				if i%1000 == 0 {
					if l, ok := g.Due(time.Now()); ok {
						mu.Lock()
						lines = append(lines, l)
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	if l, ok := g.Due(time.Now().Add(time.Hour)); ok {
		lines = append(lines, l)
	}
	firsts := 0
	for _, l := range lines {
		count += l.Count
		sum += l.Sum
		if l.First {
			firsts++
		}
		if !l.First && l.Since < every {
			t.Errorf("a line %v after the previous one, within the interval %v", l.Since, every)
		}
	}
	wantSum := uint64(each * workers * (workers + 1) / 2)
	if count != workers*each || sum != wantSum {
		t.Errorf("lines count %d occurrences of weight %d; want %d of %d (%d lines)", count, sum, workers*each, wantSum, len(lines))
	}
	if firsts != 1 {
		t.Errorf("%d first lines; want 1", firsts)
	}
	if len(lines) < 2 {
		t.Errorf("%d lines over the run; the real clock passed the %v interval, want several", len(lines), every)
	}
	r, logged := g.End()
	if r.Count != workers*each || r.Sum != wantSum || !logged {
		t.Errorf("run %+v (logged %v); want %d occurrences of weight %d, logged", r, logged, workers*each, wantSum)
	}
}
