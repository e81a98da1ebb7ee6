// Package report computes compliance reports — PCI DSS v4.0 Requirement 10,
// SOC 2 (CC6.1, CC7.2, CC7.3, retention) and HIPAA (164.312(b), 164.308(a)(1)(ii)(D),
// 164.316(b)(2)) — from the ledger, the trail's store of record, and
// renders them as JSON, HTML and PDF.
//
// A report covers the records appended between two signed checkpoints:
// the newest signed at or before the period's start and the newest signed
// at or before its end (the checkpoint the report names, with its tree
// size and root hash). Consecutive periods therefore partition the
// ledger. Every record of the range is read through the ledger, which
// checks it against its leaf hash in the signed tree, and scanned once for
// the fields the requirements ask about; the figures are exact counts.
//
// The JSON form is the source of the others. It is signed with the
// collector's checkpoint key (a C2SP signed note over its SHA-256) and
// carries everything needed to compute it again: Verify checks the
// signature and, given the ledger, recomputes the report and names every
// figure that differs. Facts that are not in the ledger (the retention
// setting, the tokens, the rules loaded, the witnesses' copies) are stated
// as they were when the report was made, under "state", and signed with
// the rest.
package report

import (
	"fmt"
	"time"
)

// Standards a report can be made for.
const (
	PCIDSS = "pci-dss"
	SOC2   = "soc2"
	HIPAA  = "hipaa"
)

// Standards lists the standards with their titles.
func Standards() []Standard {
	return []Standard{
		{PCIDSS, "PCI DSS v4.0.1 — Requirement 10: Log and monitor all access to system components and cardholder data"},
		{SOC2, "SOC 2 (2017 Trust Services Criteria) — CC6.1, CC7.2, CC7.3, retention"},
		{HIPAA, "HIPAA Security Rule — 45 CFR 164.312(b), 164.308(a)(1)(ii)(D), 164.316(b)(2)"},
	}
}

// Standard names a standard.
type Standard struct {
	ID    string `json:"id"`
	Title string `json:"title"`
}

// Statuses of an item.
const (
	StatusMet           = "met"
	StatusGap           = "gap"
	StatusNotApplicable = "not applicable"
	StatusNotAssessable = "not assessable from logs"
)

// FormatVersion identifies the JSON layout.
const FormatVersion = "trailguard-report/1"

// Report is a compliance report. Its JSON encoding is what is signed.
type Report struct {
	Format    string    `json:"format"`
	Standard  string    `json:"standard"`
	Title     string    `json:"title"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Generated time.Time `json:"generated"`
	Generator string    `json:"generator"`
	// Checkpoint is the signed checkpoint the report was computed from:
	// records [Range.First, Range.End) of the tree it signs.
	Checkpoint CheckpointRef `json:"checkpoint"`
	Range      Range         `json:"range"`
	Params     Params        `json:"parameters"`
	Summary    Summary       `json:"summary"`
	Items      []Item        `json:"items"`
	// Figures are computed from the ledger alone (Verify recomputes them).
	Figures *Figures `json:"figures"`
	// State is what the collector held when the report was made, outside
	// the ledger (stated and signed, not recomputable).
	State State `json:"state"`
}

// CheckpointRef names a signed checkpoint.
type CheckpointRef struct {
	Origin   string    `json:"origin"`
	TreeSize uint64    `json:"tree_size"`
	RootHash string    `json:"root_hash"` // base64, as in the checkpoint
	Time     time.Time `json:"time"`
	// Signed is the checkpoint as a C2SP signed note.
	Signed string `json:"signed,omitempty"`
}

// Range is the part of the ledger a report covers.
type Range struct {
	// First is the size of the newest checkpoint signed at or before From
	// (0 if none): the first record of the period.
	First     uint64    `json:"first_index"`
	FirstTime time.Time `json:"first_checkpoint_time,omitzero"`
	// End is Checkpoint.TreeSize: records before it are covered.
	End uint64 `json:"end_index"`
	// Pruned counts records of the range deleted by retention before the
	// report was made (they could not be read).
	Pruned uint64 `json:"pruned,omitempty"`
}

// Params are the report's settings; Verify recomputes with the same.
type Params struct {
	// MaxGap is the longest expected time between checkpoints (10.7.2).
	MaxGap Duration `json:"max_checkpoint_gap"`
	// ClockTolerance is how far an event's @timestamp may be ahead of the
	// collector's clock (event.ingested, or the signed time of the first
	// checkpoint covering it) before it counts as skewed (10.6).
	ClockTolerance Duration `json:"clock_tolerance"`
	// MaxDelay is how long after its @timestamp an event may reach the
	// collector before it counts as delayed (10.6).
	MaxDelay Duration `json:"max_delivery_delay"`
	// AckTarget is how soon an alert should be acknowledged (CC7.3,
	// 10.4.1).
	AckTarget Duration `json:"acknowledge_target"`
	// AdminRoles are the user.roles values that make an actor an
	// administrator (10.2.1.2).
	AdminRoles []string `json:"admin_roles"`
	// CHDResources, if set, are prefixes of trailguard.audit.resource or
	// url.path that hold cardholder data (10.2.1.1); empty: every
	// sensitive_* operation of an application counts.
	CHDResources []string `json:"chd_resources,omitempty"`
	// Interval is the bucket width of the authentication-failure chart.
	Interval Duration `json:"chart_interval"`
}

// Duration is a time.Duration encoded as its string ("2m0s").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// Summary is the report's first page.
type Summary struct {
	Met           int      `json:"met"`
	Gaps          int      `json:"gaps"`
	NotApplicable int      `json:"not_applicable"`
	NotAssessable int      `json:"not_assessable"`
	Totals        []Fact   `json:"totals"`
	TopFindings   []string `json:"top_findings"`
}

// Item is one requirement and what the trail shows about it.
type Item struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Requirement string `json:"requirement"`
	Status      string `json:"status"`
	// Evidence is one paragraph saying what was found.
	Evidence string  `json:"evidence"`
	Facts    []Fact  `json:"facts,omitempty"`
	Tables   []Table `json:"tables,omitempty"`
	// Notes say what the figures cannot show and what to check elsewhere.
	Notes []string `json:"notes,omitempty"`
}

// Fact is a labelled value.
type Fact struct {
	Label string `json:"label"`
	Value string `json:"value"`
}

// Table is evidence in rows.
type Table struct {
	Title   string     `json:"title"`
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
	// More counts rows left out (the table shows the first ones).
	More int `json:"more,omitempty"`
}

// State is what the collector held outside the ledger when the report was
// made.
type State struct {
	// Key is the verifier key name and hash that signed the report and
	// the checkpoint ("name+hash").
	Key string `json:"key"`
	// Integrity is what was checked against the ledger at generation.
	Integrity Integrity     `json:"integrity"`
	Retention RetentionInfo `json:"retention"`
	Ledger    LedgerInfo    `json:"ledger"`
	Witnesses []Witness     `json:"witnesses"`
	Tokens    []Token       `json:"tokens"`
	Detection Detection     `json:"detection"`
	Outputs   []string      `json:"outputs,omitempty"`
	// Index is the collector's search index when the collector made the
	// report; nil for a report made offline.
	Index *IndexInfo `json:"index,omitempty"`
	// Settings says where the stated settings (retention, witnesses,
	// rules, notifiers, outputs) come from.
	Settings *SettingsInfo `json:"settings,omitempty"`
	// DataDirMode is the permission bits of the collector's data
	// directory and ledger directory ("0700 0700"); empty if unknown.
	DataDirMode string `json:"data_dir_mode,omitempty"`
}

// Integrity is what the report's computation checked.
type Integrity struct {
	// CheckpointVerified: the named checkpoint's signature verified with
	// Key.
	CheckpointVerified bool `json:"checkpoint_signature_verified"`
	// Newest is the ledger's newest checkpoint when the report was made;
	// ConsistentWithNewest says the named checkpoint's tree is a prefix
	// of it (RFC 6962 consistency proof checked).
	NewestSize           uint64    `json:"newest_tree_size"`
	NewestTime           time.Time `json:"newest_time"`
	ConsistentWithNewest bool      `json:"consistent_with_newest"`
	// StartConsistent: the period's first checkpoint is a prefix of the
	// named one.
	StartConsistent bool `json:"start_consistent"`
	// SummarisedEarlier counts the records of the period whose figures
	// were kept from an earlier report (read and checked against the
	// signed tree then, under the same tree root); the others were read
	// and checked for this one.
	SummarisedEarlier uint64 `json:"summarised_earlier,omitempty"`
	// CacheRejected counts the chunks whose figures kept by an earlier
	// report failed their authentication (the files were altered or
	// planted on disk): their records were read again for this one.
	CacheRejected uint64 `json:"cache_rejected,omitempty"`
	Problem       string `json:"problem,omitempty"`
}

// RetentionInfo is the configured retention.
type RetentionInfo struct {
	Profile    string `json:"profile"` // "" means keep for ever
	RetainDays int    `json:"retain_days"`
	HotDays    int    `json:"immediately_available_days"`
	LegalHold  bool   `json:"legal_hold"`
}

// LedgerInfo describes the whole ledger at generation.
type LedgerInfo struct {
	Dir string `json:"dir,omitempty"`
	// OldestIndex is the oldest record held (records below were pruned).
	OldestIndex uint64    `json:"oldest_index"`
	OldestTime  time.Time `json:"oldest_time,omitzero"`
	Size        uint64    `json:"size"`
	// OldestRead says the oldest record held was read back through the
	// ledger, as the query API reads it (from a compressed segment if its
	// segment is closed), and matched its leaf hash in the signed tree
	// when the report was made.
	OldestRead bool `json:"oldest_read_checked,omitempty"`
	// Removed is what retention removed, from the ledger's signed
	// retention records (those that verify with the report's keys),
	// consecutive records of one policy merged.
	Removed []Removal `json:"removed_by_retention,omitempty"`
	// RemovedUnverified counts retention records that do not verify
	// (or are damaged): `trailguard verify` names them.
	RemovedUnverified int `json:"removed_unverified,omitempty"`
}

// Removal is a run of records retention removed under one policy.
type Removal struct {
	// Records [Start, End) were removed.
	Start, End uint64
	Policy     string
	// First and Last are when the first and last of its retention records
	// were made; Signed counts them.
	First  time.Time
	Last   time.Time
	Signed int
}

// String says what happened: "records 0 to 289 were removed by retention
// on 2026-12-01 per policy pci-dss".
func (m Removal) String() string {
	when := "on " + m.First.UTC().Format("2006-01-02")
	if d := m.Last.UTC().Format("2006-01-02"); d != m.First.UTC().Format("2006-01-02") {
		when = "from " + m.First.UTC().Format("2006-01-02") + " to " + d
	}
	return fmt.Sprintf("records %s to %s were removed by retention %s per policy %s (%d signed retention records)",
		num(m.Start), num(m.End-1), when, m.Policy, m.Signed)
}

// Sources of the settings a report states (SettingsInfo.Source).
const (
	// SettingsCollector: what the collector ran with, from its own
	// signed record of the settings it started with.
	SettingsCollector = "collector"
	// SettingsConfiguration: the configuration given to the report (the
	// collector saved none, or what it saved did not verify).
	SettingsConfiguration = "configuration"
)

// SettingsInfo says where a report's stated settings come from.
type SettingsInfo struct {
	Source string `json:"source"`
	// Started and SHA256 identify the collector's signed settings record
	// (its start, and the hash its start event in the ledger carries).
	Started time.Time `json:"started,omitzero"`
	SHA256  string    `json:"sha256,omitempty"`
	// Differences name what the configuration given to an offline report
	// states otherwise than the collector ran with (the report states
	// what it ran with).
	Differences []string `json:"differences_from_configuration,omitempty"`
	// Problem says why the collector's record was not used.
	Problem string `json:"problem,omitempty"`
}

// IndexInfo is the collector's index when it made the report (absent
// from reports made offline).
type IndexInfo struct {
	// IndexedThrough is the first ledger index the index did not cover
	// yet: records from the oldest held up to it are found by searches.
	IndexedThrough uint64 `json:"indexed_through"`
}

// Witness is a witness and the newest checkpoint it held.
type Witness struct {
	Name       string    `json:"name"`
	TreeSize   uint64    `json:"tree_size,omitempty"`
	Time       time.Time `json:"time,omitzero"`
	Consistent bool      `json:"consistent"`
	Error      string    `json:"error,omitempty"`
}

// Token is an API token (never its secret).
type Token struct {
	Name    string     `json:"name"`
	Role    string     `json:"role"`
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

// Detection is the rule engine's configuration.
type Detection struct {
	Enabled    bool     `json:"enabled"`
	Rules      []Rule   `json:"rules"`
	RuleErrors int      `json:"rule_errors"`
	Notifiers  []string `json:"notifiers,omitempty"`
}

// Rule is a loaded detection rule.
type Rule struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Level string `json:"level"`
	Block bool   `json:"block,omitempty"`
}

// prunedAt is how many records of the range had been pruned when the
// report was made (the oldest record then held).
func (s State) prunedAt(r Range) uint64 {
	if s.Ledger.OldestIndex > r.First {
		return min(s.Ledger.OldestIndex, r.End) - r.First
	}
	return 0
}
