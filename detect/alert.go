package detect

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Alert is a detection: a rule that matched an event, or a correlation
// whose condition held.
type Alert struct {
	// ID is deterministic (a hash of the rule, the completing record and
	// the group), so replaying the same records gives the same ids and a
	// store can drop an alert it already holds.
	ID   string
	Rule *Rule
	// Time is the event time of the record that completed the detection,
	// or the end of the window for correlations judged at its close.
	Time time.Time
	// First and Last are the times of the oldest and newest evidence.
	First, Last time.Time
	// Index and EventID name the record that completed the detection
	// (absent for window-close alerts).
	Index   uint64
	EventID string
	// Count is the events (event_count), distinct values (value_count),
	// correlated rules (temporal) or events in the window (rate_of_rise).
	Count int
	// Rate and Baseline are rate_of_rise's events per timespan now and
	// its EWMA baseline.
	Rate, Baseline float64
	// Group holds the correlation's group-by values.
	Group []Field
	// Fields are selected ECS fields of the completing event (client.ip,
	// user.name, url.original, …).
	Fields []Field
	// Evidence are the records (ledger indexes or line numbers) of the
	// events behind the alert, oldest first, at most Options.MaxEvidence.
	Evidence []uint64
	// EvidenceIDs are their event.ids, filled by whoever can read the
	// records back (see Engine users); may be empty.
	EvidenceIDs []string
	// Stored says the alert is already in the ledger: a Runner raised it
	// before a restart and raises it again only so that what follows an
	// alert (a block decision) is not lost; it must not be stored twice.
	Stored bool

	fromEvent bool
}

// Field is a named value in an alert. Name is as the rule wrote it; ECS is
// the field it was read from.
type Field struct {
	Name, ECS, Value string
}

func (e *Engine) newAlert(r *Rule, t int64, n int) *Alert {
	a := &Alert{Rule: r, Time: time.Unix(0, t).UTC(), Count: n, Index: e.idx, fromEvent: true}
	if id, ok := e.ctx.doc.str(e.slotID); ok {
		a.EventID = strings.Clone(id)
	}
	for _, s := range e.snap {
		if v, ok := e.ctx.first(s.field); ok && v != "" {
			a.Fields = append(a.Fields, Field{Name: s.name, ECS: s.name, Value: strings.Clone(v)})
		}
	}
	return a
}

func (e *Engine) emitAlert(a *Alert, emit func(*Alert)) {
	if e.warm {
		return
	}
	if !a.fromEvent {
		a.Index, a.EventID, a.Fields = 0, "", nil
	}
	a.ID = alertID(a)
	e.stats.Alerts++
	if emit != nil {
		emit(a)
	}
}

// alertID is a UUID (version 8, RFC 9562) from SHA-256 of what makes the
// alert unique.
func alertID(a *Alert) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d\x00%t", a.Rule.ID, a.Rule.Ref(), a.Time.UnixNano(), a.Index, a.fromEvent)
	for _, g := range a.Group {
		fmt.Fprintf(h, "\x00%s=%s", g.ECS, g.Value)
	}
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x80
	u[8] = u[8]&0x3f | 0x80
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// Threat is the MITRE ATT&CK classification of a rule, from its Sigma tags
// (attack.t1110.001, attack.credential-access).
type Threat struct {
	TechniqueIDs, SubtechniqueIDs []string
	TacticIDs, TacticNames        []string
	// CVEs are the rule's cve.* tags as CVE ids.
	CVEs []string
}

var tactics = map[string][2]string{
	"reconnaissance":       {"TA0043", "Reconnaissance"},
	"resource-development": {"TA0042", "Resource Development"},
	"initial-access":       {"TA0001", "Initial Access"},
	"execution":            {"TA0002", "Execution"},
	"persistence":          {"TA0003", "Persistence"},
	"privilege-escalation": {"TA0004", "Privilege Escalation"},
	"defense-evasion":      {"TA0005", "Defense Evasion"},
	"credential-access":    {"TA0006", "Credential Access"},
	"discovery":            {"TA0007", "Discovery"},
	"lateral-movement":     {"TA0008", "Lateral Movement"},
	"collection":           {"TA0009", "Collection"},
	"exfiltration":         {"TA0010", "Exfiltration"},
	"command-and-control":  {"TA0011", "Command and Control"},
	"impact":               {"TA0040", "Impact"},
}

var (
	reTechnique = regexp.MustCompile(`^attack\.t(\d{4})(?:\.(\d{3}))?$`)
	reCVE       = regexp.MustCompile(`^cve\.(\d{4})[.-](\d{4,7})$`)
)

// ThreatOf reads a rule's tags.
func ThreatOf(r *Rule) Threat {
	var t Threat
	add := func(list *[]string, v string) {
		for _, x := range *list {
			if x == v {
				return
			}
		}
		*list = append(*list, v)
	}
	for _, tag := range r.Tags {
		tag = strings.ToLower(strings.TrimSpace(tag))
		if m := reTechnique.FindStringSubmatch(tag); m != nil {
			add(&t.TechniqueIDs, "T"+m[1])
			if m[2] != "" {
				add(&t.SubtechniqueIDs, "T"+m[1]+"."+m[2])
			}
			continue
		}
		if m := reCVE.FindStringSubmatch(tag); m != nil {
			add(&t.CVEs, "CVE-"+m[1]+"-"+m[2])
			continue
		}
		if name, ok := strings.CutPrefix(tag, "attack."); ok {
			if ta, ok := tactics[strings.ReplaceAll(name, "_", "-")]; ok {
				add(&t.TacticIDs, ta[0])
				add(&t.TacticNames, ta[1])
			}
		}
	}
	return t
}

// Message is a one-line summary for people.
func (a *Alert) Message() string {
	var b strings.Builder
	b.WriteString(a.Rule.Title)
	if c := a.Rule.Correlation; c != nil {
		switch c.Type {
		case EventCount:
			fmt.Fprintf(&b, ": %d events in %s", a.Count, a.Last.Sub(a.First).Round(time.Millisecond))
		case ValueCount:
			fmt.Fprintf(&b, ": %d distinct %s", a.Count, c.Condition.Field)
		case Temporal, TemporalOrdered:
			fmt.Fprintf(&b, ": %d correlated rules within %s", a.Count, c.Timespan)
		case RateOfRise:
			fmt.Fprintf(&b, ": %.0f events per %s against a baseline of %.1f", a.Rate, c.Timespan, a.Baseline)
		}
	}
	var ctx []string
	for _, g := range a.Group {
		ctx = append(ctx, g.ECS+"="+shorten(g.Value))
	}
	if len(a.Group) == 0 {
		// A detection rule: say who and what.
		for _, f := range a.Fields {
			switch f.ECS {
			case "client.ip", "user.name", "url.original", "user_agent.original":
				ctx = append(ctx, f.ECS+"="+shorten(f.Value))
			}
		}
	}
	if len(ctx) > 0 {
		b.WriteString(" (" + strings.Join(ctx, ", ") + ")")
	}
	return b.String()
}

// shorten cuts a value shown in Message to 80 bytes, at a rune boundary.
func shorten(v string) string {
	if len(v) <= 80 {
		return v
	}
	return runePrefix(v, 77) + "..."
}

// runePrefix returns v's first n bytes or fewer, cut at a rune boundary.
func runePrefix(v string, n int) string {
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return v[:n]
}

// MaxValueBytes bounds each value an alert document copies from events
// (the completing event's fields, group-by values, event ids): a client
// chooses them, up to the collector's max_line_bytes (256 KiB) with an
// ingest token, and every alert's document is stored, indexed, queued for
// each notifier and sent. It is httpaudit's default MaxFieldBytes, so the
// gateway's events are copied whole.
const MaxValueBytes = 2048

// CutValue returns v if it has at most n bytes, else its start cut at a
// rune boundary followed by "…[truncated from N bytes, sha256 H]" (H the
// first 16 hex digits of the whole value's SHA-256), n bytes in all (n
// should be 80 or more): long values that differ stay distinct, and the
// event they came from can be found by the hash.
func CutValue(v string, n int) string {
	if len(v) <= n {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	suffix := "…[truncated from " + strconv.Itoa(len(v)) + " bytes, sha256 " + hex.EncodeToString(sum[:8]) + "]"
	return runePrefix(v, max(n-len(suffix), 0)) + suffix
}

// ECS field names alerts may copy from events, by type: the rest are
// strings.
var numericFields = map[string]bool{"http.response.status_code": true}

// AppendJSON appends the alert as one line of ECS JSON (event.kind alert),
// the document trailguard stores and prints.
func (a *Alert) AppendJSON(dst []byte) []byte {
	r := a.Rule
	level := r.Level
	if level == "" {
		level = "medium"
	}
	sev := Severity(level)
	doc := map[string]any{
		"@timestamp": a.Time.Format(timeFormat),
		"message":    a.Message(),
		"log":        map[string]any{"level": level},
	}
	ev := map[string]any{
		"kind": "alert", "category": []string{"intrusion_detection"}, "type": []string{"info"},
		"severity": sev, "risk_score": sev, "id": a.ID, "dataset": DatasetAlert,
		"action": ruleAction(r), "start": a.First.Format(timeFormat), "end": a.Last.Format(timeFormat),
	}
	doc["event"] = ev
	rule := map[string]any{"name": r.Title, "ruleset": r.Ruleset}
	if r.ID != "" {
		rule["id"] = r.ID
	} else {
		rule["id"] = r.Ref()
	}
	if r.Description != "" {
		rule["description"] = r.Description
	}
	if len(r.References) > 0 {
		rule["reference"] = r.References[0]
	}
	if r.Author != "" {
		rule["author"] = []string{r.Author}
	}
	if c := r.Correlation; c != nil {
		rule["category"] = c.Type
	} else {
		rule["category"] = "detection"
	}
	doc["rule"] = rule
	t := ThreatOf(r)
	if len(t.TechniqueIDs)+len(t.TacticIDs) > 0 {
		th := map[string]any{"framework": "MITRE ATT&CK"}
		if len(t.TechniqueIDs) > 0 {
			tech := map[string]any{"id": t.TechniqueIDs}
			if len(t.SubtechniqueIDs) > 0 {
				tech["subtechnique"] = map[string]any{"id": t.SubtechniqueIDs}
			}
			th["technique"] = tech
		}
		if len(t.TacticIDs) > 0 {
			th["tactic"] = map[string]any{"id": t.TacticIDs, "name": t.TacticNames}
		}
		doc["threat"] = th
	}
	if len(t.CVEs) > 0 {
		doc["vulnerability"] = map[string]any{"id": t.CVEs}
	}
	// The completing event's fields, then the group's (same names agree).
	for _, f := range a.Fields {
		setDotted(doc, f.ECS, fieldValue(f))
	}
	group := map[string]any{}
	for _, g := range a.Group {
		if isECSName(g.ECS) {
			setDotted(doc, g.ECS, fieldValue(g))
		}
		group[g.ECS] = CutValue(g.Value, MaxValueBytes)
	}
	al := map[string]any{"count": a.Count}
	if r.Name != "" {
		al["rule_name"] = r.Name
	}
	if len(group) > 0 {
		al["group"] = group
	}
	if len(a.Evidence) > 0 {
		evd := map[string]any{"index": a.Evidence}
		if len(a.EvidenceIDs) > 0 {
			ids := make([]string, len(a.EvidenceIDs))
			for i, id := range a.EvidenceIDs {
				ids[i] = CutValue(id, MaxValueBytes)
			}
			evd["event_id"] = ids
		}
		al["evidence"] = evd
	}
	if a.EventID != "" || a.fromEvent {
		tr := map[string]any{"index": a.Index}
		if a.EventID != "" {
			tr["event_id"] = CutValue(a.EventID, MaxValueBytes)
		}
		al["trigger"] = tr
	}
	if r.Correlation != nil && r.Correlation.Type == RateOfRise {
		al["rate"] = a.Rate
		al["baseline"] = roundTo(a.Baseline, 3)
	}
	if len(r.FalsePositives) > 0 {
		al["falsepositives"] = r.FalsePositives
	}
	doc["trailguard"] = map[string]any{"alert": al}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		// Every value is a string, number or list of them: cannot fail.
		panic(err)
	}
	return append(dst, bytes.TrimRight(buf.Bytes(), "\n")...)
}

const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

func roundTo(f float64, digits int) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'f', digits, 64), 64)
	return v
}

func ruleAction(r *Rule) string {
	if r.Name != "" {
		return r.Name
	}
	return r.Ref()
}

func fieldValue(f Field) any {
	if numericFields[f.ECS] {
		if n, err := strconv.ParseInt(f.Value, 10, 64); err == nil {
			return n
		}
	}
	return CutValue(f.Value, MaxValueBytes)
}

// isECSName reports whether a group-by field is an event field an alert
// may carry at its own name (virtual fields such as cs-uri-stem are kept
// under trailguard.alert.group only).
func isECSName(name string) bool {
	return strings.Contains(name, ".") && !strings.HasPrefix(name, "event.") && !strings.HasPrefix(name, "rule.") &&
		!strings.HasPrefix(name, "threat.") && !strings.HasPrefix(name, "trailguard.") && name != "@timestamp" && name != "message"
}

// setDotted sets doc[a][b][c] for "a.b.c", unless a scalar is in the way.
func setDotted(doc map[string]any, name string, v any) {
	parts := strings.Split(name, ".")
	m := doc
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			if _, taken := m[p]; taken {
				return
			}
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
}

// Value returns the alert's value of a field, named as the rule names it
// (c-ip or client.ip): a group-by value, else a field copied from the
// completing event.
func (a *Alert) Value(field string) (string, bool) {
	web := false
	if r := a.Rule; r != nil && r.Detection != nil {
		k, _ := logsourceKind(r.Logsource)
		web = k == lsWeb
	}
	names := []string{field, resolveField(field, web), resolveField(field, true)}
	for _, n := range names {
		for _, g := range a.Group {
			if g.Name == n || g.ECS == n {
				return g.Value, true
			}
		}
	}
	for _, n := range names {
		for _, f := range a.Fields {
			if f.ECS == n {
				return f.Value, true
			}
		}
	}
	return "", false
}
