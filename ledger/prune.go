package ledger

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
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
	// Newest is the append time of the newest deleted record.
	Newest time.Time
	// At is when the records were deleted.
	At time.Time
}

const pruneHeader = "trailguard prune v1"

func (p PruneRecord) marshal() []byte {
	return fmt.Appendf(nil, "%s\n%s\n%d %d\npolicy %s\nnewest %s\nat %s\n", pruneHeader, p.Origin, p.Start, p.End,
		p.Policy, p.Newest.UTC().Format(time.RFC3339Nano), p.At.UTC().Format(time.RFC3339Nano))
}

func parsePruneText(text string) (PruneRecord, error) {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	bad := errors.New("ledger: malformed prune record")
	if len(lines) != 6 || lines[0] != pruneHeader {
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
	for i, dst := range []*time.Time{&p.Newest, &p.At} {
		v, ok := strings.CutPrefix(lines[4+i], []string{"newest ", "at "}[i])
		if !ok {
			return PruneRecord{}, bad
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return PruneRecord{}, bad
		}
		*dst = t
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

// Prune deletes, oldest first, every closed segment whose newest record is
// older than the retention period, unless LegalHold is set. Before deleting
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
		newest, err := s.lastTime()
		if err != nil {
			return done, fmt.Errorf("ledger: retention: %w", err)
		}
		now := l.opts.Now()
		if !p.Expired(newest, now) {
			return done, nil
		}
		end := s.first + count
		if floor := l.opts.PruneFloor; floor != nil && end > floor() {
			return done, nil // a reader still needs records of it
		}
		// The leaf hashes of the deleted records must outlive them: the
		// tiles covering them must be full (written) and durable.
		hi := (end + tileWidth - 1) / tileWidth * tileWidth
		if err := l.tiles.syncLeafTiles(s.first/tileWidth*tileWidth, hi); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return done, nil // tiles not written yet; next time
			}
			return done, fmt.Errorf("ledger: retention: %w", err)
		}
		rec := PruneRecord{Origin: l.opts.Origin, Start: s.first, End: end, Policy: p.String(), Newest: newest, At: now}
		signed, err := note.Sign(&note.Note{Text: string(rec.marshal())}, l.opts.Signer)
		if err != nil {
			return done, fmt.Errorf("ledger: retention: %w", err)
		}
		if err := appendFrameLog(filepath.Join(l.dir, "pruned.log"), now.UnixNano(), signed); err != nil {
			return done, fmt.Errorf("ledger: retention: %w", err)
		}
		l.segMu.Lock()
		l.segs = l.segs[1:]
		l.pruned = end
		l.segMu.Unlock()
		s.closeRead()
		if err := os.Remove(s.path); err != nil {
			return done, fmt.Errorf("ledger: retention: %w", err)
		}
		os.Remove(idxPath(s.path))
		if err := syncFile(l.segDir); err != nil {
			return done, fmt.Errorf("ledger: retention: %w", err)
		}
		l.opts.Logger.Info("ledger: pruned by retention policy", "dir", l.dir, "from", rec.Start, "to", rec.End, "policy", rec.Policy, "newest", rec.Newest)
		done = append(done, rec)
	}
}
