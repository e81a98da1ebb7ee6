package httpaudit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/sink"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWriterWakesAndSleeps: an access event reaches the sink without
// Close, after the writer has napped and after it has gone to sleep; an
// idle writer sleeps instead of polling.
func TestWriterWakesAndSleeps(t *testing.T) {
	l, buf := newTestLogger(t, Config{})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for i := range 3 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", fmt.Sprintf("/r%d", i), nil))
		waitFor(t, "the access event is written", func() bool { return strings.Count(buf.String(), "\n") == i+1 })
		// Idle: the writer naps once, then sleeps until woken.
		waitFor(t, "the writer sleeps", func() bool { return l.q.state.Load() == stIdle })
		before := l.q.waits.Load()
		time.Sleep(30 * time.Millisecond)
		after := l.q.waits.Load()
		if after != before {
			t.Fatalf("an idle writer woke %d times in 30ms", after-before)
		}
	}
}

// TestLateNapEndsAtYieldAt: senders of access events leave a napping
// writer alone (its timer brings it back) until yieldAt events wait and
// the nap is late (lateAfter); the sender that finds both wakes it, as the
// sender of an urgent event would. A nap that is not late yet is left
// alone up to lateEvents (an idle processor's timer fires within a
// millisecond: yielding to the writer would only stop the request for
// the writer's batch). A sleeping writer is woken by the first event.
func TestLateNapEndsAtYieldAt(t *testing.T) {
	woken := func(q *queue) bool {
		select {
		case <-q.wake:
			return true
		default:
			return false
		}
	}
	tests := []struct {
		name     string
		napStart time.Time
		wakeAt   int
	}{
		{"late nap", time.Now().Add(-lateAfter), yieldAt},
		// In the future: never late by the clock, however slowly the
		// test runs.
		{"nap on time", time.Now().Add(time.Hour), lateEvents},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newQueue(1<<20, 1<<30)
			q.state.Store(stIdle | stNapping)
			q.napStart.Store(int64(tt.napStart.Sub(q.epoch)))
			for i := 1; i < tt.wakeAt; i++ {
				if ok, _, _ := q.offer(item{ev: &event.Event{}}); !ok {
					t.Fatalf("event %d not queued", i)
				}
				if woken(q) {
					t.Fatalf("a napping writer woken at %d events, before %d", i, tt.wakeAt)
				}
			}
			q.offer(item{ev: &event.Event{}})
			if !woken(q) || q.state.Load() != 0 {
				t.Fatalf("a napping writer not woken at %d events", tt.wakeAt)
			}
			q.offer(item{ev: &event.Event{}})
			if woken(q) {
				t.Fatal("a writer already woken woken again")
			}
		})
	}
	// Asleep (no nap): the first event wakes it.
	q2 := newQueue(1<<20, 1<<30)
	q2.state.Store(stIdle)
	q2.offer(item{ev: &event.Event{}})
	if !woken(q2) {
		t.Fatal("a sleeping writer not woken by an event")
	}
}

// TestWriterNapsOnAFewEvents: a writer back for its next batch naps
// before taking fewer than minBatch access events (rather than writing
// a batch of the few that came while it wrote the last), but takes them
// at once when one of them is an event someone may wait for, when the
// queue is half full in items or bytes, when a sender waits for room,
// and when the queue is closed.
func TestWriterNapsOnAFewEvents(t *testing.T) {
	access := item{ev: &event.Event{}, size: 10}
	tests := []struct {
		name     string
		max      int // queue size
		maxBytes int
		fill     func(q *queue)
		naps     uint64
	}{
		{"a few access events", 1 << 20, 1 << 30, func(q *queue) {
			for range minBatch - 1 {
				q.offer(access)
			}
		}, 1},
		{"minBatch access events", 1 << 20, 1 << 30, func(q *queue) {
			for range minBatch {
				q.offer(access)
			}
		}, 0},
		{"one urgent event among them", 1 << 20, 1 << 30, func(q *queue) {
			q.offer(access)
			if err := q.put(context.Background(), item{ev: &event.Event{}}, nil, time.Second); err != nil {
				t.Fatal(err)
			}
			q.offer(access)
		}, 0},
		{"half full in items", 4, 1 << 30, func(q *queue) {
			q.offer(access)
			q.offer(access)
		}, 0},
		{"half full in bytes", 1 << 20, 40, func(q *queue) {
			q.offer(access)
			q.offer(access)
		}, 0},
		{"a sender waits for room", 1 << 20, 1 << 30, func(q *queue) {
			q.offer(access)
			q.waiters.Add(1) // as put does while it waits
		}, 0},
		{"closed", 1 << 20, 1 << 30, func(q *queue) {
			q.offer(access)
			q.close()
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newQueue(tt.max, tt.maxBytes)
			tt.fill(q)
			want := int(q.queued())
			timer := time.NewTimer(time.Hour)
			timer.Stop()
			batch := q.next(nil, 512, timer)
			if len(batch) != want {
				t.Fatalf("batch of %d, want the %d queued", len(batch), want)
			}
			if w := q.waits.Load(); w != tt.naps {
				t.Fatalf("the writer napped %d times before taking %d events, want %d", w, want, tt.naps)
			}
		})
	}
	// The urgent event's mark ends once the queue is empty: the next
	// few access events wait for a nap again.
	q := newQueue(1<<20, 1<<30)
	if err := q.put(context.Background(), item{ev: &event.Event{}}, nil, time.Second); err != nil {
		t.Fatal(err)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	if batch := q.next(nil, 512, timer); len(batch) != 1 || q.waits.Load() != 0 {
		t.Fatalf("urgent event: batch of %d after %d naps", len(batch), q.waits.Load())
	}
	q.offer(access)
	if batch := q.next(nil, 512, timer); len(batch) != 1 || q.waits.Load() != 1 {
		t.Fatalf("access event after it: batch of %d after %d naps, want 1 after 1", len(batch), q.waits.Load())
	}
}

// TestCloseLetsWaitersIn: senders waiting for room in a full queue when
// Close is called still get their events written, and Close waits for
// them; senders that come after Close are refused.
func TestCloseLetsWaitersIn(t *testing.T) {
	buf := &syncBuffer{}
	g := &gateSink{Sink: sink.NewWriter(buf), gate: make(chan struct{})}
	// Only the audit events count here: access events are skipped.
	l, _ := newTestLogger(t, Config{Sink: g, QueueSize: 2, BatchSize: 1, ErrorLog: newDiscardSlog(),
		Skip: func(*http.Request) bool { return true }})
	var open sync.Once
	t.Cleanup(func() { open.Do(func() { close(g.gate) }) }) // before Close, should the test fail
	var inside sync.WaitGroup
	var errs atomic.Int32
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := Audit(r.Context(), Op{Action: event.ActionSensitiveRead}); err != nil {
			errs.Add(1)
		}
	}))
	const senders = 6
	for range senders {
		inside.Add(1)
		go func() {
			defer inside.Done()
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/audit", nil))
		}()
	}
	// One audit event is in the writer's hands (its sink is stuck), two
	// fill the queue, the other senders wait for room.
	waitFor(t, "senders wait for room", func() bool {
		return l.q.waiters.Load() == senders-3 && l.q.queued() == 2
	})
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	waitFor(t, "Close refuses new senders", l.q.closed)
	if err := l.Log(context.Background(), &event.Event{Action: "late"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Log after Close: %v, want ErrClosed", err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while events were waiting", err)
	case <-time.After(20 * time.Millisecond):
	}
	open.Do(func() { close(g.gate) })
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	inside.Wait()
	if n := errs.Load(); n != 0 {
		t.Fatalf("%d Audit calls failed", n)
	}
	st := l.Stats()
	if lines := strings.Count(buf.String(), "\n"); lines != senders || st.Written != senders || st.Enqueued != senders {
		t.Fatalf("stats %+v, %d lines, %d requests", st, lines, senders)
	}
	if got := strings.Count(buf.String(), `"sensitive_read"`); got != senders {
		t.Fatalf("%d audit events written, want %d", got, senders)
	}
}

// TestQueueStress: many senders of both kinds against a small queue and a
// slow sink, with Close in the middle of it: every event let in is
// written exactly once, every other one is counted as dropped, refused or
// lost.
func TestQueueStress(t *testing.T) {
	buf := &syncBuffer{}
	slow := &slowSink{Sink: sink.NewWriter(buf)}
	l, _ := newTestLogger(t, Config{Sink: slow, QueueSize: 16, BatchSize: 4, ErrorLog: newDiscardSlog()})
	var refused atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				ev := &event.Event{Action: "stress", Message: fmt.Sprintf("%d-%d", w, i)}
				if i%3 == 0 {
					if err := l.Log(context.Background(), ev); err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Error(err)
						}
						refused.Add(1)
					}
				} else {
					e := l.newEvent(time.Now())
					e.Action, e.Message = ev.Action, ev.Message
					l.tryEnqueue(e)
				}
				if w == 0 && i == 150 {
					go l.Close()
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	out := buf.String()
	lines := strings.Count(out, "\n")
	if st.Written != st.Enqueued || lines != int(st.Written) {
		t.Fatalf("stats %+v, %d lines", st, lines)
	}
	if total := int64(st.Enqueued+st.Dropped+st.Lost) + refused.Load(); total != 8*300 {
		t.Fatalf("enqueued %d + dropped %d + lost %d + refused %d = %d, want %d", st.Enqueued, st.Dropped, st.Lost, refused.Load(), total, 8*300)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		ev, err := event.Decode([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		if seen[ev.Message] {
			t.Fatalf("event %s written twice", ev.Message)
		}
		seen[ev.Message] = true
	}
}

// slowSink makes every write take a little while, so that the queue fills.
type slowSink struct{ sink.Sink }

func (s *slowSink) Write(ctx context.Context, recs [][]byte) error {
	time.Sleep(50 * time.Microsecond)
	return s.Sink.Write(ctx, recs)
}

// TestQueueConcurrentPublish: senders of both kinds (offer, put) against
// a small queue, whose chunks wrap around the ring many times, and the
// writer taking batches meanwhile, then Close: the writer reads every
// item queued exactly once, whole (never a slot claimed and not yet
// published, or one written again before it was taken), each sender's in
// the order it sent them, and every offered item is either taken or
// counted as dropped.
func TestQueueConcurrentPublish(t *testing.T) {
	const (
		senders = 6
		each    = 20000
	)
	tests := []struct {
		name     string
		max      int
		maxBytes int
	}{
		{"items bound", 2*chunkLen + 7, 1 << 30},
		{"bytes bound", 1 << 20, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newQueue(tt.max, tt.maxBytes)
			evs := make([]event.Event, senders*each)
			var wg sync.WaitGroup
			var refused atomic.Int64
			for g := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						it := item{ev: &evs[g*each+i], size: 1 + i%16}
						if g%3 == 0 && i%4 == 0 {
							if err := q.put(context.Background(), it, nil, time.Second); err != nil {
								t.Errorf("put: %v", err)
								refused.Add(1)
							}
							continue
						}
						if ok, closed, _ := q.offer(it); !ok && closed {
							refused.Add(1)
						}
					}
				}()
			}
			done := make(chan struct{})
			go func() { wg.Wait(); q.close(); close(done) }()
			last := make([]int, senders)
			for g := range last {
				last[g] = -1
			}
			timer := time.NewTimer(time.Hour)
			timer.Stop()
			taken := 0
			var batch []item
			for {
				batch = q.next(batch, 64, timer)
				if len(batch) == 0 {
					break
				}
				held := 0
				for _, it := range batch {
					if it.ev == nil {
						t.Fatalf("item %d of a batch: read before it was published", taken)
					}
					k := int((uintptr(unsafe.Pointer(it.ev)) - uintptr(unsafe.Pointer(&evs[0]))) / unsafe.Sizeof(evs[0]))
					g, i := k/each, k%each
					if i <= last[g] {
						t.Fatalf("sender %d's item %d after its item %d", g, i, last[g])
					}
					if it.size != 1+i%16 {
						t.Fatalf("sender %d's item %d of size %d, want %d", g, i, it.size, 1+i%16)
					}
					last[g] = i
					held += it.size
					taken++
				}
				if held > tt.maxBytes+16 {
					t.Fatalf("a batch keeps %d bytes, over %d", held, tt.maxBytes)
				}
			}
			<-done
			enq, dropped, queued := q.counts()
			if queued != 0 || int(enq) != taken || refused.Load() != 0 || int(enq+dropped) != senders*each {
				t.Fatalf("taken %d, enqueued %d, dropped %d, queued %d, refused %d; sent %d", taken, enq, dropped, queued, refused.Load(), senders*each)
			}
			if dropped == 0 {
				t.Fatal("no item dropped: the queue never filled")
			}
		})
	}
}
