package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/throttle"
)

// ActionEventsLost is the alert a gateway records once its event store
// takes events again after some were lost: how many, and when.
const ActionEventsLost = "audit_events_lost"

// eventQueueSize is the gateway's event queue (httpaudit's QueueSize):
// what a failing event store can hold back before events are lost.
// Tests lower it.
var eventQueueSize = 1 << 16

// lossWatch follows the event queue's counters: while the event store
// (the single node's ledger, the spool, trail_dir) fails, requests are
// still served (fail-open: the gateway must not take the API down with
// its disk) and their events wait in the queue; once it is full they are
// lost. That loss was counted in httpaudit's Stats only, which nothing
// showed: an outage of the trail looked like a quiet period. Now the
// failure and each loss are logged, /metrics of the single node counts
// them, and once the store takes events again an alert in the trail says
// how many were lost between when and when.
type lossWatch struct {
	failing       bool
	reported      uint64        // lost events the trail was told of
	seen          uint64        // lost events noted in logGate
	logGate       throttle.Gate // the loss lines, weighed in events lost
	firstUnreport time.Time     // the first loss not yet in the trail
}

func newLossWatch() *lossWatch {
	return &lossWatch{logGate: throttle.Gate{Every: lossLogEvery}}
}

// lost is what the queue could not keep: access events dropped when it
// was full, events that found it full while the store failed, inferred
// events (logins) that could not be queued.
func (p *Proxy) lost() uint64 {
	st := p.audit.Stats()
	return st.Dropped + st.Lost + p.notRecorded.Load()
}

// lossLogEvery bounds the loss lines in the log while the loss goes on.
const lossLogEvery = 10 * time.Second

// check is one look at the counters, at now.
func (w *lossWatch) check(p *Proxy, now time.Time) {
	st := p.audit.Stats()
	lost := p.lost()
	switch {
	case st.Failing && !w.failing:
		w.failing = true
		p.log.Error("proxy: the event store is failing: requests are still served, their events wait in memory and are lost once the queue is full",
			"queued", st.Queued, "queue_size", eventQueueSize)
	case !st.Failing && w.failing:
		w.failing = false
		p.log.Info("proxy: the event store takes events again", "queued", st.Queued)
	}
	var line throttle.Line
	var logIt bool
	if lost > w.seen {
		line, logIt = w.logGate.Note(now, lost-w.seen)
		w.seen = lost
	} else {
		line, logIt = w.logGate.Due(now) // losses held back, logged even when no more come
	}
	if logIt {
		p.log.Error("proxy: events lost: the event store failed or the queue was full", "lost", line.Sum, "lost_total", lost, "failing", st.Failing)
	}
	if lost > w.reported && w.firstUnreport.IsZero() {
		w.firstUnreport = now
	}
	if lost <= w.reported || st.Failing {
		return
	}
	n := lost - w.reported
	attrs, _ := json.Marshal(map[string]any{"lost": n, "lost_total": lost, "from": w.firstUnreport.UTC(), "to": now.UTC()})
	ev := &event.Event{Kind: event.KindAlert, Category: []string{event.CategoryIntrusion}, Type: []string{event.TypeInfo},
		Dataset: event.DatasetAudit, Action: ActionEventsLost, Outcome: event.OutcomeFailure, LogLevel: "error",
		Message: fmt.Sprintf("%d of the gateway's events were lost between %s and %s: the event store failed or the event queue was full; the requests were served", n,
			w.firstUnreport.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)),
		Attrs: attrs}
	if err := p.audit.Log(context.Background(), ev); err != nil {
		p.log.Error("proxy: event not recorded", "action", ev.Action, "err", err)
		return
	}
	w.reported, w.firstUnreport = lost, time.Time{}
}

// writeMetrics writes the gateway's event counters in Prometheus' text
// format (the single node's /metrics).
func (p *Proxy) writeMetrics(w io.Writer) {
	st := p.audit.Stats()
	m := func(name, typ, help string, v any) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, v)
	}
	m("trailguard_gateway_events_lost_total", "counter", "Gateway events not recorded: dropped with the queue full, or lost while the event store failed.", p.lost())
	m("trailguard_gateway_events_queued", "gauge", "Gateway events waiting for the event store.", st.Queued)
	m("trailguard_gateway_event_store_failing", "gauge", "1 while the gateway's event store (the ledger) fails: requests are served, events wait in the queue.", b2i(st.Failing))
	m("trailguard_gateway_event_store_failures_total", "counter", "Failed writes of the gateway's event store (each retried).", st.Failed)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
