package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/internal/regfile"
	"github.com/trailguard/trailguard/internal/verifyhook"
	"github.com/trailguard/trailguard/ledger/internal/sha256x2"
	"github.com/trailguard/trailguard/retention"
)

// Kinds of findings (problems: verify fails) and notices (facts: verify
// passes) in a Report.
const (
	KindRecordModified         = "record-modified"
	KindRecordDeleted          = "record-deleted"
	KindRecordInserted         = "record-inserted"
	KindRecordsReordered       = "records-reordered"
	KindTailTruncated          = "tail-truncated"
	KindCheckpointForged       = "checkpoint-forged"
	KindCheckpointUnknownKey   = "checkpoint-unknown-key"
	KindCheckpointRetiredKey   = "checkpoint-retired-key"
	KindCheckpointInconsistent = "checkpoint-inconsistent"
	KindCheckpointsMissing     = "checkpoints-missing"
	KindRecordsAltered         = "records-altered"
	KindHistoryRewritten       = "history-rewritten"
	KindHashTilesAltered       = "hash-tiles-altered"
	KindFrameCorrupt           = "frame-corrupt"
	KindPruneRecordInvalid     = "prune-record-invalid"
	KindPrunedEarly            = "pruned-before-retention"
	// KindUnsignedRecords: more records without a signature than a crash
	// can leave (the tail after the last checkpoint, or records a
	// checkpoint signed at once), per the bound the writer signed.
	KindUnsignedRecords = "unsigned-records"
	// KindRecordsAfterShutdown: records after a clean shutdown's
	// checkpoint, unsigned or signed by the next one without adoption.
	KindRecordsAfterShutdown = "records-after-shutdown"
	// KindIndexDamaged: a segment's .idx (derived data, never trusted by
	// reads) does not match the segment; delete it and the next open
	// rebuilds it.
	KindIndexDamaged = "index-damaged"

	NoticePruned      = "pruned-by-policy"
	NoticeUnsigned    = "unsigned-tail"
	NoticeTornTail    = "torn-tail"
	NoticeKeyRotated  = "key-rotated"
	NoticeKeyChanged  = "key-changed-without-handover"
	NoticeCheckpoints = "checkpoint-gap"
	// NoticeAdopted: records signed without an earlier signature because
	// the operator adopted them (Options.AdoptUnsigned); always reported.
	NoticeAdopted = "records-adopted"
	// NoticeIndexStale: the newest segment's .idx lags the segment (a
	// crash) or an .idx is missing; the next open rebuilds it.
	NoticeIndexStale = "index-stale"
	// NoticeSignedDuring: records beyond the checkpoints read at the
	// start, signed by a checkpoint the running collector added to the
	// history while Verify read the records (its root matches them).
	NoticeSignedDuring = "signed-during-verify"
)

// Finding is one problem (or, in Report.Notices, one fact) found by Verify.
type Finding struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	// Index is the first record concerned, Count how many.
	Index uint64 `json:"index,omitempty"`
	Count uint64 `json:"count,omitempty"`
	// Size is the tree size of the checkpoint concerned.
	Size uint64 `json:"checkpoint_size,omitempty"`
	// File is the file concerned, relative to the ledger directory (or
	// the witness directory).
	File string `json:"file,omitempty"`
}

// String is the finding as verify prints it: the kind first, the stable
// name a script or an auditor's checklist matches on, then the message.
func (f Finding) String() string { return f.Kind + ": " + f.Message }

// Report is the result of Verify.
type Report struct {
	Dir     string `json:"dir"`
	Origin  string `json:"origin,omitempty"`
	Records uint64 `json:"records"`
	// Pruned is the number of records deleted by retention (indices below it).
	Pruned uint64 `json:"pruned"`
	// Checkpoints counts checkpoints whose signature verified (ledger and witnesses).
	Checkpoints int `json:"checkpoints"`
	// Latest is the newest checkpoint of the ledger that verified.
	Latest *Checkpoint `json:"latest,omitempty"`
	// Findings are problems; the first is the first one in the log.
	Findings []Finding `json:"findings"`
	// Notices are facts that are not problems (pruning, key rotation, …).
	Notices []Finding `json:"notices"`
}

// OK reports whether the ledger verified without findings.
func (r *Report) OK() bool { return r != nil && len(r.Findings) == 0 }

// String is the report as `trailguard verify` prints it for a person:
// OK or FAIL first, with what was checked and what retention removed
// said apart, so that "N records" is never read as more checked than were.
func (r *Report) String() string {
	if r == nil {
		return "<nil report>"
	}
	var b strings.Builder
	switch {
	case r.OK() && r.Pruned > 0 && r.Pruned < r.Records:
		// "360 records (290 pruned)" read as 360 records checked: say
		// which were read, and which retention removed.
		fmt.Fprintf(&b, "OK: %s: records %d to %d (%d) read and checked; records 0 to %d were removed by retention (signed retention records below): their leaf hashes remain in the hash tiles, and with them the remaining log is consistent with the %d signed checkpoints verified%s\n",
			r.Dir, r.Pruned, r.Records-1, r.Records-r.Pruned, r.Pruned-1, r.Checkpoints, newestText(r))
	case r.OK() && r.Pruned > 0:
		fmt.Fprintf(&b, "OK: %s: all %d records were removed by retention (signed retention records below): their leaf hashes remain in the hash tiles and are consistent with the %d signed checkpoints verified%s\n",
			r.Dir, r.Records, r.Checkpoints, newestText(r))
	case r.OK():
		fmt.Fprintf(&b, "OK: %s: %d records, %d checkpoints verified\n", r.Dir, r.Records, r.Checkpoints)
	default:
		fmt.Fprintf(&b, "FAIL: %s: %d records, %d finding(s)\n", r.Dir, r.Records, len(r.Findings))
	}
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "  %s\n", f)
	}
	for _, f := range r.Notices {
		fmt.Fprintf(&b, "  note: %s\n", f)
	}
	return b.String()
}

func (r *Report) find(f Finding)   { r.Findings = append(r.Findings, f) }
func (r *Report) notice(f Finding) { r.Notices = append(r.Notices, f) }

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Verifiers are the trusted public keys, old and new (key rotation).
	Verifiers []note.Verifier
	// WitnessDir, if set, holds checkpoints exported by a DirWitness (or
	// any collection of signed checkpoint files); the ledger must contain
	// every one of them.
	WitnessDir string
	// Workers hashing records in parallel. Default GOMAXPROCS.
	Workers int
	// MaxGap is the longest expected time between checkpoints; longer
	// gaps are reported as notices. Default 2m (twice the default idle
	// cadence).
	MaxGap time.Duration
	// Since, if set, is a checkpoint of this ledger that an earlier Verify
	// checked (its Report.Latest): verification is incremental, starting
	// there. Checkpoints before it are not checked again (their sizes and
	// times are still read for retention checks), records before its size
	// are not read, and the tree at its size is loaded from the hash tiles
	// and must have its root (key rotations are judged from its keys on).
	// If it is no longer in the history, that is a finding
	// (history-rewritten).
	Since *Checkpoint
	// Progress, if set, is called from Verify's goroutine after each
	// block of records (a few MiB) with how many records have been
	// checked so far, for a caller that shows progress.
	Progress func(records uint64)
	// segHook, in tests, runs where a running collector may change the
	// segment directory under Verify: after the listing (si -1) and
	// before segment si is read (opened ahead already, if closed).
	segHook func(segs []*segment, si int)
}

// target is a signed tree head the records must reproduce.
type target struct {
	size    uint64
	root    Hash
	file    string
	witness bool
	seq     int
}

// Verify checks the ledger in dir offline, using only public keys: every
// checkpoint's signature and key, every record's frame, leaf hash and
// position against the hash tiles, the Merkle root at every checkpoint
// (which also proves consecutive checkpoints consistent), retention
// records, and optionally the checkpoints exported to witnesses. It
// returns an error only if it could not run; problems are Findings.
func Verify(dir string, opts VerifyOptions) (*Report, error) {
	if len(opts.Verifiers) == 0 {
		return nil, errors.New("ledger: verify: no verifier keys")
	}
	if _, err := os.Stat(filepath.Join(dir, "seg")); err != nil {
		return nil, fmt.Errorf("ledger: verify: %s is not a ledger: %w", dir, err)
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.MaxGap <= 0 {
		opts.MaxGap = 2 * time.Minute
	}
	v := &verifier{dir: dir, opts: opts, known: note.VerifierList(opts.Verifiers...), rep: &Report{Dir: dir, Findings: []Finding{}, Notices: []Finding{}}}
	if err := v.checkpoints(); err != nil {
		return nil, err
	}
	if err := v.pruned(); err != nil {
		return nil, err
	}
	verifyhook.AfterPruned(dir) // tests: a retention pass here
	if err := v.records(); err != nil {
		return nil, err
	}
	return v.rep, nil
}

type verifier struct {
	dir     string
	opts    VerifyOptions
	known   note.Verifiers
	rep     *Report
	targets []target
	ownMax  uint64 // largest size signed in the ledger's own checkpoints
	prunedN uint64
	// last is the newest checkpoint of the ledger's own that verified.
	last *Checkpoint
	// hist is the size and time of every checkpoint of the history, in
	// order (retention is checked against it).
	hist []histEntry
	// start is where record verification starts (Since).
	start uint64
	// plog is what was read of pruned.log (the producer reads it again).
	plog prunedLog
	// cpLastSeq is the first checkpoint number of the newest history
	// file read, cpLastEnts how many checkpoints were read in it
	// (signedSince reads those after them).
	cpLastSeq  uint64
	cpLastEnts int
	// curKeys are the keys that signed the newest checkpoint of the
	// history read (retired ones left out): a checkpoint signedSince
	// accepts must carry one of their signatures, so that a retired (or
	// never used) key cannot sign records past the history read while
	// Verify runs.
	curKeys map[string]bool
	// retired are the keys retired at a handover in the history read
	// (signedSince goes on from them).
	retired map[string]bool
}

// prunedLog is what Verify has read of pruned.log. A running collector's
// retention appends a signed record to it, then deletes the segments the
// record names, while Verify reads the segments: records missing from the
// segments may have been deleted by retention after pruned.log was read,
// and an append may be under way as it is read (a torn frame at its end).
// The producer then reads it again (prunedAgain).
type prunedLog struct {
	read []byte // the log up to the end of its last valid record
	size int64  // the file's size at the last read
	recs int    // valid records read: the next is pruned.log#recs
	end  uint64 // records below it were deleted by retention, per the log read
	// torn is a torn frame at its end with nothing valid after it: an
	// append under way, or a crash's (a finding if it is still there
	// when the records have been read).
	torn *frameDamage
	// closed: the log had damage or changed other than by appending; it
	// is not read again.
	closed bool
	// late holds the findings and notices of the reads after the first,
	// added to the report when the records have been read.
	late Report
}

type histEntry struct {
	size uint64
	time time.Time
}

func (v *verifier) openSigned(signed []byte, file string, r *Report) (Checkpoint, *note.Note, bool) {
	c, n, err := OpenCheckpoint(signed, v.known)
	if err == nil {
		return c, n, true
	}
	claim, _ := parseUnverified(signed)
	var unknown *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unknown):
		var names []string
		for _, s := range unknown.Note.UnverifiedSigs {
			names = append(names, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
		}
		r.find(Finding{Kind: KindCheckpointUnknownKey, File: file, Size: claim.Size,
			Message: fmt.Sprintf("%s: checkpoint (size %d) signed only by unknown key(s) %s", file, claim.Size, strings.Join(names, ", "))})
	case errors.As(err, &invalid):
		r.find(Finding{Kind: KindCheckpointForged, File: file, Size: claim.Size,
			Message: fmt.Sprintf("%s: checkpoint (claims size %d) has an invalid signature by %s+%08x: forged or altered", file, claim.Size, invalid.Name, invalid.Hash)})
	default:
		r.find(Finding{Kind: KindCheckpointForged, File: file, Size: claim.Size,
			Message: fmt.Sprintf("%s: malformed checkpoint: %v", file, err)})
	}
	return Checkpoint{}, nil, false
}

// sameOrigin reports whether c belongs to this ledger (a finding if not).
func (v *verifier) sameOrigin(c Checkpoint, file string) bool {
	if v.rep.Origin == "" {
		v.rep.Origin = c.Origin
		return true
	}
	if c.Origin != v.rep.Origin {
		v.rep.find(Finding{Kind: KindCheckpointForged, File: file, Size: c.Size,
			Message: fmt.Sprintf("%s: checkpoint for origin %q, the ledger's is %q", file, c.Origin, v.rep.Origin)})
		return false
	}
	return true
}

func keyIDs(n *note.Note) map[string]bool {
	m := map[string]bool{}
	for _, s := range n.Sigs {
		m[fmt.Sprintf("%s+%08x", s.Name, s.Hash)] = true
	}
	return m
}

// keyChange is what a checkpoint's signing keys say against the keys in
// use before it.
type keyChange int

const (
	keysInUse       keyChange = iota // signed by a key in use (or the first checkpoint)
	keysRetiredOnly                  // signed only by keys retired at a handover
	keysHandover                     // keys in use co-sign new ones, which replace them
	keysChanged                      // new keys alone, without a co-signature
)

// keyStep judges a checkpoint signed by ids against the keys in use
// (current; none before the first checkpoint) and those retired at a
// handover. At a handover the co-signing keys (kept) are marked in
// retired. next is the keys in use after the checkpoint; kept and added
// (the keys new to it) are sorted for messages. The history read and its
// read again (signedSince) take the same steps, so that a key's standing
// never depends on when verify saw its checkpoint.
func keyStep(ids, current, retired map[string]bool) (change keyChange, kept, added []string, next map[string]bool) {
	onlyRetired := true
	for id := range ids {
		onlyRetired = onlyRetired && retired[id]
		if current[id] {
			kept = append(kept, id)
		} else {
			added = append(added, id)
		}
	}
	sort.Strings(kept)
	sort.Strings(added)
	switch {
	case onlyRetired:
		return keysRetiredOnly, kept, added, current
	case len(current) == 0:
		return keysInUse, kept, added, ids
	case len(added) > 0 && len(kept) > 0:
		next = map[string]bool{}
		for _, id := range kept {
			retired[id] = true
		}
		for _, id := range added {
			next[id] = true
		}
		return keysHandover, kept, added, next
	case len(added) > 0:
		return keysChanged, kept, added, ids
	}
	return keysInUse, kept, added, current
}

func (v *verifier) checkpoints() error {
	files, err := listCPLogs(v.dir)
	if err != nil {
		return fmt.Errorf("ledger: verify: %w", err)
	}
	var current, retired = map[string]bool{}, map[string]bool{}
	var prev *Checkpoint
	var lastSigned []byte
	seq := uint64(0)
	skipping := v.opts.Since != nil
	for fi, cf := range files {
		v.cpLastSeq = cf.seq
		rel := filepath.Join(cpDir, filepath.Base(cf.path))
		// Read past damage: the signed checkpoints after a damaged frame
		// are verified too, and the damage is a finding, not the end of
		// the history.
		s := scanFrameLog(cf.path, cpFileMax, maxCheckpointSize, validCheckpoint)
		ents := s.ents
		v.cpLastEnts = len(ents)
		if s.err != nil {
			v.rep.find(Finding{Kind: KindCheckpointForged, File: rel, Message: fmt.Sprintf("%s: %v", rel, s.err)})
		}
		_, tail := s.crashTail()
		inner := 0
		for _, d := range s.damage {
			before := 0
			for before < len(ents) && ents[before].off < d.off {
				before++
			}
			if tail && fi == len(files)-1 && errors.Is(d.err, errTorn) {
				v.rep.notice(Finding{Kind: NoticeTornTail, File: rel, Message: rel + " ends in a torn write (crash while writing a checkpoint)"})
				continue
			}
			if z, ok := unwrittenTail(s.raw[d.off:d.end], d.off); ok && tail && fi == len(files)-1 {
				v.rep.notice(Finding{Kind: NoticeTornTail, File: rel, Message: fmt.Sprintf(
					"%s ends in %d bytes counted in its size but not written, zeros from offset %d (a power loss while writing a checkpoint)",
					rel, d.end-d.off, d.off+int64(z))})
				continue
			}
			inner++
			v.rep.find(Finding{Kind: KindCheckpointForged, File: rel, Message: fmt.Sprintf("%s: damaged frame after %d checkpoints, %v; %d valid checkpoints follow it (verified here)",
				rel, before, d, len(ents)-before)})
		}
		if cf.seq != seq {
			v.rep.find(Finding{Kind: KindCheckpointsMissing, File: rel,
				Message: fmt.Sprintf("checkpoint history: checkpoints %d to %d are missing before %s", seq, cf.seq, rel)})
		}
		// A damaged stretch stands for a checkpoint (as the writer counts).
		seq = cf.seq + uint64(len(ents)+inner)
		// The checkpoint after a damaged stretch is not judged against the
		// one before it (records signed at once, after a shutdown): what
		// lay between is the damaged frame, already a finding.
		afterDamage := map[int64]bool{}
		for _, d := range s.damage {
			if d.end < s.size || !tail {
				afterDamage[d.end] = true
			}
		}
		base := 0 // position in the file of ents[0]
		if skipping {
			// Incremental: up to the checkpoint verified before, only
			// sizes and times are read.
			k := 0
			for ; k < len(ents) && skipping; k++ {
				c, err := parseUnverified(ents[k].data)
				if err != nil {
					continue
				}
				v.hist = append(v.hist, histEntry{c.Size, c.Time})
				if s := v.opts.Since; c.Size == s.Size && c.Root == s.Root && c.Time.Equal(s.Time) {
					skipping = false
					cc := c
					prev = &cc
					lastSigned = ents[k].data
					v.ownMax = c.Size
					v.rep.Origin = c.Origin
					v.start = c.Size
					if _, n, err := OpenCheckpoint(ents[k].data, v.known); err == nil {
						current = keyIDs(n) // key changes are judged from here on
					}
				}
			}
			ents, base = ents[k:], k
			if skipping || len(ents) == 0 {
				continue
			}
		}
		// Signatures are checked in parallel (Ed25519 verification is the
		// cost of a long history); findings are then taken in order.
		type opened struct {
			c   Checkpoint
			n   *note.Note
			ok  bool
			rep Report
		}
		res := make([]opened, len(ents))
		var wg sync.WaitGroup
		for w := range v.opts.Workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := w; k < len(ents); k += v.opts.Workers {
					r := &res[k]
					r.c, r.n, r.ok = v.openSigned(ents[k].data, fmt.Sprintf("%s#%d", rel, base+k), &r.rep)
				}
			}()
		}
		wg.Wait()
		for k, e := range ents {
			file := fmt.Sprintf("%s#%d", rel, base+k)
			v.rep.Findings = append(v.rep.Findings, res[k].rep.Findings...)
			c, n, ok := res[k].c, res[k].n, res[k].ok
			if ok && v.rep.Origin == "" {
				v.rep.Origin = c.Origin
			} else if ok && c.Origin != v.rep.Origin {
				v.rep.find(Finding{Kind: KindCheckpointForged, File: file, Size: c.Size,
					Message: fmt.Sprintf("%s: checkpoint for origin %q, the ledger's is %q", file, c.Origin, v.rep.Origin)})
				ok = false
			}
			if !ok {
				continue
			}
			v.rep.Checkpoints++
			change, kept, added, next := keyStep(keyIDs(n), current, retired)
			switch change {
			case keysRetiredOnly:
				v.rep.find(Finding{Kind: KindCheckpointRetiredKey, File: file, Size: c.Size,
					Message: fmt.Sprintf("%s: checkpoint (size %d) signed only by a key retired at an earlier key handover", file, c.Size)})
				continue
			case keysHandover:
				v.rep.notice(Finding{Kind: NoticeKeyRotated, File: file, Size: c.Size,
					Message: fmt.Sprintf("key handover at checkpoint size %d: %s co-signed by %s, which is retired from here on", c.Size, strings.Join(added, ", "), strings.Join(kept, ", "))})
			case keysChanged:
				v.rep.notice(Finding{Kind: NoticeKeyChanged, File: file, Size: c.Size,
					Message: fmt.Sprintf("signing key changed at checkpoint size %d to %s without a co-signed handover", c.Size, strings.Join(added, ", "))})
			}
			current = next
			if prev != nil && !prev.Time.IsZero() && c.Time.Sub(prev.Time) > v.opts.MaxGap {
				why := "the logger was down, stalled or silenced"
				if slices.Contains(prev.Extra, shutdownExt) {
					why = "after a clean shutdown"
				}
				v.rep.notice(Finding{Kind: NoticeCheckpoints, File: file, Size: c.Size,
					Message: fmt.Sprintf("no checkpoint from %s to %s (%s): %s", prev.Time.UTC().Format(time.RFC3339), c.Time.UTC().Format(time.RFC3339), c.Time.Sub(prev.Time).Round(time.Second), why)})
			}
			vp := prev
			if afterDamage[e.off] {
				vp = nil
			}
			v.vouched(vp, c, file, fi == 0 && cf.seq == 0 && base+k == 0 && v.opts.Since == nil)
			if prev != nil {
				if c.Time.Before(prev.Time) {
					v.rep.notice(Finding{Kind: NoticeCheckpoints, File: file, Size: c.Size,
						Message: fmt.Sprintf("%s: checkpoint time %s is before the previous one (%s): clock stepped back", file, c.Time.UTC().Format(time.RFC3339Nano), prev.Time.UTC().Format(time.RFC3339Nano))})
				}
				if c.Size < prev.Size || (c.Size == prev.Size && c.Root != prev.Root) {
					v.rep.find(Finding{Kind: KindCheckpointInconsistent, File: file, Size: c.Size,
						Message: fmt.Sprintf("%s: checkpoint (size %d) does not extend the previous one (size %d)", file, c.Size, prev.Size)})
				}
			}
			cc := c
			prev = &cc
			lastSigned = e.data
			v.hist = append(v.hist, histEntry{c.Size, c.Time})
			v.targets = append(v.targets, target{size: c.Size, root: c.Root, file: file, seq: k})
			v.ownMax = max(v.ownMax, c.Size)
		}
	}
	if skipping {
		s := v.opts.Since
		v.rep.find(Finding{Kind: KindHistoryRewritten, Size: s.Size,
			Message: fmt.Sprintf("the checkpoint verified before (size %d, time %s) is no longer in the checkpoint history", s.Size, s.Time.UTC().Format(time.RFC3339Nano))})
		v.start = 0
	}
	v.rep.Latest = prev
	v.last = prev
	v.curKeys, v.retired = current, retired
	// The checkpoint file served to tlog clients must be one of them.
	b, err := readRegular(filepath.Join(v.dir, "checkpoint"), maxCheckpointSize)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		v.rep.find(Finding{Kind: KindCheckpointForged, File: "checkpoint", Message: fmt.Sprintf("checkpoint: %v", err)})
	} else if err == nil && string(b) != string(lastSigned) {
		if c, _, ok := v.openSigned(b, "checkpoint", v.rep); ok && v.sameOrigin(c, "checkpoint") {
			if c.Size >= v.start {
				v.targets = append(v.targets, target{size: c.Size, root: c.Root, file: "checkpoint", seq: int(seq)})
			}
			if v.last == nil || c.Size > v.last.Size {
				cc := c
				v.last = &cc
			}
			v.ownMax = max(v.ownMax, c.Size)
		}
	}
	if v.opts.WitnessDir != "" {
		ents, err := os.ReadDir(v.opts.WitnessDir)
		if err != nil {
			return fmt.Errorf("ledger: verify: witness: %w", err)
		}
		for _, e := range ents {
			if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), ".tmp") {
				continue
			}
			p := filepath.Join(v.opts.WitnessDir, e.Name())
			b, err := readRegular(p, maxCheckpointSize)
			if errors.Is(err, errTooLarge) {
				v.rep.find(Finding{Kind: KindCheckpointForged, File: p, Message: fmt.Sprintf("%v: not a checkpoint", err)})
				continue
			}
			if err != nil {
				return fmt.Errorf("ledger: verify: witness: %w", err)
			}
			if c, _, ok := v.openSigned(b, p, v.rep); ok && v.sameOrigin(c, p) {
				v.rep.Checkpoints++
				if c.Size >= v.start {
					v.targets = append(v.targets, target{size: c.Size, root: c.Root, file: p, witness: true})
				}
			}
		}
	}
	sort.SliceStable(v.targets, func(i, j int) bool { return v.targets[i].size < v.targets[j].size })
	return nil
}

// vouched checks that checkpoint c signed only records that were vouched
// for: after a shutdown checkpoint the next one has the same size, and no
// checkpoint signs more records at once than the previous one's writer
// could leave unsigned, unless c records their adoption (a notice).
func (v *verifier) vouched(prev *Checkpoint, c Checkpoint, file string, firstEver bool) {
	for _, a := range adoptionsOf(c) {
		v.rep.notice(Finding{Kind: NoticeAdopted, File: file, Size: c.Size, Index: a.From, Count: a.To - a.From,
			Message: fmt.Sprintf("%s: %s, signed by the checkpoint of %s", file, a, c.Time.UTC().Format(time.RFC3339))})
	}
	switch {
	case firstEver && c.Size > 0 && !adopts(c, 0, c.Size):
		v.rep.find(Finding{Kind: KindCheckpointsMissing, File: file, Size: c.Size, Count: c.Size,
			Message: fmt.Sprintf("%s: the checkpoint history starts at size %d: no checkpoint vouched for records [0, %d) as they were written (history deleted and re-signed?)", file, c.Size, c.Size)})
	case prev == nil || c.Size <= prev.Size || adopts(c, prev.Size, c.Size):
	case isShutdown(*prev):
		v.rep.find(Finding{Kind: KindRecordsAfterShutdown, File: file, Size: c.Size, Index: prev.Size, Count: c.Size - prev.Size,
			Message: fmt.Sprintf("%s: records [%d, %d) were signed after a clean shutdown's checkpoint (time %s), which no record may follow: forged, or adopted without a record of it", file, prev.Size, c.Size, prev.Time.UTC().Format(time.RFC3339))})
	case cadenceOf(*prev).stated && c.Size-prev.Size > cadenceOf(*prev).unsignedMax:
		v.rep.find(Finding{Kind: KindUnsignedRecords, File: file, Size: c.Size, Index: prev.Size, Count: c.Size - prev.Size,
			Message: fmt.Sprintf("%s: records [%d, %d) were signed at once, more than the %d its writer could leave unsigned: no checkpoint vouched for them as they were written", file, prev.Size, c.Size, cadenceOf(*prev).unsignedMax)})
	}
}

func (v *verifier) pruned() error {
	ps := scanFrameLog(filepath.Join(v.dir, "pruned.log"), frameLogMax, maxCheckpointSize, validPrune)
	ents := ps.ents
	p := &v.plog
	p.size, p.read = ps.size, ps.raw
	if ps.err != nil {
		v.rep.find(Finding{Kind: KindPruneRecordInvalid, File: "pruned.log", Message: fmt.Sprintf("pruned.log: %v", ps.err)})
		p.closed = true
	}
	if cut, ok := ps.crashTail(); ok {
		// Judged once the records are read: a running collector may be
		// appending that frame (prunedAgain).
		p.torn, p.read = &ps.damage[0], ps.raw[:cut]
	} else {
		for _, d := range ps.damage {
			pruneDamage(v.rep, d, ents, 0)
			p.closed = true
		}
	}
	v.prunedN = v.pruneRecords(ents, 0, 0, v.rep)
	p.recs, p.end = len(ents), v.prunedN
	v.rep.Pruned = v.prunedN
	return nil
}

// pruneDamage reports damage d of pruned.log, whose valid records (from
// pruned.log#k0 on) are ents.
func pruneDamage(r *Report, d frameDamage, ents []logEntry, k0 int) {
	before := 0
	for before < len(ents) && ents[before].off < d.off {
		before++
	}
	r.find(Finding{Kind: KindPruneRecordInvalid, File: "pruned.log", Message: fmt.Sprintf("pruned.log: damaged after %d records, %v; %d valid records follow it", k0+before, d, len(ents)-before)})
}

// pruneRecords judges the retention records ents (pruned.log#k0 on), which
// must continue the deleted range at start, into r, and returns where the
// deleted range ends after them.
func (v *verifier) pruneRecords(ents []logEntry, k0 int, start uint64, r *Report) uint64 {
	prunedN := start
	for k, e := range ents {
		file := fmt.Sprintf("pruned.log#%d", k0+k)
		n, err := note.Open(e.data, v.known)
		if err != nil {
			r.find(Finding{Kind: KindPruneRecordInvalid, File: file, Message: fmt.Sprintf("%s: retention record does not verify: %v", file, err)})
			continue
		}
		p, err := parsePruneText(n.Text)
		if err != nil || p.Start != prunedN {
			r.find(Finding{Kind: KindPruneRecordInvalid, File: file, Message: fmt.Sprintf("%s: retention record out of order or malformed (%v)", file, err)})
			continue
		}
		prunedN = p.End
		// Retention is justified by signed checkpoint times only: the
		// earliest checkpoint covering the deleted records proves when
		// they existed (the record's own claim and frame times do not).
		k := sort.Search(len(v.hist), func(k int) bool { return v.hist[k].size >= p.End })
		if k == len(v.hist) {
			r.find(Finding{Kind: KindPrunedEarly, File: file, Index: p.Start, Count: p.End - p.Start,
				Message: fmt.Sprintf("records [%d, %d) were deleted on %s by policy %s, but no signed checkpoint covers them: nothing proves they were old enough", p.Start, p.End, p.At.UTC().Format(time.RFC3339), p.Policy)})
			continue
		}
		signedAt := v.hist[k].time
		prof, err := retention.Lookup(p.Policy)
		if err != nil {
			r.find(Finding{Kind: KindPruneRecordInvalid, File: file, Message: fmt.Sprintf("%s: unknown retention policy %q", file, p.Policy)})
			continue
		}
		if !prof.Expired(signedAt, p.At) {
			r.find(Finding{Kind: KindPrunedEarly, File: file, Index: p.Start, Count: p.End - p.Start,
				Message: fmt.Sprintf("records [%d, %d) were deleted on %s, before policy %s allowed: the earliest signed checkpoint covering them is from %s", p.Start, p.End, p.At.UTC().Format(time.RFC3339), p.Policy, signedAt.UTC().Format(time.RFC3339))})
			continue
		}
		// What happened, in the words an auditor writes down: which
		// records, when, under which policy, and why that was allowed
		// (the message said "(all signed by T)" before).
		r.notice(Finding{Kind: NoticePruned, File: file, Index: p.Start, Count: p.End - p.Start,
			Message: fmt.Sprintf("records %d to %d were removed by retention on %s per policy %s (keep %s): the earliest signed checkpoint covering them is from %s, %s before; signed retention record %s",
				p.Start, p.End-1, p.At.UTC().Format(time.RFC3339), p.Policy, keepFor(prof), signedAt.UTC().Format(time.RFC3339), days(p.At.Sub(signedAt)), file)})
	}
	return prunedN
}

// prunedAgain reads pruned.log again, if it changed since it was last
// read, for records missing from the segments (or a torn frame at its
// end): retention on a running collector appends its signed record, then
// deletes the segments it names, so that records are missing only after
// the record that deletes them is durable. What was appended is judged
// as pruned() judges what it read (signature, order, retention), into
// plog.late, and it returns the end of the range the log now says was
// deleted: records below it that no segment holds were deleted by
// retention, as if before Verify began. Only appending is taken: a log
// whose bytes read before changed is a finding and is not read again, and
// a segment deleted without a record that covers it stays a finding.
// Called by the producer only.
func (v *verifier) prunedAgain() uint64 {
	p := &v.plog
	path := filepath.Join(v.dir, "pruned.log")
	if p.closed {
		return p.end
	}
	if st, err := os.Lstat(path); (err == nil && st.Size() == p.size) || (errors.Is(err, os.ErrNotExist) && p.size == 0) {
		return p.end // a stat for each gap a deleted segment leaves, not a read
	}
	b, err := readRegular(path, frameLogMax)
	if err != nil || len(b) < len(p.read) || string(b[:len(p.read)]) != string(p.read) {
		why := "its records read first changed"
		if err != nil {
			why = err.Error()
		}
		p.late.find(Finding{Kind: KindPruneRecordInvalid, File: "pruned.log",
			Message: fmt.Sprintf("pruned.log changed while verify read the ledger other than by appending (%s): the retention records read first are those judged", why)})
		p.closed = true
		return p.end
	}
	base := int64(len(p.read))
	ents, dmg := scanFrames(b[base:], maxCheckpointSize, validPrune)
	for i := range ents {
		ents[i].off += base
	}
	p.size, p.torn, p.read = int64(len(b)), nil, b
	for i := range dmg {
		dmg[i].off, dmg[i].end = dmg[i].off+base, dmg[i].end+base
	}
	if len(dmg) == 1 && dmg[0].end == p.size {
		p.torn, p.read = &dmg[0], b[:dmg[0].off]
	} else {
		for _, d := range dmg {
			pruneDamage(&p.late, d, ents, p.recs)
			p.closed = true
		}
	}
	p.end = v.pruneRecords(ents, p.recs, p.end, &p.late)
	p.recs += len(ents)
	return p.end
}

// chunk is up to 256 consecutive records of one tile (index start…).
type chunk struct {
	start uint64
	// leaves has one entry per record: hashed already by the producer
	// (records of compressed segments, hashed as their block is decoded),
	// or by the workers, from frames.
	leaves []Hash
	frames []frameRef // the producer only splits frames; workers check them
	// src, if not nil, is the segment the frames are read from by the
	// worker (each frame at its off, n bytes long; b is set meanwhile).
	src    *os.File
	root   Hash   // subtree root, when len(recs) == 256 and start is tile-aligned
	tile   []byte // the level-0 tile's hashes for these records, if stored
	issues []Finding
	hints  map[uint64]uint64 // record index → first index its segment header claims
	done   chan struct{}
	// hinted: the frames were placed by the .idx; splitBad: a frame is
	// not where, or not as long or as old as, the .idx says.
	hinted, splitBad bool
	// prunedTo, if not 0, makes the chunk a range [start, prunedTo) of
	// records deleted by retention while Verify ran (prunedAgain), with
	// no leaves: only their leaf hashes remain, in the tiles.
	prunedTo uint64
}

type frameRef struct {
	at   int    // its record's position in the chunk (chunk.leaves)
	t    int64  // the append time the .idx gives (hinted chunks)
	b    []byte // the whole frame
	n    int    // its length, where the worker reads it (chunk.src)
	file string
	off  int64
}

// produce reads the segments in order, in large blocks, and cuts the
// record stream into tile-aligned chunks; workers check and hash them in
// parallel. Frames are not copied: chunks point into the blocks.
func (v *verifier) produce(out chan<- *chunk, work chan<- *chunk, stop <-chan struct{}, tiles *tileRun) (err error) {
	defer close(out)
	defer close(work)
	segs, err := listSegments(filepath.Join(v.dir, "seg"))
	if err != nil {
		return err
	}
	idx := max(v.prunedN, v.start)
	started := false
	var cur *chunk
	send := func() bool {
		if cur == nil {
			return true
		}
		c := cur
		cur = nil
		select {
		case out <- c:
		case <-stop:
			return false
		}
		tiles.attach(c)
		select {
		case work <- c:
		case <-stop:
			return false
		}
		return true
	}
	var add addFunc
	// next makes cur the chunk of record idx.
	next := func() bool {
		if cur != nil && (idx/tileWidth != cur.start/tileWidth) {
			if !send() {
				return false
			}
		}
		if cur == nil {
			cur = &chunk{start: idx, done: make(chan struct{}), leaves: make([]Hash, 0, tileWidth-idx%tileWidth)}
		}
		return true
	}
	add = func(fr *frameRef, leaves []Hash, issue *Finding, hint *uint64) bool {
		if !next() {
			return false
		}
		if issue != nil {
			cur.issues = append(cur.issues, *issue)
		}
		if hint != nil {
			if cur.hints == nil {
				cur.hints = map[uint64]uint64{}
			}
			cur.hints[idx] = *hint
		}
		switch {
		case len(leaves) > 0:
			// As many at once as the tile has room for, the rest into
			// the next chunks.
			for {
				k := min(cap(cur.leaves)-len(cur.leaves), len(leaves))
				cur.leaves = append(cur.leaves, leaves[:k]...)
				idx += uint64(k)
				if leaves = leaves[k:]; len(leaves) == 0 {
					break
				}
				if !next() {
					return false
				}
			}
		case fr != nil:
			if cur.frames == nil {
				cur.frames = make([]frameRef, 0, cap(cur.leaves))
			}
			fr.at = len(cur.leaves)
			cur.leaves = append(cur.leaves, Hash{})
			cur.frames = append(cur.frames, *fr)
			idx++
		}
		return true
	}
	// prunedTo puts records [idx, end), which no segment holds and
	// pruned.log says retention deleted, into the stream as pruned.
	prunedTo := func(end uint64) bool {
		if !send() {
			return false
		}
		c := &chunk{start: idx, prunedTo: end, done: make(chan struct{})}
		close(c.done)
		select {
		case out <- c:
		case <-stop:
			return false
		}
		idx, started = end, true
		return true
	}
	const blockSize = 8 << 20
	if h := v.opts.segHook; h != nil {
		h(segs, -1)
	}
	ahead := v.openAhead(segs, idx)
	defer ahead.close()
	for si, s := range segs {
		var o *opened // closed segments only: opened ahead
		if si+1 < len(segs) {
			o = <-ahead.c
		}
		if si+1 < len(segs) && segs[si+1].first <= idx && idx > v.prunedN {
			o.release()
			continue // incremental: verified before
		}
		if h := v.opts.segHook; h != nil {
			h(segs, si)
		}
		// A segment opened ahead is read through that handle, valid
		// after an unlink; only one not opened ahead is opened here (the
		// newest, or one that could not be opened).
		var f *os.File
		var hints []byte         // the .idx of a closed segment opened ahead
		left := int64(blockSize) // bytes of f not read yet, as opened
		if s.z == nil && s.zerr == nil && o != nil && o.err == nil {
			f, left, hints = o.f, o.size, o.hints
		} else if s.z == nil && s.zerr == nil {
			var err error
			var st os.FileInfo
			f, st, err = regfile.Open(s.path)
			if err == nil {
				left = st.Size()
			}
			if errors.Is(err, os.ErrNotExist) {
				// Compacted (or pruned) since the listing.
				r, gone, rerr := v.relisted(s, err)
				if rerr != nil {
					return rerr
				}
				if gone {
					continue
				}
				s, o, err = r, nil, nil
			}
			if err != nil {
				return err
			}
		} else if errors.Is(s.zerr, os.ErrNotExist) {
			// Listed, then removed before its index was read: pruned.
			r, gone, rerr := v.relisted(s, s.zerr)
			if rerr != nil {
				return rerr
			}
			if gone {
				o.release()
				continue
			}
			s = r
		}
		if s.first > idx {
			// Records before this segment are in none listed, or in one
			// deleted since: retention may have deleted them after
			// pruned.log was read.
			if end := v.prunedAgain(); end > idx && !prunedTo(min(end, s.first)) {
				o.release()
				if f != nil {
					f.Close()
				}
				return nil
			}
		}
		rel := filepath.Join("seg", filepath.Base(s.path))
		if s.z != nil || s.zerr != nil {
			// Compressed: the next segment says how many records it
			// must hold, should its index be unreadable.
			want := uint64(0)
			if si+1 < len(segs) {
				want = segs[si+1].first - s.first
			}
			if !v.produceZ(s, rel, want, &idx, &started, add, o) {
				return nil
			}
			continue
		}
		closeF := func() {
			if f != nil {
				f.Close()
			}
		}
		var block []byte
		eof := false
		if hints != nil && (started || s.first >= idx || idx <= v.prunedN) {
			// A closed segment, none of it verified before: split by
			// its .idx, each chunk's frames read and checked by a
			// worker. If the .idx does not match the segment, it is
			// split frame by frame below (f not read from yet).
			var hdr [segHeaderSize]byte
			if _, err := f.ReadAt(hdr[:], 0); err == nil {
				if first, err := parseSegHeader(hdr[:]); err == nil {
					send()
					ok, stopped := v.produceHinted(rel, hints, f, left, segs[si+1].first-s.first, &idx, first, out, work, stop, tiles)
					if stopped {
						closeF()
						return nil
					}
					if ok {
						started = true
						closeF()
						continue
					}
				}
			}
		}
		fill := func(need int) {
			// Keep the unread tail, read more after it: a block, or what
			// is left of a smaller file (at least 64 KiB, should it grow
			// meanwhile). A block for every segment, made and faulted in
			// however small the file, cost ~10 ms each: a copy with
			// thousands of empty segment files kept verify busy for
			// minutes.
			if eof || len(block) >= need {
				return
			}
			nb := make([]byte, len(block), max(need, len(block)+int(min(blockSize, max(left, 64<<10)))))
			copy(nb, block)
			n, err := io.ReadFull(f, nb[len(nb):cap(nb)])
			left -= int64(n)
			block = nb[:len(nb)+n]
			if err != nil {
				eof = true
			}
		}
		fill(segHeaderSize)
		var hint *uint64
		if len(block) < segHeaderSize {
			if si < len(segs)-1 {
				iss := Finding{Kind: KindFrameCorrupt, File: rel, Index: idx, Message: fmt.Sprintf("%s: segment header missing", rel)}
				add(nil, nil, &iss, nil)
			}
			closeF()
			continue
		}
		if first, err := parseSegHeader(block); err != nil {
			iss := Finding{Kind: KindFrameCorrupt, File: rel, Index: idx, Message: fmt.Sprintf("%s: %v", rel, err)}
			add(nil, nil, &iss, nil)
		} else {
			hint = &first
		}
		block = block[segHeaderSize:]
		off := int64(segHeaderSize)
		// Incremental: frames before the start are only stepped over.
		skip := uint64(0)
		if !started && s.first < idx && idx > v.prunedN {
			skip = idx - s.first
			hint = nil
		}
		started = true
		var framed []idxEntry // where the frames are, to check the .idx
		complete := true
		for {
			fill(frameHeader)
			if len(block) == 0 {
				break
			}
			n, err := frameLen(block, maxFrameLen)
			if err == nil && si == len(segs)-1 && n == frameOverhead {
				if fill(n); zeroFrame(block) {
					// Zeros written ahead (zeroahead.go): nothing was
					// written there. Zeros to the end of the file are
					// where the records end (an open ledger's newest
					// segment, or a crash's): not a torn write. Followed
					// by anything, they are reported as before.
					if rest, rerr := zerosToEnd(block, f, eof); rerr != nil {
						closeF()
						return rerr
					} else if rest {
						complete = false
						break
					}
					err = errTorn
				}
			}
			if err == nil {
				fill(n)
				if len(block) < n {
					err = errTorn
				}
			}
			if err == nil && si == len(segs)-1 && s.first+uint64(len(framed)) >= v.ownMax && unwrittenPages(block[:n], off) {
				// The last frame, signed by no checkpoint, written back only
				// up to a sector boundary: a power loss (recovery cuts it).
				if rest, rerr := zerosToEnd(block[n:], f, eof); rerr != nil {
					closeF()
					return rerr
				} else if rest {
					err = errTorn
				}
			}
			if err != nil {
				complete = false
				// The frame is torn or its length is impossible.
				if errors.Is(err, errTorn) && si == len(segs)-1 {
					v.rep.notice(Finding{Kind: NoticeTornTail, File: rel, Index: idx,
						Message: fmt.Sprintf("%s ends in a torn write at offset %d (a crash, or a copy taken while records were written; cut on next open)", rel, off)})
				} else {
					iss := Finding{Kind: KindFrameCorrupt, File: rel, Index: idx,
						Message: fmt.Sprintf("record %d (%s offset %d): %v; rest of the segment unreadable", idx, rel, off, err)}
					add(nil, nil, &iss, nil)
				}
				break
			}
			framed = append(framed, idxEntry{off: off, time: int64(binary.BigEndian.Uint64(block[4:frameHeader]))})
			if skip > 0 {
				skip--
			} else if !add(&frameRef{b: block[:n:n], file: rel, off: off}, nil, nil, hint) {
				closeF()
				return nil
			} else {
				hint = nil
			}
			block = block[n:]
			off += int64(n)
		}
		closeF()
		v.checkIndex(s.path, rel, s.first, framed, complete, si == len(segs)-1)
	}
	// The last segments listed deleted since (and a torn frame at the
	// end of pruned.log completed since).
	if end := v.prunedAgain(); end > idx && !prunedTo(end) {
		return nil
	}
	if d := v.plog.torn; d != nil {
		pruneDamage(&v.plog.late, *d, nil, v.plog.recs)
	}
	send()
	v.rep.Records = idx
	return nil
}

// relisted looks again for the segment of s's first record after s was
// found missing (why): a running collector's compaction replaces a .seg by
// its .zseg, retention deletes the oldest segments. It returns the
// compressed form that now holds those records (listSegments decides, as
// at the start; the tree checks that they are the same records), or gone
// if no file holds them any more: the stream then goes on as if s had not
// been listed, as for a segment deleted before Verify — pruned if a
// retention record appended to pruned.log since covers its records
// (prunedAgain), the findings of a deleted segment if not (the next
// segment's header and the checkpoints name the records).
func (v *verifier) relisted(s *segment, why error) (r *segment, gone bool, err error) {
	segs, err := listSegments(filepath.Join(v.dir, "seg"))
	if err != nil {
		return nil, false, fmt.Errorf("ledger: verify: %w; listing the segments again: %w", why, err)
	}
	for _, r := range segs {
		if r.first != s.first {
			continue
		}
		if r.path == s.path || (r.z == nil && r.zerr == nil) {
			// Not a replacement (compaction only compresses).
			return nil, false, fmt.Errorf("ledger: verify: %w", why)
		}
		return r, false, nil
	}
	return nil, true, nil
}

// opened is a closed segment opened, and its .idx read, ahead of the
// producer.
type opened struct {
	f     *os.File
	size  int64  // f's size when opened
	err   error  // not opened
	hints []byte // the .idx of an uncompressed segment; nil if unreadable
}

// release closes a segment the producer does not use.
func (o *opened) release() {
	if o != nil && o.err == nil {
		o.f.Close()
	}
}

// segOpener maps the closed segments, in order, one ahead of the producer.
type segOpener struct {
	c    chan *opened
	quit chan struct{}
}

// openAhead opens the closed segments on their own goroutine, one segment
// ahead, and reads their .idx: on the producer, between two segments, it
// left the workers without work meanwhile. The segments are read through
// the handle (pread into buffers reused: a chunk's frames by the worker
// that hashes them, a compressed block by its decoder), not mapped: on a
// VM whose guest pages are shadowed by the hypervisor every page touched
// through a fresh mapping costs an exit (~2 µs), which made reading 1 GiB
// of mapped frames cost as much as hashing them. Segments an incremental
// verify (records from start on) steps over are not opened; each closed
// segment gets one value on c, in order.
func (v *verifier) openAhead(segs []*segment, start uint64) *segOpener {
	so := &segOpener{c: make(chan *opened, 1), quit: make(chan struct{})}
	go func() {
		defer close(so.c)
		for si := 0; si+1 < len(segs); si++ {
			s := segs[si]
			o := &opened{err: errors.New("not opened")}
			if skip := segs[si+1].first <= start && start > v.prunedN; !skip && s.zerr == nil {
				var st os.FileInfo
				if o.f, st, o.err = regfile.Open(s.path); o.err == nil && s.z == nil {
					o.size = st.Size()
					// An .idx longer than its segment is damaged
					// (an entry per frame, no frame shorter than
					// one): without hints the segment is split
					// frame by frame. Nor is one read for a
					// segment over a tebibyte (sparse, hostile).
					if o.size <= 1<<40 {
						o.hints, _ = readRegular(idxPath(s.path), o.size)
					}
				}
			}
			select {
			case so.c <- o:
			case <-so.quit:
				o.release()
				return
			}
		}
	}()
	return so
}

// close stops the opener and unmaps what it mapped and nobody took.
func (so *segOpener) close() {
	close(so.quit)
	for o := range so.c {
		o.release()
	}
}

// produceHinted cuts a closed segment into chunks by the positions its
// .idx gives, without reading the frames: the workers read each chunk's
// frames and check that each is where the .idx says, as long as it says
// and of the time it says (then it matches the segment exactly), with the
// CRC and the leaf hash as usual. Splitting frames one after another on
// the producer was a chain of cache misses on one goroutine; this way
// every worker splits its own. The chunks are held until all are checked:
// if any frame is not where the .idx says (a damaged .idx), they are
// dropped and ok is false, and the caller splits the segment frame by
// frame (and reports the .idx). f is the segment, size bytes long; hints
// its .idx (nil if unreadable); count the records it must hold.
func (v *verifier) produceHinted(rel string, hints []byte, f *os.File, size int64, count uint64, idx *uint64, first uint64,
	out, work chan<- *chunk, stop <-chan struct{}, tiles *tileRun) (ok, stopped bool) {
	if uint64(len(hints)) != count*idxEntrySize || count == 0 || binary.BigEndian.Uint64(hints) != uint64(segHeaderSize) {
		return false, false
	}
	base := int64(segHeaderSize)
	end := size
	offAt := func(k uint64) int64 {
		if k == count {
			return end
		}
		return int64(binary.BigEndian.Uint64(hints[k*idxEntrySize:]))
	}
	var chunks []*chunk
	release := func() {
		for _, c := range chunks {
			<-c.done
		}
	}
	start := *idx
	for k := uint64(0); k < count; {
		c := &chunk{start: start + k, done: make(chan struct{}), hinted: true, src: f}
		n := min(count-k, tileWidth-(start+k)%tileWidth)
		c.frames = make([]frameRef, n)
		c.leaves = make([]Hash, n)
		for i := range n {
			lo, hi := offAt(k+i), offAt(k+i+1)
			if lo < base || hi <= lo || hi > end {
				release()
				return false, false
			}
			c.frames[i] = frameRef{at: int(i), n: int(hi - lo), file: rel, off: lo,
				t: int64(binary.BigEndian.Uint64(hints[(k+i)*idxEntrySize+8:]))}
		}
		if k == 0 {
			c.hints = map[uint64]uint64{start: first}
		}
		tiles.attach(c)
		select {
		case work <- c:
		case <-stop:
			return false, true
		}
		chunks = append(chunks, c)
		k += n
	}
	for _, c := range chunks {
		<-c.done
		if c.splitBad {
			release()
			return false, false
		}
	}
	for _, c := range chunks {
		select {
		case out <- c:
		case <-stop:
			return false, true
		}
	}
	*idx = start + count
	return true, false
}

// addFunc adds to the stream of chunks a record, as a frame the workers
// check and hash, or records as their leaf hashes, or an issue. The issue
// and the hint (the first index a segment header claims) concern the
// first record added.
type addFunc func(fr *frameRef, leaves []Hash, issue *Finding, hint *uint64) bool

// produceZ streams the records of a compressed segment: its blocks are
// decoded and their records hashed in parallel, in order (each block's
// records are hashed right after it is decoded, while they are in the
// core's cache), and their leaf hashes cut into chunks. A block that does
// not decode (or whose checksum fails) is a finding, and its records stand
// in the stream as leaves no record hashes to, so the range is named by
// the tree. It returns false if verification stopped.
func (v *verifier) produceZ(s *segment, rel string, want uint64, idx *uint64, started *bool, add addFunc, o *opened) bool {
	first := s.first
	if s.zerr != nil {
		o.release()
		// The count comes from the next segment's header: no more than
		// the ledger can hold (a tampered header must not make verify
		// stand in for 2^60 records).
		if b := v.recordBound(); first >= b {
			want = 0
		} else {
			want = min(want, b-first)
		}
		iss := Finding{Kind: KindFrameCorrupt, File: rel, Index: *idx, Count: want,
			Message: fmt.Sprintf("%s: compressed segment unreadable: %v; its %d record(s) are lost", rel, s.zerr, want)}
		if !add(nil, nil, &iss, nil) {
			return false
		}
		if !addUnread(add, want, nil) {
			return false
		}
		*started = true
		return true
	}
	z := s.z
	var data []byte // the segment, if read whole (not opened ahead)
	var f *os.File  // or opened ahead: each block read as it is decoded
	if o != nil && o.err == nil {
		f = o.f
		defer f.Close()
	} else {
		b, rerr := readRegular(s.path, 1<<40)
		if errors.Is(rerr, os.ErrNotExist) {
			if _, gone, _ := v.relisted(s, rerr); gone {
				return true // pruned since the listing: as if not listed
			}
		}
		if rerr != nil {
			iss := Finding{Kind: KindFrameCorrupt, File: rel, Index: *idx, Message: fmt.Sprintf("%s: %v", rel, rerr)}
			return add(nil, nil, &iss, nil)
		}
		data = b
	}
	// Incremental: records before the start are stepped over.
	skip := uint64(0)
	hint := &first
	if !*started && first < *idx && *idx > v.prunedN {
		skip = *idx - first
		hint = nil
	}
	*started = true
	type job struct {
		b    zBlock
		z    *zbufs // from zbufPool: the decoded block, its records, their leaves
		err  error
		done chan struct{}
	}
	ahead := 8 * v.opts.Workers // blocks decoded ahead of the chunks (a shallow window idles a core whenever the oldest block is slow)
	var window []*job
	sem := make(chan struct{}, v.opts.Workers)
	var wg sync.WaitGroup
	defer wg.Wait() // no decoder may outlive f
	bi := 0
	next := func() *job {
		for bi < len(z.blocks) && z.blocks[bi].first+uint64(z.blocks[bi].count) <= skip {
			bi++ // verified before: not even decoded
		}
		if bi >= len(z.blocks) {
			return nil
		}
		b := z.blocks[bi]
		bi++
		j := &job{b: b, done: make(chan struct{}), z: zbufPool.Get().(*zbufs)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(j.done)
			sem <- struct{}{}
			if data != nil {
				j.err = j.z.decode(data[b.off:b.off+int64(b.clen)], b.count)
			} else if comp, err := j.z.read(f, b); err != nil {
				j.err = err
			} else {
				j.err = j.z.decode(comp, b.count)
			}
			<-sem
		}()
		return j
	}
	for {
		for len(window) < ahead {
			j := next()
			if j == nil {
				break
			}
			window = append(window, j)
		}
		if len(window) == 0 {
			return true
		}
		j := window[0]
		window = window[1:]
		<-j.done
		b := j.b
		k0 := uint64(0)
		if skip > b.first {
			k0 = skip - b.first
		}
		if j.err != nil {
			iss := Finding{Kind: KindFrameCorrupt, File: rel, Index: first + b.first, Count: uint64(b.count),
				Message: fmt.Sprintf("records %d to %d (%s block at offset %d): %v", first+b.first, first+b.first+uint64(b.count)-1, rel, b.off, j.err)}
			if !add(nil, nil, &iss, nil) {
				zbufPool.Put(j.z)
				return false
			}
		}
		ok := true
		switch {
		case k0 >= uint64(b.count):
		case j.err != nil:
			// As many as the ledger can hold (the count is the index's).
			n := uint64(b.count) - k0
			if bound := v.recordBound(); *idx+n > bound {
				n = bound - min(*idx, bound)
			}
			ok = addUnread(add, n, hint)
		default:
			ok = add(nil, j.z.leaves[k0:b.count], nil, hint)
		}
		if !ok {
			zbufPool.Put(j.z)
			return false
		}
		hint = nil
		zbufPool.Put(j.z) // the leaves are copied into the chunks
	}
}

// addUnread adds n records that could not be read, as leaves no record
// hashes to: the tree diverges there and the range is named.
func addUnread(add addFunc, n uint64, hint *uint64) bool {
	zeros := make([]Hash, min(n, tileWidth))
	for n > 0 {
		k := min(n, uint64(len(zeros)))
		if !add(nil, zeros[:k], nil, hint) {
			return false
		}
		n -= k
		hint = nil
	}
	return true
}

// recordBound is the most records the ledger can hold: its largest signed
// size and the unsigned tail its writer allows after it.
func (v *verifier) recordBound() uint64 {
	n := uint64(0)
	for _, t := range v.targets {
		n = max(n, t.size)
	}
	last := Checkpoint{}
	if v.last != nil {
		last = *v.last
	}
	return n + cadenceOf(last).unsignedMax
}

// zbufs is what verify reads a compressed block into and decodes it into.
type zbufs struct {
	comp   []byte
	raw    []byte
	recs   [][]byte
	leaves []Hash
}

// zbufPool recycles the buffers verify decodes blocks into.
var zbufPool = sync.Pool{New: func() any { return &zbufs{raw: make([]byte, 0, zBlockSize+zBlockSize/4)} }}

// read reads block b of f into z.comp. A block longer than any block of
// its records compresses to (the index checked, the file sparse) is
// damaged, and not read.
func (z *zbufs) read(f *os.File, b zBlock) ([]byte, error) {
	limit := int64(zMaxBlock)
	if b.count > 1 {
		limit = zBlockSize
	}
	// zstd's worst case is the input and 1/256 of it (its compressBound),
	// the frame header and block headers within the slack.
	if bound := limit + limit/128 + 4<<10; int64(b.clen) > bound {
		return nil, fmt.Errorf("%w: block of %d bytes, more than %d record(s) compress to (%d)", errZseg, b.clen, b.count, bound)
	}
	if cap(z.comp) < int(b.clen) {
		z.comp = make([]byte, b.clen)
	}
	comp := z.comp[:b.clen]
	if _, err := f.ReadAt(comp, b.off); err != nil {
		return nil, fmt.Errorf("%w: block unreadable: %v", errZseg, err)
	}
	return comp, nil
}

// decode decompresses a block of count records, checks its CRC and hashes
// its records into z.leaves.
func (z *zbufs) decode(comp []byte, count uint32) error {
	var err error
	if z.raw, err = decodeRaw(comp, count, z.raw); err != nil {
		return err
	}
	if _, z.recs, err = parseBlock(z.raw[:len(z.raw)-4], count, nil, z.recs[:0]); err != nil {
		return err
	}
	z.leaves = slices.Grow(z.leaves[:0], len(z.recs))[:len(z.recs)]
	sha256x2.Prefixed(z.leaves, 0, z.recs)
	return nil
}

// checkIndex compares a segment's .idx (derived data: reads never trust
// it) with where the frames really are. A closed segment's must match
// exactly; the newest segment's may lag after a crash (a notice).
func (v *verifier) checkIndex(path, rel string, first uint64, framed []idxEntry, complete, lastSeg bool) {
	irel := strings.TrimSuffix(rel, ".seg") + ".idx"
	// An .idx has an entry per frame, no frame shorter than an entry: one
	// longer than its segment is damaged, and not read whole.
	limit := int64(1 << 40)
	if st, err := os.Stat(path); err == nil {
		limit = st.Size()
	}
	b, err := readRegular(idxPath(path), limit)
	if err != nil {
		if _, serr := os.Stat(path); errors.Is(err, os.ErrNotExist) && errors.Is(serr, os.ErrNotExist) {
			// The segment, read through its handle, was compacted (or
			// pruned) meanwhile: its .idx went with it.
			return
		}
		if errors.Is(err, os.ErrNotExist) {
			v.rep.notice(Finding{Kind: NoticeIndexStale, File: irel, Index: first,
				Message: fmt.Sprintf("%s is missing (derived data: the next open rebuilds it)", irel)})
		} else {
			v.rep.find(Finding{Kind: KindIndexDamaged, File: irel, Index: first, Message: fmt.Sprintf("%s: %v", irel, err)})
		}
		return
	}
	n := len(b) / idxEntrySize
	for k := 0; k < min(n, len(framed)); k++ {
		off := int64(binary.BigEndian.Uint64(b[k*idxEntrySize:]))
		t := int64(binary.BigEndian.Uint64(b[k*idxEntrySize+8:]))
		if off != framed[k].off || t != framed[k].time {
			if lastSeg && zeros(b[k*idxEntrySize:]) {
				// The newest segment's .idx, zeros from an entry on to its
				// end: its size reached the disk before its last entries
				// (ext4 commits the size of an append inside an allocated
				// block with the next journal commit, whoever asks for it;
				// the .idx is synced only when its segment is closed). A
				// real entry is never zero (frames follow the header).
				v.rep.notice(Finding{Kind: NoticeIndexStale, File: irel, Index: first + uint64(k),
					Message: fmt.Sprintf("%s has %d entries for %d records, zeros from the entry for record %d on (a crash; the next open rebuilds it)", irel, n, len(framed), first+uint64(k))})
				return
			}
			v.rep.find(Finding{Kind: KindIndexDamaged, File: irel, Index: first + uint64(k),
				Message: fmt.Sprintf("%s: entry for record %d says offset %d, time %d; the segment has the record at offset %d, time %d (reads do not trust it; delete %s and the next open rebuilds it)",
					irel, first+uint64(k), off, t, framed[k].off, framed[k].time, irel)})
			return
		}
	}
	if !complete || (n == len(framed) && len(b)%idxEntrySize == 0) {
		return
	}
	if lastSeg {
		v.rep.notice(Finding{Kind: NoticeIndexStale, File: irel, Index: first + uint64(min(n, len(framed))),
			Message: fmt.Sprintf("%s has %d entries for %d records (a crash; the next open rebuilds it)", irel, n, len(framed))})
		return
	}
	v.rep.find(Finding{Kind: KindIndexDamaged, File: irel, Index: first + uint64(min(n, len(framed))),
		Message: fmt.Sprintf("%s is %d bytes for %d records (reads do not trust it; delete %s and the next open rebuilds it)", irel, len(b), len(framed), irel)})
}

// tileHasher computes the root of a full tile's 256 leaf hashes, level by
// level, the nodes of a level two at a time (sha256x2).
type tileHasher struct {
	level [tileWidth]Hash
}

func (th *tileHasher) root(leaves []Hash) Hash {
	copy(th.level[:], leaves)
	for n := len(leaves) / 2; n > 0; n /= 2 {
		sha256x2.Nodes(th.level[:n], th.level[:2*n])
	}
	return th.level[0]
}

// hashWorker checks frames, hashes records and loads the matching tile.
// The records of a chunk are hashed two at a time (sha256x2: with the SHA
// extensions two interleaved hashes take little longer than one), and so
// are the nodes of its subtree.
func (v *verifier) hashWorker(work <-chan *chunk, tiles *tileStore, limit uint64) {
	var fw frameWork
	var buf []byte // the frames of chunks read by this worker (chunk.src), reused
	var th tileHasher
	for c := range work {
		if c.src != nil {
			buf = fw.read(c, buf)
		} else {
			fw.check(c, c.frames)
		}
		if len(c.leaves) == tileWidth && c.start%tileWidth == 0 {
			c.root = th.root(c.leaves)
		}
		if n := c.start / tileWidth; c.tile == nil && n*tileWidth < limit {
			if b, err := tiles.readRaw(0, n, int(min(tileWidth, limit-n*tileWidth))); err == nil {
				c.tile = b
			}
		}
		close(c.done)
	}
}

// readBatch is about how many bytes of a chunk's frames a worker reads at
// a time (chunk.src): read, hashed and checked while in its core's cache.
const readBatch = 256 << 10

// frameWork is a worker's scratch space for hashing and checking frames.
type frameWork struct {
	recs [][]byte
	pos  []int // each record's position in the chunk
	fis  []int // the frames hashed, to check their sums
	some []Hash
}

// read reads the frames of c from c.src into buf, a batch at a time, and
// hashes and checks them (check); it returns the buffer to use next. The
// frames of a chunk split by the .idx (the only ones read this way) lie
// one after another. A read that fails or falls short (the file cut since
// the .idx was read), or a frame longer than any frame can be, is a frame
// not where or not as long as the .idx says: the chunk is dropped and the
// segment split frame by frame, which names what is there.
func (fw *frameWork) read(c *chunk, buf []byte) []byte {
	frames := c.frames
	for len(frames) > 0 && !c.splitBad {
		lo := frames[0].off
		if frames[0].n > frameOverhead+maxFrameLen {
			c.splitBad = true
			break
		}
		k := 1
		for k < len(frames) && frames[k].off+int64(frames[k].n)-lo <= readBatch {
			k++
		}
		need := int(frames[k-1].off + int64(frames[k-1].n) - lo)
		if cap(buf) < need {
			buf = make([]byte, max(need, readBatch))
		}
		b := buf[:need]
		if _, err := c.src.ReadAt(b, lo); err != nil {
			c.splitBad = true
			break
		}
		for i := range frames[:k] {
			at := frames[i].off - lo
			frames[i].b = b[at : at+int64(frames[i].n) : at+int64(frames[i].n)]
		}
		fw.check(c, frames[:k])
		for i := range frames[:k] {
			frames[i].b = nil // the buffer is reused
		}
		frames = frames[k:]
	}
	if cap(buf) > 4*readBatch {
		return nil // made for one long frame: not kept
	}
	return buf
}

// check hashes the records of frames (of chunk c) into c.leaves and checks
// each frame's placement (chunks split by the .idx) and checksum.
func (fw *frameWork) check(c *chunk, frames []frameRef) {
	recs, pos, fis := fw.recs[:0], fw.pos[:0], fw.fis[:0]
	for fi, fr := range frames {
		if c.hinted && len(fr.b) < frameOverhead {
			c.splitBad = true
			continue
		}
		// The record as the frame's place says (split by the
		// producer, or by the .idx: checked below, after hashing).
		recs, pos, fis = append(recs, fr.b[frameHeader:len(fr.b)-4]), append(pos, fr.at), append(fis, fi)
	}
	fw.recs, fw.pos, fw.fis = recs, pos, fis
	if n := len(recs); n == 0 {
		// Hashed by the producer (compressed segments).
	} else if pos[n-1]-pos[0] == n-1 {
		// Consecutive records (positions only increase): hashed in place.
		sha256x2.Prefixed(c.leaves[pos[0]:pos[0]+n], 0, recs)
	} else {
		// Records hashed by the producer, or frames not where the .idx said.
		fw.some = slices.Grow(fw.some[:0], n)[:n]
		sha256x2.Prefixed(fw.some, 0, recs)
		for k, i := range pos {
			c.leaves[i] = fw.some[k]
		}
	}
	// The frames' headers and checksums after the hashes: hashing
	// prefetches the frames into the cache ahead of itself, and these
	// checks then read them from there; checked first, every frame's
	// first cache line was a miss (checksums first: a fifth of
	// verify's CPU). A frame not where, or not as long or as old as,
	// the .idx says drops the chunk (its hashes were of nothing).
	for _, fi := range fis {
		fr := frames[fi]
		if c.hinted {
			if n, err := frameLen(fr.b, maxFrameLen); err != nil || n != len(fr.b) || int64(binary.BigEndian.Uint64(fr.b[4:])) != fr.t {
				c.splitBad = true
				continue
			}
		}
		if !frameSumOK(fr.b) {
			c.issues = append(c.issues, Finding{Kind: KindFrameCorrupt, File: fr.file, Index: c.start + uint64(fr.at),
				Message: fmt.Sprintf("record %d (%s offset %d): frame checksum mismatch", c.start+uint64(fr.at), fr.file, fr.off)})
		}
	}
}

// tileRun reads the level-0 tiles of full chunks for the producer, in
// order, 64 tiles per read (a read per tile was ~4 % of verify's CPU). A
// partial tile, the legacy layout or a failed read are left to the
// worker, which reads the tile alone as before.
type tileRun struct {
	s     *tileStore
	limit uint64 // leaves beyond this are not claimed by any checkpoint
	first uint64 // the tile buf starts with
	buf   []byte
}

const tilesPerRead = 64

// attach sets c.tile if c is a whole tile within the limit.
func (tr *tileRun) attach(c *chunk) {
	n := c.start / tileWidth
	if tr.s.legacy || c.start%tileWidth != 0 || len(c.leaves) != tileWidth || (n+1)*tileWidth > tr.limit {
		return
	}
	if tr.buf == nil || n < tr.first || n >= tr.first+uint64(len(tr.buf)/(tileWidth*HashSize)) {
		k := min(tilesPerRead, tr.limit/tileWidth-n)
		// A new buffer each time: chunks keep slices of the last one.
		buf := make([]byte, k*tileWidth*HashSize)
		if err := tr.s.readAt(0, n*tileWidth, buf); err != nil {
			tr.buf = nil
			return
		}
		tr.first, tr.buf = n, buf
	}
	off := (n - tr.first) * tileWidth * HashSize
	c.tile = tr.buf[off : off+tileWidth*HashSize : off+tileWidth*HashSize]
}

// leafTiles gives random access to the leaf hashes stored in level-0 tiles.
type leafTiles struct {
	s     *tileStore
	limit uint64 // leaves beyond this are not claimed by any checkpoint
	n     uint64
	data  []byte
	ok    bool
	bad   bool // tile n is not stored and its records do not give its hash
}

func (lt *leafTiles) at(j uint64) (Hash, bool) {
	if j >= lt.limit {
		return Hash{}, false
	}
	n := j / tileWidth
	if lt.data == nil || lt.n != n {
		w := int(min(tileWidth, lt.limit-n*tileWidth))
		b, err := lt.s.readRaw(0, n, w)
		lt.n, lt.data, lt.ok, lt.bad = n, b, err == nil, false
		if lt.data == nil {
			lt.data = []byte{}
		}
		if lt.ok && hasZeroHash(b) {
			lt.derive(n)
		}
	}
	k := int(j % tileWidth)
	if !lt.ok || (k+1)*HashSize > len(lt.data) {
		return Hash{}, false
	}
	h := Hash(lt.data[k*HashSize : (k+1)*HashSize])
	// Zero: not stored (a compressed segment's, derived.go).
	return h, h != zeroHash
}

// derive fills the entries of level-0 tile n that are not stored with the
// leaf hashes of the records, if these give the tile's stored level-1
// hash; if not, the tile is bad (its entries stay unknown).
func (lt *leafTiles) derive(n uint64) {
	h1, ok := lt.node1(n)
	d, err := lt.s.deriver.tile(n, tileWidth)
	if !ok || err != nil || len(d) != tileBytes {
		lt.bad = true
		return
	}
	hs := make([]Hash, tileWidth)
	for i := range hs {
		hs[i] = Hash(d[i*HashSize : (i+1)*HashSize])
	}
	if subtreeHash(hs) != h1 {
		lt.bad = true
		return
	}
	b := slices.Clone(lt.data)
	for i := 0; i+HashSize <= len(b); i += HashSize {
		if Hash(b[i:i+HashSize]) == zeroHash {
			copy(b[i:], d[i:i+HashSize])
		}
	}
	lt.data = b
}

// badAt reports whether leaf j lies in a tile whose leaf hashes are not
// stored and whose records do not give its stored hash (after at(j)).
func (lt *leafTiles) badAt(j uint64) bool {
	return lt.bad && lt.n == j/tileWidth
}

// node1 returns the stored level-1 hash of level-0 tile n.
func (lt *leafTiles) node1(n uint64) (Hash, bool) {
	var b [HashSize]byte
	if lt.s.legacy {
		t, err := lt.s.readRaw(1, n/tileWidth, int(n%tileWidth)+1)
		if err != nil {
			return Hash{}, false
		}
		copy(b[:], t[len(t)-HashSize:])
	} else if err := lt.s.readAt(1, n, b[:]); err != nil {
		return Hash{}, false
	}
	return Hash(b), Hash(b) != zeroHash
}

// keepFor says how long a retention profile keeps records.
func keepFor(p retention.Profile) string {
	switch {
	case p.Years == 1:
		return "one calendar year and at least " + days(p.Retain)
	case p.Years > 1:
		return fmt.Sprintf("%d calendar years and at least %s", p.Years, days(p.Retain))
	}
	return days(p.Retain)
}

// newestText names the newest checkpoint verified, for the OK line.
func newestText(r *Report) string {
	if r.Latest == nil {
		return ""
	}
	return fmt.Sprintf(", the newest of tree size %d", r.Latest.Size)
}

// days writes a duration of days as such ("400 days").
func days(d time.Duration) string {
	n := int64(d / (24 * time.Hour))
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

// records streams the records against the tiles and the checkpoints.
func (v *verifier) records() error {
	lt := &leafTiles{s: newTileStore(v.dir, false)}
	defer lt.s.close()
	for _, t := range v.targets {
		lt.limit = max(lt.limit, t.size)
	}
	st := &streamState{v: v, lt: lt, tr: &tree{}}
	if v.start > 0 {
		// Incremental: the tree at the size verified before, from the
		// tiles, must have that checkpoint's root. Checked before the
		// producer and the workers start: returning while they ran left
		// them reading the segments and writing the report
		// after Verify returned it.
		t, err := loadTree(v.start, lt.s.read)
		if err != nil || t.root() != v.opts.Since.Root {
			v.rep.find(Finding{Kind: KindHashTilesAltered, Size: v.start,
				Message: fmt.Sprintf("the hash tiles at size %d (the checkpoint verified before) do not give its root: verify again without --since", v.start)})
			return nil
		}
		st.tr = t
	}
	out := make(chan *chunk, 128)
	work := make(chan *chunk, 128)
	stop := make(chan struct{})
	perr := make(chan error, 1)
	// The tile run is made here, not in the goroutine: the pruned range
	// below moves lt.limit while the producer runs.
	run := &tileRun{s: lt.s, limit: lt.limit}
	var workers sync.WaitGroup
	// Every return waits for the producer and the workers (the tiles
	// they read are closed after): nothing of Verify's reads the
	// segments or writes the report once it returned.
	defer workers.Wait()
	defer close(stop)
	workers.Add(1 + v.opts.Workers)
	go func() {
		defer workers.Done()
		perr <- v.produce(out, work, stop, run)
	}()
	limit := lt.limit // read here: prunedLeaves moves lt.limit while the workers run
	for range v.opts.Workers {
		go func() {
			defer workers.Done()
			v.hashWorker(work, lt.s, limit)
		}()
	}
	st.prunedLeaves(v.prunedN)
	for c := range out {
		<-c.done
		if c.prunedTo > 0 {
			st.prunedLeaves(c.prunedTo)
		} else {
			st.chunk(c)
		}
		if v.opts.Progress != nil {
			v.opts.Progress(st.tr.size)
		}
	}
	if err := <-perr; err != nil {
		return err
	}
	// What retention deleted while the records were read (prunedAgain).
	v.prunedN = max(v.prunedN, v.plog.end)
	v.rep.Pruned = v.prunedN
	v.rep.Findings = append(v.rep.Findings, st.found...)
	v.rep.Findings = append(v.rep.Findings, v.plog.late.Findings...)
	v.rep.Notices = append(v.rep.Notices, v.plog.late.Notices...)
	st.finish()
	return nil
}

// prunedLeaves folds in the records from the tree's size to end, deleted
// by retention: only their leaf hashes remain, in the tiles.
func (st *streamState) prunedLeaves(end uint64) {
	lt := st.lt
	for st.tr.size < end {
		j := st.tr.size
		h, ok := lt.at(j)
		if !ok {
			limit := lt.limit
			lt.limit = end
			h, ok = lt.at(j)
			lt.limit = limit
		}
		if !ok {
			st.found = append(st.found, Finding{Kind: KindHashTilesAltered, Index: j, Count: end - j,
				Message: fmt.Sprintf("leaf hashes of pruned records [%d, %d) missing from the hash tiles", j, end)})
			// The stream goes on at the first record kept, with leaves
			// that match nothing in their place.
			for st.tr.size < end {
				st.tr.append(Hash{}, nil)
			}
			return
		}
		st.appendBoth(h, h, true)
	}
}

// streamState folds records into the tree, checking them against the leaf
// tiles and the signed roots.
type streamState struct {
	v  *verifier
	lt *leafTiles
	tr *tree // records (and, until they diverge, tiles)
	lT *tree // tiles, after divergence
	ti int   // next target

	diverged   bool
	divAt      uint64
	rWin       []Hash
	rHints     map[uint64]uint64
	issues     []Finding
	rBad, lBad []target
	rGood      []target
	// tileBad names the first whole tile of a compressed segment whose
	// records do not give its stored level-1 hash (derivedTile).
	tileBad *Finding
	// found: findings made while the producer runs (it adds to the
	// report itself), added to it after.
	found []Finding
	// past is the tree of the records beyond the largest signed size
	// read (lt.limit) but the last ones, pastLeaves their leaf hashes:
	// the root at any size among the last pastKeep records, for a
	// checkpoint a running collector signed while they were read
	// (signedSince).
	past       *tree
	pastLeaves []Hash
	pastKeep   int
}

const classifyWindow = 64

func (st *streamState) chunk(c *chunk) {
	if st.past == nil && st.tr.size+uint64(len(c.leaves)) > st.lt.limit && st.v.last != nil {
		// From the chunk that holds the first record past the limit.
		st.past = st.tr.clone()
		st.pastKeep = int(min(cadenceOf(*st.v.last).unsignedMax, 1<<18)) + tileWidth
	}
	st.fold(c)
	if st.past == nil {
		return
	}
	for i, h := range c.leaves {
		if c.start+uint64(i) >= st.past.size+uint64(len(st.pastLeaves)) {
			st.pastLeaves = append(st.pastLeaves, h)
		}
	}
	if n := len(st.pastLeaves) - st.pastKeep; n >= st.pastKeep {
		// The oldest go into the tree (amortized: every pastKeep leaves).
		for _, h := range st.pastLeaves[:n] {
			st.past.append(h, nil)
		}
		st.pastLeaves = append(st.pastLeaves[:0], st.pastLeaves[n:]...)
	}
}

// fold adds the records of chunk c to the tree.
func (st *streamState) fold(c *chunk) {
	st.issues = append(st.issues, c.issues...)
	for k, h := range c.hints {
		if st.rHints == nil {
			st.rHints = map[uint64]uint64{}
		}
		st.rHints[k] = h
	}
	if c.start != st.tr.size {
		// Records after a gap in the stream (cannot happen: the producer
		// numbers records consecutively).
		panic("ledger: verify: chunk out of order")
	}
	full := len(c.leaves) == tileWidth
	if full && c.start%tileWidth == 0 && c.start+tileWidth <= st.lt.limit && len(c.tile) == tileWidth*HashSize && hasZeroHash(c.tile) {
		// Leaf hashes not stored (a compressed segment's): the tile's
		// stored level-1 hash stands for them.
		if !st.derivedTile(c) {
			return
		}
	}
	if !st.diverged && full && st.targetAfter() > c.start+tileWidth-1 {
		// Fast path: whole tile, no checkpoint inside, compare and fold.
		if st.tileMatches(c) {
			st.tr.appendTile(c.leaves, c.root, nil)
			st.checkTargets()
			return
		}
	}
	for _, h := range c.leaves {
		l, lok := st.lt.at(st.tr.size)
		if !lok && !st.diverged && st.lt.badAt(st.tr.size) {
			st.diverge()
			st.lT = nil // the tiles hold no leaf hashes to follow from here
			end := (st.tr.size/tileWidth + 1) * tileWidth
			st.tileBad = &Finding{Kind: KindRecordModified, Index: st.tr.size, Count: end - st.tr.size,
				Message: fmt.Sprintf("records [%d, %d) (a compressed segment: leaf hashes derived from the records) do not give their tile's stored hash", st.tr.size, end)}
		}
		st.appendBoth(h, l, lok)
	}
}

// derivedTile checks a whole tile whose leaf hashes are not stored
// against the stored hash of the tile (level 1). If they match, the
// records' leaf hashes are the tile's (the caller goes on as with stored
// ones). If not, the records are folded in here, the tile tree takes the
// stored hash, and the tile is named (false).
func (st *streamState) derivedTile(c *chunk) bool {
	n := c.start / tileWidth
	h1, ok := st.lt.node1(n)
	if ok && h1 == c.root {
		c.tile = hashesBytes(c.leaves)
		st.lt.n, st.lt.data, st.lt.ok, st.lt.bad = n, c.tile, true, false
		return true
	}
	if !st.diverged {
		st.diverge()
		st.tileBad = &Finding{Kind: KindRecordModified, Index: c.start, Count: tileWidth,
			Message: fmt.Sprintf("records [%d, %d) (a compressed segment: leaf hashes derived from the records) do not give their tile's stored hash", c.start, c.start+tileWidth)}
	}
	if st.lT != nil && st.lT.size == c.start {
		if ok {
			st.lT.appendSubtree(h1)
		} else {
			st.lT = nil // the tile tree ends here
		}
	}
	for _, h := range c.leaves {
		if len(st.rWin) < classifyWindow {
			st.rWin = append(st.rWin, h)
		}
		st.tr.append(h, nil)
		st.checkTargets()
	}
	return false
}

func (st *streamState) targetAfter() uint64 {
	if st.ti < len(st.v.targets) {
		return st.v.targets[st.ti].size
	}
	return ^uint64(0)
}

// tileMatches reports whether a whole-tile chunk can be folded in at once:
// its stored leaf hashes equal its records', or it lies beyond every
// signed size (no leaf hash is claimed there).
func (st *streamState) tileMatches(c *chunk) bool {
	if c.start+tileWidth > st.lt.limit || len(c.tile) != tileWidth*HashSize {
		return c.tile == nil && c.start >= st.lt.limit
	}
	for i, h := range c.leaves {
		if Hash(c.tile[i*HashSize:(i+1)*HashSize]) != h {
			return false
		}
	}
	return true
}

// appendBoth adds record leaf r (and tile leaf l, if known).
func (st *streamState) appendBoth(r, l Hash, lok bool) {
	if !st.diverged && lok && r != l {
		st.diverge()
	}
	if !st.diverged {
		st.tr.append(r, nil)
		st.checkTargets()
		return
	}
	if len(st.rWin) < classifyWindow {
		st.rWin = append(st.rWin, r)
	}
	st.tr.append(r, nil)
	if st.lT != nil && lok {
		if st.lT.size == st.tr.size-1 {
			st.lT.append(l, nil)
		}
	}
	st.checkTargets()
}

func (st *streamState) diverge() {
	st.diverged = true
	st.divAt = st.tr.size
	st.lT = st.tr.clone()
}

// checkTargets compares the roots at every checkpoint size reached.
func (st *streamState) checkTargets() {
	for st.ti < len(st.v.targets) && st.v.targets[st.ti].size <= st.tr.size {
		t := st.v.targets[st.ti]
		st.ti++
		if t.size < st.tr.size {
			continue // only possible for size 0 handled at start
		}
		if st.tr.root() == t.root {
			st.rGood = append(st.rGood, t)
		} else {
			st.rBad = append(st.rBad, t)
		}
		if st.lT != nil && st.lT.size == t.size {
			if st.lT.root() != t.root {
				st.lBad = append(st.lBad, t)
			}
		}
	}
}

// finish runs after the last record: it extends the tile tree to the
// largest signed size and turns what was seen into findings.
func (st *streamState) finish() {
	v := st.v
	n := st.tr.size
	// Checkpoints of size 0.
	for _, t := range v.targets {
		if t.size == 0 && t.root != emptyRoot {
			st.rBad = append(st.rBad, t)
		}
	}
	var tilesEnd *Finding
	// Records end before the signed size: follow the tiles alone.
	if st.lt.limit > n {
		if !st.diverged {
			st.diverge()
		}
	}
	if st.lT != nil {
		ti := sort.Search(len(v.targets), func(k int) bool { return v.targets[k].size > st.lT.size })
		for st.lT.size < st.lt.limit {
			h, ok := st.lt.at(st.lT.size)
			if !ok {
				tilesEnd = &Finding{Kind: KindHashTilesAltered, Index: st.lT.size,
					Message: fmt.Sprintf("hash tiles end at leaf %d, below the signed size %d", st.lT.size, st.lt.limit)}
				break
			}
			st.lT.append(h, nil)
			for ; ti < len(v.targets) && v.targets[ti].size <= st.lT.size; ti++ {
				if st.lT.root() != v.targets[ti].root {
					st.lBad = append(st.lBad, v.targets[ti])
				}
			}
		}
		for _, t := range v.targets {
			if t.size > n {
				st.rBad = append(st.rBad, t)
			}
		}
	}
	// Frame-level issues come first in the log order.
	var first *Finding
	for i := range st.issues {
		if first == nil || st.issues[i].Index < first.Index {
			first = &st.issues[i]
		}
	}
	if st.diverged && len(st.rBad) > 0 {
		var f Finding
		if st.tileBad != nil && st.tileBad.Index == st.divAt {
			f = *st.tileBad
			if first != nil && first.Index >= f.Index && first.Index < f.Index+f.Count {
				// The record's own checksum names it.
				f.Index, f.Count = first.Index, max(first.Count, 1)
			}
		} else {
			f = st.classify()
		}
		if len(st.lBad) > 0 && len(st.rBad) > 0 && f.Kind != KindTailTruncated {
			// Tiles do not match the signatures either.
			v.rep.find(Finding{Kind: KindHashTilesAltered, Index: st.divAt,
				Message: fmt.Sprintf("hash tiles differ from the records from leaf %d and do not match the signed checkpoints", st.divAt)})
		}
		if tilesEnd != nil && (f.Kind != KindTailTruncated || tilesEnd.Index < f.Index) {
			v.rep.find(*tilesEnd)
		}
		tilesEnd = nil
		if first != nil && first.Index == f.Index && f.Kind == KindRecordModified {
			f.Message += "; " + first.Message
			f.File = first.File
			f.Count = max(f.Count, first.Count) // a damaged block names all its records
			first = nil
		}
		if first != nil && first.Index <= f.Index {
			v.rep.find(*first)
			first = nil
		}
		v.rep.find(f)
	} else if st.diverged && len(st.lBad) > 0 && st.tileBad != nil && st.tileBad.Index == st.divAt {
		v.rep.find(Finding{Kind: KindHashTilesAltered, Index: st.divAt,
			Message: fmt.Sprintf("the stored hash of tile [%d, %d) (hashes/1) differs from its records', and the tiles do not match the signed checkpoints (the records do)", st.divAt, st.divAt+tileWidth)})
	} else if st.diverged && len(st.lBad) > 0 {
		v.rep.find(Finding{Kind: KindHashTilesAltered, Index: st.divAt,
			Message: fmt.Sprintf("hash tile leaf %d differs from the record, and the tiles do not match the signed checkpoints (the records do)", st.divAt)})
	} else if len(st.rBad) > 0 {
		t := st.rBad[0]
		lastGood := uint64(0)
		for _, g := range st.rGood {
			if g.size < t.size {
				lastGood = max(lastGood, g.size)
			}
		}
		// A checkpoint of this size or a later one that the records do
		// match puts the fault on this checkpoint, not on the records: a
		// fork (same size, another root) is the checkpoint's alone.
		laterGood := false
		for _, g := range st.rGood {
			if g.size >= t.size {
				laterGood = true
			}
		}
		named := false
		for _, f := range v.rep.Findings {
			named = named || f.Kind == KindCheckpointInconsistent && f.File == t.file
		}
		switch {
		case laterGood && named:
			// The history's pass named it already (it does not extend
			// the previous checkpoint).
		case t.witness:
			v.rep.find(Finding{Kind: KindHistoryRewritten, File: t.file, Size: t.size, Index: lastGood,
				Message: fmt.Sprintf("witnessed checkpoint %s (size %d) does not match the ledger: history after record %d was rewritten after it was exported", t.file, t.size, lastGood)})
		case laterGood:
			v.rep.find(Finding{Kind: KindCheckpointInconsistent, File: t.file, Size: t.size,
				Message: fmt.Sprintf("%s: validly signed checkpoint (size %d) is not consistent with the records and the other checkpoints", t.file, t.size)})
		default:
			v.rep.find(Finding{Kind: KindRecordsAltered, File: t.file, Size: t.size, Index: lastGood, Count: t.size - lastGood,
				Message: fmt.Sprintf("records [%d, %d) do not match the signed checkpoint %s (records and hash tiles were both altered)", lastGood, t.size, t.file)})
		}
	}
	if tilesEnd != nil {
		v.rep.find(*tilesEnd)
	}
	if first != nil {
		v.rep.find(*first)
	}
	st.signedSince(n)
	v.tail(n)
}

// signedSince, when the records after the newest checkpoint read are more
// than its writer can leave unsigned (or follow a clean shutdown's
// checkpoint), reads the checkpoint history again: a running collector
// goes on writing and signing while Verify reads, and its newest segment
// is read last. The writer never has more records on disk than its bound
// beyond a checkpoint durably in the history, so one signed by then, of a
// size at most n and at least n minus the bound, is there now.
//
// The checkpoints added are taken in order from the newest read, as the
// history's are: each must verify, be of this origin and signed by a
// current key (a handover co-signed by one moves the current keys on, a
// known key taking over alone is noticed, a checkpoint signed only by a
// retired key is a finding), extend the one
// before it, and be vouched for by it (no more records at once than its
// bound, none after a shutdown unless adopted; adoptions are noticed).
// The newest so taken, among the last records read, is checked against
// their tree: if its root matches, the tail is judged from it (a notice
// says so), if not, that is a finding. If there is none, or the records
// diverged already, the tail is judged as read at the start.
func (st *streamState) signedSince(n uint64) {
	v := st.v
	if v.last == nil || v.rep.Latest == nil || len(v.curKeys) == 0 || st.diverged || st.past == nil || n <= v.ownMax || n <= v.prunedN {
		return
	}
	if !isShutdown(*v.last) && n-v.ownMax <= cadenceOf(*v.last).unsignedMax {
		return
	}
	base := st.past.size
	if base+uint64(len(st.pastLeaves)) != n {
		return
	}
	files, err := listCPLogs(v.dir)
	if err != nil {
		return
	}
	prev := v.rep.Latest // the chain goes on from the history's newest
	current, retired := maps.Clone(v.curKeys), maps.Clone(v.retired)
	if retired == nil {
		retired = map[string]bool{}
	}
	var best *Checkpoint
	var bestFile string
added:
	for _, cf := range files {
		if cf.seq < v.cpLastSeq {
			continue // read before
		}
		rel := filepath.Join(cpDir, filepath.Base(cf.path))
		for k, e := range scanFrameLog(cf.path, cpFileMax, maxCheckpointSize, validCheckpoint).ents {
			if cf.seq == v.cpLastSeq && k < v.cpLastEnts {
				continue // read before (and judged there)
			}
			file := fmt.Sprintf("%s#%d", rel, k)
			c, sig, err := OpenCheckpoint(e.data, v.known)
			if err != nil || c.Origin != v.rep.Origin {
				continue // not taken: the next verify names it
			}
			if c.Size > n {
				break added // signed after the records were read
			}
			change, kept, added, next := keyStep(keyIDs(sig), current, retired)
			switch change {
			case keysRetiredOnly:
				v.rep.find(Finding{Kind: KindCheckpointRetiredKey, File: file, Size: c.Size,
					Message: fmt.Sprintf("%s: checkpoint (size %d), signed while verify ran, signed only by a key retired at an earlier key handover", file, c.Size)})
				continue
			case keysChanged:
				// As in the history: a known key taking over without a
				// handover is named, not refused, or the same checkpoint
				// would be a finding now and a notice in the next verify.
				v.rep.notice(Finding{Kind: NoticeKeyChanged, File: file, Size: c.Size,
					Message: fmt.Sprintf("signing key changed at checkpoint size %d (signed while verify ran) to %s without a co-signed handover", c.Size, strings.Join(added, ", "))})
			case keysHandover:
				v.rep.notice(Finding{Kind: NoticeKeyRotated, File: file, Size: c.Size,
					Message: fmt.Sprintf("key handover at checkpoint size %d (signed while verify ran): %s co-signed by %s, which is retired from here on", c.Size, strings.Join(added, ", "), strings.Join(kept, ", "))})
			}
			current = next
			if c.Size < prev.Size || (c.Size == prev.Size && c.Root != prev.Root) {
				v.rep.find(Finding{Kind: KindCheckpointInconsistent, File: file, Size: c.Size,
					Message: fmt.Sprintf("%s: checkpoint (size %d), signed while verify ran, does not extend the previous one (size %d)", file, c.Size, prev.Size)})
				continue
			}
			v.vouched(prev, c, file, false)
			cc := c
			prev = &cc
			if c.Size > v.ownMax && c.Size >= base {
				best, bestFile = prev, file
			}
		}
	}
	if best == nil {
		return
	}
	t := st.past.clone()
	for _, h := range st.pastLeaves[:best.Size-base] {
		t.append(h, nil)
	}
	v.rep.Checkpoints++
	if t.root() != best.Root {
		v.rep.find(Finding{Kind: KindRecordsAltered, File: bestFile, Size: best.Size, Index: st.lt.limit, Count: best.Size - st.lt.limit,
			Message: fmt.Sprintf("records [%d, %d) do not match the checkpoint %s (size %d), signed while verify ran", st.lt.limit, best.Size, bestFile, best.Size)})
		return
	}
	v.rep.notice(Finding{Kind: NoticeSignedDuring, File: bestFile, Size: best.Size, Index: v.ownMax, Count: best.Size - v.ownMax,
		Message: fmt.Sprintf("records [%d, %d) were signed while verify ran, by %s (size %d, time %s), whose root they match; the checkpoints signed since verify read the history are checked in full by the next verify",
			v.ownMax, best.Size, bestFile, best.Size, best.Time.UTC().Format(time.RFC3339))})
	v.ownMax, v.last = best.Size, best
}

// tail judges the records after the newest checkpoint: a crash leaves at
// most its writer's bound of them, a clean shutdown none.
func (v *verifier) tail(n uint64) {
	switch {
	case v.last == nil && n > 0:
		v.rep.find(Finding{Kind: KindCheckpointsMissing, Index: 0, Count: n,
			Message: fmt.Sprintf("%d records and no signed checkpoint: the checkpoint history is missing, nothing vouches for any record", n)})
	case n <= v.ownMax || n <= v.prunedN:
	case isShutdown(*v.last):
		v.rep.find(Finding{Kind: KindRecordsAfterShutdown, Index: v.ownMax, Count: n - v.ownMax, Size: v.last.Size,
			Message: fmt.Sprintf("records [%d, %d) follow the last checkpoint, which marks a clean shutdown (time %s): no record may follow it unsigned", v.ownMax, n, v.last.Time.UTC().Format(time.RFC3339))})
	case n-v.ownMax > cadenceOf(*v.last).unsignedMax:
		v.rep.find(Finding{Kind: KindUnsignedRecords, Index: v.ownMax, Count: n - v.ownMax, Size: v.last.Size,
			Message: fmt.Sprintf("records [%d, %d) are covered by no signed checkpoint: %d, more than the %d its writer could leave in a crash", v.ownMax, n, n-v.ownMax, cadenceOf(*v.last).unsignedMax)})
	default:
		v.rep.notice(Finding{Kind: NoticeUnsigned, Index: v.ownMax, Count: n - v.ownMax,
			Message: fmt.Sprintf("records [%d, %d) were written after the last checkpoint and are not yet covered by a signature (a crash, or a copy taken before the next checkpoint; the next open signs them)", v.ownMax, n)})
	}
}

// classify names the first difference between the records and the
// authenticated leaf hashes at st.divAt.
func (st *streamState) classify() Finding {
	i := st.divAt
	r := st.rWin
	L := func(j uint64) (Hash, bool) { return st.lt.at(j) }
	limit := st.lt.limit
	aligned := func(rFrom int, lFrom uint64) bool {
		m := 0
		for x := rFrom; x < len(r) && m < 16; x++ {
			l, ok := L(lFrom + uint64(x-rFrom))
			if !ok {
				break
			}
			if l != r[x] {
				return false
			}
			m++
		}
		return true
	}
	if len(r) == 0 {
		return Finding{Kind: KindTailTruncated, Index: i, Count: limit - i, Size: limit,
			Message: fmt.Sprintf("records end at %d but a signed checkpoint covers %d: %d record(s) cut from the tail", i, limit, limit-i)}
	}
	// Deleted: r[0] is a later authenticated leaf. The segment header
	// gives the distance when a whole segment is gone.
	cands := []uint64{}
	for k := uint64(1); k <= classifyWindow; k++ {
		cands = append(cands, k)
	}
	if h, ok := st.rHints[i]; ok && h > i {
		cands = append([]uint64{h - i}, cands...)
	}
	for _, k := range cands {
		if l, ok := L(i + k); ok && l == r[0] && aligned(1, i+k+1) {
			return Finding{Kind: KindRecordDeleted, Index: i, Count: k,
				Message: fmt.Sprintf("%d record(s) deleted at index %d", k, i)}
		}
	}
	l0, _ := L(i)
	for k := 1; k < len(r); k++ {
		if r[k] == l0 && aligned(k+1, i+1) {
			return Finding{Kind: KindRecordInserted, Index: i, Count: uint64(k),
				Message: fmt.Sprintf("%d record(s) inserted at index %d", k, i)}
		}
	}
	inL := false
	for k := uint64(1); k <= classifyWindow; k++ {
		if l, ok := L(i + k); ok && l == r[0] {
			inL = true
		}
	}
	inR := false
	for k := 1; k < len(r); k++ {
		if r[k] == l0 {
			inR = true
		}
	}
	if inL && inR {
		return Finding{Kind: KindRecordsReordered, Index: i,
			Message: fmt.Sprintf("records reordered at index %d", i)}
	}
	m := uint64(1)
	for int(m) < len(r) {
		l, ok := L(i + m)
		if !ok || l == r[m] {
			break
		}
		m++
	}
	return Finding{Kind: KindRecordModified, Index: i, Count: m,
		Message: fmt.Sprintf("record %d modified (its leaf hash differs from the signed tree)", i)}
}

// sectorSize is the smallest unit a device writes back: after a power
// loss a frame can end at any multiple of it with zeros after.
const sectorSize = 512

// unwrittenPages reports whether fr, the frame at file offset off, fails its
// checksum and is zero from a sector boundary inside it to its end: a frame
// whose first sectors reached the disk and whose others are still the zeros
// the segment was zeroed with (zeroahead.go).
func unwrittenPages(fr []byte, off int64) bool {
	if len(fr) < frameOverhead {
		return false
	}
	last := -1 // the frame's last non-zero byte
	for i := len(fr) - 1; i >= 0; i-- {
		if fr[i] != 0 {
			last = i
			break
		}
	}
	if last < 0 {
		return false
	}
	b := (off + int64(last) + sectorSize) / sectorSize * sectorSize // first boundary after it
	if b >= off+int64(len(fr)) {
		return false
	}
	_, _, _, err := decodeFrame(fr, maxFrameLen)
	return errors.Is(err, errCorrupt)
}

// unwrittenTail reports whether b, the damaged end of a frame log from
// file offset off to its end, is zeros from its start or from a sector
// boundary inside it: the file system had committed the log's new size
// (another file's fsync commits the journal) before the appended frame,
// not yet synced, reached the disk, whole or past its first sectors. A
// power loss leaves that (TestPowerLoss saw a 312-byte checkpoint frame
// read back as zeros); a flipped bit or written garbage does not. from is
// where in b the zeros start.
func unwrittenTail(b []byte, off int64) (from int, ok bool) {
	from = zeroFrom(b, off)
	return from, len(b) > 0 && from < len(b)
}

// zeroFrom returns where in b, at file offset off, the zeros to its end
// start, if they start at b's beginning or at a sector boundary; len(b)
// otherwise.
func zeroFrom(b []byte, off int64) int {
	last := len(b) - 1 // the last non-zero byte
	for last >= 0 && b[last] == 0 {
		last--
	}
	if last < 0 {
		return 0
	}
	at := (off+int64(last))/sectorSize*sectorSize + sectorSize - off // the first boundary after it
	return int(min(at, int64(len(b))))
}

// zerosToEnd reports whether rest, and the file f after it (unless eof),
// hold only zeros: nothing was ever written after the frame before them.
func zerosToEnd(rest []byte, f *os.File, eof bool) (bool, error) {
	if !zeros(rest) {
		return false, nil
	}
	if eof {
		return true, nil
	}
	buf := make([]byte, 64<<10)
	for {
		// Holes are zeros: a sparse newest segment claiming a tebibyte
		// after its records was read to its end, for many minutes.
		if !skipHole(f) {
			return true, nil
		}
		n, err := f.Read(buf)
		if !zeros(buf[:n]) {
			return false, nil
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// zeros reports whether b holds only zero bytes, compared a MiB at a time
// with zeroBuf (vectorized: an open ledger's newest segment can end in
// 16 MiB of zeros written ahead).
func zeros(b []byte) bool {
	for len(b) > 0 {
		k := min(len(b), len(zeroBuf))
		if !bytes.Equal(b[:k], zeroBuf[:k]) {
			return false
		}
		b = b[k:]
	}
	return true
}
