package detect

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Rule is one Sigma document: a detection rule (Detection set) or a
// correlation rule (Correlation set). Rules are plain data; a RuleSet
// compiles them into an Engine.
type Rule struct {
	// ID is the rule's id (a UUID by Sigma convention); Name its optional
	// unique name, by which correlation rules may refer to it.
	ID, Name string
	// Title, Description, Status, Author are Sigma's fields of the same name.
	Title, Description, Status, Author string
	// Level is informational, low, medium, high or critical ("" if unset).
	Level string
	// References, Tags and FalsePositives are Sigma's lists.
	References, Tags, FalsePositives []string
	// Logsource says which events a detection rule applies to.
	Logsource Logsource
	// Detection is set for detection rules.
	Detection *Detection
	// Correlation is set for correlation rules.
	Correlation *Correlation
	// Response is trailguard's custom field "response": what to do when
	// the rule fires besides raising an alert.
	Response *Response
	// Source is where the rule was read.
	Source Location
	// Ruleset names the set the rule came from: "trailguard" for the
	// built-in rules, "custom" for rules loaded from a directory.
	Ruleset string
	// docLine is the file line the rule's YAML document starts on.
	docLine int
}

// Location is the file and line a rule was read from.
type Location struct {
	File string
	Line int
}

// String returns "file:line".
func (s Location) String() string {
	if s.Line > 0 {
		return fmt.Sprintf("%s:%d", s.File, s.Line)
	}
	return s.File
}

// Ref returns how the rule is named in messages: its name, else its id,
// else its title.
func (r *Rule) Ref() string {
	switch {
	case r.Name != "":
		return r.Name
	case r.ID != "":
		return r.ID
	}
	return r.Title
}

// Response is what a rule asks for when it fires: a block decision on
// the value of a field of the alert (trailguard's extension, a custom
// field other Sigma tools ignore):
//
//	response:
//	    block: client.ip   # the field whose value is blocked (an address, or user.name)
//	    duration: 1h       # the first offence's ban; repeat offences last longer
type Response struct {
	// Block is the field whose value is blocked, as the rule names it.
	Block string
	// Duration is the ban for a first offence (0: the collector's default).
	Duration time.Duration
}

// Logsource is Sigma's logsource: category, product and service.
type Logsource struct {
	Category, Product, Service string
}

// Detection is a parsed detection section: named searches and a
// condition over them.
type Detection struct {
	// Searches are the search identifiers (selections, filters, keyword
	// lists), in document order.
	Searches []*Search
	// Condition is the parsed condition (several conditions are joined by
	// or, as Sigma says).
	Condition Expr
	// ConditionText is the condition as written.
	ConditionText string
	line          int
}

// Search is one search identifier: a map of field tests (all must hold), a
// list of such maps (any may hold), or a keyword list.
type Search struct {
	Name string
	// Alternatives are joined by or; the tests inside one by and.
	Alternatives [][]*FieldTest
	line         int
}

// FieldTest is one "field|modifiers: values" entry. Field "" is a keyword
// search over every value of the event.
type FieldTest struct {
	Field     string
	Modifiers []string
	// Values as written (after YAML decoding); Null means the value was
	// null (the field is absent or null).
	Values []Value
	Null   bool
	line   int
	col    int
}

// Value is one scalar value of a field test.
type Value struct {
	Text string
	// Number, Bool say the YAML scalar was a number or a boolean.
	Number, Bool bool
}

// Correlation is a parsed correlation section (Sigma's correlation rules,
// plus trailguard's rate_of_rise).
type Correlation struct {
	// Type is event_count, value_count, temporal, temporal_ordered or
	// rate_of_rise (trailguard's extension).
	Type string
	// Rules are the ids or names of the correlated rules.
	Rules []string
	// GroupBy are the fields whose values scope the count. A field with
	// several values in an event (an array, or a field of the objects
	// of an array: {"c":[{"f":"a"},{"f":"b"}]}) groups the event by its
	// first value, in the event's order, so an event counts in one group
	// whatever its arrays hold; an event whose first value is missing or
	// empty is not counted.
	GroupBy []string
	// Aliases maps an alias in GroupBy to the field each rule has it in.
	Aliases map[string]map[string]string
	// Timespan is the window.
	Timespan time.Duration
	// Condition holds the thresholds.
	Condition Condition
	// Generate says the correlated rules also raise their own alerts.
	Generate bool
	// Baseline is rate_of_rise's EWMA time constant.
	Baseline time.Duration
	line     int
}

// Condition is a correlation condition: each bound that is set must hold.
type Condition struct {
	GT, GTE, LT, LTE, EQ, NEQ *float64
	// Field is value_count's field; of a field with several values in
	// an event, its first is counted, as GroupBy takes it.
	Field string
	// Factor is rate_of_rise's multiple of the baseline.
	Factor float64
}

// Holds reports whether n satisfies every bound.
func (c Condition) Holds(n float64) bool {
	return (c.GT == nil || n > *c.GT) && (c.GTE == nil || n >= *c.GTE) &&
		(c.LT == nil || n < *c.LT) && (c.LTE == nil || n <= *c.LTE) &&
		(c.EQ == nil || n == *c.EQ) && (c.NEQ == nil || n != *c.NEQ)
}

// upperBounded reports whether the count can rise out of the condition,
// so it can only be judged when the window closes.
func (c Condition) upperBounded() bool {
	return c.LT != nil || c.LTE != nil || c.EQ != nil || c.NEQ != nil
}

// cap returns the largest count the condition needs to tell apart: state
// beyond it carries no information.
func (c Condition) cap() int {
	m := 1.0
	for _, v := range []*float64{c.GT, c.GTE, c.LT, c.LTE, c.EQ, c.NEQ} {
		if v != nil && *v+1 > m {
			m = *v + 1
		}
	}
	if m > 1<<20 {
		m = 1 << 20
	}
	return int(m)
}

// String renders the bounds, e.g. ">= 10 and < 20".
func (c Condition) String() string {
	var parts []string
	add := func(op string, v *float64) {
		if v != nil {
			parts = append(parts, op+" "+strconv.FormatFloat(*v, 'f', -1, 64))
		}
	}
	add(">", c.GT)
	add(">=", c.GTE)
	add("<", c.LT)
	add("<=", c.LTE)
	add("==", c.EQ)
	add("!=", c.NEQ)
	return strings.Join(parts, " and ")
}

// Levels, in increasing order.
var levels = []string{"informational", "low", "medium", "high", "critical"}

// Severity is the ECS event.severity and risk score of a Sigma level, on
// Elastic Security's scale (low 21, medium 47, high 73, critical 99).
func Severity(level string) int {
	switch level {
	case "informational":
		return 1
	case "low":
		return 21
	case "medium":
		return 47
	case "high":
		return 73
	case "critical":
		return 99
	}
	return 47
}

var (
	reRuleName = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,200}$`)
	reTimespan = regexp.MustCompile(`^([0-9]{1,9})(ms|s|m|h|d|w)$`)
)

// parseTimespan reads Sigma's "number + unit" (s, m, h, d; w and ms also
// accepted).
func parseTimespan(s string) (time.Duration, error) {
	m := reTimespan.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("timespan %q: want a number and a unit (30s, 5m, 1h, 1d)", s)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	unit := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "m": time.Minute,
		"h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}[m[2]]
	d := time.Duration(n) * unit
	if d <= 0 || d > 366*24*time.Hour {
		return 0, fmt.Errorf("timespan %q: want between 1ms and 366 days", s)
	}
	return d, nil
}

// parseRule reads one YAML document into a Rule.
func parseRule(n *ynode) (*Rule, error) {
	if n.kind != yMap {
		return nil, errAt(n, "a rule must be a YAML map, got %s", n.kindName())
	}
	r := &Rule{}
	var err error
	str := func(key string, dst *string) {
		if err != nil {
			return
		}
		v := n.get(key)
		if v == nil || v.kind == yNull {
			return
		}
		if v.kind != yScalar {
			err = errAt(v, "%s: want a string, got %s", key, v.kindName())
			return
		}
		*dst = v.str
	}
	list := func(key string, dst *[]string) {
		if err != nil {
			return
		}
		v := n.get(key)
		if v == nil || v.kind == yNull {
			return
		}
		*dst, err = scalarList(v, key)
	}
	str("title", &r.Title)
	str("id", &r.ID)
	str("name", &r.Name)
	str("description", &r.Description)
	str("status", &r.Status)
	str("level", &r.Level)
	list("references", &r.References)
	list("tags", &r.Tags)
	list("falsepositives", &r.FalsePositives)
	if a := n.get("author"); a != nil && a.kind == ySeq {
		var names []string
		names, err = scalarList(a, "author")
		r.Author = strings.Join(names, ", ")
	} else {
		str("author", &r.Author)
	}
	if err != nil {
		return nil, err
	}
	if r.Title == "" {
		return nil, errAt(n, "a rule needs a title")
	}
	if r.Name != "" && !reRuleName.MatchString(r.Name) {
		return nil, errAt(n.get("name"), "name %q: use letters, digits, '_', '-' and '.'", r.Name)
	}
	if r.Level != "" {
		r.Level = strings.ToLower(r.Level)
		ok := false
		for _, l := range levels {
			ok = ok || l == r.Level
		}
		if !ok {
			return nil, errAt(n.get("level"), "level %q: want one of %s", r.Level, strings.Join(levels, ", "))
		}
	}
	if resp := n.get("response"); resp != nil && resp.kind != yNull {
		if r.Response, err = parseResponse(resp); err != nil {
			return nil, err
		}
	}
	det, cor := n.get("detection"), n.get("correlation")
	switch {
	case det != nil && cor != nil:
		return nil, errAt(cor, "a rule has either a detection or a correlation section, not both")
	case det != nil:
		if ls := n.get("logsource"); ls != nil && ls.kind != yNull {
			if ls.kind != yMap {
				return nil, errAt(ls, "logsource: want a map")
			}
			for i, k := range ls.keys {
				v := ls.vals[i]
				if v.kind == yNull {
					continue
				}
				if v.kind != yScalar {
					return nil, errAt(v, "logsource %s: want a string", k)
				}
				switch k {
				case "category":
					r.Logsource.Category = strings.ToLower(v.str)
				case "product":
					r.Logsource.Product = strings.ToLower(v.str)
				case "service":
					r.Logsource.Service = strings.ToLower(v.str)
				}
			}
		}
		r.Detection, err = parseDetection(det, n.keyNode("detection"))
	case cor != nil:
		r.Correlation, err = parseCorrelation(cor, n.keyNode("correlation"))
	default:
		return nil, errAt(n, "a rule needs a detection or a correlation section")
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

func scalarList(v *ynode, what string) ([]string, error) {
	switch v.kind {
	case yScalar:
		return []string{v.str}, nil
	case ySeq:
		out := make([]string, 0, len(v.items))
		for _, it := range v.items {
			if it.kind != yScalar {
				return nil, errAt(it, "%s: want a list of strings", what)
			}
			out = append(out, it.str)
		}
		return out, nil
	}
	return nil, errAt(v, "%s: want a list of strings, got %s", what, v.kindName())
}

func parseDetection(n, key *ynode) (*Detection, error) {
	if n.kind != yMap {
		return nil, errAt(n, "detection: want a map of search identifiers and a condition")
	}
	d := &Detection{line: n.line}
	var cond *ynode
	for i, name := range n.keys {
		v := n.vals[i]
		if name == "condition" {
			cond = v
			continue
		}
		if name == "timeframe" {
			return nil, errAt(n.keyNodes[i], "detection timeframe is Sigma 1.0 aggregation syntax: write a correlation rule")
		}
		s, err := parseSearch(name, v)
		if err != nil {
			return nil, err
		}
		d.Searches = append(d.Searches, s)
	}
	if cond == nil {
		return nil, errAt(key, "detection: condition is missing")
	}
	var texts []string
	switch cond.kind {
	case yScalar:
		texts = []string{cond.str}
	case ySeq:
		for _, it := range cond.items {
			if it.kind != yScalar {
				return nil, errAt(it, "condition: want a string or a list of strings")
			}
			texts = append(texts, it.str)
		}
	default:
		return nil, errAt(cond, "condition: want a string or a list of strings")
	}
	if len(texts) == 0 {
		return nil, errAt(cond, "condition is empty")
	}
	names := make([]string, len(d.Searches))
	for i, s := range d.Searches {
		names[i] = s.Name
	}
	var exprs []Expr
	for _, t := range texts {
		e, err := ParseCondition(t, names)
		if err != nil {
			pe := errAt(cond, "condition %q: %v", t, err)
			return nil, pe
		}
		exprs = append(exprs, e)
	}
	d.ConditionText = strings.Join(texts, " | ")
	if len(exprs) == 1 {
		d.Condition = exprs[0]
	} else {
		d.Condition = &OrExpr{X: exprs}
	}
	return d, nil
}

func parseSearch(name string, v *ynode) (*Search, error) {
	s := &Search{Name: name, line: v.line}
	switch v.kind {
	case yMap:
		tests, err := parseFieldMap(v)
		if err != nil {
			return nil, err
		}
		s.Alternatives = [][]*FieldTest{tests}
	case ySeq:
		if len(v.items) == 0 {
			return nil, errAt(v, "search %s: empty list", name)
		}
		var kw *FieldTest
		for _, it := range v.items {
			switch it.kind {
			case yMap:
				if kw != nil {
					return nil, errAt(it, "search %s: a list mixes keywords and maps", name)
				}
				tests, err := parseFieldMap(it)
				if err != nil {
					return nil, err
				}
				s.Alternatives = append(s.Alternatives, tests)
			case yScalar:
				if len(s.Alternatives) > 0 {
					return nil, errAt(it, "search %s: a list mixes keywords and maps", name)
				}
				if kw == nil {
					kw = &FieldTest{line: it.line, col: it.col}
				}
				kw.Values = append(kw.Values, scalarValue(it))
			default:
				return nil, errAt(it, "search %s: list items must be strings (keywords) or maps", name)
			}
		}
		if kw != nil {
			s.Alternatives = [][]*FieldTest{{kw}}
		}
	case yScalar:
		s.Alternatives = [][]*FieldTest{{{Values: []Value{scalarValue(v)}, line: v.line, col: v.col}}}
	default:
		return nil, errAt(v, "search %s: want a map, a list or a keyword, got %s", name, v.kindName())
	}
	return s, nil
}

func scalarValue(n *ynode) Value {
	return Value{Text: n.str, Number: n.stype == sInt || n.stype == sFloat, Bool: n.stype == sBool}
}

func parseFieldMap(m *ynode) ([]*FieldTest, error) {
	if len(m.keys) == 0 {
		return nil, errAt(m, "empty map")
	}
	var out []*FieldTest
	for i, key := range m.keys {
		v := m.vals[i]
		parts := strings.Split(key, "|")
		t := &FieldTest{Field: strings.TrimSpace(parts[0]), line: m.keyNodes[i].line, col: m.keyNodes[i].col}
		for _, mod := range parts[1:] {
			t.Modifiers = append(t.Modifiers, strings.TrimSpace(mod))
		}
		switch v.kind {
		case yNull:
			t.Null = true
		case yScalar:
			t.Values = []Value{scalarValue(v)}
		case ySeq:
			if len(v.items) == 0 {
				return nil, errAt(v, "%s: empty list of values", key)
			}
			for _, it := range v.items {
				switch it.kind {
				case yScalar:
					t.Values = append(t.Values, scalarValue(it))
				case yNull:
					return nil, errAt(it, "%s: null cannot be one value of a list (Sigma: use its own selection)", key)
				default:
					return nil, errAt(it, "%s: list values must be scalars", key)
				}
			}
		default:
			return nil, errAt(v, "%s: want a value or a list of values, got %s", key, v.kindName())
		}
		out = append(out, t)
	}
	return out, nil
}

// Correlation types.
const (
	EventCount      = "event_count"
	ValueCount      = "value_count"
	Temporal        = "temporal"
	TemporalOrdered = "temporal_ordered"
	// RateOfRise is trailguard's extension: the rate of matching events
	// against an EWMA baseline of that rate.
	RateOfRise = "rate_of_rise"
)

func parseCorrelation(n, key *ynode) (*Correlation, error) {
	if n.kind != yMap {
		return nil, errAt(n, "correlation: want a map")
	}
	c := &Correlation{line: n.line}
	for i, k := range n.keys {
		v := n.vals[i]
		var err error
		switch k {
		case "type":
			if v.kind != yScalar {
				return nil, errAt(v, "correlation type: want a string")
			}
			c.Type = v.str
		case "rules":
			c.Rules, err = scalarList(v, "correlation rules")
		case "group-by":
			c.GroupBy, err = scalarList(v, "group-by")
		case "timespan", "timeframe":
			if v.kind != yScalar {
				return nil, errAt(v, "timespan: want a duration such as 5m")
			}
			c.Timespan, err = parseTimespan(v.str)
		case "baseline":
			if v.kind != yScalar {
				return nil, errAt(v, "baseline: want a duration such as 1h")
			}
			c.Baseline, err = parseTimespan(v.str)
		case "generate":
			if v.kind != yScalar || v.stype != sBool {
				return nil, errAt(v, "generate: want true or false")
			}
			c.Generate = v.str == "true"
		case "aliases":
			c.Aliases, err = parseAliases(v)
		case "condition":
			c.Condition, err = parseCorrCondition(v)
		default:
			return nil, errAt(n.keyNodes[i], "correlation: unknown key %q", k)
		}
		if err != nil {
			if _, ok := err.(*posError); ok {
				return nil, err
			}
			return nil, errAt(v, "%v", err)
		}
	}
	switch c.Type {
	case EventCount, ValueCount, Temporal, TemporalOrdered, RateOfRise:
	case "value_sum", "value_avg", "value_percentile", "value_median":
		return nil, errAt(n.get("type"), "correlation type %s is not supported (supported: event_count, value_count, temporal, temporal_ordered, rate_of_rise)", c.Type)
	case "":
		return nil, errAt(key, "correlation: type is missing")
	default:
		return nil, errAt(n.get("type"), "correlation type %q is unknown (want event_count, value_count, temporal, temporal_ordered or rate_of_rise)", c.Type)
	}
	if len(c.Rules) == 0 {
		return nil, errAt(key, "correlation: rules is missing")
	}
	if c.Timespan == 0 {
		return nil, errAt(key, "correlation: timespan is missing")
	}
	cond := c.Condition
	hasBound := cond.GT != nil || cond.GTE != nil || cond.LT != nil || cond.LTE != nil || cond.EQ != nil || cond.NEQ != nil
	switch c.Type {
	case EventCount:
		if !hasBound {
			return nil, errAt(key, "event_count needs a condition (gte: N, …)")
		}
	case ValueCount:
		if !hasBound || cond.Field == "" {
			return nil, errAt(key, "value_count needs a condition with a field and a bound (field: user.name, gte: N)")
		}
	case Temporal, TemporalOrdered:
		if len(c.Rules) < 2 && !hasBound {
			return nil, errAt(key, "%s correlates at least two rules", c.Type)
		}
		if c.Type == TemporalOrdered && hasBound {
			return nil, errAt(n.get("condition"), "temporal_ordered takes no condition: every rule must match, in order")
		}
		if !hasBound {
			all := float64(len(c.Rules))
			c.Condition.GTE = &all
		}
	case RateOfRise:
		if c.Baseline == 0 {
			return nil, errAt(key, "rate_of_rise needs a baseline (the EWMA time constant, e.g. 1h)")
		}
		if c.Baseline < c.Timespan {
			return nil, errAt(n.get("baseline"), "rate_of_rise: baseline must be at least the timespan")
		}
		if cond.Factor <= 1 {
			return nil, errAt(key, "rate_of_rise needs condition factor > 1 (fire at factor × baseline)")
		}
		if cond.GT != nil || cond.LT != nil || cond.LTE != nil || cond.EQ != nil || cond.NEQ != nil {
			return nil, errAt(n.get("condition"), "rate_of_rise takes factor and gte (the minimum count) only")
		}
		if cond.GTE == nil {
			one := 1.0
			c.Condition.GTE = &one
		}
	}
	if c.Type != RateOfRise && (c.Baseline != 0 || cond.Factor != 0) {
		return nil, errAt(key, "baseline and factor belong to rate_of_rise")
	}
	if c.Type != ValueCount && cond.Field != "" {
		return nil, errAt(n.get("condition"), "condition field belongs to value_count")
	}
	if len(c.GroupBy) > 8 {
		return nil, errAt(n.get("group-by"), "group-by: at most 8 fields")
	}
	return c, nil
}

func parseAliases(v *ynode) (map[string]map[string]string, error) {
	if v.kind != yMap {
		return nil, errAt(v, "aliases: want a map of alias → {rule: field}")
	}
	out := map[string]map[string]string{}
	for i, alias := range v.keys {
		m := v.vals[i]
		if m.kind != yMap {
			return nil, errAt(m, "alias %s: want a map of rule name → field", alias)
		}
		out[alias] = map[string]string{}
		for j, rule := range m.keys {
			f := m.vals[j]
			if f.kind != yScalar {
				return nil, errAt(f, "alias %s, rule %s: want a field name", alias, rule)
			}
			out[alias][rule] = f.str
		}
	}
	return out, nil
}

func parseCorrCondition(v *ynode) (Condition, error) {
	var c Condition
	if v.kind != yMap {
		return c, errAt(v, "condition: want a map such as {gte: 10}")
	}
	for i, k := range v.keys {
		x := v.vals[i]
		if x.kind != yScalar {
			return c, errAt(x, "condition %s: want a value", k)
		}
		if k == "field" {
			c.Field = x.str
			continue
		}
		f, err := strconv.ParseFloat(x.str, 64)
		if err != nil || x.stype == sString || f != f || f < 0 || f > 1e12 {
			return c, errAt(x, "condition %s: want a non-negative number, got %q", k, x.str)
		}
		switch k {
		case "gt":
			c.GT = &f
		case "gte":
			c.GTE = &f
		case "lt":
			c.LT = &f
		case "lte":
			c.LTE = &f
		case "eq":
			c.EQ = &f
		case "neq":
			c.NEQ = &f
		case "factor":
			c.Factor = f
		default:
			return c, errAt(v.keyNodes[i], "condition: unknown key %q (want gt, gte, lt, lte, eq, neq, field)", k)
		}
	}
	return c, nil
}

func parseResponse(n *ynode) (*Response, error) {
	if n.kind != yMap {
		return nil, errAt(n, "response: want a map such as {block: client.ip, duration: 1h}")
	}
	r := &Response{}
	for i, k := range n.keys {
		v := n.vals[i]
		if v.kind != yScalar {
			return nil, errAt(v, "response %s: want a value", k)
		}
		switch k {
		case "block":
			r.Block = v.str
		case "duration":
			d, err := parseTimespan(v.str)
			if err != nil {
				return nil, errAt(v, "response duration: %v", err)
			}
			r.Duration = d
		default:
			return nil, errAt(n.keyNodes[i], "response: unknown key %q (want block, duration)", k)
		}
	}
	if r.Block == "" {
		return nil, errAt(n, "response: block names no field")
	}
	return r, nil
}
