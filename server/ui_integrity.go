package server

// GET /v1/integrity and POST /v1/integrity/verify: the state of the
// ledger's tamper evidence for the UI's Integrity page (and any client):
// the latest signed checkpoint, the verifier key, what each witness holds,
// and ledger.Verify run in the background with progress, its last result
// kept across restarts.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/httpaudit"
	"github.com/trailguard/trailguard/internal/regfile"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/report"
	"github.com/trailguard/trailguard/retention"
	"golang.org/x/mod/sumdb/note"
)

// verifyRun is the background verification: one at a time.
type verifyRun struct {
	path string // where the last result is kept

	mu      sync.Mutex
	running bool
	cur     verifyJSON
	last    *verifyJSON
	done    chan struct{} // closed when the run in progress ends

	checked atomic.Uint64
}

// verifyJSON is one verification, running or finished.
type verifyJSON struct {
	Running     bool           `json:"running"`
	Incremental bool           `json:"incremental,omitempty"`
	By          string         `json:"by,omitempty"`
	Started     time.Time      `json:"started"`
	Finished    *time.Time     `json:"finished,omitempty"`
	Checked     uint64         `json:"records_checked"`
	Total       uint64         `json:"records_total"`
	OK          *bool          `json:"ok,omitempty"`
	Error       string         `json:"error,omitempty"`
	Report      *ledger.Report `json:"report,omitempty"`
}

// maxVerifyLast bounds verify-last.json read back at a start (the report
// of the last verify): a larger file is not read, and the next verify
// writes it again.
const maxVerifyLast = 64 << 20

func (s *Server) newVerifyRun() *verifyRun {
	v := &verifyRun{path: filepath.Join(s.cfg.DataDir, "verify-last.json")}
	// A regular file of at most maxVerifyLast bytes (regfile): a FIFO
	// planted at the name would hang the collector's start.
	if b, err := regfile.Read(v.path, maxVerifyLast); err == nil {
		var last verifyJSON
		if json.Unmarshal(b, &last) == nil {
			v.last = &last
		}
	}
	return v
}

// status is the run in progress, if any, and the last finished one.
func (v *verifyRun) status() (cur *verifyJSON, last *verifyJSON) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.running {
		c := v.cur
		c.Checked = min(v.checked.Load(), c.Total)
		cur = &c
	}
	if v.last != nil {
		l := *v.last
		last = &l
	}
	return
}

// verifiers loads the collector's verifier key (the .pub beside its signer
// key) and returns its text form too.
func (s *Server) verifiers() ([]note.Verifier, string, error) {
	vs, err := ledger.LoadVerifiers(s.VerifierKeyPath)
	if err != nil {
		return nil, "", err
	}
	b, _ := regfile.Read(s.VerifierKeyPath, 1<<20) // (LoadVerifiers read it, with the same bound)
	var text string
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			text = line
		}
	}
	return vs, text, nil
}

// witnessJSON is what one witness holds.
type witnessJSON struct {
	Name      string     `json:"name"`
	TreeSize  *uint64    `json:"tree_size,omitempty"`
	Time      *time.Time `json:"time,omitempty"`
	Behind    *uint64    `json:"behind,omitempty"`
	Error     string     `json:"error,omitempty"`
	Signature string     `json:"signature,omitempty"` // ok, or why not
}

// witnessStatus asks each configured witness for its newest checkpoint,
// all at once, each within a few seconds.
func (s *Server) witnessStatus(ctx context.Context, known note.Verifiers, size uint64) []witnessJSON {
	out := make([]witnessJSON, len(s.cfg.Witness))
	var wg sync.WaitGroup
	for i, spec := range s.cfg.Witness {
		var w ledger.Witness
		if strings.HasPrefix(spec, "http://") || strings.HasPrefix(spec, "https://") {
			w = ledger.HTTPWitness(spec, &http.Client{Timeout: 3 * time.Second})
		} else {
			w = ledger.DirWitness(spec)
		}
		out[i].Name = fmt.Sprint(w)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			b, err := w.Latest(ctx)
			switch {
			case err != nil:
				out[i].Error = err.Error()
			case b == nil:
				out[i].Error = "holds no checkpoint yet"
			default:
				cp, _, err := ledger.OpenCheckpoint(b, known)
				if err != nil {
					out[i].Signature = err.Error()
					return
				}
				out[i].Signature = "ok"
				out[i].TreeSize = &cp.Size
				t := cp.Time.UTC()
				out[i].Time = &t
				behind := size - min(size, cp.Size)
				out[i].Behind = &behind
			}
		})
	}
	wg.Wait()
	return out
}

// handleIntegrity is GET /v1/integrity.
func (s *Server) handleIntegrity(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.startRead(w, r); !ok {
		return
	}
	recordRead(r, "integrity status", nil)
	vs, vkey, err := s.verifiers()
	out := map[string]any{
		"origin":       s.cfg.Origin,
		"ledger_size":  s.ledger.Size(),
		"pruned":       s.ledger.Pruned(),
		"indexed":      s.index.Indexed(),
		"verifier_key": vkey,
	}
	if err != nil {
		out["verifier_key_error"] = err.Error()
	}
	signed, cp := s.ledger.LatestCheckpoint()
	if signed != nil {
		out["checkpoint"] = string(signed)
		out["tree_size"] = cp.Size
		out["root_hash"] = cp.Root
		out["checkpoint_time"] = cp.Time.UTC()
	}
	witnesses := []witnessJSON{}
	if len(s.cfg.Witness) > 0 {
		witnesses = s.witnessStatus(r.Context(), note.VerifierList(vs...), cp.Size)
	}
	out["witnesses"] = witnesses
	cur, last := s.ui.verify.status()
	out["verify"], out["last_verify"] = cur, last
	writeReadJSON(w, http.StatusOK, out)
}

// handleVerifyStart is POST /v1/integrity/verify (admin): starts
// ledger.Verify of the whole ledger (or, with {"incremental": true}, from
// the checkpoint the last successful run verified) in the background and
// answers 202; GET /v1/integrity shows its progress. 409 if one is running.
func (s *Server) handleVerifyStart(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Incremental bool `json:"incremental"`
	}
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &in); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	vs, _, err := s.verifiers()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot load the verifier key: "+err.Error())
		return
	}
	tok, _ := r.Context().Value(tokenKey{}).(access.Token)
	by := tok.Name
	v := s.ui.verify
	v.mu.Lock()
	if v.running {
		cur := v.cur
		v.mu.Unlock()
		writeJSON(w, http.StatusConflict, map[string]any{"error": "a verification is running; see GET /v1/integrity", "verify": cur})
		return
	}
	opts := ledger.VerifyOptions{Verifiers: vs, Progress: func(n uint64) { v.checked.Store(n) }}
	if in.Incremental && v.last != nil && v.last.OK != nil && *v.last.OK && v.last.Report != nil && v.last.Report.Latest != nil {
		since := *v.last.Report.Latest
		opts.Since = &since
		v.checked.Store(since.Size)
	} else {
		in.Incremental = false
		v.checked.Store(0)
	}
	for _, spec := range s.cfg.Witness {
		if !strings.HasPrefix(spec, "http://") && !strings.HasPrefix(spec, "https://") {
			opts.WitnessDir = spec // Verify checks one directory of exported checkpoints
			break
		}
	}
	v.running = true
	v.done = make(chan struct{})
	v.cur = verifyJSON{Running: true, Incremental: in.Incremental, By: by, Started: time.Now().UTC(), Total: s.ledger.Size()}
	cur := v.cur
	v.mu.Unlock()

	httpaudit.Audit(r.Context(), httpaudit.Op{Action: "ledger_verify_started", Resource: "ledger",
		Reason: fmt.Sprintf("verification of %d records started from the web UI or API (incremental %t)", cur.Total, in.Incremental)})
	go s.runVerify(opts)
	writeJSON(w, http.StatusAccepted, map[string]any{"verify": cur})
}

// runVerify runs ledger.Verify and keeps its result, in memory and in
// DATA_DIR/verify-last.json, and records it in the trail.
func (s *Server) runVerify(opts ledger.VerifyOptions) {
	v := s.ui.verify
	// Verify reports segments retention deletes under it as pruned, but
	// checks their records only by their leaf hashes; held, it reads and
	// checks every record present when it starts, and none is deleted
	// under it. The hold waits for the end of the run.
	release := s.ledger.HoldRetention()
	rep, err := ledger.Verify(s.ledger.Dir(), opts)
	release()
	fin := time.Now().UTC()
	v.mu.Lock()
	res := v.cur
	res.Running = false
	res.Finished = &fin
	res.Checked = v.checked.Load()
	if err != nil {
		res.Error = err.Error()
		f := false
		res.OK = &f
	} else {
		ok := rep.OK()
		res.OK = &ok
		res.Report = rep
		res.Checked = max(res.Checked, rep.Records)
		res.Total = max(res.Total, rep.Records)
	}
	v.last = &res
	v.running = false
	close(v.done)
	v.mu.Unlock()

	if b, err := json.MarshalIndent(res, "", "  "); err == nil {
		tmp := v.path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err == nil {
			os.Rename(tmp, v.path)
		}
	}
	var removed []report.Removal
	var unverified int
	if err == nil && rep.Pruned > 0 {
		recs, bad := s.ledger.PruneHistory(opts.Verifiers)
		removed, unverified = report.Removals(recs), bad
	}
	outcome, msg := verifiedText(rep, err, removed, unverified, s.cfg.Retention)
	ev := &event.Event{
		Kind: event.KindEvent, Category: []string{event.CategoryConfiguration}, Type: []string{event.TypeInfo},
		Action: "ledger_verified", Outcome: outcome, Message: msg, Dataset: event.DatasetAudit,
	}
	if lerr := s.audit.Log(context.Background(), ev); lerr != nil && !errors.Is(lerr, context.Canceled) {
		s.log.Error("verification result not recorded", "err", lerr)
	}
	if err != nil || !rep.OK() {
		s.log.Error("ledger verification failed", "result", msg)
	}
}

// verifiedText is the outcome and message of the ledger_verified event.
// For a ledger retention pruned it says which records were read and
// checked, which retention removed, when and per which policy (removed:
// the ledger's signed retention records, merged by report.Removals;
// unverified: how many did not verify), and, when that policy is not the
// collector's retention setting (stated), both: "N records (M pruned)"
// read as N records checked, and records removed under another policy
// than the one configured are for an auditor to ask about.
func verifiedText(rep *ledger.Report, err error, removed []report.Removal, unverified int, stated string) (outcome, msg string) {
	switch {
	case err != nil:
		return event.OutcomeFailure, "ledger verification could not run: " + err.Error()
	case !rep.OK():
		return event.OutcomeFailure, fmt.Sprintf("ledger verification found %d problem(s); first: %s", len(rep.Findings), rep.Findings[0])
	case rep.Pruned == 0:
		return event.OutcomeSuccess, fmt.Sprintf("ledger verified: %d records, %d checkpoints", rep.Records, rep.Checkpoints)
	}
	var b strings.Builder
	if rep.Pruned < rep.Records {
		fmt.Fprintf(&b, "ledger verified: records %d to %d read and checked; records 0 to %d removed by retention", rep.Pruned, rep.Records-1, rep.Pruned-1)
	} else {
		fmt.Fprintf(&b, "ledger verified: all %d records removed by retention", rep.Records)
	}
	if len(removed) == 0 {
		b.WriteString(" (no signed retention record for them verifies: trailguard verify says why)")
	} else {
		b.WriteString(" (signed retention records: ")
		for i, m := range removed {
			if i > 0 {
				b.WriteString("; ")
			}
			when := "on " + m.First.UTC().Format(time.DateOnly)
			if d := m.Last.UTC().Format(time.DateOnly); d != m.First.UTC().Format(time.DateOnly) {
				when = "from " + m.First.UTC().Format(time.DateOnly) + " to " + d
			}
			fmt.Fprintf(&b, "records %d to %d %s per policy %s", m.Start, m.End-1, when, m.Policy)
		}
		b.WriteString(")")
	}
	if unverified > 0 {
		fmt.Fprintf(&b, "; %d retention records do not verify (trailguard verify names them)", unverified)
	}
	if rep.Pruned < rep.Records {
		fmt.Fprintf(&b, "; the rest is consistent with %d checkpoints", rep.Checkpoints)
	} else {
		fmt.Fprintf(&b, "; their leaf hashes are consistent with %d checkpoints", rep.Checkpoints)
	}
	conf := "none (kept for ever)"
	if p, err := retention.Lookup(stated); stated != "" && err == nil {
		conf = p.String()
	}
	var other []string
	for _, m := range removed {
		if m.Policy != conf && !slices.Contains(other, m.Policy) {
			other = append(other, m.Policy)
		}
	}
	if len(other) > 0 {
		fmt.Fprintf(&b, "; removed under policy %s, but this collector's retention is %s", strings.Join(other, ", "), conf)
	}
	return event.OutcomeSuccess, b.String()
}
