package proxy

import (
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// gateMaxHold bounds how long an answer waits for the request lane (an
// event the lane never sees, dropped under overload, must not stall the
// client's later answers for longer).
const gateMaxHold = 250 * time.Millisecond

// gateMaxClients bounds the gate's state; beyond it new failures are not
// held for (the lane and detection still see them).
const gateMaxClients = 1 << 16

// answerGate holds the upstream's answers to a client while a failed
// authentication of that client (a 401 or 403 from the upstream) has been
// answered but not yet evaluated by the request lane, then lets them go
// or withholds them if the lane blocked the client meanwhile. A brute
// force sends its guesses in bursts: without the gate, the rest of the
// burst whose failure crosses the threshold is answered before the lane's
// block comes (about a millisecond later), and those answers, one of
// which may say the password was right, reach the attacker. Only clients
// with such a failure in flight wait, and only until the lane has seen
// it: about a millisecond, at most gateMaxHold.
//
// The lane sees the gateway's events in the order they were queued; a
// failure is "seen" once the lane has evaluated as many records as the
// event queue had accepted when that request's events were queued.
type answerGate struct {
	enqueued func() uint64 // events accepted into the queue so far
	observed func() uint64 // records the lane has evaluated

	mu      sync.Mutex
	clients map[netip.Addr]*gateEntry
	wake    chan struct{} // closed when observed grows (or a failure is queued)
	// hurry, if not nil, is told each time a failure's events are queued:
	// the single node's event writer then stops waiting to gather a
	// bigger commit (nodeSink), so that the lane sees them at once.
	hurry chan<- struct{}
}

type gateEntry struct {
	inflight int       // failures answered whose events are not queued yet
	upTo     uint64    // records the lane must have evaluated
	since    time.Time // the oldest unresolved failure
}

func newAnswerGate(enqueued, observed func() uint64) *answerGate {
	return &answerGate{enqueued: enqueued, observed: observed, clients: make(map[netip.Addr]*gateEntry), wake: make(chan struct{})}
}

// gateMark is how a request tells Proxy.ServeHTTP that its answer was a
// failure the gate is waiting for (set by modifyResponse).
type gateMark struct {
	client netip.Addr
	begun  *gateEntry
	// conn: the mark of a lean front end's connection, which its
	// requests use one after the other (Proxy.connContext).
	conn bool
}

type gateKey struct{}

// isAuthFailure reports whether an upstream status is one the detection
// rules count as a failed authentication or authorisation.
func isAuthFailure(status int) bool {
	return status == http.StatusUnauthorized || status == http.StatusForbidden
}

// end notes that the events of the failure pass noted in e are queued.
func (g *answerGate) end(e *gateEntry) {
	n := g.enqueued()
	g.mu.Lock()
	defer g.mu.Unlock()
	e.inflight--
	e.upTo = max(e.upTo, n)
	g.wakeLocked()
	if g.hurry != nil {
		select {
		case g.hurry <- struct{}{}:
		default: // already told
		}
	}
}

// notify is called by the lane after it has evaluated more records.
func (g *answerGate) notify() {
	g.mu.Lock()
	g.wakeLocked()
	g.mu.Unlock()
}

func (g *answerGate) wakeLocked() {
	close(g.wake)
	g.wake = make(chan struct{})
}

// pass decides on an upstream answer to client: it waits until the lane
// has evaluated every failure of client answered so far (or until
// gateMaxHold after the oldest), then asks blocked whether the client is
// blocked now (withhold: the answer must not be given); if not, and the
// answer is itself a failure, it is noted (begun: the caller must call end
// once the request's events are queued). Waiting, the check and the note
// are one step, so that of answers racing each other only the first
// failure goes out before the lane has seen it. No answer waits longer
// than gateMaxHold, however many failures of its client come.
func (g *answerGate) pass(client netip.Addr, status int, blocked func() bool) (withhold bool, begun *gateEntry) {
	deadline := time.Now().Add(gateMaxHold) // this answer's own bound
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		g.mu.Lock()
		e := g.clients[client]
		if e != nil {
			pending := e.inflight > 0 || g.observed() < e.upTo
			left := min(gateMaxHold-time.Since(e.since), time.Until(deadline))
			if pending && left > 0 {
				wake := g.wake
				g.mu.Unlock()
				if timer == nil {
					timer = time.NewTimer(left)
				} else {
					timer.Reset(left)
				}
				select {
				case <-wake:
				case <-timer.C:
				}
				continue
			}
			if !pending || time.Since(e.since) >= gateMaxHold {
				// Seen by the lane, or not in time (an event dropped
				// under overload): nothing left to wait for.
				delete(g.clients, client)
				e = nil
			}
		}
		if blocked() {
			g.mu.Unlock()
			return true, nil
		}
		if isAuthFailure(status) {
			switch {
			case e != nil:
				// Waited out its own bound behind a flood of failures.
				e.inflight++
				begun = e
			case len(g.clients) < gateMaxClients || g.expireLocked():
				begun = &gateEntry{inflight: 1, since: time.Now()}
				g.clients[client] = begun
			}
		}
		g.mu.Unlock()
		return false, begun
	}
}

// expireLocked forgets clients whose failures the lane has seen or that
// waited out gateMaxHold, and reports whether there is room now.
func (g *answerGate) expireLocked() bool {
	now, seen := time.Now(), g.observed()
	for c, e := range g.clients {
		if e.inflight == 0 && seen >= e.upTo || now.Sub(e.since) >= gateMaxHold {
			delete(g.clients, c)
		}
	}
	return len(g.clients) < gateMaxClients
}
