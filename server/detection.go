package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/trailguard/trailguard/alerting"
	"github.com/trailguard/trailguard/decision"
	"github.com/trailguard/trailguard/detect"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/ipnet"
	"github.com/trailguard/trailguard/ledger"
)

// DetectionConfig is the `detection:` setting: the rule engine that follows
// the ledger.
type DetectionConfig struct {
	// Disabled turns detection (and with it alerts and decisions) off.
	Disabled bool `yaml:"disabled"`
	// Rules are directories of Sigma rules loaded besides the built-in
	// ones and DATA_DIR/rules.
	Rules []string `yaml:"rules"`
	// NoBuiltin leaves the built-in rules out.
	NoBuiltin bool `yaml:"no_builtin"`
	// Suppress folds an alert into an unresolved one of the same rule and
	// group raised within this window (default 10m).
	Suppress time.Duration `yaml:"suppress"`
	// MaxGroups bounds each correlation's groups (default 1,048,576).
	MaxGroups int `yaml:"max_groups"`
}

// DecisionsConfig is the `decisions:` setting: block decisions asked for
// by rules (their response field), served to bouncers.
type DecisionsConfig struct {
	// Disabled makes no decisions.
	Disabled bool `yaml:"disabled"`
	// Allowlist holds networks (CIDR or address) never blocked.
	Allowlist []string `yaml:"allowlist"`
	// Duration is the ban of a first offence when the rule names none
	// (1h); MaxDuration the longest ban (168h); Factor the growth per
	// repeat offence (4); Memory how long an offence counts (720h).
	Duration    time.Duration `yaml:"duration"`
	MaxDuration time.Duration `yaml:"max_duration"`
	Factor      float64       `yaml:"factor"`
	Memory      time.Duration `yaml:"memory"`
	// MaxActive bounds the decisions in force (100,000); when reached,
	// the rules' address bans sharing a network are widened into its ban
	// (decision.Options.MaxActive).
	MaxActive int `yaml:"max_active"`
	// WidenAt is how many rules' bans in one IPv6 /48 (or of /48s in one
	// /32) become one ban of it (16; -1: only when MaxActive is reached).
	WidenAt int `yaml:"widen_at"`
}

// detection is the running engine and what follows it.
type detection struct {
	runner    *detect.Runner
	alerts    *alerting.Store
	decisions *decision.Store
	notifiers []*alerting.Notifier
	ruleErrs  []*detect.LoadError
	cancel    context.CancelFunc
	done      chan struct{}

	mu        sync.Mutex
	lastErr   error
	decideErr uint64
}

// startDetection compiles the rules and starts following the ledger.
// Rules that cannot be used are logged (and listed by GET /v1/rules);
// a notifier or decision setting that cannot work is an error.
func (s *Server) startDetection() error {
	c := s.cfg.Detection
	if c.Disabled {
		return nil
	}
	d := &detection{done: make(chan struct{})}
	rs := &detect.RuleSet{}
	if !c.NoBuiltin {
		rs = detect.Builtin()
	}
	// A rules directory the operator configured must be there: running
	// a security tool silently without its detection rules (a typo, an
	// unmounted volume) is worse than refusing to start. DATA_DIR/rules
	// is optional and loaded only when present.
	for _, dir := range c.Rules {
		if st, err := os.Stat(dir); err != nil {
			return fmt.Errorf("server: detection rules directory %s: %w", dir, err)
		} else if !st.IsDir() {
			return fmt.Errorf("server: detection rules directory %s: not a directory", dir)
		}
	}
	dirs := c.Rules
	if st, err := os.Stat(filepath.Join(s.cfg.DataDir, "rules")); err == nil && st.IsDir() {
		dirs = append([]string{filepath.Join(s.cfg.DataDir, "rules")}, dirs...)
	}
	for _, dir := range dirs {
		rs = rs.Merge(detect.LoadDir(dir))
	}
	eng, errs := detect.NewEngine(rs, detect.Options{MaxGroups: c.MaxGroups})
	d.ruleErrs = append(append(d.ruleErrs, rs.Errors...), errs...)
	for _, e := range d.ruleErrs {
		s.log.Warn("detection rule not loaded", "rule", e.Rule, "file", e.File, "line", e.Line, "reason", e.Reason)
	}
	s.recordRuleFiles(rs.Files)
	appendRec := func(ctx context.Context, rec []byte) (uint64, error) { return s.ledger.Append(ctx, rec) }
	for _, nc := range s.cfg.Notifiers {
		n, err := alerting.NewNotifier(nc, s.log)
		if err != nil {
			d.closeNotifiers(2 * time.Second)
			return fmt.Errorf("server: notifiers: %w", err)
		}
		d.notifiers = append(d.notifiers, n)
	}
	var err error
	d.alerts, err = alerting.Open(alerting.Options{Path: filepath.Join(s.cfg.DataDir, "alerts.json"), Append: appendRec,
		Suppress: c.Suppress, Log: s.log, Notify: func(n alerting.Notice) {
			for _, nt := range d.notifiers {
				nt.Enqueue(n)
			}
		}}, s.ledger)
	if err != nil {
		d.closeNotifiers(2 * time.Second)
		return fmt.Errorf("server: %w", err)
	}
	if !s.cfg.Decisions.Disabled {
		dc := s.cfg.Decisions
		var allow []netip.Prefix
		for _, a := range dc.Allowlist {
			p, err := parsePrefix(a)
			if err != nil {
				d.closeNotifiers(2 * time.Second)
				return fmt.Errorf("server: decisions allowlist: %w", err)
			}
			allow = append(allow, p)
		}
		d.decisions, err = decision.Open(decision.Options{Path: filepath.Join(s.cfg.DataDir, "decisions.json"), Append: appendRec,
			Default: dc.Duration, Max: dc.MaxDuration, Factor: dc.Factor, Memory: dc.Memory, Allowlist: allow, MaxActive: dc.MaxActive, WidenAt: dc.WidenAt, Log: s.log}, s.ledger)
		if err != nil {
			d.closeNotifiers(2 * time.Second)
			return fmt.Errorf("server: %w", err)
		}
	}
	d.runner = &detect.Runner{Engine: eng, Source: observingFollower{appendedFollower{s.ledger}, d.alerts}, CursorPath: filepath.Join(s.cfg.DataDir, "detect.cursor"),
		Emit: func(a *detect.Alert) error { return s.onAlert(d, a) }}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go d.run(ctx, s)
	go d.alerts.Run(ctx)
	if d.decisions != nil {
		go d.decisions.Run(ctx)
	}
	s.detect = d
	return nil
}

// observingFollower is the ledger as detection follows it, showing each
// record to the alert store as well: an audited change of an alert's
// status gives the status its ledger index, which the next start checks
// alerts.json against.
type observingFollower struct {
	appendedFollower
	alerts *alerting.Store
}

func (o observingFollower) Follow(ctx context.Context, from uint64) iter.Seq2[ledger.Entry, error] {
	return func(yield func(ledger.Entry, error) bool) {
		for e, err := range o.appendedFollower.Follow(ctx, from) {
			if err == nil && mayBeCollectors(e) {
				o.alerts.Observe(e.Index, e.Data)
			}
			if !yield(e, err) {
				return
			}
		}
	}
}

// spanServiceName is service.name's number in event.Spans.
var spanServiceName = event.SpanField("service.name")

// collectorServiceToken is service.name's token in the collector's own
// records.
var collectorServiceToken = []byte(`"` + event.CollectorService + `"`)

// mayBeCollectors reports whether e may be one of the collector's own
// records, the only ones alerting.Store.Observe acts on (it ignores a
// record whose service.name is not the collector's). A record stored by
// ingest comes with the spans its normaliser wrote: such a record holds
// each field once, under its ECS name, so a service.name token that is
// absent or a plain string other than the collector's settles it without
// Observe's search of the whole record for an alert resource (3 % of the
// collector's CPU under ingest load). Without spans, or with a value
// written with escapes, Observe decides.
func mayBeCollectors(e ledger.Entry) bool {
	sps, ok := e.Aux.([]event.Spans)
	if !ok || e.AuxPos >= len(sps) || !sps[e.AuxPos].OK() {
		return true
	}
	sp := &sps[e.AuxPos]
	tok := sp.Token(e.Data, spanServiceName)
	if tok == nil {
		return false
	}
	return !sp.Plain(spanServiceName) || bytes.Equal(tok, collectorServiceToken)
}

// parsePrefix reads an allowlist entry as the decision store compares
// addresses: kept mapped, "::ffff:10.0.0.0/104" or "::ffff:10.0.0.1" was
// accepted and spared nothing.
func parsePrefix(s string) (netip.Prefix, error) { return ipnet.Parse(strings.TrimSpace(s)) }

// run keeps the runner going: if it stops on an error (the ledger refused
// an alert: disk full), it starts again from its cursor after a pause,
// and the alert is raised again.
func (d *detection) run(ctx context.Context, s *Server) {
	defer close(d.done)
	for {
		err := d.runner.Run(ctx)
		if ctx.Err() != nil {
			if err != nil && err != ctx.Err() {
				// What failed during the stop (an alert not stored, the
				// cursor not saved): the next start redoes it.
				s.log.Error("detection stopped with an error", "err", err)
			}
			return
		}
		d.mu.Lock()
		d.lastErr = err
		d.mu.Unlock()
		s.log.Error("detection stopped; restarting from its cursor", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// onAlert stores an alert (or folds it into a recent one) and makes the
// block decision its rule asks for.
func (s *Server) onAlert(d *detection, a *detect.Alert) error {
	ctx := context.Background()
	// The alert and the decision are appended at once, so the ledger's
	// group commit makes both durable with one sync: the decision reaches
	// the bouncers a sync sooner.
	var decided chan struct{}
	if d.decisions != nil && a.Rule.Response != nil {
		decided = make(chan struct{})
		go func() {
			defer close(decided)
			if _, err := d.decisions.Decide(ctx, a); err != nil {
				d.mu.Lock()
				d.decideErr++
				d.mu.Unlock()
				s.log.Warn("block decision not made", "alert", a.ID, "rule", a.Rule.Ref(), "err", err)
			}
		}()
	}
	_, _, err := d.alerts.Raise(ctx, a)
	if decided != nil {
		<-decided
	}
	return err
}

// closeNotifiers gives the notifiers a grace (2 s at most, together
// rather than one after the other) to deliver what is queued.
func (d *detection) closeNotifiers(grace time.Duration) {
	grace = min(grace, 2*time.Second)
	var wg sync.WaitGroup
	for _, n := range d.notifiers {
		wg.Go(func() { n.Close(grace) })
	}
	wg.Wait()
}

// closeDetection stops the engine (saving its cursor), then the notifiers
// after a grace to deliver what is queued that ends before by (the end of
// detection's share of a shutdown).
func (s *Server) closeDetection(by time.Time) error {
	d := s.detect
	if d == nil {
		return nil
	}
	d.cancel()
	<-d.done
	d.closeNotifiers(time.Until(by) - 100*time.Millisecond)
	var derr error
	if d.decisions != nil {
		derr = d.decisions.Flush()
	}
	return errors.Join(d.alerts.Flush(), derr)
}

// detectionMetrics appends the engine's, the alerts' and the decisions'
// series to /metrics.
func (s *Server) detectionMetrics(w io.Writer) {
	d := s.detect
	if d == nil {
		return
	}
	p := func(name, typ, help string, v any) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, v)
	}
	es := d.runner.Stats()
	size := s.ledger.Size()
	next := d.runner.Next()
	p("trailguard_detect_events_total", "counter", "Ledger records evaluated by the detection rules.", es.Events)
	p("trailguard_detect_lag_records", "gauge", "Ledger records not yet evaluated by the detection rules.", size-min(size, next))
	p("trailguard_detect_rule_errors", "gauge", "Rules that could not be loaded (see the log, or GET /v1/rules).", len(d.ruleErrs))
	p("trailguard_detect_groups", "gauge", "Correlation groups held in memory.", es.Groups)
	p("trailguard_detect_groups_evicted_total", "counter", "Correlation groups forgotten early because a rule reached detection.max_groups.", es.Evicted)
	as := d.alerts.Stats()
	p("trailguard_alerts_raised_total", "counter", "Alerts stored in the ledger.", as.Raised)
	p("trailguard_alerts_suppressed_total", "counter", "Alerts folded into a recent one of the same rule and group.", as.Suppressed)
	p("trailguard_alerts_open", "gauge", "Alerts open.", as.Open)
	p("trailguard_alerts_acknowledged", "gauge", "Alerts acknowledged, not resolved.", as.Acknowledged)
	p("trailguard_alerts_rejected_total", "counter", "Alerts and statuses of alerts.json the ledger did not support at start (edited on disk).", as.Rejected)
	if len(d.notifiers) > 0 {
		stats := make([]alerting.NotifierStats, len(d.notifiers))
		for i, n := range d.notifiers {
			stats[i] = n.Stats()
		}
		for _, m := range []struct {
			name, typ, help string
			v               func(alerting.NotifierStats) any
		}{
			{"trailguard_notifier_sent_total", "counter", "Notices delivered.", func(st alerting.NotifierStats) any { return st.Sent }},
			{"trailguard_notifier_failures_total", "counter", "Delivery attempts that failed and are retried.", func(st alerting.NotifierStats) any { return st.Failures }},
			{"trailguard_notifier_dropped_total", "counter", "Notices dropped from a full queue (queue_size or queue_bytes); the alerts are in the ledger.", func(st alerting.NotifierStats) any { return st.Dropped }},
			{"trailguard_notifier_refused_total", "counter", "Notices the receiver refused for good (a 4xx other than 408 and 429, or a redirect).", func(st alerting.NotifierStats) any { return st.Refused }},
			{"trailguard_notifier_undeliverable_total", "counter", "Notices given up after their retries (8 attempts and 15 minutes); the alerts are in the ledger.", func(st alerting.NotifierStats) any { return st.Undeliverable }},
			{"trailguard_notifier_queued", "gauge", "Notices waiting for delivery.", func(st alerting.NotifierStats) any { return st.Queued }},
			{"trailguard_notifier_queued_bytes", "gauge", "Memory the waiting notices hold (bounded by queue_bytes).", func(st alerting.NotifierStats) any { return st.QueuedBytes }},
		} {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.typ)
			for _, st := range stats {
				// Names and types are plain words (alerting.NotifierConfig.Check),
				// so %q quotes them as the exposition format does.
				fmt.Fprintf(w, "%s{notifier=%q,type=%q} %v\n", m.name, st.Name, st.Type, m.v(st))
			}
		}
	}
	if d.decisions != nil {
		ds := d.decisions.Stats()
		p("trailguard_decisions_active", "gauge", "Block decisions in force.", ds.Active)
		p("trailguard_decisions_created_total", "counter", "Block decisions made.", ds.Created)
		p("trailguard_decisions_deleted_total", "counter", "Block decisions ended by an operator.", ds.Deleted)
		p("trailguard_decisions_expired_total", "counter", "Block decisions that ran out.", ds.Expired)
		p("trailguard_decisions_allowlisted_total", "counter", "Blocks not made because the value is allowlisted.", ds.Allowlisted)
		p("trailguard_decisions_refused_total", "counter", "Blocks not made because decisions.max_active decisions are in force and no two rules' bans share a network to widen.", ds.Refused)
		p("trailguard_decisions_widened_total", "counter", "Bans of a network made of the rules' bans inside it (decisions.widen_at, or decisions.max_active reached).", ds.Widened)
		p("trailguard_decisions_rejected_total", "counter", "Decisions of decisions.json the ledger did not support at start (edited on disk): not enforced.", ds.Rejected)
	}
}

// Decisions is the collector's decision store, nil when detection or
// decisions are off: an embedding gateway enforces it in process.
func (s *Server) Decisions() *decision.Store {
	if s.detect == nil {
		return nil
	}
	return s.detect.decisions
}

// DetectionRules are the rules detection runs, nil when it is off: a
// gateway embedding the collector evaluates them on its own events as it
// writes them, to enforce the blocks they ask for before the ledger's
// commit (detection, following the ledger, still decides and records).
func (s *Server) DetectionRules() []*detect.Rule {
	if s.detect == nil {
		return nil
	}
	return s.detect.runner.Engine.Rules()
}

// Alerts is the collector's alert store, nil when detection is off.
func (s *Server) Alerts() *alerting.Store {
	if s.detect == nil {
		return nil
	}
	return s.detect.alerts
}

// DetectionNext is the next ledger index detection will evaluate (0 when
// it is off).
func (s *Server) DetectionNext() uint64 {
	if s.detect == nil {
		return 0
	}
	return s.detect.runner.Next()
}

var errDetectionOff = errors.New("detection is disabled (detection.disabled)")

// ActionRulesLoaded is event.action of the record a collector appends at
// each start with detection on: the rule files it read from its rules
// directories (DATA/rules, detection.rules), each with its SHA-256.
const ActionRulesLoaded = "detection_rules_loaded"

// recordRuleFiles appends the rule files loaded to the ledger. Rules are
// configuration read from disk as they are: whoever can write a rules
// directory can ban anyone (a rule matching every event with a block
// response). The trail cannot prevent that, but it shows it: which files
// each start ran with and their content's hash, signed with the rest, so
// a file that appears or changes between two starts is on the record an
// auditor reads, not only in the directory the writer controls.
func (s *Server) recordRuleFiles(files []detect.RuleFile) {
	if files == nil {
		files = []detect.RuleFile{}
	}
	raw, err := json.Marshal(files)
	if err != nil {
		s.log.Error("detection rule files not recorded", "err", err)
		return
	}
	// The message names the operator's files (the built-in ones come
	// with the binary); the field holds them all.
	var b strings.Builder
	fmt.Fprintf(&b, "detection rules loaded from %d files", len(files))
	var custom int
	for _, f := range files {
		if strings.HasPrefix(f.Name, "builtin:") {
			continue
		}
		sep := ", "
		if custom == 0 {
			sep = "; from rules directories: "
		}
		custom++
		if custom > 20 {
			continue
		}
		fmt.Fprintf(&b, "%s%s sha256 %s", sep, f.Name, f.SHA256)
	}
	if custom > 20 {
		fmt.Fprintf(&b, " and %d more (trailguard.rules.files)", custom-20)
	}
	if custom == 0 {
		b.WriteString(", all built in")
	}
	ev := &event.Event{
		Kind: event.KindEvent, Category: []string{event.CategoryConfiguration}, Type: []string{event.TypeInfo},
		Action: ActionRulesLoaded, Outcome: event.OutcomeSuccess, Message: b.String(), Dataset: event.DatasetAudit,
		Extra: map[string]json.RawMessage{"trailguard.rules.files": raw},
	}
	if err := s.audit.Log(context.Background(), ev); err != nil {
		s.log.Error("detection rule files not recorded", "err", err)
		return
	}
	s.log.Info("detection rules loaded", "files", len(files))
}
