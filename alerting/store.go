// Package alerting is what happens to an alert once the detection engine
// raised it: it is stored in the ledger (so alerts are as tamper-evident as
// the events they point to), repeats of it are folded into it for a
// suppression window, its lifecycle (open, acknowledged, resolved) is kept,
// and notifiers deliver it — a signed webhook, Slack, syslog, Prometheus
// Alertmanager — each from its own bounded queue with retries, so an
// outage of a receiver never slows ingest or detection.
package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/trailguard/trailguard/detect"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/regfile"
	"github.com/trailguard/trailguard/internal/statefile"
	"github.com/trailguard/trailguard/ledger"
)

// maxStateFile bounds the state file read whole at Open, which holds at
// most MaxAlerts alerts (10,000 by default): a larger file is not one the
// collector wrote.
const maxStateFile = 512 << 20

// Statuses of an alert.
const (
	StatusOpen         = "open"
	StatusAcknowledged = "acknowledged"
	StatusResolved     = "resolved"
)

// Alert is a stored alert and its lifecycle.
type Alert struct {
	ID       string            `json:"id"`
	RuleID   string            `json:"rule_id"`
	RuleName string            `json:"rule_name,omitempty"`
	Title    string            `json:"title"`
	Level    string            `json:"level"`
	Severity int               `json:"severity"`
	Ruleset  string            `json:"ruleset,omitempty"`
	Message  string            `json:"message"`
	Time     time.Time         `json:"time"`
	First    time.Time         `json:"first"`
	Last     time.Time         `json:"last"`
	Group    map[string]string `json:"group,omitempty"`
	Fields   map[string]string `json:"fields,omitempty"`
	Count    int               `json:"count"`
	// Repeats counts the alerts of the same rule and group folded into
	// this one within the suppression window; LastSeen is the newest.
	Repeats  int       `json:"repeats"`
	LastSeen time.Time `json:"last_seen"`
	// Index is the ledger index of the alert document.
	Index     uint64    `json:"ledger_index"`
	Status    string    `json:"status"`
	Updated   time.Time `json:"updated,omitempty"`
	UpdatedBy string    `json:"updated_by,omitempty"`
	Note      string    `json:"note,omitempty"`
	// StatusIndex is the ledger index of the audited change that set
	// Status (nil while open since it was raised, or until the change's
	// record is seen); StatusAfter is the ledger's size when the change
	// was made, so its record is at or after it. Open checks the state
	// file against them.
	StatusIndex *uint64 `json:"status_index,omitempty"`
	StatusAfter uint64  `json:"status_after,omitempty"`

	key string
}

// Options configure a Store.
type Options struct {
	// Path is the state file (alerts.json in the data directory).
	Path string
	// Append stores an alert document durably (the ledger's Append).
	Append func(ctx context.Context, rec []byte) (uint64, error)
	// Suppress is the window within which an alert of the same rule and
	// group as an unresolved one is folded into it. Default 10m.
	Suppress time.Duration
	// MaxAlerts bounds the alerts kept in the state (the ledger keeps
	// them all): past it the oldest resolved go, past twice it the oldest
	// of any status, an eighth of it more each time. Default 10,000.
	MaxAlerts int
	// Notify is called with each new alert (not the folded repeats) and
	// each change of status, after it is stored.
	Notify func(n Notice)
	// Now is the clock.
	Now func() time.Time
	// Log receives the loud line about a state file the ledger does not
	// support (slog.Default()).
	Log *slog.Logger
}

// Notice is what notifiers receive: a new alert, or a change of its
// status.
type Notice struct {
	Alert Alert
	// Doc is the alert's ECS document as stored.
	Doc []byte
	// Change is "raised", or the new status.
	Change string
}

// Store holds the alerts and their lifecycle. Safe for concurrent use.
type Store struct {
	o     Options
	mu    sync.Mutex
	byID  map[string]*Alert
	byKey map[string]*Alert // open or acknowledged alert of a rule and group
	// through: ledger records before it are reflected in the state.
	through uint64
	// saver saves the state file (Run, Flush), marked at each change.
	saver statefile.Saver
	stats Stats
	docs  map[string][]byte
	size  func() uint64 // the ledger's size, when the Source tells
	// resolvable: a resolved alert may be kept that trim would drop
	// (set when one is added or resolved, cleared when trim finds none),
	// so that between MaxAlerts and twice it trim sorts the alerts only
	// when it may drop one.
	resolvable bool
}

// Stats counts alerts.
type Stats struct {
	Raised, Suppressed uint64
	Open, Acknowledged int
	// Rejected counts alerts and statuses of the state file that the
	// ledger did not support at Open (edited on disk).
	Rejected uint64
}

// Source is what Open catches up from: *ledger.Ledger satisfies it.
type Source interface {
	Entries(from uint64) iter.Seq2[ledger.Entry, error]
}

type stateFile struct {
	Through uint64   `json:"through"`
	Alerts  []*Alert `json:"alerts"`
}

// Open loads the state file and catches up with the alerts and status
// changes the ledger holds after it.
//
// The state file is checked against the ledger, which is the truth: an
// alert whose ledger_index record is not that alert is dropped, and a
// status not backed by the audited change its status_index names is
// re-read from the ledger's audited changes (from status_after on). When
// the file said something the ledger does not (edited on disk), Open logs
// it at error level and appends an alert_state_rejected event.
func Open(o Options, src Source) (*Store, error) {
	if o.Suppress <= 0 {
		o.Suppress = 10 * time.Minute
	}
	if o.MaxAlerts <= 0 {
		o.MaxAlerts = 10_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	s := &Store{o: o, byID: map[string]*Alert{}, byKey: map[string]*Alert{}}
	s.saver = statefile.Saver{Lock: &s.mu, Snapshot: s.snapshot, Write: s.writeFile, Failed: func(err error) {
		s.o.Log.Error("alerting: state file not saved", "err", err)
	}}
	if sz, ok := src.(interface{ Size() uint64 }); ok {
		s.size = sz.Size
	}
	claimed := map[string]string{} // alert → status the file claimed, not backed by the ledger
	if o.Path != "" {
		// A regular file of at most maxStateFile bytes (regfile): a FIFO
		// planted at the name would hang the collector's start, a link to
		// /dev/zero or a sparse file of terabytes take all its memory.
		data, err := regfile.Read(o.Path, maxStateFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case errors.Is(err, regfile.ErrNotRegular) || errors.Is(err, regfile.ErrTooLarge):
			return nil, fmt.Errorf("alerting: %w: not a state file the collector writes; delete it and the ledger rebuilds it", err)
		case err != nil:
			return nil, fmt.Errorf("alerting: %w", err)
		default:
			var st stateFile
			if err := json.Unmarshal(data, &st); err != nil {
				return nil, fmt.Errorf("alerting: %s is damaged (%v): delete it and the ledger rebuilds it", o.Path, err)
			}
			s.through = st.Through
			for _, a := range st.Alerts {
				if a == nil {
					continue
				}
				if src != nil {
					if why := verifyAlert(src, a); why != "" {
						s.reject(a, a.Status, why)
						continue
					}
					if a.Status != StatusOpen || a.StatusIndex != nil {
						if a.StatusIndex == nil || !verifyStatus(src, *a.StatusIndex, a.ID, a.Status) {
							// Re-read from the audited changes: the change's
							// record is at or after StatusAfter.
							claimed[a.ID] = a.Status
							s.through = min(s.through, a.StatusAfter)
							a.Status, a.StatusIndex, a.Updated, a.UpdatedBy, a.Note = StatusOpen, nil, time.Time{}, "", ""
						}
					}
				}
				s.add(a)
			}
		}
	}
	if src != nil {
		if p, ok := src.(interface{ Pruned() uint64 }); ok {
			s.through = max(s.through, p.Pruned())
		}
		for e, err := range src.Entries(s.through) {
			if errors.Is(err, ledger.ErrPruned) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("alerting: catch up from the ledger: %w", err)
			}
			s.applyRecord(e.Index, e.Data)
			s.through = e.Index + 1
			// Trimmed as it goes: a ledger of years read from the start
			// (the state file lost) held every alert it ever raised, in
			// memory and then in a state file too large to open.
			s.trim()
		}
	}
	s.trim()
	for id, status := range claimed {
		if a := s.byID[id]; a != nil && a.Status != status {
			s.reject(a, status, fmt.Sprintf("no audited change of the ledger sets status %s (the ledger says %s)", status, a.Status))
		}
	}
	// Saved at once: the file then holds what Open rejected and caught up.
	s.saver.Mark()
	return s, s.saver.Flush()
}

// verifyAlert checks an alert of the state file against its ledger
// record; it returns why the ledger does not support it, or "".
func verifyAlert(src Source, a *Alert) string {
	for e, err := range src.Entries(a.Index) {
		if err != nil {
			return fmt.Sprintf("ledger record %d unreadable: %v", a.Index, err)
		}
		var doc struct {
			Origin string `json:"trailguard.ledger.origin"`
			Event  struct {
				Kind, Dataset, ID string
			} `json:"event"`
		}
		if json.Unmarshal(e.Data, &doc) != nil || doc.Event.Kind != "alert" || doc.Event.Dataset != detect.DatasetAlert || doc.Event.ID != a.ID || doc.Origin != "" {
			return fmt.Sprintf("ledger record %d is not alert %s", a.Index, a.ID)
		}
		return ""
	}
	return fmt.Sprintf("ledger record %d does not exist", a.Index)
}

// verifyStatus says whether the ledger record at idx is the collector's
// audited change of alert id to status.
func verifyStatus(src Source, idx uint64, id, status string) bool {
	for e, err := range src.Entries(idx) {
		if err != nil {
			return false
		}
		c, ok := parseStatus(e.Data)
		return ok && c.id == id && c.status == status
	}
	return false
}

// reject reports what the state file said and the ledger does not
// support: a loud log line and a ledger event, so the tampering is on the
// trail an auditor reads.
func (s *Store) reject(a *Alert, status, why string) {
	s.stats.Rejected++
	s.o.Log.Error("alerting: state file says what the ledger does not support; the ledger wins",
		"file", s.o.Path, "alert", a.ID, "status", status, "reason", why)
	if s.o.Append == nil {
		return
	}
	doc := map[string]any{
		"@timestamp": s.o.Now().UTC().Format("2006-01-02T15:04:05.000000000Z07:00"),
		"message":    "alert state file rejected: " + why,
		"event": map[string]any{"kind": "event", "category": []string{"intrusion_detection"}, "type": []string{"denied"},
			"action": "alert_state_rejected", "outcome": "failure", "dataset": detect.DatasetAlert, "reason": why},
		"trailguard": map[string]any{"alert_state": map[string]any{"id": a.ID, "status": status, "ledger_index": a.Index, "file": s.o.Path}},
	}
	rec, err := json.Marshal(doc)
	if err == nil {
		_, err = s.o.Append(context.Background(), rec)
	}
	if err != nil {
		s.o.Log.Error("alerting: could not record the rejected state in the ledger", "alert", a.ID, "err", err)
	}
}

// groupKey identifies "the same alert": the rule and its group values, or
// for a detection rule the client address.
func groupKey(a *detect.Alert) string {
	var b strings.Builder
	b.WriteString(a.Rule.Ref())
	for _, g := range a.Group {
		b.WriteString("\x00" + g.ECS + "=" + detect.CutValue(g.Value, maxStoredValue))
	}
	if len(a.Group) == 0 {
		for _, f := range a.Fields {
			if f.ECS == "client.ip" {
				b.WriteString("\x00" + f.ECS + "=" + detect.CutValue(f.Value, maxStoredValue))
			}
		}
	}
	return b.String()
}

// Raise stores an alert (unless Stored says it is in the ledger already)
// or folds it into an unresolved alert of the same rule and group raised
// within the suppression window. It returns the stored alert and whether
// this one was folded.
func (s *Store) Raise(ctx context.Context, a *detect.Alert) (Alert, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := groupKey(a)
	// Events arrive a little out of order: a repeat may be older than the
	// alert it folds into.
	if old := s.byKey[key]; old != nil && old.Status != StatusResolved && absDur(a.Time.Sub(old.LastSeen)) <= s.o.Suppress && old.ID != a.ID {
		old.Repeats++
		old.Count += a.Count
		old.LastSeen, old.Last = maxTime(old.LastSeen, a.Time), maxTime(old.Last, a.Last)
		s.stats.Suppressed++
		s.saver.Mark()
		return *old, true, nil
	}
	if existing := s.byID[a.ID]; existing != nil {
		return *existing, false, nil // raised again after a restart
	}
	doc := a.AppendJSON(nil)
	rec := fromDetect(a)
	rec.key = key
	if !a.Stored && s.o.Append != nil {
		idx, err := s.o.Append(ctx, doc)
		if err != nil {
			return Alert{}, false, fmt.Errorf("alerting: store alert: %w", err)
		}
		rec.Index = idx
		s.through = max(s.through, idx+1)
	}
	s.add(rec)
	s.stats.Raised++
	s.trim()
	// Saved by Run: the alert is durable in its ledger record, which
	// Open's catch-up reads.
	s.saver.Mark()
	if s.o.Notify != nil && !a.Stored {
		s.o.Notify(Notice{Alert: *rec, Doc: doc, Change: "raised"})
	}
	return *rec, false, nil
}

func fromDetect(a *detect.Alert) *Alert {
	r := a.Rule
	level := r.Level
	if level == "" {
		level = "medium"
	}
	rec := &Alert{ID: a.ID, RuleID: r.ID, RuleName: r.Name, Title: r.Title, Level: level, Severity: detect.Severity(level),
		Ruleset: r.Ruleset, Message: a.Message(), Time: a.Time, First: a.First, Last: a.Last, Count: a.Count,
		LastSeen: a.Time, Status: StatusOpen}
	if rec.RuleID == "" {
		rec.RuleID = r.Ref()
	}
	for _, g := range a.Group {
		if rec.Group == nil {
			rec.Group = map[string]string{}
		}
		rec.Group[g.ECS] = detect.CutValue(g.Value, maxStoredValue)
	}
	for _, f := range a.Fields {
		if rec.Fields == nil {
			rec.Fields = map[string]string{}
		}
		rec.Fields[f.ECS] = detect.CutValue(f.Value, maxStoredValue)
	}
	return rec
}

// maxStoredValue bounds each group-by and field value an alert keeps in
// the store (memory, alerts.json, /v1/alerts, notices): clients choose
// them, and up to MaxAlerts alerts are kept, so 250 KiB user agents made
// a 10,000-alert store gigabytes, rewritten every second. The alert's
// ledger document keeps detect.MaxValueBytes of each; a cut value ends in
// its length and hash, so long values that differ still group apart.
const maxStoredValue = 512

func (s *Store) add(a *Alert) {
	if a.key == "" {
		a.key = storedKey(a)
	}
	s.byID[a.ID] = a
	if a.Status == StatusResolved {
		s.resolvable = true
	} else {
		if old := s.byKey[a.key]; old == nil || !a.Time.Before(old.Time) {
			s.byKey[a.key] = a
		}
	}
}

// storedKey rebuilds groupKey from a stored alert.
func storedKey(a *Alert) string {
	var b strings.Builder
	if a.RuleName != "" {
		b.WriteString(a.RuleName)
	} else {
		b.WriteString(a.RuleID)
	}
	if len(a.Group) > 0 {
		for _, k := range sortedKeys(a.Group) {
			b.WriteString("\x00" + k + "=" + a.Group[k])
		}
	} else if v, ok := a.Fields["client.ip"]; ok {
		b.WriteString("\x00client.ip=" + v)
	}
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ErrNotFound is returned for an unknown alert id.
var ErrNotFound = errors.New("alerting: no such alert")

// ErrStatus is returned for a status that is not open, acknowledged or
// resolved.
var ErrStatus = errors.New("alerting: status must be open, acknowledged or resolved")

// SetStatus changes an alert's status (the caller records the change in
// the audit trail). It returns the alert before and after.
func (s *Store) SetStatus(id, status, by, note string) (before, after Alert, err error) {
	switch status {
	case StatusOpen, StatusAcknowledged, StatusResolved:
	default:
		return Alert{}, Alert{}, ErrStatus
	}
	s.mu.Lock()
	a := s.byID[id]
	if a == nil {
		s.mu.Unlock()
		return Alert{}, Alert{}, ErrNotFound
	}
	before = *a
	s.setStatus(a, status, by, note, s.o.Now().Round(0).UTC())
	// The audited change is recorded after this (by the caller): until it
	// is seen (Observe, or Open's catch-up), the ledger holds it at or
	// after its present size.
	a.StatusIndex, a.StatusAfter = nil, 0
	if s.size != nil {
		a.StatusAfter = s.size()
	}
	after = *a
	s.saver.Mark()
	s.mu.Unlock()
	err = s.Flush()
	if s.o.Notify != nil && before.Status != after.Status {
		s.o.Notify(Notice{Alert: after, Change: status})
	}
	return before, after, err
}

func (s *Store) setStatus(a *Alert, status, by, note string, at time.Time) {
	a.Status, a.UpdatedBy, a.Note, a.Updated = status, by, note, at
	if status == StatusResolved {
		s.resolvable = true
		if s.byKey[a.key] == a {
			delete(s.byKey, a.key)
		}
	} else if old := s.byKey[a.key]; old == nil || !a.Time.Before(old.Time) {
		s.byKey[a.key] = a
	}
	s.saver.Mark()
}

// Get returns one alert.
func (s *Store) Get(id string) (Alert, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byID[id]
	if !ok {
		return Alert{}, false
	}
	return *a, true
}

// Filter selects alerts for List.
type Filter struct {
	Status string // "" for any
	Rule   string // rule id or name
	Since  time.Time
	Limit  int
}

// List returns alerts, newest first.
func (s *Store) List(f Filter) []Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Alert, 0, min(len(s.byID), max(f.Limit, 0)))
	for _, a := range s.byID {
		if (f.Status == "" || a.Status == f.Status) && (f.Rule == "" || a.RuleID == f.Rule || a.RuleName == f.Rule) && !a.Time.Before(f.Since) {
			out = append(out, *a)
		}
	}
	slices.SortFunc(out, func(a, b Alert) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	for _, a := range s.byID {
		switch a.Status {
		case StatusOpen:
			st.Open++
		case StatusAcknowledged:
			st.Acknowledged++
		}
	}
	return st
}

// trim drops the oldest resolved alerts once more than MaxAlerts are
// kept, then the oldest of any status once more than twice MaxAlerts,
// each time down to an eighth of MaxAlerts below the bound. It sorts the
// alerts by time, so it does so only when it may drop one and then makes
// room for an eighth of MaxAlerts more: it sorted them at every alert
// raised, and detection waits for each, once MaxAlerts were kept and
// none resolved (during an attack, nobody resolves them): 10,000-20,000
// alerts sorted per alert.
func (s *Store) trim() {
	keep := s.o.MaxAlerts
	if n := len(s.byID); n <= keep || n <= 2*keep && !s.resolvable {
		return
	}
	slack := max(1, keep/8)
	all := make([]*Alert, 0, len(s.byID))
	for _, a := range s.byID {
		all = append(all, a)
	}
	slices.SortFunc(all, func(a, b *Alert) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	drop := func(a *Alert) {
		delete(s.byID, a.ID)
		if s.byKey[a.key] == a {
			delete(s.byKey, a.key)
		}
	}
	resolvedLeft := false
	for _, a := range all {
		if a.Status != StatusResolved {
			continue
		}
		if len(s.byID) <= keep-slack {
			resolvedLeft = true
			break
		}
		drop(a)
	}
	s.resolvable = resolvedLeft
	if len(s.byID) <= 2*keep {
		return
	}
	for _, a := range all {
		if len(s.byID) <= 2*keep-slack {
			break
		}
		if s.byID[a.ID] == a {
			drop(a)
		}
	}
}

// Run saves the state file now and then while alerts change, until ctx
// ends, and a last time then.
//
// An alert is durable once its ledger record is (Open catches up from the
// ledger), so the file is only where a start begins reading it. Saved at
// every alert, it was rewritten and synced whole (10,000 alerts kept, ~5
// MB) under the lock each alert takes: at 10,000 alerts, which a collector
// reaches in time, each new one took 80-700 ms, and detection waits for
// each before it looks at the next event.
func (s *Store) Run(ctx context.Context) {
	s.saver.Run(ctx, nil)
}

// Flush saves the state file if it changed since its last save.
func (s *Store) Flush() error {
	return s.saver.Flush()
}

// snapshot copies the alerts (s.mu held) and returns what encodes the
// copy, which the Saver runs after releasing s.mu: raising an alert
// (detection waits for each) does not wait for the JSON of 10,000-20,000
// alerts. An alert's Group and Fields are set when it is made and never
// changed, so the copies share them.
func (s *Store) snapshot() func() ([]byte, error) {
	if s.o.Path == "" {
		return func() ([]byte, error) { return nil, nil }
	}
	st := stateFile{Through: s.through, Alerts: make([]*Alert, 0, len(s.byID))}
	copies := make([]Alert, 0, len(s.byID))
	for _, a := range s.byID {
		copies = append(copies, *a)
		st.Alerts = append(st.Alerts, &copies[len(copies)-1])
	}
	return func() ([]byte, error) {
		slices.SortFunc(st.Alerts, func(a, b *Alert) int { return a.Time.Compare(b.Time) })
		data, err := json.Marshal(st)
		if err != nil {
			return nil, fmt.Errorf("alerting: save: %w", err)
		}
		return data, nil
	}
}

// writeFile replaces the state file with data, synced.
func (s *Store) writeFile(data []byte) error {
	if s.o.Path == "" {
		return nil
	}
	if err := statefile.Write(s.o.Path, data); err != nil {
		return fmt.Errorf("alerting: save: %w", err)
	}
	return nil
}

// ResourcePrefix is how the audit trail names an alert whose status an
// operator changed: trailguard.audit.resource "alert/<id>".
const ResourcePrefix = "alert/"

// applyRecord reflects one ledger record: an alert document, or an
// audited status change.
func (s *Store) applyRecord(idx uint64, data []byte) {
	switch {
	case bytes.Contains(data, []byte(`"`+detect.DatasetAlert+`"`)):
		var doc struct {
			Timestamp time.Time `json:"@timestamp"`
			Message   string    `json:"message"`
			Origin    string    `json:"trailguard.ledger.origin"` // another collector's, forwarded
			Event     struct {
				Kind     string    `json:"kind"`
				Dataset  string    `json:"dataset"`
				ID       string    `json:"id"`
				Severity int       `json:"severity"`
				Start    time.Time `json:"start"`
				End      time.Time `json:"end"`
			} `json:"event"`
			Log struct {
				Level string `json:"level"`
			} `json:"log"`
			Rule struct {
				ID, Name, Ruleset string
			} `json:"rule"`
			Trailguard struct {
				Alert struct {
					Count    int               `json:"count"`
					RuleName string            `json:"rule_name"`
					Group    map[string]string `json:"group"`
				} `json:"alert"`
			} `json:"trailguard"`
		}
		if json.Unmarshal(data, &doc) != nil || doc.Event.Kind != "alert" || doc.Event.Dataset != detect.DatasetAlert || doc.Event.ID == "" || doc.Origin != "" {
			return
		}
		if _, ok := s.byID[doc.Event.ID]; ok {
			return
		}
		a := &Alert{ID: doc.Event.ID, RuleID: doc.Rule.ID, RuleName: doc.Trailguard.Alert.RuleName, Title: doc.Rule.Name,
			Level: doc.Log.Level, Severity: doc.Event.Severity, Ruleset: doc.Rule.Ruleset, Message: doc.Message,
			Time: doc.Timestamp, First: doc.Event.Start, Last: doc.Event.End, Group: doc.Trailguard.Alert.Group,
			Count: doc.Trailguard.Alert.Count, LastSeen: doc.Timestamp, Index: idx, Status: StatusOpen}
		s.add(a)
	case bytes.Contains(data, []byte(`"`+ResourcePrefix)):
		c, ok := parseStatus(data)
		a := s.byID[c.id]
		if !ok || a == nil {
			return
		}
		s.setStatus(a, c.status, c.by, c.reason, c.at)
		a.StatusIndex = &idx
	}
}

// Observe notes a ledger record as it is appended (the collector's
// detection follows the ledger): the audited change of an alert's status
// gives the status its ledger index, which the next Open checks.
func (s *Store) Observe(idx uint64, data []byte) {
	if !bytes.Contains(data, []byte(`"`+ResourcePrefix)) {
		return
	}
	c, ok := parseStatus(data)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Only if it is the change in force: a later one already replaced it
	// otherwise (and will be observed in turn).
	if a := s.byID[c.id]; a != nil && a.Status == c.status && a.StatusIndex == nil && idx >= a.StatusAfter {
		a.StatusIndex = &idx
		s.saver.Mark()
	}
}

// statusChange is an audited change of an alert's status.
type statusChange struct {
	id, status, by, reason string
	at                     time.Time
}

// parseStatus reads the collector's audit of PATCH /v1/alerts/{id}.
func parseStatus(data []byte) (statusChange, bool) {
	var doc struct {
		Timestamp time.Time `json:"@timestamp"`
		User      struct {
			Name string `json:"name"`
		} `json:"user"`
		Service struct {
			Name string `json:"name"`
		} `json:"service"`
		Origin string `json:"trailguard.ledger.origin"`
		Event  struct {
			Reason string `json:"reason"`
		} `json:"event"`
		Trailguard struct {
			Audit struct {
				Resource string `json:"resource"`
				After    struct {
					Status string `json:"status"`
				} `json:"after"`
			} `json:"audit"`
		} `json:"trailguard"`
	}
	// Only the collector's own audit of PATCH /v1/alerts/{id} changes
	// a status: an application's audit event may name a resource
	// "alert/…" of its own, ingest refuses service.name
	// trailguard-collector (Event.CheckProvenance), and another
	// collector's record, forwarded here, is about its own alerts.
	if json.Unmarshal(data, &doc) != nil || doc.Service.Name != event.CollectorService || doc.Origin != "" {
		return statusChange{}, false
	}
	id, ok := strings.CutPrefix(doc.Trailguard.Audit.Resource, ResourcePrefix)
	if !ok || doc.Trailguard.Audit.After.Status == "" {
		return statusChange{}, false
	}
	return statusChange{id: id, status: doc.Trailguard.Audit.After.Status, by: doc.User.Name, reason: doc.Event.Reason, at: doc.Timestamp}, true
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
