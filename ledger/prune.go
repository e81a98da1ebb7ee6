package ledger

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/internal/regfile"
)

// PruneRecord is the signed statement, kept in pruned.log, that records
// [Start, End) were deleted under a retention policy. Their leaf hashes stay
// in the hash tiles, so the tree, every checkpoint and every later proof
// still verify.
type PruneRecord struct {
	Origin string
	Start  uint64
	End    uint64
	Policy string
	// Newest is the time of the earliest signed checkpoint covering the
	// deleted records (of size SignedSize): every one of them was appended
	// by then. Retention decides from it, never from the append times in
	// the frames, which no signature covers. (In records written before
	// this rule, "trailguard prune v1", it was the newest record's own
	// append time and SignedSize is 0; verify checks both kinds against
	// the signed checkpoints.)
	Newest     time.Time
	SignedSize uint64
	// At is when the records were deleted.
	At time.Time
}

const (
	pruneHeaderV1 = "trailguard prune v1"
	pruneHeader   = "trailguard prune v2"
)

func (p PruneRecord) marshal() []byte {
	return fmt.Appendf(nil, "%s\n%s\n%d %d\npolicy %s\nsigned %d %s\nat %s\n", pruneHeader, p.Origin, p.Start, p.End,
		p.Policy, p.SignedSize, p.Newest.UTC().Format(time.RFC3339Nano), p.At.UTC().Format(time.RFC3339Nano))
}

func parsePruneText(text string) (PruneRecord, error) {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	bad := errors.New("ledger: malformed prune record")
	if len(lines) != 6 || lines[0] != pruneHeader && lines[0] != pruneHeaderV1 {
		return PruneRecord{}, bad
	}
	var p PruneRecord
	p.Origin = lines[1]
	se := strings.Fields(lines[2])
	if len(se) != 2 {
		return PruneRecord{}, bad
	}
	var err1, err2 error
	p.Start, err1 = strconv.ParseUint(se[0], 10, 64)
	p.End, err2 = strconv.ParseUint(se[1], 10, 64)
	if err1 != nil || err2 != nil || p.End < p.Start {
		return PruneRecord{}, bad
	}
	var ok bool
	if p.Policy, ok = strings.CutPrefix(lines[3], "policy "); !ok {
		return PruneRecord{}, bad
	}
	newest, ok := strings.CutPrefix(lines[4], "newest ")
	if lines[0] == pruneHeader {
		var signed string
		if signed, ok = strings.CutPrefix(lines[4], "signed "); ok {
			var sz string
			sz, newest, ok = strings.Cut(signed, " ")
			if p.SignedSize, err1 = strconv.ParseUint(sz, 10, 64); err1 != nil {
				ok = false
			}
		}
	}
	if !ok {
		return PruneRecord{}, bad
	}
	at, ok := strings.CutPrefix(lines[5], "at ")
	if !ok {
		return PruneRecord{}, bad
	}
	var err error
	if p.Newest, err = time.Parse(time.RFC3339Nano, newest); err != nil {
		return PruneRecord{}, bad
	}
	if p.At, err = time.Parse(time.RFC3339Nano, at); err != nil {
		return PruneRecord{}, bad
	}
	return p, nil
}

// parsePruneNote parses a signed prune note without checking signatures.
func parsePruneNote(signed []byte) (PruneRecord, error) {
	i := strings.Index(string(signed), "\n\n")
	if i < 0 {
		return PruneRecord{}, errors.New("ledger: prune record is not a signed note")
	}
	return parsePruneText(string(signed[:i+1]))
}

// SetLegalHold starts (true) or ends (false) a legal hold: while it is
// in force, retention deletes nothing. It overrides Options.LegalHold.
func (l *Ledger) SetLegalHold(on bool) { l.legalHold.Store(on) }

// HoldRetention keeps retention from deleting any segment until release is
// called, for a Verify of the ledger's own directory while it runs. Verify
// reports records retention deletes under it as pruned (it reads
// pruned.log again where records are missing), but then checks them only
// by their leaf hashes; held, it reads and checks every record present
// when it starts, and the report does not depend on when a pass ran. It
// returns once a retention pass already deleting has stopped (the hold is
// checked before each segment), so nothing is deleted between the call
// and release. The hold is a count,
// not a lock kept for its duration: Prune, and so Close, never wait for
// it; a Prune during the hold deletes nothing, and the next one after
// release catches up. Holds nest; release may be called more than once.
func (l *Ledger) HoldRetention() (release func()) {
	l.retHolds.Add(1)
	// A pass that checked the hold before it was taken ends its segment
	// under pruneMu; the next one sees the hold.
	l.pruneMu.Lock()
	l.pruneMu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { l.retHolds.Add(-1) }) }
}

func (l *Ledger) pruneLoop() {
	defer l.bg.Done()
	t := time.NewTicker(l.opts.PruneInterval)
	defer t.Stop()
	for {
		if _, err := l.Prune(); err != nil {
			l.opts.Logger.Error("ledger: retention", "dir", l.dir, "err", err)
		}
		select {
		case <-t.C:
		case <-l.stop:
			return
		}
	}
}

// Prune deletes, oldest first, every closed segment whose records were all
// covered by a signed checkpoint older than the retention period, unless
// LegalHold is set or a HoldRetention is in force. Before deleting
// it makes the leaf hash tiles of those records durable and appends a
// signed PruneRecord to pruned.log. It returns what it deleted.
func (l *Ledger) Prune() ([]PruneRecord, error) {
	if l.readOnly {
		return nil, ErrReadOnly
	}
	l.pruneMu.Lock()
	defer l.pruneMu.Unlock()
	p := l.opts.Retention
	if l.legalHold.Load() || p.Retain <= 0 {
		return nil, nil
	}
	var done []PruneRecord
	for {
		l.segMu.RLock()
		if len(l.segs) < 2 {
			l.segMu.RUnlock()
			return done, nil
		}
		s := l.segs[0]
		l.segMu.RUnlock()
		count := s.count.Load()
		if count == 0 {
			return done, nil
		}
		end := s.first + count
		if l.retHolds.Load() > 0 {
			return done, nil // a verification is reading the directory
		}
		if floor := l.opts.PruneFloor; floor != nil && end > floor() {
			return done, nil // a reader still needs records of it
		}
		// Decide from signed time only: the earliest signed checkpoint
		// that covers the segment's last record proves when it existed.
		// (The append times in the frames are covered by no signature.)
		cover, ok, err := l.signedCover(end)
		if err != nil {
			return done, fmt.Errorf("ledger: retention: %w", err)
		}
		now := l.opts.Now()
		if !ok || !p.Expired(cover.Time, now) {
			return done, nil
		}
		// The leaf hashes of the deleted records must outlive them:
		// written and durable.
		// Those of a compressed segment are derived from its records
		// (derived.go): written back first.
		err = l.tiles.fillLeaves(s.first, end)
		if err == nil {
			err = l.tiles.syncLeaves(end)
		}
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return done, nil // tiles not written yet; next time
			}
			return done, fmt.Errorf("ledger: retention: %w", err)
		}
		rec := PruneRecord{Origin: l.opts.Origin, Start: s.first, End: end, Policy: p.String(), Newest: cover.Time, SignedSize: cover.Size, At: now}
		signed, err := note.Sign(&note.Note{Text: string(rec.marshal())}, l.opts.Signer)
		if err != nil {
			return done, fmt.Errorf("ledger: retention: %w", err)
		}
		if err := appendFrameLog(filepath.Join(l.dir, "pruned.log"), now.UnixNano(), signed, datasync); err != nil {
			return done, fmt.Errorf("ledger: retention: %w", err)
		}
		l.segMu.Lock()
		l.segs = l.segs[1:]
		l.pruned = end
		l.segMu.Unlock()
		s.closeRead()
		l.zcache.drop(s.first)
		path, z := s.source()
		if err := os.Remove(path); err != nil {
			return done, fmt.Errorf("ledger: retention: %w", err)
		}
		if z == nil {
			os.Remove(idxPath(path))
		}
		if err := syncFile(l.segDir); err != nil {
			return done, fmt.Errorf("ledger: retention: %w", err)
		}
		l.opts.Logger.Info("ledger: pruned by retention policy", "dir", l.dir, "from", rec.Start, "to", rec.End, "policy", rec.Policy, "newest", rec.Newest)
		done = append(done, rec)
	}
}

// signedCover returns the earliest checkpoint of the history whose size is
// at least n, if its signature verifies with the ledger's keys (ok is
// false if no checkpoint covers n yet). Deleting checkpoints from the
// history can only make the answer later (safer); a forged time fails the
// signature. The history files are searched by their first checkpoint, so
// a long history costs one file's read.
func (l *Ledger) signedCover(n uint64) (Checkpoint, bool, error) {
	files, err := listCPLogs(l.dir)
	if err != nil {
		return Checkpoint{}, false, err
	}
	j := sort.Search(len(files), func(k int) bool {
		sz, ok := firstCPSize(files[k].path)
		return ok && sz >= n
	})
	for k := max(j-1, 0); k < len(files); k++ {
		ents := scanFrameLog(files[k].path, cpFileMax, maxCheckpointSize, validCheckpoint).ents
		for _, e := range ents {
			if c, err := parseUnverified(e.data); err != nil || c.Size < n {
				continue
			}
			c, _, err := OpenCheckpoint(e.data, l.knownKeys())
			if err != nil {
				return Checkpoint{}, false, fmt.Errorf("the checkpoint covering record %d in %s does not verify (nothing pruned): %w", n-1, files[k].path, err)
			}
			return c, true, nil
		}
	}
	return Checkpoint{}, false, nil
}

// firstCPSize reads the size of the first checkpoint of a history file.
func firstCPSize(path string) (uint64, bool) {
	f, _, err := regfile.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var hdr [frameHeader]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return 0, false
	}
	fl, err := frameLen(hdr[:], maxCheckpointSize)
	if err != nil {
		return 0, false
	}
	b := make([]byte, fl)
	copy(b, hdr[:])
	if _, err := io.ReadFull(f, b[frameHeader:]); err != nil {
		return 0, false
	}
	_, data, _, err := decodeFrame(b, maxCheckpointSize)
	if err != nil {
		return 0, false
	}
	c, err := parseUnverified(data)
	return c.Size, err == nil
}

// PruneHistory returns the retention records of pruned.log whose
// signature verifies with keys, oldest first, and how many did not (or
// were damaged: verify names them). Reports state from it what retention
// removed, when and under which policy.
func (l *Ledger) PruneHistory(keys []note.Verifier) ([]PruneRecord, int) {
	s := scanFrameLog(filepath.Join(l.dir, "pruned.log"), frameLogMax, maxCheckpointSize, validPrune)
	bad := len(s.damage)
	var out []PruneRecord
	for _, e := range s.ents {
		n, err := note.Open(e.data, note.VerifierList(keys...))
		if err != nil {
			bad++
			continue
		}
		p, err := parsePruneText(n.Text)
		if err != nil {
			bad++
			continue
		}
		out = append(out, p)
	}
	return out, bad
}
