package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/detect"
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
// a tree size, so the signature can never pass for a checkpoint's.
const settingsNoteHeader = "trailguard settings v1\n"

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
// the start event in the ledger carries.
func saveSettings(dir, signerPath string, rs RunSettings) (string, error) {
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
	sig, err := note.Sign(&note.Note{Text: settingsNoteHeader + "sha256 " + sum + "\n"}, signer)
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
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", fmt.Errorf("settings: %w", err)
	}
	_, err = f.Write(append(file, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
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
// maxSettingsFile bytes: a FIFO planted there would hang every report
// (O_NONBLOCK makes its open return), a link to /dev/zero or a sparse file
// of terabytes would be read whole.
func readSettingsFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > maxSettingsFile {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", SettingsFile, maxSettingsFile)
	}
	return io.ReadAll(io.LimitReader(f, maxSettingsFile))
}

// loadSettings reads the settings the collector saved in dir at its last
// start and checks their signature with keys.
func loadSettings(dir string, keys []note.Verifier) (RunSettings, string, error) {
	data, err := readSettingsFile(filepath.Join(dir, SettingsFile))
	if errors.Is(err, os.ErrNotExist) {
		return RunSettings{}, "", errNoSettings
	}
	if err != nil {
		return RunSettings{}, "", err
	}
	var file struct {
		SHA256    string          `json:"sha256"`
		Signature string          `json:"signature"`
		Settings  json.RawMessage `json:"settings"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return RunSettings{}, "", fmt.Errorf("%s: %w", SettingsFile, err)
	}
	h := sha256.Sum256(file.Settings)
	sum := hex.EncodeToString(h[:])
	if sum != file.SHA256 {
		return RunSettings{}, sum, fmt.Errorf("%s: its settings do not match their signed hash (altered)", SettingsFile)
	}
	if len(keys) == 0 {
		return RunSettings{}, sum, fmt.Errorf("%s: no verifier key to check its signature", SettingsFile)
	}
	n, err := note.Open([]byte(file.Signature), note.VerifierList(keys...))
	if err != nil {
		return RunSettings{}, sum, fmt.Errorf("%s: signature: %w", SettingsFile, err)
	}
	if n.Text != settingsNoteHeader+"sha256 "+sum+"\n" {
		return RunSettings{}, sum, fmt.Errorf("%s: the signed note does not describe these settings", SettingsFile)
	}
	var rs RunSettings
	dec := json.NewDecoder(bytes.NewReader(file.Settings))
	if err := dec.Decode(&rs); err != nil {
		return RunSettings{}, sum, fmt.Errorf("%s: %w", SettingsFile, err)
	}
	return rs, sum, nil
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
	sum, err := saveSettings(s.cfg.DataDir, s.SignerKeyPath, s.settings)
	s.settingsSum = sum
	return err
}
