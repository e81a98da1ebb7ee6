package detect

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/rfc3339"
)

// Options tune an Engine. The zero value is the default.
type Options struct {
	// MaxGroups bounds the groups (distinct group-by values) each
	// correlation rule keeps; beyond it the oldest generation of groups
	// is forgotten. Default 1<<20.
	MaxGroups int
	// MaxEvidence bounds the records an alert lists as evidence. Default 20.
	MaxEvidence int
	// MaxFuture is how far an event's @timestamp may be ahead of the time
	// its record was stored before the storage time is used instead, so a
	// forged future timestamp cannot move the engine's clock. Default 5m.
	MaxFuture time.Duration
}

func (o *Options) defaults() {
	if o.MaxGroups <= 0 {
		o.MaxGroups = 1 << 20
	}
	if o.MaxEvidence <= 0 {
		o.MaxEvidence = 20
	}
	if o.MaxFuture <= 0 {
		o.MaxFuture = 5 * time.Minute
	}
}

// Datasets of trailguard's detection output, which the engine skips
// (ingest refuses them from shippers: event.Event.CheckProvenance).
const (
	DatasetAlert    = event.DatasetAlert
	DatasetDecision = event.DatasetDecision
)

// Record is one stored event the engine reads: a ledger entry or a line
// of an NDJSON file.
type Record struct {
	// Index is the record's position: the ledger index, or the line
	// number of a file. Alerts name their evidence by it.
	Index uint64
	// Time is when the record was stored (the ledger's append time), or
	// zero when unknown.
	Time time.Time
	// Data is the event, one ECS JSON object. The engine does not keep it.
	Data []byte
	// Spans, when not nil and OK, says where Data holds each field (the
	// collector located them while it checked the event): the engine
	// reads the fields its rules use there instead of parsing Data.
	Spans *event.Spans
}

// lsKind is which events a detection rule's logsource selects.
type lsKind uint8

const (
	lsAll  lsKind = iota // application (or no category): every event
	lsWeb                // webserver, proxy: event.category web
	lsAuth               // authentication: event.category authentication
)

type detRule struct {
	rule    *Rule
	ls      lsKind
	cond    cnode
	alert   bool
	parents []feed
}

// Engine evaluates compiled rules over a stream of records. It keeps the
// state of correlations between records; it is not safe for concurrent
// use (one goroutine feeds it, in ledger order).
type Engine struct {
	opts Options
	x    *extractor
	// spanFields is x.spanPlan(): nil when events must be scanned.
	spanFields []int
	fields     []fieldDef
	atoms      []atom
	progs      []*fieldProg // by field; nil when the field has no string atoms
	dets       []*detRule
	corrs      []*corrRule
	rules      []*Rule
	maxSpan    time.Duration

	ctx     evalCtx
	hash    maphash.Hash
	keyVals []string

	slotTS, slotKind, slotID, slotCat, slotDataset int32
	snap                                           []snapField

	now   int64 // watermark: the newest event time seen, unix ns
	idx   uint64
	stats Stats
	// warm: rebuilding state after a restart; no alerts are raised.
	warm bool
}

// snapField is a field copied from the completing event into alerts.
type snapField struct {
	name  string
	field int32
}

// alertFields are copied from the event that completed a detection.
var alertFields = []string{"client.ip", "source.ip", "user.name", "user.id", "url.original",
	"http.request.method", "http.response.status_code", "user_agent.original", "event.action",
	"service.name", "host.name", "http.request.id", "trace.id"}

// Stats counts what the engine did.
type Stats struct {
	// Events is the records evaluated; Malformed those that were not a
	// JSON object; Skipped the alerts read back (never evaluated).
	Events, Malformed, Skipped uint64
	// Matches counts detection rule matches, Alerts the alerts raised.
	Matches, Alerts uint64
	// Groups is the correlation groups held now; Evicted those forgotten
	// early because a rule reached Options.MaxGroups.
	Groups  int
	Evicted uint64
}

// NewEngine compiles the rules of rs. Rules that cannot be compiled (an
// unsupported logsource, modifier or reference) are returned as errors
// and left out; the engine runs the others. Rules with status deprecated
// or unsupported are skipped.
func NewEngine(rs *RuleSet, opts Options) (*Engine, []*LoadError) {
	opts.defaults()
	e := &Engine{opts: opts}
	c := newCompiler()
	var errs []*LoadError
	fail := func(r *Rule, err error) {
		le := &LoadError{File: r.Source.File, Line: r.Source.Line, Rule: r.Ref(), Reason: err.Error()}
		var pe *posError
		if errors.As(err, &pe) && pe.line > 0 && r.docLine > 0 {
			le.Line, le.Col = r.docLine+pe.line-1, pe.col
		}
		errs = append(errs, le)
	}
	// Index rules by id and name; a later duplicate is an error.
	byRef := map[string]*Rule{}
	var rules []*Rule
	for _, r := range rs.Rules {
		if r.Status == "deprecated" || r.Status == "unsupported" {
			continue
		}
		dup := ""
		for _, k := range []string{r.ID, r.Name} {
			if k != "" && byRef[k] != nil {
				dup = k
			}
		}
		if dup != "" {
			fail(r, fmt.Errorf("id or name %q is already used by the rule at %s", dup, byRef[dup].Source))
			continue
		}
		for _, k := range []string{r.ID, r.Name} {
			if k != "" {
				byRef[k] = r
			}
		}
		rules = append(rules, r)
	}

	dets := map[*Rule]*detRule{}
	corrs := map[*Rule]*corrRule{}
	failed := map[*Rule]bool{}
	for _, r := range rules {
		if r.Detection == nil {
			continue
		}
		ls, err := logsourceKind(r.Logsource)
		if err == nil {
			var cond cnode
			if cond, err = c.compileDetection(r.Detection, ls == lsWeb); err == nil {
				dets[r] = &detRule{rule: r, ls: ls, cond: cond, alert: true}
				continue
			}
		}
		fail(r, err)
		failed[r] = true
	}
	// Correlations: resolve references, then compile in dependency order
	// so that a correlation's inputs are known when it is.
	var compileCorr func(r *Rule, path []*Rule) bool
	compileCorr = func(r *Rule, path []*Rule) bool {
		if corrs[r] != nil {
			return true
		}
		if failed[r] {
			return false
		}
		for _, p := range path {
			if p == r {
				fail(r, errors.New("correlation rules refer to each other in a cycle"))
				failed[r] = true
				return false
			}
		}
		cr, err := e.compileCorrelation(c, r, byRef, dets, corrs, func(in *Rule) bool {
			if in.Detection != nil {
				return dets[in] != nil
			}
			return compileCorr(in, append(path, r))
		})
		if err != nil {
			if !failed[r] { // a cycle was already reported
				fail(r, err)
			}
			failed[r] = true
			return false
		}
		corrs[r] = cr
		return true
	}
	for _, r := range rules {
		if r.Correlation != nil {
			compileCorr(r, nil)
		}
	}
	// A rule correlated by others raises no alert of its own unless one of
	// them says generate: true.
	for _, r := range rules {
		cr := corrs[r]
		if cr == nil {
			continue
		}
		for pos, ref := range r.Correlation.Rules {
			in := byRef[ref]
			f := feed{c: cr, pos: pos}
			if d := dets[in]; d != nil {
				d.parents = append(d.parents, f)
			}
			if ic := corrs[in]; ic != nil {
				ic.parents = append(ic.parents, f)
			}
		}
	}
	for _, r := range rules {
		if d := dets[r]; d != nil {
			if len(d.parents) > 0 {
				d.alert = false
				for _, p := range d.parents {
					d.alert = d.alert || p.c.c.Generate
				}
			}
			e.dets = append(e.dets, d)
			e.rules = append(e.rules, r)
		}
		if cr := corrs[r]; cr != nil {
			cr.alert = len(cr.parents) == 0
			for _, p := range cr.parents {
				cr.alert = cr.alert || p.c.c.Generate
			}
			cr.init(opts.MaxGroups)
			e.corrs = append(e.corrs, cr)
			e.rules = append(e.rules, r)
			e.maxSpan = max(e.maxSpan, r.Correlation.Timespan)
		}
	}
	for _, name := range alertFields {
		e.snap = append(e.snap, snapField{name, c.field(name)})
	}
	e.slotTS = c.x.slot("@timestamp")
	e.slotKind = c.x.slot("event.kind")
	e.slotID = c.x.slot("event.id")
	e.slotCat = c.x.slot("event.category")
	e.slotDataset = c.x.slot("event.dataset")
	e.x, e.fields, e.atoms = c.x, c.fields, c.atoms
	e.spanFields = e.x.spanPlan()
	e.buildProgs()
	e.ctx = evalCtx{eng: e, res: make([]uint8, len(e.atoms)),
		fvals: make([][]string, len(e.fields)), fstate: make([]uint8, len(e.fields)), memo: make([]progMemo, len(e.fields))}
	e.now = math.MinInt64
	return e, errs
}

func logsourceKind(ls Logsource) (lsKind, error) {
	if ls.Product != "" && ls.Product != "trailguard" {
		return 0, fmt.Errorf("logsource product %q: trailguard reads HTTP and API events (categories webserver, proxy, authentication, application); the rule would never match", ls.Product)
	}
	if ls.Service != "" {
		return 0, fmt.Errorf("logsource service %q is not one trailguard knows; leave it out", ls.Service)
	}
	switch ls.Category {
	case "", "application":
		return lsAll, nil
	case "webserver", "proxy":
		return lsWeb, nil
	case "authentication":
		return lsAuth, nil
	}
	return 0, fmt.Errorf("logsource category %q: trailguard reads webserver, proxy, authentication and application events; the rule would never match", ls.Category)
}

// isWeb says whether fields of events reaching rule r are named in the web
// taxonomy (a correlation follows its first input).
func isWeb(r *Rule, byRef map[string]*Rule, depth int) bool {
	if r.Detection != nil {
		k, _ := logsourceKind(r.Logsource)
		return k == lsWeb
	}
	if depth > 32 || len(r.Correlation.Rules) == 0 {
		return false
	}
	in := byRef[r.Correlation.Rules[0]]
	return in != nil && isWeb(in, byRef, depth+1)
}

func (e *Engine) compileCorrelation(c *compiler, r *Rule, byRef map[string]*Rule, dets map[*Rule]*detRule,
	corrs map[*Rule]*corrRule, ready func(*Rule) bool) (*corrRule, error) {
	co := r.Correlation
	cr := &corrRule{rule: r, c: co, span: int64(co.Timespan), cap: co.Condition.cap()}
	cr.closeAt = co.Condition.upperBounded() && co.Type != RateOfRise
	if co.Type == Temporal && len(co.Rules) > 64 {
		return nil, errors.New("temporal correlates at most 64 rules")
	}
	seen := map[string]bool{}
	for _, ref := range co.Rules {
		if seen[ref] {
			return nil, fmt.Errorf("rule %q is listed twice", ref)
		}
		seen[ref] = true
		in := byRef[ref]
		if in == nil {
			return nil, fmt.Errorf("rules: %q names no loaded rule (by id or name)", ref)
		}
		if !ready(in) {
			return nil, fmt.Errorf("rules: %q did not load", ref)
		}
		if ic := corrs[in]; ic != nil {
			if ic.closeAt {
				return nil, fmt.Errorf("rules: %q is judged when its window closes (lt, lte, eq, neq) and cannot feed another correlation", ref)
			}
			if ic.c.Type == RateOfRise {
				return nil, fmt.Errorf("rules: %q is a rate_of_rise, which cannot feed another correlation", ref)
			}
		}
		web := isWeb(in, byRef, 0)
		var fields []int32
		var names []string
		var kinds []keyKind
		for _, g := range co.GroupBy {
			name := g
			if al, ok := co.Aliases[g]; ok {
				f, ok := al[in.Name]
				if !ok {
					f, ok = al[in.ID]
				}
				if !ok {
					return nil, fmt.Errorf("alias %s does not say which field it is in rule %q", g, ref)
				}
				name = f
			}
			resolved := resolveField(name, web)
			fields = append(fields, c.field(resolved))
			names = append(names, resolved)
			kinds = append(kinds, fieldKeyKind(resolved))
		}
		cr.groupBy = append(cr.groupBy, fields)
		cr.groupECS = append(cr.groupECS, names)
		cr.groupKind = append(cr.groupKind, kinds)
		if co.Type == ValueCount {
			vf := resolveField(co.Condition.Field, web)
			cr.values = append(cr.values, c.field(vf))
			cr.valueKind = append(cr.valueKind, fieldKeyKind(vf))
		}
	}
	for a := range co.Aliases {
		found := false
		for _, g := range co.GroupBy {
			found = found || g == a
		}
		if !found {
			return nil, fmt.Errorf("alias %s is not used in group-by", a)
		}
	}
	return cr, nil
}

// buildProgs groups the string atoms of each field into one program.
func (e *Engine) buildProgs() {
	e.progs = make([]*fieldProg, len(e.fields))
	for id := range e.atoms {
		a := &e.atoms[id]
		if a.kind != aStrings {
			continue
		}
		p := e.progs[a.field]
		if p == nil {
			p = &fieldProg{}
			e.progs[a.field] = p
		}
		p.atoms = append(p.atoms, int32(id))
		for i := range a.members {
			m := &a.members[i]
			switch {
			case m.kind == aAny:
				p.anyAtoms = append(p.anyAtoms, int32(id))
			case a.cased:
				p.cased.add(m, int32(id))
			default:
				p.folded.add(m, int32(id))
			}
		}
	}
}

// Rules returns the rules the engine runs, in evaluation order.
func (e *Engine) Rules() []*Rule { return e.rules }

// MaxTimespan is the longest correlation window: how far back a restart
// must replay to rebuild every correlation's state.
func (e *Engine) MaxTimespan() time.Duration { return e.maxSpan }

// Stats returns what the engine did so far.
func (e *Engine) Stats() Stats {
	s := e.stats
	for _, c := range e.corrs {
		s.Groups += c.groups()
		s.Evicted += c.evicted()
	}
	return s
}

// Process evaluates one record and calls emit for each alert it raises,
// in a deterministic order: the same records in the same order raise the
// same alerts. Alerts stored back (event.kind alert) are skipped, so an
// engine may follow the ledger it writes its alerts to. A record that is
// not a JSON object is counted and skipped.
func (e *Engine) Process(rec Record, emit func(*Alert)) {
	x := &e.ctx
	e.idx = rec.Index
	if e.spanFields != nil && rec.Spans.OK() {
		e.x.fromSpans(&x.doc, rec.Data, rec.Spans, e.spanFields)
	} else if err := e.x.scan(&x.doc, rec.Data); err != nil {
		e.stats.Malformed++
		return
	}
	x.reset()
	// trailguard's own detection output (alerts, block decisions) is
	// never detection input: no rule can feed on its own alerts.
	if k, _ := x.doc.str(e.slotKind); k == "alert" {
		e.stats.Skipped++
		return
	}
	if ds, _ := x.doc.str(e.slotDataset); ds == DatasetDecision {
		e.stats.Skipped++
		return
	}
	e.stats.Events++
	t := e.eventTime(rec)
	e.advance(t, emit)
	for _, d := range e.dets {
		if !x.logsource(d.ls) || !d.cond.eval(x) {
			continue
		}
		e.stats.Matches++
		if d.alert {
			a := e.newAlert(d.rule, t, 1)
			a.First, a.Last = ns(t), ns(t)
			a.Evidence = []uint64{rec.Index}
			e.emitAlert(a, emit)
		}
		for _, p := range d.parents {
			p.c.feed(e, p.pos, t, []uint64{rec.Index}, emit)
		}
	}
}

// eventTime is the event's @timestamp, unless it is missing, malformed
// or further ahead of the record's storage time than MaxFuture; then the
// storage time, or the engine's clock.
func (e *Engine) eventTime(rec Record) int64 {
	stored := int64(math.MinInt64)
	if !rec.Time.IsZero() {
		stored = rec.Time.UnixNano()
	}
	// A record ingest described carries its @timestamp parsed already
	// (event.Spans.Timestamp): the same instant parseTime reads.
	t, ok := int64(0), false
	if e.spanFields != nil && rec.Spans.OK() {
		t, ok = rec.Spans.Timestamp()
	}
	if !ok {
		if s, has := e.ctx.doc.str(e.slotTS); has {
			t, ok = parseTime(s)
		}
	}
	if ok && (stored == math.MinInt64 || t <= stored+int64(e.opts.MaxFuture)) {
		return t
	}
	if stored != math.MinInt64 {
		return stored
	}
	if e.now != math.MinInt64 {
		return e.now
	}
	return 0
}

// advance moves the engine's clock (the newest event time) forward,
// closing windows and expiring state.
func (e *Engine) advance(t int64, emit func(*Alert)) {
	if t <= e.now {
		return
	}
	e.now = t
	for _, c := range e.corrs {
		c.advance(e, t, emit)
	}
}

// Advance moves the engine's clock to t, as if an event at t had been
// read: windows that end by then are judged (correlations with lt, lte,
// eq or neq conditions fire only then). A collector calls it on its own
// clock while no events arrive.
func (e *Engine) Advance(t time.Time, emit func(*Alert)) { e.advance(t.UnixNano(), emit) }

// Flush judges every open window as if the stream had ended: for
// replays, where no later event will close them.
func (e *Engine) Flush(emit func(*Alert)) { e.advance(math.MaxInt64-1, emit) }

// evalCtx is the per-event evaluation state, reused from event to event.
type evalCtx struct {
	eng    *Engine
	doc    document
	res    []uint8
	fvals  [][]string
	fstate []uint8 // 0 not read yet, 1 absent, 2 present
	buf    []byte
	low    []byte
	ls     uint8 // logsource bits: 1 read, 2 web, 4 authentication
	// memo keeps, per field, the last single value runProg evaluated
	// and its atoms' results: consecutive events mostly repeat a field's
	// value (the action, the outcome, the user agent, the service), and
	// the results depend on the value alone.
	memo []progMemo
	// cat is the last event.category's bytes (a copy, the kind with them)
	// and the logsource bits they gave: the categories depend on the
	// bytes alone, and a stream repeats them from event to event.
	cat     []byte
	catKind vkind
	catLS   uint8
}

// progMemo is a field program's results for one value.
type progMemo struct {
	v   []byte  // the value (a copy)
	res []uint8 // the results of the program's atoms, in order
	ok  bool
	// misses counts the evaluations since the last hit: past a few, a
	// field whose value changes from event to event (a path with an id,
	// a client's port) is remembered only every missSave-th time, so that
	// its copy is not made for nothing every event.
	misses uint32
}

// missSave is how often runProg remembers a value after a run of misses.
const missSave = 16

// maxMemoValue is the longest value runProg remembers.
const maxMemoValue = 256

func (x *evalCtx) reset() {
	clear(x.res)
	clear(x.fstate)
	x.buf = x.buf[:0]
	x.ls = 0
}

func (x *evalCtx) values(f int32) []string {
	if x.fstate[f] == 0 {
		var present bool
		x.fvals[f], present = x.eng.fields[f].appendValues(x.fvals[f][:0], &x.doc, &x.buf)
		x.fstate[f] = 1
		if present {
			x.fstate[f] = 2
		}
	}
	return x.fvals[f]
}

func (x *evalCtx) forEach(f int32, fn func(string)) {
	for _, v := range x.values(f) {
		fn(v)
	}
}

func (x *evalCtx) first(f int32) (string, bool) {
	vs := x.values(f)
	if len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

func (x *evalCtx) present(f int32) bool {
	x.values(f)
	return x.fstate[f] == 2
}

func (x *evalCtx) logsource(k lsKind) bool {
	if k == lsAll {
		return true
	}
	if x.ls == 0 {
		sp := x.doc.spans[x.eng.slotCat]
		// A string or an array of the field's own (not values in an array
		// of objects, sp.extra): its bytes decide the values.
		memo := (sp.kind == vString || sp.kind == vArray) && sp.extra == 0 && sp.end-sp.start <= maxMemoValue
		var raw []byte
		if memo {
			raw = x.doc.data[sp.start:sp.end]
			if x.catLS != 0 && x.catKind == sp.kind && string(x.cat) == string(raw) {
				x.ls = x.catLS
				return x.lsHas(k)
			}
		}
		x.ls = 1
		var cats [4]string
		for _, c := range x.doc.appendEach(cats[:0], x.eng.slotCat) {
			switch c {
			case "web":
				x.ls |= 2
			case "authentication":
				x.ls |= 4
			}
		}
		if memo {
			x.cat, x.catKind, x.catLS = append(x.cat[:0], raw...), sp.kind, x.ls
		}
	}
	return x.lsHas(k)
}

// lsHas reports whether the event's logsource bits (x.ls, read) say k.
func (x *evalCtx) lsHas(k lsKind) bool {
	if k == lsWeb {
		return x.ls&2 != 0
	}
	return x.ls&4 != 0
}

// atom evaluates atom id, once per event.
func (x *evalCtx) atom(id int32) bool {
	if r := x.res[id]; r != resUnknown {
		return r == resTrue
	}
	a := &x.eng.atoms[id]
	if a.kind == aStrings {
		x.runProg(x.eng.progs[a.field], a.field)
	} else {
		x.res[id] = resFalse
		if a.evalOne(x) {
			x.res[id] = resTrue
		}
	}
	return x.res[id] == resTrue
}

func (x *evalCtx) runProg(p *fieldProg, f int32) {
	vals := x.values(f)
	var m *progMemo
	if len(vals) == 1 && len(vals[0]) <= maxMemoValue {
		m = &x.memo[f]
		if m.ok && string(m.v) == vals[0] {
			for i, id := range p.atoms {
				x.res[id] = m.res[i]
			}
			m.misses = 0
			return
		}
		if m.misses++; m.misses > 2 && m.misses%missSave != 0 {
			m = nil
		}
	}
	for _, id := range p.atoms {
		x.res[id] = resFalse
	}
	user := x.eng.fields[f].user
	for _, v := range vals {
		for _, id := range p.anyAtoms {
			x.res[id] = resTrue
		}
		if user {
			v = matchName(v)
		}
		lv := v
		if hasUpper(v) {
			x.low = appendLower(x.low[:0], v)
			lv = bview(x.low)
		}
		p.folded.run(x, lv)
		p.cased.run(x, v)
	}
	if m != nil {
		m.v = append(m.v[:0], vals[0]...)
		m.res = m.res[:0]
		for _, id := range p.atoms {
			m.res = append(m.res, x.res[id])
		}
		m.ok = true
	}
}

// parseTime is the instant an RFC 3339 @timestamp names, as time.Parse,
// ingest, the index and reports read it (internal/rfc3339). It trims no
// spaces: a padded date is none to all of them (ingest refuses the
// event), so a replayed file must not time by it either.
func parseTime(s string) (int64, bool) {
	t, err := rfc3339.Parse(s)
	if err != nil {
		return 0, false
	}
	return t.UnixNano(), true
}
