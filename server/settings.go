package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/detect"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/regfile"
	"github.com/trailguard/trailguard/internal/statefile"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/report"
)

// SettingsFile is the name, in the data directory, of the settings the
// collector started with, as reports state them, signed with its
// checkpoint key. A report made offline (`trailguard report`) states these
// rather than the configuration it was given, which may not be the one the
// collector ran with, and names every difference.
const SettingsFile = "settings.json"

// RunSettings are the settings a collector ran with that reports state
// (what the ledger cannot show).
type RunSettings struct {
	Started   time.Time        `json:"started"`
	Retention string           `json:"retention"`
	LegalHold bool             `json:"legal_hold"`
	Witness   []string         `json:"witness"`
	Detection report.Detection `json:"detection"`
	Outputs   []string         `json:"outputs"`
}

// settingsNoteHeader starts the signed note's text; its second line is not
// a tree size, so the signature can never pass for a checkpoint's. v2
// notes carry a third line, "size N": the ledger's size when the settings
// were saved, just before the start event that names their hash.
const (
	settingsNoteHeader   = "trailguard settings v2\n"
	settingsNoteHeaderV1 = "trailguard settings v1\n"
)

// startEventPrefix starts the message of a collector's start event, which
// names the hash of the settings it saved (Server.New).
const startEventPrefix = "collector started (settings sha256 "

// runSettings are the settings cfg gives, with the rules the engine
// loaded from them.
func runSettings(cfg Config, enabled bool, rules []*detect.Rule, ruleErrs int, notifiers []string) RunSettings {
	rs := RunSettings{Retention: cfg.Retention, LegalHold: cfg.LegalHold, Witness: append([]string{}, cfg.Witness...), Outputs: []string{}}
	rs.Detection = report.Detection{Enabled: enabled, Rules: []report.Rule{}, RuleErrors: ruleErrs, Notifiers: notifiers}
	silent := map[string]bool{}
	for _, r := range rules {
		if c := r.Correlation; c != nil && !c.Generate {
			for _, ref := range c.Rules {
				silent[ref] = true
			}
		}
	}
	for _, r := range rules {
		if r.Correlation == nil && (silent[r.Name] || silent[r.ID]) {
			continue // a building block of correlations: raises no alert of its own
		}
		rs.Detection.Rules = append(rs.Detection.Rules, report.Rule{ID: cmpOr(r.ID, r.Ref()), Title: r.Title, Level: r.Level,
			Block: r.Response != nil && r.Response.Block != ""})
	}
	for _, o := range cfg.Outputs {
		rs.Outputs = append(rs.Outputs, o.Name+" ("+o.Type+")")
	}
	return rs
}

// saveSettings writes rs, signed with the key at signerPath, to the data
// directory (replacing the last start's) and returns its SHA-256, which
// the start event in the ledger carries. size is the ledger's size before
// that start event: readers look for later start events from there.
func saveSettings(dir, signerPath string, rs RunSettings, size uint64) (string, error) {
	body, err := json.Marshal(rs)
	if err != nil {
		return "", err
	}
	signer, err := ledger.LoadSigner(signerPath)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(body)
	sum := hex.EncodeToString(h[:])
	sig, err := note.Sign(&note.Note{Text: settingsNoteHeader + "sha256 " + sum + "\n" + fmt.Sprintf("size %d\n", size)}, signer)
	if err != nil {
		return "", fmt.Errorf("settings: sign: %w", err)
	}
	file, err := json.Marshal(struct {
		SHA256    string          `json:"sha256"`
		Signature string          `json:"signature"`
		Settings  json.RawMessage `json:"settings"`
	}{sum, string(sig), body})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, SettingsFile)
	if err := statefile.Write(path, append(file, '\n')); err != nil {
		return "", fmt.Errorf("settings: write %s: %w", path, err)
	}
	return sum, nil
}

// errNoSettings: the data directory holds no saved settings (a collector
// of a version before they were saved, or never started).
var errNoSettings = errors.New("no saved settings")

// maxSettingsFile bounds settings.json (its rules are titles and ids:
// kilobytes).
const maxSettingsFile = 16 << 20

// readSettingsFile reads settings.json if it is a regular file of at most
// maxSettingsFile bytes (regfile): a FIFO planted there would hang every
// report, a link to /dev/zero or a sparse file of terabytes would be read
// whole.
func readSettingsFile(path string) ([]byte, error) {
	b, err := regfile.Read(path, maxSettingsFile)
	if errors.Is(err, regfile.ErrNotRegular) || errors.Is(err, regfile.ErrTooLarge) {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", SettingsFile, maxSettingsFile)
	}
	return b, err
}

// loadSettings reads the settings the collector saved in dir at a start
// and checks their signature with keys. It returns their hash and the
// ledger size the signed note names (0 for a v1 note, which names none);
// staleSettings checks, against the ledger, that no later start exists.
func loadSettings(dir string, keys []note.Verifier) (RunSettings, string, uint64, error) {
	data, err := readSettingsFile(filepath.Join(dir, SettingsFile))
	if errors.Is(err, os.ErrNotExist) {
		return RunSettings{}, "", 0, errNoSettings
	}
	if err != nil {
		return RunSettings{}, "", 0, err
	}
	var file struct {
		SHA256    string          `json:"sha256"`
		Signature string          `json:"signature"`
		Settings  json.RawMessage `json:"settings"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return RunSettings{}, "", 0, fmt.Errorf("%s: %w", SettingsFile, err)
	}
	h := sha256.Sum256(file.Settings)
	sum := hex.EncodeToString(h[:])
	if sum != file.SHA256 {
		return RunSettings{}, sum, 0, fmt.Errorf("%s: its settings do not match their signed hash (altered)", SettingsFile)
	}
	if len(keys) == 0 {
		return RunSettings{}, sum, 0, fmt.Errorf("%s: no verifier key to check its signature", SettingsFile)
	}
	n, err := note.Open([]byte(file.Signature), note.VerifierList(keys...))
	if err != nil {
		return RunSettings{}, sum, 0, fmt.Errorf("%s: signature: %w", SettingsFile, err)
	}
	var size uint64
	rest, v2 := strings.CutPrefix(n.Text, settingsNoteHeader+"sha256 "+sum+"\n")
	if v2 {
		_, err := fmt.Sscanf(rest, "size %d\n", &size)
		v2 = err == nil && rest == fmt.Sprintf("size %d\n", size)
	}
	if !v2 && n.Text != settingsNoteHeaderV1+"sha256 "+sum+"\n" {
		return RunSettings{}, sum, 0, fmt.Errorf("%s: the signed note does not describe these settings", SettingsFile)
	}
	var rs RunSettings
	dec := json.NewDecoder(bytes.NewReader(file.Settings))
	if err := dec.Decode(&rs); err != nil {
		return RunSettings{}, sum, 0, fmt.Errorf("%s: %w", SettingsFile, err)
	}
	return rs, sum, size, nil
}

// staleSettings checks that settings saved with hash sum when the ledger
// had size records are the newest collector start's: the start events
// from there on (each names the hash of the settings it saved, and the
// ledger's records are checked against its signed tree as they are read)
// must name no other settings last. A settings.json put back from an
// earlier start is signed all the same; without this a report would state
// those settings as the ones the collector runs with. It reads the records
// since that start (all retained records for a v1 note, which names no
// size).
func staleSettings(ctx context.Context, l *ledger.Ledger, size uint64, sum string) error {
	if n := l.Size(); size > n {
		return fmt.Errorf("%s: signed at ledger size %d, beyond the ledger's %d records", SettingsFile, size, n)
	}
	from := max(size, l.Pruned())
	var newest string
	var at uint64
	prefix := []byte(startEventPrefix)
	for e, err := range l.Entries(from) {
		if err != nil {
			return fmt.Errorf("%s: reading the start events since record %d: %w", SettingsFile, from, err)
		}
		if e.Index%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if !bytes.Contains(e.Data, prefix) {
			continue
		}
		var ev struct {
			Event   struct{ Action string } `json:"event"`
			Message string                  `json:"message"`
		}
		if json.Unmarshal(e.Data, &ev) != nil || ev.Event.Action != event.ActionSysStartup {
			continue
		}
		if h, ok := strings.CutPrefix(ev.Message, startEventPrefix); ok {
			// A start whose settings were not saved names none: a file
			// from before it is stale all the same.
			newest, at = "(none saved)", e.Index
			if len(h) >= 64 {
				newest = h[:64]
			}
		}
	}
	if newest != "" && newest != sum {
		return fmt.Errorf("%s: stale: its settings (sha256 %s) are not the newest start's: record %d, a later collector start, names settings sha256 %s", SettingsFile, sum, at, newest)
	}
	return nil
}

// settingsDifferences names what the configuration given to a report
// states otherwise than the collector ran with.
func settingsDifferences(ran, given RunSettings) []string {
	var d []string
	show := func(s string) string {
		if s == "" {
			return "none"
		}
		return s
	}
	if ran.Retention != given.Retention {
		d = append(d, fmt.Sprintf("retention: the collector ran with %s, the configuration gives %s", show(ran.Retention), show(given.Retention)))
	}
	if ran.LegalHold != given.LegalHold {
		d = append(d, fmt.Sprintf("legal_hold: the collector ran with %v, the configuration gives %v", ran.LegalHold, given.LegalHold))
	}
	if !slices.Equal(ran.Witness, given.Witness) {
		d = append(d, fmt.Sprintf("witness: the collector ran with [%s], the configuration gives [%s]", strings.Join(ran.Witness, ", "), strings.Join(given.Witness, ", ")))
	}
	if ran.Detection.Enabled != given.Detection.Enabled {
		d = append(d, fmt.Sprintf("detection: the collector ran it %s, the configuration %s", onOff(ran.Detection.Enabled), onOff(given.Detection.Enabled)))
	}
	ids := func(rs []report.Rule) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		slices.Sort(out)
		return out
	}
	if a, b := ids(ran.Detection.Rules), ids(given.Detection.Rules); ran.Detection.Enabled == given.Detection.Enabled && !slices.Equal(a, b) {
		d = append(d, fmt.Sprintf("rules: the collector loaded %d, the configuration loads %d (%s)", len(a), len(b), ruleDiff(a, b)))
	}
	if !slices.Equal(ran.Detection.Notifiers, given.Detection.Notifiers) {
		d = append(d, fmt.Sprintf("notifiers: the collector ran with [%s], the configuration gives [%s]", strings.Join(ran.Detection.Notifiers, ", "), strings.Join(given.Detection.Notifiers, ", ")))
	}
	if !slices.Equal(ran.Outputs, given.Outputs) {
		d = append(d, fmt.Sprintf("outputs: the collector ran with [%s], the configuration gives [%s]", strings.Join(ran.Outputs, ", "), strings.Join(given.Outputs, ", ")))
	}
	return d
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// ruleDiff names a few rules only one side has.
func ruleDiff(ran, given []string) string {
	var only []string
	for _, r := range ran {
		if _, ok := slices.BinarySearch(given, r); !ok {
			only = append(only, "only the collector: "+r)
		}
	}
	for _, r := range given {
		if _, ok := slices.BinarySearch(ran, r); !ok {
			only = append(only, "only the configuration: "+r)
		}
	}
	if len(only) > 3 {
		only = append(only[:3], fmt.Sprintf("%d more", len(only)-3))
	}
	return strings.Join(only, "; ")
}

// saveRunSettings records the settings the collector starts with.
func (s *Server) saveRunSettings() error {
	var rules []*detect.Rule
	ruleErrs := 0
	if d := s.detect; d != nil {
		rules = d.runner.Engine.Rules()
		ruleErrs = len(d.ruleErrs)
	}
	var notifiers []string
	for _, n := range s.cfg.Notifiers {
		notifiers = append(notifiers, cmpOr(n.Name, n.Type))
	}
	s.settings = runSettings(s.cfg, s.detect != nil, rules, ruleErrs, notifiers)
	s.settings.Started = time.Now().UTC()
	sum, err := saveSettings(s.cfg.DataDir, s.SignerKeyPath, s.settings, s.ledger.Size())
	s.settingsSum = sum
	return err
}
