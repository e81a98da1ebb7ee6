package decision

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/trailguard/trailguard/detect"
)

// Actions of decision events (event.action).
const (
	ActionCreated = "block_decision_created"
	ActionDeleted = "block_decision_deleted"
	// ActionRejected records a decision of the state file that the
	// ledger did not support at start: it was not enforced.
	ActionRejected = "block_decision_rejected"
)

// Event is a decision as the ledger records it: an ECS event of dataset
// trailguard.decision (which the detection engine never evaluates).
type Event struct {
	Action   string
	Decision Decision
	// Replaces is the decision a longer ban took over from.
	Replaces int64
	// Covers are the rules' decisions inside a widened ban (a network's
	// ban made of them), which it ends.
	Covers []int64
	// At is when it happened (creation, deletion).
	At time.Time
}

type wireDecision struct {
	Decision
	Replaces int64   `json:"replaces,omitempty"`
	Covers   []int64 `json:"covers,omitempty"`
	Duration string  `json:"duration"`
}

// AppendJSON appends the event as one line of ECS JSON.
func (ev Event) AppendJSON(dst []byte) []byte {
	d := ev.Decision
	typ, verb := "creation", fmt.Sprintf("ban %s %s until %s", d.Scope, d.Value, d.Until.UTC().Format(time.RFC3339))
	switch ev.Action {
	case ActionDeleted:
		typ, verb = "deletion", fmt.Sprintf("unban %s %s", d.Scope, d.Value)
	case ActionRejected:
		typ, verb = "denied", fmt.Sprintf("rejected ban %s %s until %s from the state file", d.Scope, d.Value, d.Until.UTC().Format(time.RFC3339))
	}
	msg := fmt.Sprintf("%s (%s, offence %d)", verb, d.Scenario, d.Offence)
	doc := map[string]any{
		"@timestamp": ev.At.UTC().Format("2006-01-02T15:04:05.000000000Z07:00"),
		"message":    msg,
		"event": map[string]any{"kind": "event", "category": []string{"intrusion_detection"}, "type": []string{typ},
			"action": ev.Action, "outcome": "success", "dataset": detect.DatasetDecision,
			"id": d.UUID + map[string]string{ActionDeleted: "-deleted", ActionRejected: "-rejected"}[ev.Action], "reason": d.Reason},
		"trailguard": map[string]any{"decision": wireDecision{Decision: d, Replaces: ev.Replaces, Covers: ev.Covers, Duration: d.Until.Sub(d.Created).String()}},
	}
	switch d.Scope {
	case ScopeIP:
		doc["client"] = map[string]any{"ip": d.Value}
	case ScopeUser:
		doc["user"] = map[string]any{"target": map[string]any{"name": d.Value}}
	}
	if d.By != "" {
		u, _ := doc["user"].(map[string]any)
		if u == nil {
			u = map[string]any{}
			doc["user"] = u
		}
		u["name"] = d.By
	}
	if d.Scenario != "" && d.Scenario != "manual" {
		doc["rule"] = map[string]any{"name": d.Scenario}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		panic(err) // strings and numbers only
	}
	return append(dst, bytes.TrimRight(buf.Bytes(), "\n")...)
}

// parseEvent reads a decision event back from the ledger; ok is false for
// any other record.
func parseEvent(data []byte) (Event, bool) {
	if !bytes.Contains(data, []byte(detect.DatasetDecision)) {
		return Event{}, false
	}
	var doc struct {
		Timestamp time.Time `json:"@timestamp"`
		Event     struct {
			Action  string `json:"action"`
			Dataset string `json:"dataset"`
		} `json:"event"`
		Trailguard struct {
			Decision *wireDecision `json:"decision"`
		} `json:"trailguard"`
		// Origin is set on another collector's record, forwarded here:
		// its decisions are its own (event.LedgerOrigin).
		Origin string `json:"trailguard.ledger.origin"`
	}
	if json.Unmarshal(data, &doc) != nil || doc.Event.Dataset != detect.DatasetDecision || doc.Trailguard.Decision == nil || doc.Origin != "" {
		return Event{}, false
	}
	if doc.Event.Action != ActionCreated && doc.Event.Action != ActionDeleted {
		return Event{}, false
	}
	w := doc.Trailguard.Decision
	return Event{Action: doc.Event.Action, Decision: w.Decision, Replaces: w.Replaces, Covers: w.Covers, At: doc.Timestamp}, true
}
