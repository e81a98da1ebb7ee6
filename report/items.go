package report

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trailguard/trailguard/retention"
)

// build writes the items and the summary from the figures and the state.
func build(r *Report) {
	f := r.Figures
	var items []Item
	switch r.Standard {
	case PCIDSS:
		items = append(items, coverageItems(r)...)
		items = append(items, completenessItem(r), protectionItem(r), reviewItem(r, "10.4.1 / 10.4.1.1",
			"Audit logs are reviewed; automated mechanisms perform the reviews",
			"Security events and logs of critical components are reviewed at least once daily, using automated mechanisms."),
			retentionItem(r, "10.5.1", 365, 90), timeItem(r), failuresItem(r))
	case SOC2:
		items = append(items, accessItem(r), reviewItem(r, "CC7.2",
			"The entity monitors system components for anomalies",
			"The entity monitors system components and the operation of those components for anomalies that are indicative of malicious acts, natural disasters and errors."),
			evaluationItem(r), retentionItem(r, socRetentionID, 365, 0))
	case HIPAA:
		items = append(items, auditControlsItem(r), activityReviewItem(r), retentionItem(r, "164.316(b)(2)", 6*365, 0))
	}
	r.Items = items
	s := Summary{TopFindings: []string{}}
	for _, it := range items {
		switch it.Status {
		case StatusMet:
			s.Met++
		case StatusGap:
			s.Gaps++
			s.TopFindings = append(s.TopFindings, it.ID+": "+it.Evidence)
		case StatusNotApplicable:
			s.NotApplicable++
		case StatusNotAssessable:
			s.NotAssessable++
		}
	}
	if len(s.TopFindings) > 8 {
		s.TopFindings = s.TopFindings[:8]
	}
	s.Totals = []Fact{
		{"Ledger records in the period", ledgerTotal(r)},
		{"Events", num(f.Events)},
		{"Failed logins", num(f.AuthFailures.Total)},
		{"Alerts raised", num(f.Alerts.Raised)},
		{"Block decisions", num(f.Blocks.Created)},
		{"Reads of the audit trail", num(f.Reads.Total)},
	}
	if si := r.State.Settings; si != nil {
		v := "the configuration given to the report (the collector recorded none)"
		switch {
		case si.Source == SettingsCollector && r.State.Index != nil:
			v = fmt.Sprintf("what the collector ran with, since its start at %s (the report was made by the collector)", ts(si.Started))
		case si.Source == SettingsCollector:
			v = fmt.Sprintf("what the collector ran with: its signed record of its start at %s (settings sha256 %s, also in its start event in the ledger)", ts(si.Started), si.SHA256)
		case si.Problem != "":
			v = "the configuration given to the report: the collector's record was not used (" + si.Problem + ")"
		}
		s.Totals = append(s.Totals, Fact{"Settings stated (retention, witnesses, rules, notifiers, outputs)", v})
		var pre []string
		if len(si.Differences) > 0 {
			pre = append(pre, "Settings: the configuration given to the report differs from what the collector ran with, which the report states: "+strings.Join(si.Differences, "; ")+".")
		}
		if si.Problem != "" {
			pre = append(pre, "Settings: the collector's signed record of its settings was not used ("+si.Problem+"); the report states the configuration it was given.")
		}
		s.TopFindings = append(pre, s.TopFindings...)
	}
	r.Summary = s
}

func num(n uint64) string {
	s := strconv.FormatUint(n, 10)
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func pct(n, of uint64) string {
	if of == 0 {
		return "–"
	}
	if n == of {
		return "100%"
	}
	v := float64(n) * 100 / float64(of)
	if v > 99.99 {
		v = 99.99 // never round a gap up to 100%
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "%"
}

func dur(d Duration) string {
	t := time.Duration(d)
	switch {
	case t == 0:
		return "0"
	case t < time.Second:
		return t.Round(time.Millisecond).String()
	case t < time.Minute:
		return t.Round(10 * time.Millisecond).String()
	default:
		// "24h", "2m", "1h30m": Go's "24h0m0s" reads oddly in a
		// compliance document.
		s := t.Round(time.Second).String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	}
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

func countsTable(title, col string, cs []Count) Table {
	t := Table{Title: title, Columns: []string{col, "count"}, Rows: [][]string{}}
	for _, c := range cs {
		t.Rows = append(t.Rows, []string{c.Value, num(c.Count)})
	}
	return t
}

func joinCounts(cs []Count, n int) string {
	var parts []string
	for i, c := range cs {
		if i == n {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, fmt.Sprintf("%s %s", c.Value, num(c.Count)))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// namedServices labels the events without a service.name (the
// collector's block decisions, for one), which would otherwise print as a
// bare count.
func namedServices(cs []Count) []Count {
	out := slices.Clone(cs)
	for i := range out {
		if out[i].Value == "" {
			out[i].Value = "(no service.name)"
		}
	}
	return out
}

var coverageText = [7]struct{ title, req, none string }{
	{"Individual user access to cardholder data", "Audit logs capture all individual user access to cardholder data.",
		"No sensitive_create/read/update/delete event of an application was recorded: mark the operations that touch cardholder data (httpaudit.Audit with event.ActionSensitiveRead, or the gateway's sensitive routes)."},
	{"Actions by administrators", "Audit logs capture all actions taken by any individual with administrative access, including any interactive use of application or system accounts.",
		"No event names an actor with an administrative role (user.roles): set the user's roles with httpaudit.SetUser or on login."},
	{"Access to audit logs", "Audit logs capture all access to audit logs.",
		"No read of the audit trail was recorded in the period (the collector records every read of its API as sensitive_read)."},
	{"Invalid logical access attempts", "Audit logs capture all invalid logical access attempts.",
		"No failed login or authorization failure was recorded: record login failures with httpaudit.Auth and refusals with authz_fail."},
	{"Changes to identification and authentication credentials", "Audit logs capture all changes to identification and authentication credentials, including creation of new accounts, elevation of privileges, and all changes, additions, or deletions to accounts with administrative access.",
		"No credential or privilege change was recorded (user_created, user_role_change, authn_password_change, authn_token_created, …)."},
	{"Initialization, stopping or pausing of the audit logs", "Audit logs capture all initialization of audit logs, stopping or pausing of audit logs.",
		"No start or stop of a logging component was recorded in the period."},
	{"Creation and deletion of system-level objects", "Audit logs capture all creation and deletion of system-level objects.",
		"Not configured: no event with event.category configuration, host, package, file, database or process and event.type creation, deletion or installation reached the trail. Send the hosts' and deployment tooling's events (auditd, package managers, infrastructure changes) to the collector."},
}

func coverageItems(r *Report) []Item {
	f := r.Figures
	var out []Item
	for i, c := range f.Coverage {
		t := coverageText[i]
		it := Item{ID: c.ID, Title: t.title, Requirement: t.req}
		if c.Count > 0 {
			it.Status = StatusMet
			it.Evidence = fmt.Sprintf("%s events recorded: %s.", num(c.Count), joinCounts(c.Actions, 6))
			it.Tables = []Table{countsTable("Events by action", "event.action", c.Actions)}
		} else {
			it.Status = StatusGap
			it.Evidence = "0 events. " + t.none
		}
		switch i {
		case 0:
			if len(r.Params.CHDResources) > 0 {
				it.Notes = append(it.Notes, "Counted: sensitive_* operations on resources or paths starting with "+strings.Join(r.Params.CHDResources, ", ")+".")
			} else {
				it.Notes = append(it.Notes, "Counted: every sensitive_* operation an application recorded; which of them touch cardholder data is the application's statement (narrow it with chd_resources).")
			}
		case 1:
			it.Notes = append(it.Notes, "Counted: every event whose actor has one of the roles "+strings.Join(r.Params.AdminRoles, ", ")+" (user.roles).")
		case 2:
			it.Facts = []Fact{{"Reads of the trail", num(f.Reads.Total)}, {"Refused requests to the collector", num(f.Reads.Refused)}}
			it.Tables = append(it.Tables, countsTable("Reads by reader (token name)", "reader", f.Reads.ByReader))
		case 3:
			it.Facts = []Fact{{"Failed logins", num(f.AuthFailures.Total)}, {"HTTP 401 answers", num(f.HTTP401)}, {"HTTP 403 answers", num(f.HTTP403)}}
			it.Tables = append(it.Tables, countsTable("Failed logins by source", "client.ip", f.AuthFailures.TopSources))
		case 5:
			it.Facts = []Fact{{"Starts", num(f.Lifecycle.Starts)}, {"Stops", num(f.Lifecycle.Stops)}, {"Starts without a stop before them", num(f.Lifecycle.Unclean)}}
		}
		out = append(out, it)
	}
	return out
}

func completenessItem(r *Report) Item {
	f := r.Figures
	c := f.Completeness
	it := Item{ID: "10.2.2", Title: "Details recorded for each auditable event",
		Requirement: "Audit logs record: user identification, type of event, date and time, success or failure indication, origination of event, identity or name of affected data, system component, resource, or service."}
	t := Table{Title: "Required details over the " + num(c.Auditable) + " auditable events (10.2.1.1–10.2.1.7)",
		Columns: []string{"detail", "ECS field", "applicable", "present", "%", "missing by service"}, Rows: [][]string{}}
	var short []string
	for _, fc := range c.Fields {
		t.Rows = append(t.Rows, []string{fc.Field, fc.Source, num(fc.Applicable), num(fc.Present), pct(fc.Present, fc.Applicable), joinCounts(fc.MissingBy, 3)})
		if fc.Present < fc.Applicable {
			short = append(short, fmt.Sprintf("%s %s", fc.Field, pct(fc.Present, fc.Applicable)))
		}
	}
	it.Tables = []Table{t}
	switch {
	case c.Auditable == 0:
		it.Status = StatusNotAssessable
		it.Evidence = "No auditable event in the period."
	case len(short) == 0:
		it.Status = StatusMet
		it.Evidence = fmt.Sprintf("Every one of the %s auditable events has all six details.", num(c.Auditable))
	default:
		it.Status = StatusGap
		it.Evidence = "Incomplete events: " + strings.Join(short, "; ") + "."
		ex := Table{Title: "Examples of incomplete events (first in ledger order)", Columns: []string{"ledger index", "event.id", "action", "service", "missing"}, Rows: [][]string{}}
		for _, e := range c.Examples {
			ex.Rows = append(ex.Rows, []string{strconv.FormatUint(e.Index, 10), e.EventID, e.Action, e.Service, strings.Join(e.Missing, ", ")})
		}
		it.Tables = append(it.Tables, ex)
	}
	it.Notes = []string{"User identification is not required of the logging components' own starts and stops (the system is the actor); for them the service is the affected component.",
		"Plain access events (http_request) are not auditable events of 10.2.1 by themselves and are not counted here."}
	return it
}

func protectionItem(r *Report) Item {
	f, st := r.Figures, r.State
	in := st.Integrity
	it := Item{ID: "10.3", Title: "Audit logs are protected from destruction and unauthorized modifications",
		Requirement: "10.3.1 read access is limited to those with a job-related need; 10.3.2 logs are protected from modification; 10.3.3 logs are promptly backed up to a central store that is difficult to modify; 10.3.4 file integrity monitoring or change-detection is used on audit logs."}
	readers := []string{}
	rows := [][]string{}
	for _, t := range st.Tokens {
		state := "active"
		if t.Revoked != nil {
			state = "revoked " + ts(*t.Revoked)
		} else if t.Role == "read" || t.Role == "admin" {
			readers = append(readers, t.Name+" ("+t.Role+")")
		}
		rows = append(rows, []string{t.Name, t.Role, ts(t.Created), state})
	}
	it.Tables = []Table{{Title: "API tokens (the collector's token store): read and admin may read the trail", Columns: []string{"name", "role", "created", "state"}, Rows: rows}}
	wrows := [][]string{}
	witnessOK := 0
	for _, w := range st.Witnesses {
		state := "holds size " + num(w.TreeSize) + " signed " + ts(w.Time)
		if w.Error != "" {
			state = "unreachable: " + w.Error
		} else if w.Consistent && w.TreeSize >= r.Range.End {
			witnessOK++
			state += ", consistent, covers the period"
		} else if w.Consistent {
			state += ", consistent, behind the period's end"
		} else {
			state += ", NOT consistent with the ledger"
		}
		wrows = append(wrows, []string{w.Name, state})
	}
	it.Tables = append(it.Tables, Table{Title: "Witness copies of the checkpoints", Columns: []string{"witness", "newest checkpoint held"}, Rows: wrows})
	it.Facts = []Fact{
		{"Records of the period read and matched against the signed tree", num(f.Records-min(f.Records, in.SummarisedEarlier)) + " now, " +
			num(in.SummarisedEarlier) + " when an earlier report summarised them (same tree root)"},
		{"Checkpoint named (tree size, root hash)", num(r.Checkpoint.TreeSize) + ", " + r.Checkpoint.RootHash},
		{"Its signature verified with " + st.Key, yesNo(in.CheckpointVerified)},
		{"Consistent with the newest checkpoint (size " + num(in.NewestSize) + ")", yesNo(in.ConsistentWithNewest)},
		{"Signed checkpoints in the period", num(f.Checkpoints.Count)},
		{"Holders of read access", strings.Join(readers, ", ")},
	}
	if st.DataDirMode != "" {
		it.Facts = append(it.Facts, Fact{"Permissions of the data and ledger directories", st.DataDirMode})
	}
	var problems []string
	if f.ReadError != "" {
		problems = append(problems, "a record could not be read or does not match the signed tree: "+f.ReadError)
	}
	if in.Problem != "" {
		problems = append(problems, in.Problem)
	}
	if !in.CheckpointVerified || !in.ConsistentWithNewest || !in.StartConsistent {
		problems = append(problems, "the checkpoints could not all be verified")
	}
	switch {
	case len(problems) > 0:
		it.Status = StatusGap
		it.Evidence = "Integrity not shown: " + strings.Join(problems, "; ") + "."
	case len(st.Witnesses) == 0:
		it.Status = StatusGap
		it.Evidence = fmt.Sprintf("All %s records of the period match the tree signed by checkpoint %s (signature verified, consistent with the newest); but no witness holds copies of the checkpoints, so the key holder could rewrite history unnoticed (10.3.3: configure witness).", num(f.Records), num(r.Checkpoint.TreeSize))
	case witnessOK == 0:
		it.Status = StatusGap
		it.Evidence = fmt.Sprintf("All %s records match the signed tree, but no witness holds a consistent copy covering the period's end.", num(f.Records))
	default:
		it.Status = StatusMet
		it.Evidence = fmt.Sprintf("All %s records of the period match the tree signed by checkpoint %s (signature verified, consistent with the newest); %d of %d witnesses hold a consistent copy covering the period; %d tokens may read the trail.", num(f.Records), num(r.Checkpoint.TreeSize), witnessOK, len(st.Witnesses), len(readers))
	}
	// (The note on summarised records was overwritten by the fixed notes
	// below before, and never printed.)
	it.Notes = []string{"Modification is prevented by design (append-only ledger) and detected by the Merkle tree: any altered, removed or inserted record fails the check above; `trailguard verify` checks every checkpoint's signature and the whole ledger.",
		"Who may read the files on disk (operating-system accounts) is not assessable from logs."}
	if in.SummarisedEarlier > 0 {
		it.Notes = append(it.Notes, fmt.Sprintf("%s records were summarised by an earlier report (read and checked against the signed tree then) and not read again: their figures are kept under the tree's root at their end, which is unchanged, authenticated with a key derived from the collector's signing key; `trailguard verify-report` reads them all again.", num(in.SummarisedEarlier)))
	}
	if in.CacheRejected > 0 {
		it.Notes = append(it.Notes, fmt.Sprintf("%s chunks of figures kept by an earlier report failed their authentication: the report cache's files were altered or planted on disk. They were not used: those records were read again from the ledger and checked against the signed tree for this report, and the files were moved aside (.rejected) for inspection.", num(in.CacheRejected)))
	}
	if r.Range.Pruned > 0 {
		kept := r.Range.First + r.Range.Pruned
		it.Notes = append(it.Notes, fmt.Sprintf("Before this report, %s: those %s records of the period could not be read. Their leaf hashes remain in the ledger's hash tiles: with them, the remaining records %s to %s give the root signed by checkpoint %s.",
			removedText(r, r.Range.First, kept), num(r.Range.Pruned), num(kept), num(r.Range.End-1), num(r.Checkpoint.TreeSize)))
	}
	return it
}

// ledgerRecords says which records of the range were read, and which
// retention had removed ("0 to 360" read as 360 records checked).
func ledgerRecords(r *Report) string {
	if r.Range.Pruned == 0 {
		return fmt.Sprintf("%s to %s (%s read and checked against the signed tree)", num(r.Range.First), num(r.Range.End), num(r.Figures.Records))
	}
	kept := r.Range.First + r.Range.Pruned
	return fmt.Sprintf("records %s to %s (%s) read and checked against the signed tree; before them, %s",
		num(kept), num(r.Range.End-1), num(r.Figures.Records), removedText(r, r.Range.First, kept))
}

// ledgerTotal is the summary's count of the period's records.
func ledgerTotal(r *Report) string {
	if r.Range.Pruned == 0 {
		return num(r.Figures.Records) + fmt.Sprintf(" (indices %d to %d)", r.Range.First, r.Range.End)
	}
	kept := r.Range.First + r.Range.Pruned
	return num(r.Figures.Records) + fmt.Sprintf(" (indices %d to %d; ", kept, r.Range.End-1) + removedText(r, r.Range.First, kept) + ")"
}

// removedText says how retention removed records [from, to), from the
// ledger's signed retention records.
func removedText(r *Report, from, to uint64) string {
	var parts []string
	for _, m := range r.State.Ledger.Removed {
		if m.End <= from || m.Start >= to {
			continue
		}
		c := m
		c.Start, c.End = max(m.Start, from), min(m.End, to)
		parts = append(parts, c.String())
	}
	if len(parts) == 0 {
		return "no signed retention record for them verified with the report's key: `trailguard verify` says why"
	}
	return strings.Join(parts, "; ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func alertTables(r *Report) []Table {
	al := r.Figures.Alerts
	t := Table{Title: "Alerts (first " + strconv.Itoa(maxList) + ")", Columns: []string{"time", "rule", "level", "client / user", "detected after", "status", "acknowledged"}, Rows: [][]string{}}
	for _, a := range al.List {
		who := a.Client
		if a.User != "" {
			who = strings.Trim(who+" / "+a.User, " /")
		}
		ack := "–"
		if a.Acked != nil {
			ack = dur(Duration(a.Acked.Sub(a.Time))) + " later"
		}
		t.Rows = append(t.Rows, []string{ts(a.Time), a.Title, a.Level, who, dur(a.Delay), a.Status, ack})
	}
	if al.Raised > uint64(len(al.List)) {
		t.More = int(al.Raised) - len(al.List)
	}
	return []Table{countsTable("Alerts by rule", "rule", al.ByRule), t}
}

func reviewItem(r *Report, id, title, req string) Item {
	f, st := r.Figures, r.State
	al := f.Alerts
	it := Item{ID: id, Title: title, Requirement: req}
	blocks := 0
	for _, ru := range st.Detection.Rules {
		if ru.Block {
			blocks++
		}
	}
	it.Facts = []Fact{
		{"Detection enabled", yesNo(st.Detection.Enabled)},
		{"Rules active", fmt.Sprintf("%d (%d ask for a block); %d could not be loaded", len(st.Detection.Rules), blocks, st.Detection.RuleErrors)},
		{"Alerts raised", num(al.Raised) + " (" + joinCounts(al.ByLevel, 5) + ")"},
		{"Detection delay (from the record that completed an alert to the alert, ledger append times)", "median " + dur(al.DelayMedian) + ", max " + dur(al.DelayMax)},
		{"Acknowledged / resolved / still open", num(al.Acknowledged) + " / " + num(al.Resolved) + " / " + num(al.Open)},
		{"Block decisions", num(f.Blocks.Created) + " (" + joinCounts(f.Blocks.ByScenario, 4) + ")"},
	}
	if len(st.Detection.Notifiers) > 0 {
		it.Facts = append(it.Facts, Fact{"Notifiers", strings.Join(st.Detection.Notifiers, ", ")})
	}
	it.Tables = alertTables(r)
	switch {
	case !st.Detection.Enabled || len(st.Detection.Rules) == 0:
		it.Status = StatusGap
		it.Evidence = "No automated review: detection is off or has no rules."
	default:
		it.Status = StatusMet
		it.Evidence = fmt.Sprintf("%d rules review every record as it is stored; they raised %s alerts in the period (median %s after the record that completed them was stored) and %s block decisions.",
			len(st.Detection.Rules), num(al.Raised), dur(al.DelayMedian), num(f.Blocks.Created))
	}
	it.Notes = []string{"The rules in force are those loaded when the report was made; a change of rules during the period is not in the trail."}
	return it
}

func evaluationItem(r *Report) Item {
	al := r.Figures.Alerts
	it := Item{ID: "CC7.3", Title: "The entity evaluates security events",
		Requirement: "The entity evaluates security events to determine whether they could or have resulted in a failure of the entity to meet its objectives and, if so, takes actions to prevent or address such failures."}
	target := dur(r.Params.AckTarget)
	it.Facts = []Fact{
		{"Alerts raised in the period", num(al.Raised)},
		{"Acknowledged (then left open)", num(al.Acknowledged)},
		{"Resolved", num(al.Resolved)},
		{"Open at the period's end", num(al.Open)},
		{"Time to acknowledge", "median " + dur(al.AckMedian) + ", max " + dur(al.AckMax)},
		{"Time to resolve", "median " + dur(al.ResolveMedian) + ", max " + dur(al.ResolveMax)},
		{"Not acknowledged within " + target, num(al.Overdue)},
		{"Status changes of earlier alerts", num(al.EarlierChanged)},
	}
	it.Tables = alertTables(r)[1:]
	switch {
	case al.Raised == 0:
		it.Status = StatusNotAssessable
		it.Evidence = "No alert was raised in the period, so no evaluation could be recorded."
	case al.Overdue > 0:
		it.Status = StatusGap
		it.Evidence = fmt.Sprintf("%s of %s alerts were not acknowledged within %s.", num(al.Overdue), num(al.Raised), target)
	default:
		it.Status = StatusMet
		it.Evidence = fmt.Sprintf("%s alerts: %s resolved, %s acknowledged, %s open and still within the %s target.", num(al.Raised), num(al.Resolved), num(al.Acknowledged), num(al.Open), target)
	}
	it.Notes = []string{"Acknowledgements and resolutions are the audited PATCH /v1/alerts changes (alert_status_changed events), with who made them."}
	return it
}

func accessItem(r *Report) Item {
	f, st := r.Figures, r.State
	it := Item{ID: "CC6.1", Title: "Logical access to the audit trail",
		Requirement: "The entity implements logical access security software, infrastructure, and architectures over protected information assets to protect them from security events."}
	roles := map[string]int{}
	active := 0
	rows := [][]string{}
	for _, t := range st.Tokens {
		state := "active"
		if t.Revoked != nil {
			state = "revoked " + ts(*t.Revoked)
		} else {
			roles[t.Role]++
			active++
		}
		rows = append(rows, []string{t.Name, t.Role, ts(t.Created), state})
	}
	it.Tables = []Table{{Title: "API tokens", Columns: []string{"name", "role", "created", "state"}, Rows: rows},
		countsTable("Reads of the audit trail by reader", "reader", f.Reads.ByReader)}
	it.Facts = []Fact{
		{"Active tokens by role", fmt.Sprintf("admin %d, read %d, ingest %d, bouncer %d", roles["admin"], roles["read"], roles["ingest"], roles["bouncer"])},
		{"Reads of the trail (each recorded with its reader)", num(f.Reads.Total)},
		{"Requests refused by the collector (bad token, role)", num(f.Reads.Refused)},
	}
	it.Status = StatusMet
	it.Evidence = fmt.Sprintf("Every API call needs a token of a role that allows it (tokens stored hashed); %d active tokens; %s reads of the trail recorded with their reader; %s refusals recorded.", active, num(f.Reads.Total), num(f.Reads.Refused))
	if active == 0 {
		it.Status = StatusNotAssessable
		it.Evidence = "The collector has no active token."
	}
	it.Notes = []string{"Operating-system access to the data directory is not assessable from logs."}
	return it
}

// socRetentionID names the SOC 2 report's retention item: the criteria
// set no period, so it hangs on the monitoring evidence it keeps.
const socRetentionID = "CC7.2 retention"

func retentionItem(r *Report, id string, needDays, hotDays int) Item {
	st := r.State
	ret := st.Retention
	it := Item{ID: id}
	switch id {
	case "10.5.1":
		it.Title = "Audit log history is retained for at least 12 months, the last three immediately available"
		it.Requirement = "Retain audit log history for at least 12 months, with at least the most recent three months immediately available for analysis."
	case socRetentionID:
		it.Title = "Audit logs are retained for one year"
		it.Requirement = "SOC 2 sets no retention period of its own; the evidence of CC7.2 over a Type 2 examination period (up to 12 months) must still exist when it is examined, so audit logs are kept for one year by common practice (the soc2 retention profile)."
	default:
		it.Title = "Documentation is retained for six years"
		it.Requirement = "Retain the documentation required by the Security Rule (and, by common practice, audit logs) for 6 years from the date of its creation or the date when it last was in effect, whichever is later."
	}
	policy := "none (kept for ever)"
	if ret.Profile != "" {
		policy = fmt.Sprintf("%s: %d days", ret.Profile, ret.RetainDays)
		// The built-in profiles keep whole calendar years too (365 days
		// fall a day short of twelve months across a 29 February).
		if p, err := retention.Lookup(ret.Profile); err == nil && p.Years > 0 && int(p.Retain/retention.Day) == ret.RetainDays {
			policy = fmt.Sprintf("%s: %d days, and at least %s", ret.Profile, ret.RetainDays, map[bool]string{true: "one calendar year", false: strconv.Itoa(p.Years) + " calendar years"}[p.Years == 1])
		}
		if ret.HotDays > 0 {
			policy += fmt.Sprintf(", %d immediately available", ret.HotDays)
		}
	}
	held := "–"
	if !st.Ledger.OldestTime.IsZero() {
		held = fmt.Sprintf("record %s, @timestamp %s (%d days before the report)", num(st.Ledger.OldestIndex), ts(st.Ledger.OldestTime),
			int(r.Generated.Sub(st.Ledger.OldestTime).Hours()/24))
	}
	it.Facts = []Fact{{"Retention configured", policy}, {"Legal hold", map[bool]string{true: "yes: retention deletes nothing", false: "no"}[ret.LegalHold]}, {"Oldest record held", held},
		{"Records held", num(st.Ledger.Size - st.Ledger.OldestIndex)}}
	var removed []string
	other := map[string]bool{}
	for _, m := range st.Ledger.Removed {
		removed = append(removed, m.String())
		if m.Policy != ret.Profile {
			other[m.Policy] = true
		}
	}
	if len(removed) > 0 {
		it.Facts = append(it.Facts, Fact{"Removed by retention (the ledger's signed retention records)", strings.Join(removed, "; ")})
	}
	available, availFacts := availability(r, hotDays)
	it.Facts = append(it.Facts, availFacts...)
	// A period of days must hold the requirement's leap days too: twelve
	// months are 366 days across a 29 February, six years up to 2,192. A
	// built-in profile of enough days keeps whole calendar years besides.
	calendar := false
	if p, err := retention.Lookup(ret.Profile); err == nil && p.Years > 0 && int(p.Retain/retention.Day) == ret.RetainDays {
		calendar = true
	}
	leapDays := (needDays/365 + 3) / 4
	ok := ret.Profile == "" || (calendar && ret.RetainDays >= needDays) || ret.RetainDays >= needDays+leapDays
	switch {
	case !ok && !ret.LegalHold:
		it.Status = StatusGap
		it.Evidence = fmt.Sprintf("Retention is %d days; the requirement is %d (%d days, and its leap days: a profile of whole calendar years, or custom:%d).",
			ret.RetainDays, needDays+leapDays, needDays, needDays+leapDays)
	default:
		it.Status = StatusMet
		it.Evidence = fmt.Sprintf("Retention policy %s covers the %d days required", policy, needDays)
		it.Evidence += "."
		if hotDays > 0 {
			it.Evidence += " " + available
		}
	}
	it.Notes = []string{"Retention deletes whole ledger segments only when signed checkpoint times show them old enough, and leaves a signed record of it; records younger than the policy are never deleted.",
		"Backups and archives kept outside the collector are not assessable from logs."}
	if len(other) > 0 {
		stated := ret.Profile
		if stated == "" {
			stated = "none (kept for ever)"
		}
		it.Notes = append(it.Notes, fmt.Sprintf("The ledger's signed retention records name policy %s; the retention stated above is %s: records were removed under a policy other than the one stated.",
			strings.Join(slices.Sorted(maps.Keys(other)), ", "), stated))
	}
	if n := st.Ledger.RemovedUnverified; n > 0 {
		it.Notes = append(it.Notes, fmt.Sprintf("%d retention records of the ledger do not verify with the report's key or are damaged: `trailguard verify` names them.", n))
	}
	return it
}

// availability says what of the trail is immediately available for
// analysis (PCI DSS 10.5.1: the last three months) and on what evidence:
// every record the ledger holds is read by the query API, the web UI and
// reports from the ledger as stored — closed segments are compressed and
// read in place, nothing is moved to an archive that must be restored —
// and the index finds the records from the oldest held to the one it has
// reached. What the report checked is said; what it could not, too.
func availability(r *Report, hotDays int) (string, []Fact) {
	st := r.State
	held := st.Ledger.Size - st.Ledger.OldestIndex
	var facts []Fact
	var b strings.Builder
	fmt.Fprintf(&b, "All %s records held are immediately available for analysis: the query API, the web UI and reports read each one from the ledger as stored (closed segments are compressed and read in place; nothing is archived, nothing needs restoring), and retention deletes none younger than the policy", num(held))
	if !st.Ledger.OldestTime.IsZero() {
		days := int(r.Generated.Sub(st.Ledger.OldestTime).Hours() / 24)
		if days < hotDays {
			fmt.Fprintf(&b, "; the oldest is %d days old, so the trail does not yet span the %d days required immediately available", days, hotDays)
		} else {
			fmt.Fprintf(&b, "; the oldest is %d days old, so the last %d days are all held", days, hotDays)
		}
	}
	b.WriteString(".")
	read := "not read (no record held)"
	if st.Ledger.OldestRead {
		read = fmt.Sprintf("record %s read from the ledger and matched against the signed tree when the report was made", num(st.Ledger.OldestIndex))
	} else if held > 0 {
		read = fmt.Sprintf("record %s could not be read when the report was made", num(st.Ledger.OldestIndex))
		b.WriteString(" The oldest record held could not be read when the report was made: run trailguard verify.")
	}
	facts = append(facts, Fact{"Oldest record read back", read})
	switch ix := st.Index; {
	case ix == nil:
		facts = append(facts, Fact{"Search index", "not checked (report made offline; the collector's reports state it)"})
	default:
		covered := uint64(0)
		if ix.IndexedThrough > st.Ledger.OldestIndex {
			covered = min(ix.IndexedThrough, st.Ledger.Size) - st.Ledger.OldestIndex
		}
		facts = append(facts, Fact{"Search index", fmt.Sprintf("%s of the %s records held indexed when the report was made", num(covered), num(held))})
		if held-covered > 100_000 {
			fmt.Fprintf(&b, " The search index was %s records behind the ledger when the report was made (rebuilding or paused on a full disk): searches miss those until it catches up, reads by ledger index and reports do not.", num(held-covered))
		}
	}
	return b.String(), facts
}

func timeItem(r *Report) Item {
	t := r.Figures.Time
	it := Item{ID: "10.6", Title: "Time-synchronization: events carry correct times",
		Requirement: "System clocks and time are synchronized using time-synchronization technology (10.6.1–10.6.3)."}
	it.Facts = []Fact{
		{"Events with a @timestamp", num(t.WithTimestamp)},
		{"Ahead of the collector's clock by more than " + dur(r.Params.ClockTolerance), num(t.Ahead) + " (largest " + dur(t.MaxAhead) + ")"},
		{"Reached the collector more than " + dur(r.Params.MaxDelay) + " after their @timestamp", num(t.Delayed) + " (largest " + dur(t.MaxDelay) + ")"},
		{"@timestamp outside the period", num(t.Outside)},
	}
	if len(t.Examples) > 0 {
		tb := Table{Title: "Events ahead of the collector's clock", Columns: []string{"ledger index", "@timestamp", "collector's time", "ahead by", "service"}, Rows: [][]string{}}
		for _, e := range t.Examples {
			tb.Rows = append(tb.Rows, []string{strconv.FormatUint(e.Index, 10), ts(e.Timestamp), ts(e.Reference), dur(e.By), e.Service})
		}
		it.Tables = []Table{tb}
	}
	switch {
	case t.WithTimestamp == 0:
		it.Status = StatusNotAssessable
		it.Evidence = "No event in the period."
	case t.Ahead > 0:
		it.Status = StatusGap
		it.Evidence = fmt.Sprintf("%s events are stamped later than the collector received them (by up to %s): their sources' clocks are ahead.", num(t.Ahead), dur(t.MaxAhead))
	default:
		it.Status = StatusMet
		it.Evidence = fmt.Sprintf("No event of %s is stamped ahead of the collector's clock by more than %s; %s arrived more than %s late.", num(t.WithTimestamp), dur(r.Params.ClockTolerance), num(t.Delayed), dur(r.Params.MaxDelay))
	}
	it.Notes = []string{"The collector's clock is the reference: event.ingested, or the signed time of the first checkpoint that covers the record. Whether that clock follows designated time sources (NTP configuration) is not assessable from logs.",
		"Late arrival may be a clock behind or delivery held up (a shipper's spool during an outage)."}
	return it
}

func failuresItem(r *Report) Item {
	f := r.Figures
	fl, cp, lc := f.Failures, f.Checkpoints, f.Lifecycle
	it := Item{ID: "10.7.2", Title: "Failures of critical security control systems are detected",
		Requirement: "Failures of critical security control systems are detected, alerted, and addressed promptly, including but not limited to failure of audit logging mechanisms."}
	it.Facts = []Fact{
		{"Gaps in the checkpoint cadence over " + dur(r.Params.MaxGap) + " (logger down or silenced)", num(cp.Gaps) + " (largest " + dur(cp.LargestGap) + ")"},
		{"Planned stops (after a shutdown checkpoint)", num(cp.PlannedStops)},
		{"Starts without a clean stop before them (crash, kill)", num(lc.Unclean)},
		{"Events that could not reach the collector (monitor disabled / enabled again)", num(fl.MonitorDisabled) + " / " + num(fl.MonitorEnabled)},
		{"Forwarding losses recorded", num(fl.RecordsLost)},
		{"Unsigned records adopted by an operator", num(fl.Adopted)},
		{"Requests counted but not recorded one by one (sampling of refusals, by policy)", num(fl.Unrecorded) + " in " + num(fl.UnrecordedEvents) + " summaries"},
		{"Records that are not valid events", num(f.Undecodable)},
	}
	if len(cp.List) > 0 {
		t := Table{Title: "Gaps in the checkpoint cadence", Columns: []string{"from", "to", "length", "tree size", "kind"}, Rows: [][]string{}}
		for _, g := range cp.List {
			kind := "unexplained"
			if g.Planned {
				kind = "planned stop"
			}
			t.Rows = append(t.Rows, []string{ts(g.After), ts(g.Before), dur(Duration(g.Before.Sub(g.After))), num(g.Size), kind})
		}
		it.Tables = append(it.Tables, t)
	}
	if len(fl.List) > 0 {
		t := Table{Title: "Recorded failures and summaries", Columns: []string{"ledger index", "time", "action", "service", "count"}, Rows: [][]string{}}
		for _, x := range fl.List {
			t.Rows = append(t.Rows, []string{strconv.FormatUint(x.Index, 10), ts(x.Time), x.Action, x.Service, strconv.FormatInt(x.Count, 10)})
		}
		it.Tables = append(it.Tables, t)
	}
	var bad []string
	if cp.Gaps > 0 {
		bad = append(bad, plural(cp.Gaps, "unexplained gap", "unexplained gaps")+" in the checkpoint cadence")
	}
	if lc.Unclean > 0 {
		bad = append(bad, plural(lc.Unclean, "unclean stop", "unclean stops"))
	}
	if fl.MonitorDisabled > 0 {
		bad = append(bad, num(fl.MonitorDisabled)+" times events or decisions could not reach their destination")
	}
	if fl.RecordsLost > 0 {
		bad = append(bad, num(fl.RecordsLost)+" forwarding losses")
	}
	if fl.Adopted > 0 {
		bad = append(bad, num(fl.Adopted)+" adoptions of unsigned records")
	}
	if f.ReadError != "" {
		bad = append(bad, "a record that does not match the signed tree")
	}
	if len(bad) > 0 {
		it.Status = StatusGap
		it.Evidence = "Logging failed in the period and the trail shows it: " + strings.Join(bad, "; ") + "."
	} else {
		it.Status = StatusMet
		it.Evidence = fmt.Sprintf("No failure of logging in the period: %s checkpoints without a gap over %s, no unclean stop, no loss recorded.", num(cp.Count), dur(r.Params.MaxGap))
	}
	if !cp.Began.IsZero() {
		it.Evidence += " The trail began in the period, at " + ts(cp.Began) + " (the ledger's first checkpoint); the time before it is not counted."
	}
	it.Notes = []string{"Events an application dropped before they reached a sink (httpaudit counts them in its statistics) are not in the trail: not assessable from logs."}
	return it
}

func auditControlsItem(r *Report) Item {
	p := protectionItem(r)
	f := r.Figures
	it := Item{ID: "164.312(b)", Title: "Audit controls",
		Requirement: "Implement hardware, software, and/or procedural mechanisms that record and examine activity in information systems that contain or use electronic protected health information."}
	it.Facts = append([]Fact{{"Events recorded", num(f.Events)}, {"Services recording", joinCounts(namedServices(f.Services), 8)},
		{"Sensitive operations recorded (sensitive_*)", num(f.Coverage[0].Count)}}, p.Facts...)
	it.Tables = []Table{countsTable("Events by action and outcome (first 30)", "event.action (outcome)", head(f.Actions, 30))}
	switch {
	case f.Events == 0:
		it.Status = StatusNotAssessable
		it.Evidence = "No event in the period."
	case p.Status == StatusGap && (f.ReadError != "" || r.State.Integrity.Problem != ""):
		it.Status = StatusGap
		it.Evidence = p.Evidence
	default:
		it.Status = StatusMet
		named := uint64(0)
		for _, c := range f.Services {
			if c.Value != "" {
				named++
			}
		}
		it.Evidence = fmt.Sprintf("%s events from %s were recorded in a tamper-evident ledger; all %s records of the period match its signed tree.", num(f.Events), plural(named, "service", "services"), num(f.Records))
	}
	return it
}

func head(cs []Count, n int) []Count {
	if len(cs) > n {
		return cs[:n]
	}
	return cs
}

func activityReviewItem(r *Report) Item {
	f := r.Figures
	it := reviewItem(r, "164.308(a)(1)(ii)(D)", "Information system activity review",
		"Implement procedures to regularly review records of information system activity, such as audit logs, access reports, and security incident tracking reports.")
	it.Facts = append(it.Facts, Fact{"Reads of the audit trail by people and tools", num(f.Reads.Total)},
		Fact{"Alert reviews (acknowledged or resolved)", num(f.Alerts.Acknowledged + f.Alerts.Resolved)})
	it.Tables = append(it.Tables, countsTable("Reads of the audit trail by reader", "reader", f.Reads.ByReader))
	if it.Status == StatusMet && f.Reads.Total == 0 && f.Alerts.Acknowledged+f.Alerts.Resolved == 0 {
		it.Status = StatusGap
		it.Evidence = "Automated review ran, but no person read the trail or reviewed an alert in the period."
	} else if it.Status == StatusMet {
		it.Evidence += fmt.Sprintf(" The trail was read %s times and %s alerts were reviewed.", num(f.Reads.Total), num(f.Alerts.Acknowledged+f.Alerts.Resolved))
	}
	return it
}

// plural is "1 gap" or "3 gaps", the number written as num does.
func plural(n uint64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return num(n) + " " + many
}
