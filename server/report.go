package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/detect"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/httpaudit"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/report"
	"github.com/trailguard/trailguard/retention"
)

// Version is the program's version, named in reports (set by main).
var Version = "dev"

func (s *Server) reportRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/reports", s.requireRole(access.RoleRead, s.handleReport))
}

// reportSlot lets one report run at a time (others wait up to a minute):
// a report reads the whole period, and two at once would only make both
// slower and hold twice the memory.
var reportSlot = make(chan struct{}, 1)

// handleReport is GET /v1/reports: without standard, the standards and
// formats on offer; with standard (pci-dss, soc2, hipaa), from and to
// (RFC 3339 or a duration back from now; default the last 30 days) and
// format (json, html or pdf), the report, signed with the collector's
// key. Generating a report is a read of the audit trail and is recorded
// as one.
func (s *Server) handleReport(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r, "standard", "from", "to", "format")
	if err != nil {
		s.readError(w, err)
		return
	}
	std := p.get("standard")
	if std == "" {
		writeJSON(w, http.StatusOK, map[string]any{"standards": report.Standards(), "formats": []string{"json", "html", "pdf"},
			"parameters": "standard, from, to (RFC 3339 or a duration back from now; default 720h), format (default json)", "reports": []any{}})
		return
	}
	if !validStandard(std) {
		s.readError(w, badParam("standard", "want pci-dss, soc2 or hipaa, got %q", std))
		return
	}
	format := p.get("format")
	switch format {
	case "":
		format = "json"
	case "json", "html", "pdf":
	default:
		s.readError(w, badParam("format", "want json, html or pdf, got %q", format))
		return
	}
	now := time.Now()
	from, to, err := p.timeRange(now)
	if err != nil {
		s.readError(w, err)
		return
	}
	untilNow := to.IsZero() || to.After(now)
	if untilNow {
		to = now
	}
	if from.IsZero() {
		from = to.Add(-30 * 24 * time.Hour)
	}
	if !from.Before(to) {
		s.readError(w, badParam("from", "%s is not before to (%s)", from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano)))
		return
	}
	tok, _ := r.Context().Value(tokenKey{}).(access.Token)
	release, status := s.reports.acquire(tok.ID)
	if status != 0 {
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusTooManyRequests, "this token already has a report in progress or waiting: wait for it, then ask again")
		return
	}
	defer release()
	wait := time.NewTimer(time.Minute)
	defer wait.Stop()
	select {
	case reportSlot <- struct{}{}:
	case <-r.Context().Done():
		return
	case <-wait.C:
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusServiceUnavailable, "other reports have been computing for a minute; retry later")
		return
	}
	// The slot is given back once the report is rendered in memory,
	// before it is sent: a client that reads slowly holds up no one
	// else's report (its token's turn, above, it keeps).
	freeSlot := sync.OnceFunc(func() { <-reportSlot })
	defer freeSlot()
	httpaudit.AuditPersisted(r.Context(), httpaudit.Op{Action: event.ActionSensitiveRead, Resource: "audit-trail",
		Reason: fmt.Sprintf("report %s %s %s..%s", std, format, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))})
	o := report.Options{Standard: std, From: from, To: to}
	if untilNow {
		o.To = time.Time{} // up to the checkpoint Report makes
	}
	out, sum, err := s.Report(r.Context(), o)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	body, ctype, err := render(out, sum, format)
	freeSlot()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="trailguard-%s-%s-%s.%s"`, std,
		from.UTC().Format("20060102T150405Z"), to.UTC().Format("20060102T150405Z"), format))
	w.Header().Set("X-Trailguard-Report-Sha256", sum)
	if format == "html" {
		w.Header().Set("Content-Security-Policy", report.HTMLContentSecurityPolicy)
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(body)
}

func validStandard(s string) bool {
	for _, st := range report.Standards() {
		if st.ID == s {
			return true
		}
	}
	return false
}

// Signed is a report in its three forms.
type Signed struct {
	Report *report.Report
	// JSON is the signed JSON file; Sum the SHA-256 of the report's bytes.
	JSON []byte
	Sum  string
}

func render(sg *Signed, sum, format string) ([]byte, string, error) {
	switch format {
	case "html":
		b, err := report.HTML(sg.Report, sum)
		return b, "text/html; charset=utf-8", err
	case "pdf":
		b, err := report.PDF(sg.Report, sum)
		return b, "application/pdf", err
	}
	return sg.JSON, "application/json", nil
}

// Report computes and signs a report over the collector's ledger. If the
// period reaches the present, a checkpoint is made first so that the
// report covers every record stored so far.
func (s *Server) Report(ctx context.Context, o report.Options) (*Signed, string, error) {
	now := time.Now()
	if o.To.IsZero() || !o.To.Before(now) {
		if _, err := s.ledger.Checkpoint(ctx); err != nil {
			return nil, "", fmt.Errorf("server: report: checkpoint: %w", err)
		}
		o.To = time.Now()
		o.Now = o.To
	}
	keys, err := ledger.LoadVerifiers(s.VerifierKeyPath)
	if err != nil {
		return nil, "", fmt.Errorf("server: report: %w", err)
	}
	signer, err := ledger.LoadSigner(s.SignerKeyPath)
	if err != nil {
		return nil, "", fmt.Errorf("server: report: %w", err)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	o.Verifiers = keys
	o.Generator = "trailguard " + Version
	o.Cache, o.CacheKey = filepath.Join(s.cfg.DataDir, "report-cache"), s.reportCacheKey
	o.State = s.reportState(ctx, keys)
	rep, err := report.Compute(ctx, s.ledger, o)
	if err != nil {
		return nil, "", err
	}
	file, sum, err := report.Sign(rep, signer)
	if err != nil {
		return nil, "", err
	}
	return &Signed{Report: rep, JSON: file, Sum: sum}, sum, nil
}

// reportState is what the running collector holds outside the ledger:
// the settings it started with (saved in SettingsFile) and its index.
func (s *Server) reportState(ctx context.Context, keys []note.Verifier) report.State {
	st := stateOf(ctx, s.cfg.DataDir, s.settings, s.ledger, s.tokens.List(), keys)
	st.Settings = &report.SettingsInfo{Source: report.SettingsCollector, Started: s.settings.Started.UTC(), SHA256: s.settingsSum}
	// The index trails the ledger by a batch (~50 ms): give it that long,
	// not more, so that the report states a caught-up index as one.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	s.index.WaitIndexed(wctx, s.ledger.Size())
	cancel()
	st.Index = &report.IndexInfo{IndexedThrough: s.index.Indexed()}
	return st
}

// ReportState is what a collector configured by cfg holds outside the
// ledger l, for reports made offline (`trailguard report`): its tokens,
// retention, witnesses and the detection rules it loads. The settings
// stated are those the collector saved, signed, at its last start
// (SettingsFile), when they verify with keys; State.Settings then names
// every way cfg differs from them. Otherwise (a collector that saved
// none, or settings that do not verify: said in State.Settings.Problem)
// they are cfg's.
func ReportState(ctx context.Context, cfg Config, l *ledger.Ledger, keys []note.Verifier) (report.State, error) {
	store, err := access.Open(filepath.Join(cfg.DataDir, "tokens.json"))
	if err != nil {
		return report.State{}, fmt.Errorf("server: %w", err)
	}
	var rules []*detect.Rule
	ruleErrs := 0
	c := cfg.Detection
	if !c.Disabled {
		rs := &detect.RuleSet{}
		if !c.NoBuiltin {
			rs = detect.Builtin()
		}
		dirs := c.Rules
		if st, err := os.Stat(filepath.Join(cfg.DataDir, "rules")); err == nil && st.IsDir() {
			dirs = append([]string{filepath.Join(cfg.DataDir, "rules")}, dirs...)
		}
		for _, dir := range dirs {
			rs = rs.Merge(detect.LoadDir(dir))
		}
		eng, errs := detect.NewEngine(rs, detect.Options{MaxGroups: c.MaxGroups})
		ruleErrs = len(rs.Errors) + len(errs)
		if eng != nil {
			rules = eng.Rules()
		}
	}
	var notifiers []string
	for _, n := range cfg.Notifiers {
		notifiers = append(notifiers, cmpOr(n.Name, n.Type))
	}
	given := runSettings(cfg, !c.Disabled, rules, ruleErrs, notifiers)
	ran, sum, size, err := loadSettings(cfg.DataDir, keys)
	if err == nil {
		err = staleSettings(ctx, l, size, sum)
	}
	info := &report.SettingsInfo{Source: report.SettingsCollector, Started: ran.Started.UTC(), SHA256: sum}
	switch {
	case errors.Is(err, errNoSettings):
		ran = given
		info = &report.SettingsInfo{Source: report.SettingsConfiguration}
	case err != nil:
		ran = given
		info = &report.SettingsInfo{Source: report.SettingsConfiguration, Problem: err.Error()}
	default:
		info.Differences = settingsDifferences(ran, given)
	}
	st := stateOf(ctx, cfg.DataDir, ran, l, store.List(), keys)
	st.Settings = info
	return st, nil
}

// stateOf is the report state of a collector that ran with rs.
func stateOf(ctx context.Context, dataDir string, rs RunSettings, l *ledger.Ledger, tokens []access.Token, keys []note.Verifier) report.State {
	st := report.State{Tokens: []report.Token{}, Witnesses: []report.Witness{}}
	if p, err := retention.Lookup(rs.Retention); err == nil && rs.Retention != "" {
		st.Retention = report.RetentionInfo{Profile: p.Name, RetainDays: int(p.Retain / retention.Day), HotDays: int(p.Hot / retention.Day)}
	}
	st.Retention.LegalHold = rs.LegalHold
	for _, t := range tokens {
		st.Tokens = append(st.Tokens, report.Token{Name: t.Name, Role: string(t.Role), Created: t.Created.UTC(), Revoked: t.Revoked})
	}
	st.Detection = rs.Detection
	if st.Detection.Rules == nil {
		st.Detection.Rules = []report.Rule{}
	}
	if len(rs.Outputs) > 0 {
		st.Outputs = rs.Outputs
	}
	for _, w := range rs.Witness {
		var wt ledger.Witness
		if strings.HasPrefix(w, "http://") || strings.HasPrefix(w, "https://") {
			wt = ledger.HTTPWitness(w, &http.Client{Timeout: 5 * time.Second})
		} else {
			wt = ledger.DirWitness(w)
		}
		ws := report.WitnessState(ctx, l, w, wt, keys)
		// Witnesses receive checkpoints asynchronously: give the newest a
		// moment to arrive.
		_, newest := l.LatestCheckpoint()
		for i := 0; i < 40 && ws.Error == "" && ws.TreeSize < newest.Size && ctx.Err() == nil; i++ {
			time.Sleep(25 * time.Millisecond)
			ws = report.WitnessState(ctx, l, w, wt, keys)
		}
		st.Witnesses = append(st.Witnesses, ws)
	}
	st.DataDirMode = modes(dataDir, filepath.Join(dataDir, "ledger"))
	return st
}

func modes(paths ...string) string {
	var out []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return ""
		}
		out = append(out, fmt.Sprintf("%04o", fi.Mode().Perm()))
	}
	return strings.Join(out, " ")
}

// reportCacheWarmer keeps the figures of every whole chunk of the ledger
// in DATA_DIR/report-cache (report.Warm) as the ledger fills, using at most
// half a core, so that a report over a month reads only the records stored
// since the last whole chunk.
type reportCacheWarmer struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *Server) startReportWarmer() {
	ctx, cancel := context.WithCancel(context.Background())
	w := &reportCacheWarmer{cancel: cancel, done: make(chan struct{})}
	s.reportWarmer = w
	go func() {
		defer close(w.done)
		dir := filepath.Join(s.cfg.DataDir, "report-cache")
		done := map[uint64]bool{}
		next := uint64(0) // the next chunk to summarise
		for {
			// Wake when the ledger holds the next whole chunk, and when a
			// signed checkpoint covers it (Warm keeps only such chunks),
			// or after two checkpoint intervals. Going as soon as the
			// checkpoint is there (it was a fixed two intervals) reads the
			// chunk while the ledger still holds it in memory at higher
			// rates (FollowAppended), instead of reading it back.
			end := (next + 1) * report.ChunkSize
			if s.waitPaced(ctx, end-1) != nil {
				return
			}
			give := time.Now().Add(2 * max(s.cfg.CheckpointInterval, 100*time.Millisecond))
			for {
				if _, cp := s.ledger.LatestCheckpoint(); cp.Size >= end || time.Now().After(give) {
					break
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
			_, err := report.Warm(ctx, s.ledger, dir, s.reportCacheKey, done, func(took time.Duration) {
				select {
				case <-ctx.Done():
				case <-time.After(took):
				}
			})
			if ctx.Err() != nil {
				// Stopping: Warm gave up at once. The waits above return
				// without looking at ctx while a whole chunk is there to
				// summarise, so going round again spun (re-reading the
				// checkpoint history) until shutdown abandoned the step.
				return
			}
			if errors.Is(err, report.ErrCacheRejected) {
				// Someone wrote in the data directory: worth more than a
				// cache miss.
				s.log.Error("report cache: files altered or planted on disk were not used", "err", err)
			} else if err != nil {
				s.log.Warn("report cache: chunk figures not kept (reports read those records instead)", "err", err)
				// The same error again at once (a damaged record) would
				// spin and log without end: wait before the next try.
				if !sleepCtx(ctx, 30*time.Second) {
					return
				}
			}
			for k := range done {
				next = max(next, k+1)
			}
		}
	}()
}

// waitPaced is ledger.Wait for followers that need not wake at every
// commit: with Config.FollowerPace set it looks at the ledger's size that
// often instead, until the ledger holds record n or ctx ends (the server
// cancels it before it closes the ledger).
func (s *Server) waitPaced(ctx context.Context, n uint64) error {
	if s.cfg.FollowerPace <= 0 {
		return s.ledger.Wait(ctx, n)
	}
	for s.ledger.Size() <= n {
		if !sleepCtx(ctx, s.cfg.FollowerPace) {
			return ctx.Err()
		}
	}
	return nil
}

func (s *Server) stopReportWarmer() {
	if w := s.reportWarmer; w != nil {
		w.cancel()
		<-w.done
	}
}
