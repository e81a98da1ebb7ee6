package report

import (
	"bytes"
	"cmp"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/trailguard/trailguard/event"
)

// Figures are what the ledger's records of the period show. They are
// exact counts, computed in ledger order with fixed-size chunks, so that
// computing them again over the same records gives the same figures.
type Figures struct {
	Records     uint64 `json:"records"`
	Undecodable uint64 `json:"undecodable"`
	// ReadError is the first record that could not be read or did not
	// match the signed tree; the figures stop before it.
	ReadError string  `json:"read_error,omitempty"`
	Events    uint64  `json:"events"`
	AlertDocs uint64  `json:"alert_documents"`
	Actions   []Count `json:"by_action"`
	Services  []Count `json:"by_service"`

	Coverage     []Coverage   `json:"coverage"`
	HTTP401      uint64       `json:"http_401"`
	HTTP403      uint64       `json:"http_403"`
	Completeness Completeness `json:"completeness"`
	AuthFailures AuthFailures `json:"authentication_failures"`
	Reads        Reads        `json:"audit_log_reads"`
	Alerts       AlertFigures `json:"alerts"`
	Blocks       Blocks       `json:"blocks"`
	Lifecycle    Lifecycle    `json:"lifecycle"`
	Failures     Failures     `json:"logging_failures"`
	Time         TimeFigures  `json:"time"`
	Checkpoints  Checkpoints  `json:"checkpoints"`
}

// Count is a value and how often it occurred.
type Count struct {
	Value string `json:"value"`
	Count uint64 `json:"count"`
}

// Coverage is one PCI DSS 10.2.1.x category of events.
type Coverage struct {
	ID      string  `json:"id"`
	Count   uint64  `json:"count"`
	Actions []Count `json:"by_action"`
}

// Completeness is PCI DSS 10.2.2: the required details of each auditable
// event (the events of 10.2.1.1–10.2.1.7).
type Completeness struct {
	Auditable uint64              `json:"auditable_events"`
	Fields    []FieldCompleteness `json:"fields"`
	Examples  []Incomplete        `json:"examples"`
}

// FieldCompleteness is one required detail.
type FieldCompleteness struct {
	Field      string `json:"field"`
	Source     string `json:"ecs"`
	Applicable uint64 `json:"applicable"`
	Present    uint64 `json:"present"`
	// MissingBy counts the events lacking it by service.name.
	MissingBy []Count `json:"missing_by_service,omitempty"`
}

// Incomplete is an auditable event that lacks a required detail.
type Incomplete struct {
	Index   uint64   `json:"ledger_index"`
	EventID string   `json:"event_id,omitempty"`
	Action  string   `json:"action"`
	Service string   `json:"service,omitempty"`
	Missing []string `json:"missing"`
}

// AuthFailures are failed logins (authn_login_fail).
type AuthFailures struct {
	Total      uint64    `json:"total"`
	Successes  uint64    `json:"login_successes"`
	Start      time.Time `json:"chart_start"`
	Interval   Duration  `json:"chart_interval"`
	Buckets    []uint64  `json:"chart"`
	Sources    uint64    `json:"distinct_sources"`
	Users      uint64    `json:"distinct_users"`
	TopSources []Count   `json:"top_sources"`
	TopUsers   []Count   `json:"top_users"`
}

// Reads are the collector's records of reads of the audit trail.
type Reads struct {
	Total    uint64  `json:"total"`
	ByReader []Count `json:"by_reader"`
	// Refused counts the collector's refusals (failed token checks,
	// insufficient roles).
	Refused uint64 `json:"refused"`
}

// AlertFigures is the detection's output and what became of it.
type AlertFigures struct {
	Raised        uint64   `json:"raised"`
	ByRule        []Count  `json:"by_rule"`
	ByLevel       []Count  `json:"by_level"`
	Acknowledged  uint64   `json:"acknowledged"`
	Resolved      uint64   `json:"resolved"`
	Open          uint64   `json:"open_at_end"`
	Overdue       uint64   `json:"overdue"`
	AckMedian     Duration `json:"acknowledge_median"`
	AckMax        Duration `json:"acknowledge_max"`
	ResolveMedian Duration `json:"resolve_median"`
	ResolveMax    Duration `json:"resolve_max"`
	DelayMedian   Duration `json:"detection_delay_median"`
	DelayMax      Duration `json:"detection_delay_max"`
	// EarlierChanged counts status changes in the period of alerts
	// raised before it.
	EarlierChanged uint64     `json:"earlier_alerts_changed"`
	List           []AlertRow `json:"list"`
}

// AlertRow is one alert.
type AlertRow struct {
	Index    uint64     `json:"ledger_index"`
	ID       string     `json:"id"`
	Rule     string     `json:"rule"`
	Title    string     `json:"title"`
	Level    string     `json:"level"`
	Time     time.Time  `json:"time"`
	Delay    Duration   `json:"delay"`
	Client   string     `json:"client,omitempty"`
	User     string     `json:"user,omitempty"`
	Status   string     `json:"status"`
	Acked    *time.Time `json:"acknowledged,omitempty"`
	Resolved *time.Time `json:"resolved,omitempty"`
}

// Blocks are block decisions.
type Blocks struct {
	Created    uint64     `json:"created"`
	Deleted    uint64     `json:"deleted"`
	ByScenario []Count    `json:"by_scenario"`
	List       []BlockRow `json:"list"`
}

// BlockRow is one block decision.
type BlockRow struct {
	Index    uint64    `json:"ledger_index"`
	Time     time.Time `json:"time"`
	Value    string    `json:"value"`
	Scenario string    `json:"scenario"`
}

// Lifecycle is the starts and stops of the components that log.
type Lifecycle struct {
	Starts uint64 `json:"starts"`
	Stops  uint64 `json:"stops"`
	// Unclean counts starts not preceded by a stop of the same service
	// and host within the period (a crash or a kill).
	Unclean uint64         `json:"unclean"`
	List    []LifecycleRow `json:"list"`
}

// LifecycleRow is one start or stop.
type LifecycleRow struct {
	Index   uint64    `json:"ledger_index"`
	Time    time.Time `json:"time"`
	Action  string    `json:"action"`
	Service string    `json:"service"`
	Host    string    `json:"host,omitempty"`
	Unclean bool      `json:"unclean,omitempty"`
}

// Failures are failures of logging that the trail records.
type Failures struct {
	// Unrecorded sums the requests counted but not recorded one by one
	// (audit_events_unrecorded summaries: sampling by policy).
	Unrecorded       uint64       `json:"unrecorded"`
	UnrecordedEvents uint64       `json:"unrecorded_summaries"`
	MonitorDisabled  uint64       `json:"monitor_disabled"`
	MonitorEnabled   uint64       `json:"monitor_enabled"`
	RecordsLost      uint64       `json:"forward_loss_events"`
	Adopted          uint64       `json:"adoptions"`
	List             []FailureRow `json:"list"`
}

// FailureRow is one recorded failure.
type FailureRow struct {
	Index   uint64    `json:"ledger_index"`
	Time    time.Time `json:"time"`
	Action  string    `json:"action"`
	Service string    `json:"service"`
	Count   int64     `json:"count,omitempty"`
}

// TimeFigures are PCI DSS 10.6: timestamps against the collector's clock.
type TimeFigures struct {
	WithTimestamp uint64 `json:"with_timestamp"`
	// Ahead counts events stamped later than the collector's clock by more
	// than the tolerance: later than event.ingested, or than the signed
	// time of the first checkpoint that covers them.
	Ahead    uint64   `json:"ahead"`
	MaxAhead Duration `json:"max_ahead"`
	// Delayed counts events that reached the collector more than MaxDelay
	// after their @timestamp (event.ingested − @timestamp).
	Delayed  uint64        `json:"delayed"`
	MaxDelay Duration      `json:"max_delay"`
	Outside  uint64        `json:"outside_period"`
	Examples []TimeExample `json:"examples"`
}

// TimeExample is an event with a skewed timestamp.
type TimeExample struct {
	Index     uint64    `json:"ledger_index"`
	Timestamp time.Time `json:"timestamp"`
	Reference time.Time `json:"reference"`
	By        Duration  `json:"ahead_by"`
	Service   string    `json:"service,omitempty"`
}

// Checkpoints are the signed checkpoints of the period (10.3, 10.7.2).
type Checkpoints struct {
	Count        uint64   `json:"count"`
	Gaps         uint64   `json:"gaps"`
	LargestGap   Duration `json:"largest_gap"`
	PlannedStops uint64   `json:"planned_stops"`
	List         []GapRow `json:"list"`
	// Began is when the ledger was created, if in the period (its first
	// checkpoint, of the empty tree): the time before it is not a gap in
	// logging but before the trail.
	Began time.Time `json:"began,omitzero"`
}

// GapRow is a gap in the checkpoint cadence.
type GapRow struct {
	After   time.Time `json:"after"`
	Before  time.Time `json:"before"`
	Size    uint64    `json:"tree_size"`
	Planned bool      `json:"planned"`
}

// Categories of PCI DSS 10.2.1.
var coverageIDs = [7]string{"10.2.1.1", "10.2.1.2", "10.2.1.3", "10.2.1.4", "10.2.1.5", "10.2.1.6", "10.2.1.7"}

var (
	invalidAccess = set("authn_login_fail", "authn_login_fail_max", "authn_login_lock", "authz_fail", "authn_token_reuse",
		"session_use_after_expire")
	credentialChange = set("authn_password_change", "authn_password_change_fail", "authn_token_created", "authn_token_revoked",
		"authn_token_delete", "authz_change", "privilege_permissions_changed", "user_role_change", "user_created",
		"user_updated", "user_deleted", "user_archived")
	lifecycleActions = set("sys_startup", "sys_shutdown", "sys_restart", "sys_crash", "sys_monitor_disabled",
		"sys_monitor_enabled", "ledger_records_adopted")
	sensitiveActions = set("sensitive_create", "sensitive_read", "sensitive_update", "sensitive_delete")
	systemCategories = set("configuration", "host", "package", "driver", "file", "database", "process")
	objectTypes      = set("creation", "deletion", "installation")
	outcomes         = set("success", "failure", "unknown")
)

func set(vs ...string) map[string]bool {
	m := make(map[string]bool, len(vs))
	for _, v := range vs {
		m[v] = true
	}
	return m
}

// collectorService is service.name of the collector's own records.
const collectorService = "trailguard-collector"

// Required details of 10.2.2, in order.
var requiredFields = [6]struct{ name, ecs string }{
	{"user identification", "user.name or user.id"},
	{"type of event", "event.action"},
	{"date and time", "@timestamp"},
	{"success or failure", "event.outcome"},
	{"origination", "client.ip, source.ip or host.name"},
	{"affected data, component or resource", "trailguard.audit.resource, url.path, user.target or service.name"},
}

// maxKeys bounds each counted map (distinct users, addresses); values
// past it are counted under "(other)".
const maxKeys = 1 << 20

// counter counts values with a bound on distinct keys.
type counter struct {
	m     map[string]uint64
	other uint64
	// last is the key last added, a key of m: consecutive records mostly
	// repeat it (the action, the service), and adding with it costs one
	// map update and no new string (a []byte key converted for the
	// update was a string allocated per record).
	last    string
	hasLast bool
	// pend is what was added to last and not yet to m (the key's count
	// is m[last] + pend): a repeat of the last key is one addition, not
	// a map update (two per record in the report warmer). Every read of
	// m flushes it first.
	pend uint64
}

// flush adds pend to m.
func (c *counter) flush() {
	if c.pend != 0 {
		c.m[c.last] += c.pend // (nothing deletes keys of m)
		c.pend = 0
	}
}

func (c *counter) add(k []byte, n uint64) {
	if c.m == nil {
		c.m = map[string]uint64{}
	}
	if c.hasLast && c.last == string(k) {
		c.pend += n
		return
	}
	c.flush()
	if v, ok := c.m[string(k)]; ok {
		key := string(k)
		c.m[key] = v + n
		c.last, c.hasLast = key, true
		return
	}
	if len(c.m) >= maxKeys {
		c.other += n
		return
	}
	key := string(k)
	c.m[key] = n
	c.last, c.hasLast = key, true
}

func (c *counter) merge(o *counter) {
	o.flush()
	for k, v := range o.m {
		c.add([]byte(k), v)
	}
	c.other += o.other
}

// top returns the n most frequent values, ties by value.
func (c *counter) top(n int) []Count {
	c.flush()
	out := make([]Count, 0, len(c.m)+1)
	for k, v := range c.m {
		out = append(out, Count{k, v})
	}
	if c.other > 0 {
		out = append(out, Count{"(other)", c.other})
	}
	slices.SortFunc(out, func(a, b Count) int {
		if a.Count != b.Count {
			return cmp.Compare(b.Count, a.Count)
		}
		return strings.Compare(a.Value, b.Value)
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

func (c *counter) distinct() uint64 { return uint64(len(c.m)) } // pend is a key of m's

// rare is a record of a kind that is rare and whose order matters
// (alerts, status changes, decisions, starts and stops, failures).
type rare struct {
	index                                             uint64
	appended                                          time.Time // the frame's append time
	trigger                                           int64     // an alert's completing record, -1 if unknown
	what                                              byte
	t, end                                            time.Time
	id, rule, title, level, client, user, status, svc string
	host, action                                      string
	n                                                 int64
}

// acc accumulates the figures of a chunk of records.
type acc struct {
	p        *computeParams
	records  uint64
	undec    uint64
	events   uint64
	alerts   uint64
	actions  counter
	services counter
	cov      [7]uint64
	covAct   [7]counter
	h401     uint64
	h403     uint64

	auditable  uint64
	applicable [6]uint64
	present    [6]uint64
	missingBy  [6]counter
	examples   []Incomplete
	exPerField [6]int

	authFail, loginOK uint64
	// failSec counts failed logins per Unix second and evMin events per
	// Unix minute: the chart and the count of events outside the period
	// are made from them at the end, so that a chunk's figures do not
	// depend on the period (and can be kept for later reports).
	failSec     map[int64]uint64
	evMin       map[int64]uint64
	srcs, users counter
	reads       uint64
	readers     counter
	refused     uint64

	withTS, ahead, delayed uint64
	maxAhead, maxDelay     time.Duration
	timeEx                 []TimeExample

	rares    []rare
	readErr  string
	interned map[string]string
	// The last record's action and its classes: consecutive records
	// mostly repeat their action, and one comparison then answers what
	// the intern map and five class sets did on every record.
	lastAct   string
	lastClass actClass
	hasLast   bool
	// covT is p.covering for the records [covLo, covHi): records come in
	// ledger order, and a checkpoint covers thousands of them, so one
	// comparison answers what a binary search and a time.Unix did on
	// every record.
	covLo, covHi uint64
	covT         time.Time
	hasCov       bool
	// minKey and minPend are evMin's last minute and what was counted in
	// it and not yet added to evMin (flushMin): consecutive events mostly
	// fall in the same minute, and a map update per event was a tenth of
	// add's time.
	minKey  int64
	minPend uint64
}

// actClass is the classes of an event.action (the sets above).
type actClass uint8

const (
	acSensitive actClass = 1 << iota
	acInvalid
	acCredential
	acLifecycle
)

// action interns an event.action and returns its classes.
func (a *acc) action(b []byte) (string, actClass) {
	if a.hasLast && a.lastAct == string(b) {
		return a.lastAct, a.lastClass
	}
	s := a.intern(b)
	var c actClass
	for _, k := range []struct {
		set map[string]bool
		c   actClass
	}{{sensitiveActions, acSensitive}, {invalidAccess, acInvalid}, {credentialChange, acCredential}, {lifecycleActions, acLifecycle}} {
		if k.set[s] {
			c |= k.c
		}
	}
	a.lastAct, a.lastClass, a.hasLast = s, c, true
	return s, c
}

// computeParams are what workers need besides the records.
type computeParams struct {
	from, to   time.Time
	tolerance  time.Duration
	maxDelay   time.Duration
	interval   time.Duration
	nbuckets   int
	adminRoles map[string]bool
	chd        []string
	cpSizes    []uint64 // sizes of the history's checkpoints, ascending
	cpTimes    []int64  // their signed times, Unix ns
}

const maxExamples = 5

func newAcc(p *computeParams) *acc {
	return &acc{p: p, failSec: map[int64]uint64{}, evMin: map[int64]uint64{}}
}

// covering returns the signed time of the first checkpoint covering
// record i (zero if none does).
func (p *computeParams) covering(i uint64) time.Time {
	k, _ := slices.BinarySearch(p.cpSizes, i+1)
	if k < len(p.cpSizes) {
		return time.Unix(0, p.cpTimes[k]).UTC()
	}
	return time.Time{}
}

// covering is p.covering(i), kept for the records the same checkpoint
// covers first.
func (a *acc) covering(i uint64) time.Time {
	if a.hasCov && i >= a.covLo && i < a.covHi {
		return a.covT
	}
	p := a.p
	// The first checkpoint of size > i: the same one for every record
	// from the size of the one before it up to its own size.
	k, _ := slices.BinarySearch(p.cpSizes, i+1)
	a.covLo, a.covHi, a.covT, a.hasCov = 0, math.MaxUint64, time.Time{}, true
	if k > 0 {
		a.covLo = p.cpSizes[k-1]
	}
	if k < len(p.cpSizes) {
		a.covHi, a.covT = p.cpSizes[k], time.Unix(0, p.cpTimes[k]).UTC()
	}
	return a.covT
}

// countMin counts an event in Unix minute m of evMin.
func (a *acc) countMin(m int64) {
	if a.minPend > 0 && a.minKey == m {
		a.minPend++
		return
	}
	a.flushMin()
	a.minKey, a.minPend = m, 1
}

// flushMin adds what countMin kept back to evMin: every read of evMin
// flushes it first.
func (a *acc) flushMin() {
	if a.minPend > 0 {
		a.evMin[a.minKey] += a.minPend
		a.minPend = 0
	}
}

func str(b []byte) string { return string(b) }

func has(list [][]byte, m map[string]bool) bool {
	for _, v := range list {
		if m[string(v)] {
			return true
		}
	}
	return false
}

// add accounts one record.
//
// sp, when not nil and OK, locates the record's fields (the collector's
// ingest found them): they are read there instead of parsing data, the
// detail fields (fields.detail) only before a branch that reads one.
func (a *acc) add(index uint64, appended time.Time, data []byte, sp *event.Spans, f *fields) {
	a.records++
	if sp.OK() {
		f.fromSpans(data, sp)
	} else if err := f.parse(data); err != nil {
		a.undec++
		return
	}
	p := a.p
	action, class := a.action(f.action)
	// The collector's own records: its alerts, reads, refusals, starts
	// and stops. Another collector's, forwarded here, carry its ledger's
	// origin (ingest refuses the collector's marks on any other record:
	// event.Event.CheckProvenance).
	foreign := len(f.origin) > 0
	if string(f.kind) == "alert" && string(f.dataset) == "trailguard.alert" && !foreign {
		f.detail()
		a.alerts++
		a.rares = append(a.rares, rare{index: index, appended: appended, trigger: f.trigger, what: 'a', t: f.tsTime, id: str(f.id), rule: str(f.alertRule),
			title: str(f.ruleName), level: str(f.level), client: str(cmpOr(f.cliIP, f.srcIP)), user: str(f.userName)})
		if e, ok := parseTime(f.evEnd); ok {
			a.rares[len(a.rares)-1].end = e
		}
		return
	}
	a.events++
	var key [64]byte
	k := append(append(append(key[:0], f.action...), 0), f.outcome...)
	a.actions.add(k, 1)
	a.services.add(f.service, 1)
	own := string(f.service) == collectorService && !foreign

	// Coverage (10.2.1.x).
	var in [7]bool
	if class&acSensitive != 0 && !own && a.isCHD(f) {
		in[0] = true
	}
	for _, r := range f.roles {
		// An application's log line is not an action, whoever was
		// signed in.
		if p.adminRoles[string(r)] && action != "log" && action != "" {
			in[1] = true
		}
	}
	if own && action == "sensitive_read" {
		f.detail()
		in[2] = true
		a.reads++
		a.readers.add(cmpOr(f.userName, f.userID), 1)
	}
	if class&acInvalid != 0 {
		in[3] = true
	}
	if class&acCredential != 0 {
		in[4] = true
	}
	if class&acLifecycle != 0 {
		in[5] = true
	}
	if !in[5] && class&acSensitive == 0 && has(f.cats, systemCategories) && has(f.types, objectTypes) {
		in[6] = true
	}
	auditable := false
	for c, ok := range in {
		if ok {
			auditable = true
			a.cov[c]++
			a.covAct[c].add(f.action, 1)
		}
	}
	if own && (action == "authn_login_fail" || action == "authz_fail" || action == "excess_rate_limit_exceeded") {
		a.refused++
	}
	switch f.status {
	case 401:
		a.h401++
	case 403:
		a.h403++
	}

	// Completeness (10.2.2).
	if auditable {
		f.detail()
		a.auditable++
		system := in[5]
		checks := [6]struct{ applies, ok bool }{
			{!system, len(f.userName) > 0 || len(f.userID) > 0},
			{true, len(f.action) > 0},
			{true, f.hasTS},
			{true, outcomes[string(f.outcome)]},
			{true, len(f.cliIP) > 0 || len(f.srcIP) > 0 || len(f.host) > 0},
			{true, len(f.resource) > 0 || len(f.path) > 0 || len(f.targetName) > 0 || len(f.targetID) > 0 || system && len(f.service) > 0},
		}
		var missing []string
		for i, c := range checks {
			if !c.applies {
				continue
			}
			a.applicable[i]++
			if c.ok {
				a.present[i]++
				continue
			}
			a.missingBy[i].add(f.service, 1)
			if a.exPerField[i] < maxExamples {
				a.exPerField[i]++
				missing = append(missing, requiredFields[i].name)
			}
		}
		if missing != nil {
			a.examples = append(a.examples, Incomplete{Index: index, EventID: str(f.id), Action: action, Service: str(f.service), Missing: missing})
		}
	}

	// Authentication (chart, top sources and users).
	switch action {
	case "authn_login_fail":
		f.detail()
		a.authFail++
		a.srcs.add(cmpOr(f.cliIP, f.srcIP), 1)
		a.users.add(f.userName, 1)
		if f.hasTS {
			a.failSec[f.tsTime.Unix()]++
		}
	case "authn_login_success", "authn_login_successafterfail":
		a.loginOK++
	}

	// Time (10.6).
	if f.hasTS {
		a.withTS++
		ref := a.covering(index)
		if f.hasIngested && (ref.IsZero() || f.ingTime.Before(ref)) {
			ref = f.ingTime
		}
		if !ref.IsZero() {
			if d := f.tsTime.Sub(ref); d > p.tolerance {
				a.ahead++
				a.maxAhead = max(a.maxAhead, d)
				if len(a.timeEx) < maxExamples {
					a.timeEx = append(a.timeEx, TimeExample{Index: index, Timestamp: f.tsTime, Reference: ref, By: Duration(d), Service: str(f.service)})
				}
			}
		}
		if f.hasIngested {
			if d := f.ingTime.Sub(f.tsTime); d > p.maxDelay {
				a.delayed++
				a.maxDelay = max(a.maxDelay, d)
			}
		}
		a.countMin(floorDiv(f.tsTime.Unix(), 60))
	}

	// Rare records whose order matters. (Most records are none: their
	// service and host are copied only for those that are.)
	r := rare{index: index, t: f.tsTime, action: action}
	switch {
	// An alert's status and the blocks are what the collector records
	// (an application's audit event of the same action is not).
	case action == "alert_status_changed" && bytes.HasPrefix(f.resource, []byte("alert/")) && own:
		r.what, r.id, r.status = 's', str(f.resource[len("alert/"):]), str(f.afterStatus)
	case (action == "block_decision_created" || action == "block_decision_deleted") && (own || string(f.dataset) == event.DatasetDecision && !foreign):
		f.detail()
		r.what, r.client, r.rule = 'd', str(cmpOr(f.cliIP, f.targetName)), str(f.ruleName)
		if action == "block_decision_deleted" {
			r.what = 'x'
		}
	case action == "sys_startup" || action == "sys_shutdown" || action == "sys_crash" || action == "sys_restart":
		r.what = 'l'
	case action == "audit_events_unrecorded" || action == "sys_monitor_disabled" || action == "sys_monitor_enabled" ||
		action == "forward_records_lost" || action == "ledger_records_adopted":
		r.what, r.n = 'f', f.unrecorded
	default:
		return
	}
	f.detail()
	r.svc, r.host = str(f.service), str(f.host)
	a.rares = append(a.rares, r)
}

func cmpOr(a, b []byte) []byte {
	if len(a) > 0 {
		return a
	}
	return b
}

func (a *acc) isCHD(f *fields) bool {
	if len(a.p.chd) == 0 {
		return true
	}
	f.detail()
	for _, pre := range a.p.chd {
		if bytes.HasPrefix(f.resource, []byte(pre)) || bytes.HasPrefix(f.path, []byte(pre)) {
			return true
		}
	}
	return false
}

// merge adds b, the next chunk in ledger order, to a.
func (a *acc) merge(b *acc) {
	a.records += b.records
	a.undec += b.undec
	a.events += b.events
	a.alerts += b.alerts
	a.actions.merge(&b.actions)
	a.services.merge(&b.services)
	for i := range a.cov {
		a.cov[i] += b.cov[i]
		a.covAct[i].merge(&b.covAct[i])
	}
	a.h401 += b.h401
	a.h403 += b.h403
	a.auditable += b.auditable
	for i := range a.applicable {
		a.applicable[i] += b.applicable[i]
		a.present[i] += b.present[i]
		a.missingBy[i].merge(&b.missingBy[i])
	}
	// Examples: the first ones in ledger order, at most maxExamples per
	// field.
	for _, ex := range b.examples {
		var keep []string
		for _, m := range ex.Missing {
			i := fieldIndex(m)
			if a.exPerField[i] < maxExamples {
				a.exPerField[i]++
				keep = append(keep, m)
			}
		}
		if keep != nil {
			ex.Missing = keep
			a.examples = append(a.examples, ex)
		}
	}
	a.authFail += b.authFail
	a.loginOK += b.loginOK
	for k, v := range b.failSec {
		a.failSec[k] += v
	}
	a.flushMin()
	b.flushMin()
	for k, v := range b.evMin {
		a.evMin[k] += v
	}
	a.srcs.merge(&b.srcs)
	a.users.merge(&b.users)
	a.reads += b.reads
	a.readers.merge(&b.readers)
	a.refused += b.refused
	a.withTS += b.withTS
	a.ahead += b.ahead
	a.delayed += b.delayed
	a.maxAhead = max(a.maxAhead, b.maxAhead)
	a.maxDelay = max(a.maxDelay, b.maxDelay)
	for _, ex := range b.timeEx {
		if len(a.timeEx) < maxExamples {
			a.timeEx = append(a.timeEx, ex)
		}
	}
	a.rares = append(a.rares, b.rares...)
	if a.readErr == "" {
		a.readErr = b.readErr
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func fieldIndex(name string) int {
	for i, f := range requiredFields {
		if f.name == name {
			return i
		}
	}
	return 0
}

// intern returns the event.action as a string without allocating for
// the few distinct actions a trail has.
func (a *acc) intern(b []byte) string {
	if v, ok := a.interned[string(b)]; ok {
		return v
	}
	s := string(b)
	if len(a.interned) < 1024 {
		if a.interned == nil {
			a.interned = map[string]string{}
		}
		a.interned[s] = s
	}
	return s
}
