package httpaudit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// queue is the bounded FIFO between the goroutines that record events and
// the Logger's single writer.
//
// It replaced a buffered channel for three reasons. A channel of
// QueueSize items is one pointer-filled array the garbage collector scans
// in full on every cycle, however few events are waiting; the queue holds
// its items in chunks that exist only while they hold events. A sender
// paid for a read lock, the channel's lock and a counter, three contended
// cache lines; it now takes one mutex. And a writer that is faster than
// the requests used to go to sleep after every event, so that every
// request paid for waking it (a futex call on each side): now, once it has
// emptied the queue, the writer naps for napTime and takes what arrived
// meanwhile in one batch, and only senders of events someone waits for
// (Auth, Audit, errors, Close), or a queue half full, cut the nap short.
// Access events therefore reach the sink at most napTime later than
// before; the rest of the semantics are the channel's: at most max events
// wait, access events are dropped (and counted) when the queue is full,
// every other event waits for room. Full also means that the requests the
// waiting events keep alive (their paths, user agents, recorded headers
// and bodies: item.size) add up to maxBytes (Config.MaxQueueBytes), so
// that a client sending large headers cannot make the queue hold
// QueueSize megabytes.
type queue struct {
	mu         sync.Mutex
	head, tail *chunk // the oldest items are at head.items[head.r]
	spare      *chunk // emptied chunks kept for reuse, linked by next
	spares     int
	n, max     int
	bytes      int           // request bytes the queued items keep alive (item.size)
	maxBytes   int           // Config.MaxQueueBytes
	closed     bool          // no new senders (Close)
	waiters    int           // senders waiting for room, let in before Close
	room       chan struct{} // closed when the writer makes room for waiters
	idle       bool          // the writer waits for wake
	napping    bool          // … and looks again by itself within napTime
	napStart   time.Time     // when the writer began its nap
	wake       chan struct{}

	failing *atomic.Bool // the Logger's: set while the sink fails
	// urgent is set while an event of put's (Auth, Audit, Log, errors:
	// the events someone may wait for) may be queued: the writer then
	// takes what is queued without a nap (napFirstLocked).
	urgent bool

	enqueued, dropped uint64
	waits             uint64 // times the writer waited (tests: an idle writer sleeps)
}

// napTime is how long the writer waits, after emptying the queue, before
// it looks again without being woken: the longest an access event waits
// for a writer that is busy often enough to nap. It also sets how many
// served requests wait in the queue under load (a few hundred at a
// million requests per second), and each keeps its state alive: every
// garbage collection meanwhile scans them. With 1 ms the scanning cost
// more CPU per request (~250 ns in bench/, alternated runs) than the
// writer's four times as frequent wake-ups at 250 µs; 100 and 500 µs
// measured alike.
const napTime = 250 * time.Microsecond

// yieldAt is how many events may accumulate while the writer naps before
// the sender of the next one may cut the nap short and yield its
// processor to it (offer). A napping writer is woken by its timer, but a
// timer runs only when its processor enters the scheduler: with every
// processor busy serving requests that do not block (GOMAXPROCS request
// goroutines, as under load), that is when the runtime preempts one, up
// to 10 ms later, and meanwhile thousands of served requests wait in the
// queue, each kept alive for every garbage collection to mark, and cold
// in the cache by the time the writer reads them. At napTime's pace a
// server of a million requests per second queues about 250 events per
// nap: the sender of the 256th may find the writer late.
//
// Late means lateAfter since the nap began as well, checked every
// lateCheck events: a sender's yield hands its processor to the writer
// for the writer's whole batch (100-200 µs of a few hundred events) while
// the request waits, so it must not end a nap that its timer is about to
// end on a processor of its own. An idle processor waits in the network
// poller, which rounds a nap of napTime up to a millisecond
// (runtime/netpoll_epoll.go): requests served one at a time every few
// microseconds queue 256 events before such a timer fires. (On a 2-core
// VM, bench/ serially: ~1 yield per 1,000 requests, each keeping the
// request goroutine off its processor ~90 µs, 3 % of the wall time.)
// lateEvents bounds the queue of a nap regardless.
const (
	yieldAt    = 2 * chunkLen
	lateAfter  = napTime + 1250*time.Microsecond
	lateCheck  = 32
	lateEvents = 8 * chunkLen
)

// minBatch is how many events the writer, back from writing a batch, must
// find queued to take them at once; with fewer it naps first (see
// napFirstLocked). Without it a writer faster than the requests never
// napped while they came: each batch took the few events that arrived
// while the last was written, a batch every few microseconds of 4-7
// events on one request goroutine in bench/ (5 times as many batches as
// with it), each paying the queue's lock, a clock reading and a write,
// and taking the queue's cache lines away from the senders' core. It
// changes no event's wait beyond napTime, which one arriving just after
// the queue was emptied already had.
const minBatch = 32

// A chunk holds chunkLen items; up to maxSpares emptied chunks are kept
// for reuse (a few batches' worth), so that a busy queue allocates none.
const (
	chunkLen  = 128
	maxSpares = 8
)

type chunk struct {
	items [chunkLen]item
	r, w  int
	next  *chunk
}

func newQueue(max, maxBytes int) *queue {
	return &queue{max: max, maxBytes: maxBytes, wake: make(chan struct{}, 1)}
}

// fullLocked says whether it must wait, or be dropped: the queue holds max
// items, or it would take the request bytes they keep alive past maxBytes
// (an item alone in the queue is always let in, whatever its size).
func (q *queue) fullLocked(it item) bool {
	return q.n >= q.max || (q.n > 0 && q.bytes+it.size > q.maxBytes)
}

func (q *queue) pushLocked(it item) {
	if q.tail == nil || q.tail.w == chunkLen {
		c := q.spare
		if c != nil {
			q.spare, c.next = c.next, nil
			q.spares--
		} else {
			c = new(chunk)
		}
		if q.tail == nil {
			q.head = c
		} else {
			q.tail.next = c
		}
		q.tail = c
	}
	q.tail.items[q.tail.w] = it
	q.tail.w++
	q.n++
	q.bytes += it.size
	q.enqueued++
}

// signalLocked says whether the sender of an item must wake the writer:
// it waits for one, and either sleeps without a deadline, or the item is
// urgent, or the queue is filling up.
func (q *queue) signalLocked(urgent bool) bool {
	if !q.idle || (q.napping && !urgent && 2*q.n < q.max) {
		return false
	}
	q.idle = false
	return true
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// offer queues it unless the queue is full or closed, for events that may
// be dropped. It reports whether it was queued, and the count of drops
// when it was dropped.
func (q *queue) offer(it item) (ok, closed bool, dropped uint64) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false, true, 0
	}
	if q.fullLocked(it) {
		q.dropped++
		d := q.dropped
		q.mu.Unlock()
		return false, false, d
	}
	q.pushLocked(it)
	wake := q.signalLocked(it.done != nil)
	yield := false
	if !wake && q.idle && q.napping && q.n >= yieldAt && q.n%lateCheck == 0 &&
		(q.n >= lateEvents || time.Since(q.napStart) >= lateAfter) {
		// The writer is late (see yieldAt): woken, it is the next
		// goroutine this processor runs once the sender yields.
		q.idle = false
		wake, yield = true, true
	}
	q.mu.Unlock()
	if wake {
		q.signal()
	}
	if yield {
		runtime.Gosched()
	}
	return true, false, 0
}

// put's answers while the sink fails: the event was queued anyway, or
// not (the queue is full, and waiting for room could last as long as the
// outage).
var (
	errFailingQueued = errors.New("queued while the sink fails")
	errFailingFull   = errors.New("queue full while the sink fails")
)

// put queues it, waiting for room until ctx ends or timeout fires (nil:
// never). Once let in, a sender may still queue after Close: the writer
// waits for it. While the sink fails it does not wait: see
// errFailingQueued and errFailingFull.
func (q *queue) put(ctx context.Context, it item, timeout <-chan time.Time, limit time.Duration) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	for q.fullLocked(it) {
		if q.failing != nil && q.failing.Load() {
			q.mu.Unlock()
			return errFailingFull
		}
		if q.room == nil {
			q.room = make(chan struct{})
		}
		room := q.room
		q.waiters++
		q.mu.Unlock()
		var err error
		select {
		case <-room:
		case <-ctx.Done():
			err = fmt.Errorf("httpaudit: event not queued: %w", ctx.Err())
		case <-timeout:
			err = fmt.Errorf("httpaudit: event not queued within %v", limit)
		}
		q.mu.Lock()
		q.waiters--
		if err != nil {
			// A writer draining for Close may be waiting for the last
			// waiter.
			wake := q.closed && q.waiters == 0 && q.signalLocked(true)
			q.mu.Unlock()
			if wake {
				q.signal()
			}
			return err
		}
	}
	// Whether the sink was failing is read before the event is queued:
	// read after, it could be this event's own failed write, which its
	// waiter learns from done (with the sink's error).
	failing := q.failing != nil && q.failing.Load()
	q.pushLocked(it)
	q.urgent = true
	wake := q.signalLocked(true)
	q.mu.Unlock()
	if wake {
		q.signal()
	}
	if failing {
		return errFailingQueued
	}
	return nil
}

// wakeWaiters wakes the senders waiting for room, to look again (the
// sink has started failing).
func (q *queue) wakeWaiters() {
	q.mu.Lock()
	if q.room != nil {
		close(q.room)
		q.room = nil
	}
	q.mu.Unlock()
}

// take moves up to max items into batch, oldest first, and makes room for
// senders waiting for it. It stops early once the batch keeps maxBytes of
// requests alive, so that the writer's batch is bounded like the queue.
func (q *queue) takeLocked(batch []item, max int) []item {
	held := 0
	for q.n > 0 && len(batch) < max && held < q.maxBytes {
		c := q.head
		k := min(c.w-c.r, max-len(batch))
		for i, it := range c.items[c.r : c.r+k] {
			held += it.size
			if held >= q.maxBytes {
				k = i + 1
				break
			}
		}
		batch = append(batch, c.items[c.r:c.r+k]...)
		for _, it := range c.items[c.r : c.r+k] {
			q.bytes -= it.size
		}
		clear(c.items[c.r : c.r+k]) // the queue no longer keeps them alive
		c.r += k
		q.n -= k
		if c.r == c.w {
			c.r, c.w = 0, 0
			if c != q.tail {
				q.head, c.next = c.next, nil
				if q.spares < maxSpares {
					c.next = q.spare
					q.spare = c
					q.spares++
				}
			}
		}
	}
	if q.n == 0 {
		q.urgent = false
	}
	if len(batch) > 0 && q.room != nil {
		close(q.room)
		q.room = nil
	}
	return batch
}

// napFirstLocked says whether the writer, back for its next batch, naps
// before it takes what is queued: only a few events wait (minBatch), none
// of them one that someone may wait for, nobody waits for room, the queue
// is under half full in items and bytes (so that no access event is
// dropped meanwhile), and it is not closed.
func (q *queue) napFirstLocked() bool {
	return q.n > 0 && q.n < minBatch && !q.urgent && !q.closed && q.waiters == 0 &&
		2*q.n < q.max && 2*q.bytes < q.maxBytes
}

// next returns the next batch for the writer, waiting for one: after a
// batch (nap true) for at most napTime unless woken, then without a
// deadline. After a batch it naps even with a few events queued
// (napFirstLocked). It returns an empty batch when the queue is closed
// and drained, with no sender left waiting for room.
func (q *queue) next(batch []item, max int, timer *time.Timer) []item {
	nap := true
	for {
		q.mu.Lock()
		q.idle, q.napping = false, false
		if !nap || !q.napFirstLocked() {
			batch = q.takeLocked(batch[:0], max)
			if len(batch) > 0 {
				q.mu.Unlock()
				return batch
			}
			if q.closed && q.waiters == 0 {
				q.mu.Unlock()
				return batch
			}
		}
		nap = nap && !q.closed
		q.idle, q.napping = true, nap
		q.waits++
		if nap {
			q.napStart = time.Now()
		}
		q.mu.Unlock()
		if nap {
			timer.Reset(napTime)
			select {
			case <-q.wake:
			case <-timer.C:
			}
			nap = false // a nap that brought nothing ends in sleep
			continue
		}
		<-q.wake
	}
}

// close lets no new sender in and wakes the writer to drain.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	wake := q.signalLocked(true)
	q.mu.Unlock()
	if wake {
		q.signal()
	}
}

// counts returns the queue's counters.
func (q *queue) counts() (enqueued, dropped uint64, queued int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.enqueued, q.dropped, q.n
}
