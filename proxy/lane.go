package proxy

import (
	"bytes"
	"context"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/detect"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/sink"
)

// laneSource names, in the blocklist and in decisions_applied events, the
// blocks a single-node gateway enforces from its own events before
// detection has decided them (see requestLane).
const laneSource = "detection (request path)"

// laneTTL bounds a block enforced from the request path: detection's own
// decision normally replaces it within milliseconds; if none comes (the
// decision store refused it, or the ledger cannot take it), the block
// lapses.
const laneTTL = 10 * time.Second

// laneMaxGroups bounds the lane's correlation state. The lane only makes
// blocks come sooner: a group it forgets is still seen by detection.
const laneMaxGroups = 1 << 16

// requestLane evaluates the detection rules on the gateway's own events as
// the event writer hands them to the ledger, before the ledger's group
// commit makes them durable and before detection (which follows the
// ledger) sees them, and enforces the block a rule's response asks for at
// once. The decision is still detection's: made, recorded durably and
// escalated as without the lane, it replaces the lane's block when it
// arrives; the lane takes the ledger's two syncs (the event's, then the
// decision's) out of the time between the event that completes an attack
// and the first refused request.
//
// The lane never blocks what detection would not: it runs the same rules
// (compiled again, its state starting empty), asks the decision store for
// the value and the allowlist (decision.Store.Target), and only acts on
// alerts detection will raise too.
type requestLane struct {
	eng    *detect.Engine
	target func(*detect.Alert) (scope, value string, ok bool)
	p      atomic.Pointer[Proxy]
	gate   atomic.Pointer[answerGate]
	// seen counts the records handed to the lane (a retried batch
	// once), as the event queue counts those it accepted.
	seen  atomic.Uint64
	next  uint64
	last  []byte // first record of the last batch seen (a retried batch is not counted twice)
	lastN int
	now   func() time.Time
}

// newRequestLane compiles rules for the lane; nil when none of them asks
// for a block.
func newRequestLane(rules []*detect.Rule, target func(*detect.Alert) (string, string, bool)) *requestLane {
	blocks := false
	for _, r := range rules {
		blocks = blocks || r.Response != nil && r.Response.Block != ""
	}
	if !blocks || target == nil {
		return nil
	}
	eng, _ := detect.NewEngine(&detect.RuleSet{Rules: rules}, detect.Options{MaxGroups: laneMaxGroups})
	return &requestLane{eng: eng, target: target, now: time.Now}
}

// observe runs a batch of encoded events through the rules. It is called
// by the event writer alone (one goroutine), before the batch is stored.
// recs is the batch as the event writer handed it over; stored, if not
// nil, is the same events as they will be stored (nodeSink's normalised
// records, with where each holds its fields in spans), which the rules
// read instead.
func (l *requestLane) observe(recs, stored [][]byte, spans []event.Spans) {
	if len(recs) == 0 {
		return
	}
	// A batch the sink failed to store is handed over again as is.
	if len(recs) == l.lastN && bytes.Equal(recs[0], l.last) {
		return
	}
	l.last, l.lastN = append(l.last[:0], recs[0]...), len(recs)
	if stored == nil {
		stored = recs
	}
	if l.p.Load() != nil {
		now := l.now()
		for i, rec := range stored {
			l.next++
			r := detect.Record{Index: l.next, Time: now, Data: rec}
			if i < len(spans) {
				r.Spans = &spans[i]
			}
			l.eng.Process(r, l.emit)
		}
	}
	// Every record the queue accepted is counted, evaluated or not, so
	// that the gate's count matches the queue's.
	l.seen.Add(uint64(len(recs)))
	if g := l.gate.Load(); g != nil {
		g.notify()
	}
}

func (l *requestLane) emit(a *detect.Alert) {
	if a.Rule == nil || a.Rule.Response == nil {
		return
	}
	scope, value, ok := l.target(a)
	if !ok {
		return
	}
	p := l.p.Load()
	d := Decision{Origin: "trailguard", Type: "ban", Scope: scope, Value: value, Duration: laneTTL.String(), Scenario: a.Rule.Name}
	if d.Scenario == "" {
		d.Scenario = a.Rule.Ref()
	}
	if p.blocks.covers(d) {
		return // already enforced (by detection's decision, or by the lane)
	}
	u := Update{New: []Decision{d}}
	added, removed, _ := p.blocks.Apply(laneSource, u)
	p.laneBlocks.Add(1)
	// Recorded off the writer's goroutine: it is the one that makes room
	// in the event queue.
	go p.recordApplied(laneSource, u, added, removed)
}

// laneSink hands each batch to the lane, then to the storage.
type laneSink struct {
	sink.Sink
	lane *requestLane
}

func (s laneSink) Write(ctx context.Context, recs [][]byte) error {
	s.lane.observe(recs, nil, nil)
	return s.Sink.Write(ctx, recs)
}
