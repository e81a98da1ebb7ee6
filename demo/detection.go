package demo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/trailguard/trailguard/alerting"
	"github.com/trailguard/trailguard/decision"
	"github.com/trailguard/trailguard/server"
)

// Detection is what the collector's detection engine made of the traffic.
type Detection struct {
	// Alerts are the alerts stored, oldest first.
	Alerts []DetectedAlert
	// Decisions are the block decisions made (a repeat offence's longer
	// ban replaces the one in force).
	Decisions []decision.Decision
}

// DetectedAlert is one alert, timed against the record that completed it.
type DetectedAlert struct {
	Rule, Message, Level string
	// Trigger is the event.id of the record that crossed the threshold
	// (the tenth failed login of a brute force).
	Trigger string
	// Stored is how long after the trigger was appended to the ledger the
	// alert was; Decided how long after it the block decision was (zero
	// when the rule blocks nothing). Both are the ledger's append times.
	Stored, Decided time.Duration
	// Blocked describes the block decision, e.g. "ban of Ip 203.0.113.66
	// for 1h0m0s".
	Blocked string
}

// collectDetection waits for detection to reach the end of the ledger and
// reads what it raised, timing each alert by the ledger's append times.
func collectDetection(col *server.Server) Detection {
	var d Detection
	if col.Alerts() == nil {
		return d
	}
	for i := 0; i < 400 && col.DetectionNext() < col.Ledger().Size(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	l := col.Ledger()
	appended := func(i uint64) (time.Time, []byte, bool) {
		e, err := l.Read(i)
		return e.Time, e.Data, err == nil
	}
	// Decisions as the ledger records them, by alert id (a longer ban
	// replaces a shorter one in force, but both were made).
	type made struct {
		at   time.Time
		what string
	}
	decided := map[string]made{}
	for e, err := range l.Entries(0) {
		if err != nil {
			break
		}
		if bytes.Contains(e.Data, []byte(`"block_decision_created"`)) {
			var doc struct {
				Trailguard struct {
					Decision decision.Decision `json:"decision"`
				} `json:"trailguard"`
			}
			if json.Unmarshal(e.Data, &doc) == nil && doc.Trailguard.Decision.AlertID != "" {
				dec := doc.Trailguard.Decision
				d.Decisions = append(d.Decisions, dec)
				decided[dec.AlertID] = made{e.Time, fmt.Sprintf("ban of %s %s for %s", dec.Scope, dec.Value, dec.Until.Sub(dec.Created).Round(time.Second))}
			}
		}
	}
	alerts := col.Alerts().List(alerting.Filter{Limit: 1000})
	slices.Reverse(alerts) // oldest first
	for _, a := range alerts {
		da := DetectedAlert{Rule: a.RuleName, Message: a.Message, Level: a.Level}
		stored, doc, ok := appended(a.Index)
		if !ok {
			continue
		}
		var ad struct {
			Trailguard struct {
				Alert struct {
					Trigger struct {
						Index   uint64 `json:"index"`
						EventID string `json:"event_id"`
					} `json:"trigger"`
				} `json:"alert"`
			} `json:"trailguard"`
		}
		json.Unmarshal(doc, &ad)
		tr := ad.Trailguard.Alert.Trigger
		da.Trigger = tr.EventID
		if trig, _, ok := appended(tr.Index); ok {
			da.Stored = stored.Sub(trig)
			if m, ok := decided[a.ID]; ok {
				da.Decided, da.Blocked = m.at.Sub(trig), m.what
			}
		}
		d.Alerts = append(d.Alerts, da)
	}
	return d
}
