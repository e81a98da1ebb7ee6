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
// cache lines. And a writer that is faster than the requests used to go to
// sleep after every event, so that every request paid for waking it (a
// futex call on each side): now, once it has emptied the queue, the writer
// naps for napTime and takes what arrived meanwhile in one batch, and only
// senders of events someone waits for (Auth, Audit, errors, Close), or a
// queue half full, cut the nap short. Access events therefore reach the
// sink at most napTime later than before; the rest of the semantics are
// the channel's: at most max events wait, access events are dropped (and
// counted) when the queue is full, every other event waits for room. Full
// also means that the requests the waiting events keep alive (their
// paths, user agents, recorded headers and bodies: item.size) add up to
// maxBytes (Config.MaxQueueBytes), so that a client sending large headers
// cannot make the queue hold QueueSize megabytes.
//
// A sender enters it without a lock (twenty-eighth session): with one
// mutex, a sender whose thread lost its processor (or was stopped by the
// collector) while holding it made every other sender wait, 112-159 ns a
// request in bench/'s parallel benchmark. Now a sender claims a position
// with a compare-and-swap on tail, writes its item into that position's
// slot and publishes it (ready); the writer takes published slots in
// position order from head and stops at the first unpublished one. A
// sender stopped between claim and publish delays only the writer's
// reading of its slot, never another sender.
//
// Memory ordering (all sync/atomic operations are sequentially
// consistent):
//   - An item is written before its slot's ready.Store(true), and the
//     writer reads it only after ready.Load() returned true: the read
//     happens after the write. The writer clears the slot and its ready
//     flag before it stores the advanced head, and a sender claims a
//     position only after loading a head that makes room for it, so a
//     slot is written again only after the writer is done with it.
//   - Positions map to chunks through ring (len R, (R-1)*chunkLen >= max).
//     A sender claims position p only with p - head < max, so every
//     position of the chunk R laps before p's is below head: the writer
//     took them and removed that chunk from ring before storing head.
//     Whatever ring holds at p's index when its sender looks is p's chunk,
//     or nil (then the sender installs one, compare-and-swap against any
//     other sender or the writer doing the same).
//   - The closed bit lives in tail's word: once Close sets it no sender
//     (but a waiter let in before Close) can claim, so the positions the
//     writer must still write are exactly those below tail, and the
//     writer finishes when head reaches tail with no waiter left.
//   - Waking: a sender publishes, then loads the writer's state; the
//     writer stores its state (idle, napping), then looks at the queue
//     again (wakeNeeded). One of the two sees the other's store. The party
//     that clears an idle state with a compare-and-swap owns the wake-up:
//     a sender sends one token, and the writer, finding its state cleared
//     by someone else, receives exactly that one.
//   - Waiters for room register (waiters, under mu) before they try again;
//     the writer stores head before it loads waiters: either the waiter
//     sees the room or the writer sees the waiter and closes room.
type queue struct {
	// tail is the next position to claim, with closedBit once Close
	// has run; head is the next position the writer takes (stored
	// after each batch). Positions below tail and at or above head are
	// queued (claimed, perhaps not yet published).
	tail     atomic.Uint64
	bytes    atomic.Int64 // request bytes the queued items keep alive (item.size), reserved before a claim
	head     atomic.Uint64
	state    atomic.Uint32 // the writer's: stIdle, stNapping
	napStart atomic.Int64  // when the writer began its nap, since epoch
	urgentTo atomic.Uint64 // put's events are queued below this position
	waiters  atomic.Int32  // senders waiting for room, let in before Close (registered under mu)
	dropped  atomic.Uint64

	ring     []atomic.Pointer[chunk] // position p's chunk at ring[p/chunkLen%len(ring)]
	max      int
	maxBytes int
	epoch    time.Time
	wake     chan struct{}

	mu      sync.Mutex
	closing bool          // Close has run (with closedBit); under mu so that waiters register before it or not at all
	room    chan struct{} // closed when the writer makes room for waiters

	spare []*chunk // the writer's: emptied chunks kept for reuse

	failing *atomic.Bool // the Logger's: set while the sink fails

	waits atomic.Uint64 // times the writer waited (tests: an idle writer sleeps)
}

// The writer's state: waiting for wake, and (napping) looking again by
// itself within napTime.
const (
	stIdle    = 1
	stNapping = 2
)

// closedBit marks tail once Close has run.
const closedBit = 1 << 63

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
// with it), each paying the queue's shared lines, a clock reading and a write,
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
	ready [chunkLen]atomic.Bool // items[i] is published
}

func newQueue(max, maxBytes int) *queue {
	q := &queue{
		max:      max,
		maxBytes: maxBytes,
		ring:     make([]atomic.Pointer[chunk], (max+chunkLen-1)/chunkLen+1),
		epoch:    time.Now(),
		wake:     make(chan struct{}, 1),
	}
	q.prepare()
	return q
}

// slot returns the ring entry of position p's chunk.
func (q *queue) slot(p uint64) *atomic.Pointer[chunk] {
	return &q.ring[p/chunkLen%uint64(len(q.ring))]
}

// Results of claim.
const (
	claimed = iota
	claimFull
	claimClosed
)

// claim reserves the next position for an item of size request bytes,
// unless the queue is full (it holds max items, or the item would take
// the request bytes they keep alive past maxBytes; an item alone in the
// queue is always let in) or closed (unless waiter: a waiter let in
// before Close). It also returns the head it saw, at most pos.
func (q *queue) claim(size int, waiter bool) (pos, head uint64, res int) {
	b := q.bytes.Add(int64(size))
	for {
		// head before tail: head never passes the tail loaded after it.
		h := q.head.Load()
		t := q.tail.Load()
		p := t &^ closedBit
		switch {
		case t&closedBit != 0 && !waiter:
			q.bytes.Add(-int64(size))
			return 0, 0, claimClosed
		case p-h >= uint64(q.max) || (p > h && b > int64(q.maxBytes)):
			q.bytes.Add(-int64(size))
			return 0, 0, claimFull
		}
		if q.tail.CompareAndSwap(t, t+1) {
			return p, h, claimed
		}
	}
}

// publish stores it at its claimed position and lets the writer take it.
func (q *queue) publish(p uint64, it item) {
	s := q.slot(p)
	c := s.Load()
	if c == nil {
		c = new(chunk)
		if !s.CompareAndSwap(nil, c) {
			c = s.Load()
		}
	}
	i := p % chunkLen
	c.items[i] = it
	c.ready[i].Store(true)
}

// wakeWriter wakes the writer if it waits and should: it sleeps without a
// deadline, or the item is urgent, or the queue (n items) is filling up.
// It reports whether it found the writer waiting and took charge of
// waking it.
func (q *queue) wakeWriter(urgent bool, n uint64) bool {
	s := q.state.Load()
	if s&stIdle == 0 || (s&stNapping != 0 && !urgent && 2*n < uint64(q.max)) {
		return false
	}
	if !q.state.CompareAndSwap(s, 0) {
		return false // the writer is back, or another sender wakes it
	}
	q.signal()
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
	p, h, res := q.claim(it.size, false)
	switch res {
	case claimClosed:
		return false, true, 0
	case claimFull:
		return false, false, q.dropped.Add(1)
	}
	q.publish(p, it)
	n := p + 1 - h // queued, this item included, as its sender saw it
	if q.wakeWriter(it.done != nil, n) {
		return true, false, 0
	}
	if n >= yieldAt && n%lateCheck == 0 {
		s := q.state.Load()
		if s == stIdle|stNapping && (n >= lateEvents || int64(time.Since(q.epoch))-q.napStart.Load() >= int64(lateAfter)) &&
			q.state.CompareAndSwap(s, 0) {
			// The writer is late (see yieldAt): woken, it is the next
			// goroutine this processor runs once the sender yields.
			q.signal()
			runtime.Gosched()
		}
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
	waiter := false // registered in waiters
	for {
		var room chan struct{}
		if waiter {
			// Taken before trying again: a writer that makes room after
			// the try closes this one.
			q.mu.Lock()
			if q.room == nil {
				q.room = make(chan struct{})
			}
			room = q.room
			q.mu.Unlock()
		}
		// Whether the sink was failing is read before the event is
		// queued: read after, it could be this event's own failed write,
		// which its waiter learns from done (with the sink's error).
		failing := q.failing != nil && q.failing.Load()
		p, _, res := q.claim(it.size, waiter)
		switch res {
		case claimClosed:
			return ErrClosed
		case claimed:
			q.raiseUrgent(p + 1)
			q.publish(p, it)
			if waiter {
				q.waiters.Add(-1)
			}
			q.wakeWriter(true, 0)
			if failing {
				return errFailingQueued
			}
			return nil
		}
		if failing {
			if waiter {
				q.leave()
			}
			return errFailingFull
		}
		if !waiter {
			q.mu.Lock()
			if q.closing {
				q.mu.Unlock()
				return ErrClosed
			}
			q.waiters.Add(1)
			q.mu.Unlock()
			waiter = true
			continue
		}
		var err error
		select {
		case <-room:
		case <-ctx.Done():
			err = fmt.Errorf("httpaudit: event not queued: %w", ctx.Err())
		case <-timeout:
			err = fmt.Errorf("httpaudit: event not queued within %v", limit)
		}
		if err != nil {
			q.leave()
			return err
		}
	}
}

// leave unregisters a waiter that gives up. A writer draining for Close
// may be waiting for the last waiter.
func (q *queue) leave() {
	q.waiters.Add(-1)
	if q.tail.Load()&closedBit != 0 {
		q.wakeWriter(true, 0)
	}
}

// raiseUrgent notes that an event of put's (Auth, Audit, Log, errors: the
// events someone may wait for) is queued below position to: the writer
// then takes what is queued without a nap (napFirst). It is raised before
// the event is published, so the writer that takes the event sees it.
func (q *queue) raiseUrgent(to uint64) {
	for {
		u := q.urgentTo.Load()
		if u >= to || q.urgentTo.CompareAndSwap(u, to) {
			return
		}
	}
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

// take moves up to max published items into batch, oldest first, and
// makes room for senders waiting for it. It stops early once the batch
// keeps maxBytes of requests alive, so that the writer's batch is bounded
// like the queue, and at the first position claimed but not yet
// published.
func (q *queue) take(batch []item, max int) []item {
	h := q.head.Load()
	held := 0
	for len(batch) < max && held < q.maxBytes {
		s := q.slot(h)
		c := s.Load()
		i := h % chunkLen
		if c == nil || !c.ready[i].Load() {
			break
		}
		it := c.items[i]
		c.items[i] = item{} // the queue no longer keeps it alive
		c.ready[i].Store(false)
		batch = append(batch, it)
		held += it.size
		h++
		if h%chunkLen == 0 {
			// Out of ring before head passes it (see queue).
			s.Store(nil)
			if len(q.spare) < maxSpares {
				q.spare = append(q.spare, c)
			}
		}
	}
	if len(batch) == 0 {
		return batch
	}
	q.head.Store(h)
	q.bytes.Add(-int64(held))
	q.prepare()
	if q.waiters.Load() > 0 {
		q.wakeWaiters()
	}
	return batch
}

// prepare installs chunks ahead of the senders, so that a busy queue
// allocates none: the next two positions' chunks (allocated if need be),
// then the spares, into the ring entries that follow (the writer keeps
// them either way; installed, they are the ones that the events queued
// during the next nap fill). Within R-1 chunks of head, a ring entry is
// free or already the right chunk (see queue).
func (q *queue) prepare() {
	h := q.head.Load() / chunkLen
	for k := h; k < h+uint64(len(q.ring))-1; k++ {
		if k >= h+2 && len(q.spare) == 0 {
			return
		}
		s := &q.ring[k%uint64(len(q.ring))]
		if s.Load() != nil {
			continue
		}
		var c *chunk
		if n := len(q.spare); n > 0 {
			c = q.spare[n-1]
		} else {
			c = new(chunk)
		}
		if s.CompareAndSwap(nil, c) && len(q.spare) > 0 && q.spare[len(q.spare)-1] == c {
			q.spare = q.spare[:len(q.spare)-1]
		}
	}
}

// published says whether the item at head is there to take.
func (q *queue) published() bool {
	h := q.head.Load()
	c := q.slot(h).Load()
	return c != nil && c.ready[h%chunkLen].Load()
}

// queued returns the number of items claimed and not yet taken.
func (q *queue) queued() uint64 {
	h := q.head.Load()
	return q.tail.Load()&^closedBit - h
}

func (q *queue) closed() bool { return q.tail.Load()&closedBit != 0 }

// drained says whether the writer is done: closed, no waiter left that
// may still queue, and every position claimed taken. waiters is read
// before tail: a waiter's claim precedes its leaving.
func (q *queue) drained() bool {
	return q.closed() && q.waiters.Load() == 0 && q.queued() == 0
}

// napFirst says whether the writer, back for its next batch, naps before
// it takes what is queued: only a few events wait (minBatch), none of them
// one that someone may wait for, nobody waits for room, the queue is under
// half full in items and bytes (so that no access event is dropped
// meanwhile), and it is not closed.
func (q *queue) napFirst() bool {
	n := q.queued()
	return n > 0 && n < minBatch && q.urgentTo.Load() <= q.head.Load() && !q.closed() && q.waiters.Load() == 0 &&
		2*n < uint64(q.max) && 2*q.bytes.Load() < int64(q.maxBytes)
}

// wakeNeeded is the writer's second look after it stored st: whether a
// sender that came before the store would have woken it (wakeWriter, or
// Close, or the last waiter leaving).
func (q *queue) wakeNeeded(st uint32) bool {
	if q.closed() {
		return st&stNapping != 0 || q.drained() || q.published()
	}
	if !q.published() {
		return false
	}
	return st&stNapping == 0 || q.urgentTo.Load() > q.head.Load() || 2*q.queued() >= uint64(q.max)
}

// next returns the next batch for the writer, waiting for one: after a
// batch (nap true) for at most napTime unless woken, then without a
// deadline. After a batch it naps even with a few events queued
// (napFirst). It returns an empty batch when the queue is closed and
// drained, with no sender left waiting for room.
func (q *queue) next(batch []item, max int, timer *time.Timer) []item {
	nap := true
	for {
		if !nap || !q.napFirst() {
			batch = q.take(batch[:0], max)
			if len(batch) > 0 || q.drained() {
				return batch
			}
		}
		nap = nap && !q.closed()
		st := uint32(stIdle)
		if nap {
			st |= stNapping
			q.napStart.Store(int64(time.Since(q.epoch)))
		}
		q.waits.Add(1)
		q.state.Store(st)
		if q.wakeNeeded(st) {
			if !q.state.CompareAndSwap(st, 0) {
				<-q.wake // a sender cleared it: its token
			}
			nap = false
			continue
		}
		if nap {
			timer.Reset(napTime)
			select {
			case <-q.wake:
			case <-timer.C:
				if !q.state.CompareAndSwap(st, 0) {
					<-q.wake // a sender woke it meanwhile
				}
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
	q.closing = true
	q.tail.Or(closedBit)
	q.mu.Unlock()
	q.wakeWriter(true, 0)
}

// counts returns the queue's counters.
func (q *queue) counts() (enqueued, dropped uint64, queued int) {
	h := q.head.Load()
	t := q.tail.Load() &^ closedBit
	return t, q.dropped.Load(), int(t - h)
}
