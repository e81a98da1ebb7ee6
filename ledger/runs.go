package ledger

import (
	"context"
	"iter"
	"sync/atomic"
)

// RunsOptions configures FollowRuns.
type RunsOptions struct {
	// Len is the most records in a run; default 64.
	Len int
	// Queue is the most runs waiting for the consumer; default 1. With
	// Len it bounds the records held ahead of the consumer (Queue runs
	// waiting, one being filled), so that a slow consumer holds back the
	// follow instead of letting memory grow.
	Queue int
	// Size returns how many records the source holds now (Ledger.Size).
	// A run ends with the last of them, since the next one may be a wait
	// away. Without it every record is a run of its own.
	Size func() uint64
}

// Runs follows a ledger on its own goroutine and hands the records to one
// consumer in runs: one channel operation on each side per run instead of
// per record (per record, they cost 1.6 % of the collector's CPU under
// ingest load in the index, 1.5 % in detection). A run ends when it
// holds Len records or with the last record the ledger holds now, so a
// run never waits for more records: each reaches the consumer as soon as
// it would have alone.
//
// The consumer receives from C, gives each run back with Release once it
// no longer needs its records (the slices are reused rather than
// allocated), and calls Stop when done. Runs is for one consumer: its
// methods other than Waiting are not safe for concurrent use.
type Runs[T any] struct {
	c    chan []T
	free chan []T
	// waiting is the records handed over and not yet released.
	waiting atomic.Int64
	cancel  context.CancelFunc
	done    chan struct{}
	err     error // written before c is closed, read after
}

// FollowRuns starts following follow(ctx, from) and returns the runs. Each
// record is converted by conv on the follower's goroutine, one at a time:
// conv may keep state (a decoder's scratch) without locks, and its work
// (decoding, for the index) runs in parallel with the consumer's.
//
// C is closed after the last run: when the follow fails (the records read
// before the error come first), when it ends, or when ctx ends or Stop is
// called. Stop then says why.
func FollowRuns[T any](ctx context.Context, follow func(context.Context, uint64) iter.Seq2[Entry, error], from uint64, conv func(Entry) T, o RunsOptions) *Runs[T] {
	n := o.Len
	if n <= 0 {
		n = 64
	}
	q := max(o.Queue, 1)
	fctx, cancel := context.WithCancel(ctx)
	r := &Runs[T]{
		c: make(chan []T, q),
		// Room for every run that can be out at once (queued, in the
		// consumer's hands, being released), so that none is dropped
		// for want of room while the follower allocates anew.
		free:   make(chan []T, q+2),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go r.follow(fctx, follow(fctx, from), n, conv, o.Size)
	return r
}

func (r *Runs[T]) follow(ctx context.Context, seq iter.Seq2[Entry, error], n int, conv func(Entry) T, size func() uint64) {
	defer close(r.done)
	defer close(r.c)
	run := make([]T, 0, n)
	// send hands run over; false when ctx ended first.
	send := func() bool {
		// Counted before the send: a consumer that receives it and
		// releases it at once must not see Waiting go below zero.
		r.waiting.Add(int64(len(run)))
		// The only sender: with room in the channel the send cannot
		// block, and a plain send costs a fraction of a select.
		if len(r.c) < cap(r.c) {
			r.c <- run
		} else {
			select {
			case r.c <- run:
			case <-ctx.Done():
				return false
			}
		}
		select {
		case run = <-r.free:
		default:
			run = make([]T, 0, n)
		}
		return true
	}
	for e, err := range seq {
		if err != nil {
			// The records read before the error go first.
			if len(run) > 0 && !send() {
				r.err = ctx.Err()
				return
			}
			r.err = err
			return
		}
		run = append(run, conv(e))
		if len(run) == n || size == nil || e.Index+1 >= size() {
			if !send() {
				r.err = ctx.Err()
				return
			}
		}
	}
	if len(run) > 0 && !send() {
		r.err = ctx.Err()
	}
}

// C returns the channel the runs come on, in ledger order, each holding
// at least one record. It is closed after the last run. The consumer may
// look at its length: with runs waiting, a receive does not block (the
// consumer is the only receiver), so runs can be taken without a select.
func (r *Runs[T]) C() <-chan []T { return r.c }

// Release gives back a run received from C, whole, once the consumer no
// longer needs its records: it is cleared, so that it holds no record
// (their bytes) while it waits to be reused, and no longer counted by
// Waiting. A run not released is left to the garbage collector.
func (r *Runs[T]) Release(run []T) {
	clear(run)
	r.waiting.Add(-int64(len(run)))
	select {
	case r.free <- run[:0]:
	default:
	}
}

// Waiting returns how many records were handed over and not yet released:
// how far the consumer is behind the follow, the run in its hands
// included. It may be called from any goroutine.
func (r *Runs[T]) Waiting() int { return int(r.waiting.Load()) }

// Stop ends the follow, waits for the follower's goroutine to return and
// returns why the follow ended: its error (the context's, when it ended
// or Stop came first), or nil when the sequence ended by itself. It may
// be called more than once; once C is closed it does not block.
func (r *Runs[T]) Stop() error {
	r.cancel()
	<-r.done
	return r.err
}
