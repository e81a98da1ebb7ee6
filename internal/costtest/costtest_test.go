package costtest

import (
	"errors"
	"sync"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sleep []time.Duration // op(i) sleeps sleep[i]
		min   time.Duration   // the median is at least this
		max   time.Duration   // and below this
	}{
		{"one", []time.Duration{20 * time.Millisecond}, 20 * time.Millisecond, time.Second},
		// The two slow runs of five are outliers: the median is a quick one.
		{"outliers", []time.Duration{0, 300 * time.Millisecond, 0, 300 * time.Millisecond, 0}, 0, 300 * time.Millisecond},
		{"most slow", []time.Duration{30 * time.Millisecond, 0, 30 * time.Millisecond, 30 * time.Millisecond, 0}, 30 * time.Millisecond, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ran []int
			got := Median(len(tc.sleep), func(i int) {
				ran = append(ran, i)
				time.Sleep(tc.sleep[i])
			})
			if got < tc.min || got >= tc.max {
				t.Errorf("median %v, want in [%v, %v)", got, tc.min, tc.max)
			}
			for i, r := range ran {
				if r != i || len(ran) != len(tc.sleep) {
					t.Fatalf("ran %v, want 0 … %d in order", ran, len(tc.sleep)-1)
				}
			}
		})
	}
}

// TestMedians: the variants run interleaved, each i in turn, and each
// variant's median is its own: a slow spell of the machine (here: round
// 1 of 5, slow for both) does not separate them.
func TestMedians(t *testing.T) {
	type call struct{ v, i int }
	var ran []call
	med := Medians(2, 5, func(v, i int) {
		ran = append(ran, call{v, i})
		d := time.Duration(v) * 20 * time.Millisecond
		if i == 1 {
			d += 300 * time.Millisecond
		}
		time.Sleep(d)
	})
	for k, c := range ran {
		if len(ran) != 10 || c != (call{k % 2, k / 2}) {
			t.Fatalf("ran %v, want (0,0) (1,0) (0,1) (1,1) …", ran)
		}
	}
	if med[0] >= 20*time.Millisecond || med[1] < 20*time.Millisecond || med[1] >= 300*time.Millisecond {
		t.Errorf("medians %v, want the first below 20 ms, the second in [20 ms, 300 ms)", med)
	}
}

func TestParallel(t *testing.T) {
	errBad := errors.New("bad")
	for _, tc := range []struct {
		name       string
		workers, n int
		failAt     int // add(failAt) fails; -1: none does
	}{
		{"all", 32, 1000, -1},
		{"fewer than workers", 32, 5, -1},
		{"none", 4, 0, -1},
		{"an error", 8, 100, 37},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			seen := map[int]int{}
			err := Parallel(tc.workers, tc.n, func(i int) error {
				mu.Lock()
				seen[i]++
				mu.Unlock()
				if i == tc.failAt {
					return errBad
				}
				return nil
			})
			if tc.failAt >= 0 {
				// The goroutine of failAt stops there; the others finish.
				if !errors.Is(err, errBad) {
					t.Fatalf("Parallel: %v, want %v", err, errBad)
				}
				for i := tc.failAt + tc.workers; i < tc.n; i += tc.workers {
					if seen[i] != 0 {
						t.Fatalf("add(%d) ran after add(%d) of its goroutine failed", i, tc.failAt)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.n {
				if seen[i] != 1 {
					t.Fatalf("add(%d) ran %d times", i, seen[i])
				}
			}
			if len(seen) != tc.n {
				t.Fatalf("%d adds ran, want %d", len(seen), tc.n)
			}
		})
	}
}
