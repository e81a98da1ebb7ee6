// Package costtest holds the measuring steps of the tests that bound how
// an operation's cost grows with the state it works on (a decision with
// 20,000 bans in force, an alert with 10,000 kept): the state is built
// fast from many goroutines (Parallel), then the operation is timed alone
// (Median), with little state and with much, and the test compares the
// two. It is for tests; it calls no testing functions, so a failed
// operation is the caller's to report.
package costtest

import (
	"slices"
	"sync"
	"time"
)

// Median runs op(0) … op(n-1) one after another and returns the median of
// their durations: one slow run (a stall of the machine, a GC) does not
// move it, a cost that grows does. n must be at least 1.
func Median(n int, op func(i int)) time.Duration {
	took := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		op(i)
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	return took[n/2]
}

// Medians runs op(0, i), op(1, i), … op(k-1, i) for i in 0 … n-1, the k
// variants interleaved, and returns the median duration of each variant.
// A test comparing an operation with little state and with much measures
// both this way: a loaded machine's slow spell (another test binary, a
// build) then weighs on each alike, where timing one variant after the
// other compares two different machines. n must be at least 1.
func Medians(k, n int, op func(variant, i int)) []time.Duration {
	took := make([][]time.Duration, k)
	for i := range n {
		for v := range k {
			start := time.Now()
			op(v, i)
			took[v] = append(took[v], time.Since(start))
		}
	}
	med := make([]time.Duration, k)
	for v, d := range took {
		slices.Sort(d)
		med[v] = d[n/2]
	}
	return med
}

// Parallel runs add(0) … add(n-1) on workers goroutines, goroutine w
// taking w, w+workers, …, so that the adds can be batched together (a
// ledger's group commit makes 20,000 appends take a second rather than
// minutes). A goroutine stops at its first error; Parallel returns, once
// all have stopped, one of the errors, or nil.
func Parallel(workers, n int, add func(i int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := add(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}
