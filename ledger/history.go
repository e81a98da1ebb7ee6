package ledger

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"path/filepath"
	"sort"
	"time"

	"github.com/trailguard/trailguard/internal/regfile"
)

// ErrHistoryDamaged is yielded (wrapped) by History for each damaged
// stretch of the checkpoint history; the iteration goes on after it with
// the valid checkpoints that follow, for a caller that continues.
var ErrHistoryDamaged = errors.New("ledger: checkpoint history damaged")

// HistoryEntry is one checkpoint of the ledger's checkpoint history.
type HistoryEntry struct {
	Checkpoint
	// Signed is the signed note as stored. History does not check
	// signatures (Verify does; see OpenCheckpoint).
	Signed []byte
	// Shutdown marks the checkpoint a clean Close made: a gap in the
	// cadence after it is a planned stop.
	Shutdown bool
}

// History returns every checkpoint of the ledger's history, oldest first,
// parsed but not verified, one history file in memory at a time (4 MiB).
// Entries that do not parse are skipped; damage is yielded as an error
// wrapping ErrHistoryDamaged, naming the file and bytes (Verify says
// more), and the checkpoints after it follow.
//
// Reports use it to map a period onto the ledger (the checkpoints signed
// around its start and end) and to find gaps in the checkpoint cadence.
func (l *Ledger) History() iter.Seq2[HistoryEntry, error] {
	return l.HistoryFrom(time.Time{})
}

// HistoryFrom is History from the newest checkpoint signed at or before
// since on (possibly a few earlier ones): the history files before it are
// skipped after reading only their first checkpoint, so that a report over
// last month does not read a year of history (~8 GB at one checkpoint a
// second).
func (l *Ledger) HistoryFrom(since time.Time) iter.Seq2[HistoryEntry, error] {
	return func(yield func(HistoryEntry, error) bool) {
		files, err := listCPLogs(l.dir)
		if err != nil {
			yield(HistoryEntry{}, fmt.Errorf("ledger: checkpoint history: %w", err))
			return
		}
		// The last file whose first checkpoint is at or before since
		// holds the newest checkpoint at or before it (times only grow).
		skip := 0
		if !since.IsZero() {
			skip = sort.Search(len(files), func(i int) bool {
				t, ok := firstCheckpointTime(files[i].path)
				return !ok || t.After(since)
			}) - 1
			skip = max(skip, 0)
		}
		for fi, f := range files {
			if fi < skip {
				continue
			}
			s := scanFrameLog(f.path, cpFileMax, maxCheckpointSize, validCheckpoint)
			for _, e := range s.ents {
				c, err := parseUnverified(e.data)
				if err != nil {
					continue
				}
				if !yield(HistoryEntry{Checkpoint: c, Signed: e.data, Shutdown: isShutdown(c)}, nil) {
					return
				}
			}
			// A torn tail of the newest file is what a crash leaves while
			// writing a checkpoint; anything else is damage (the valid
			// checkpoints after it were yielded first).
			dmg := s.damage
			if fi == len(files)-1 {
				dmg = s.inner()
			}
			if s.err != nil && !yield(HistoryEntry{}, fmt.Errorf("%w: %s: %v (run trailguard verify)", ErrHistoryDamaged, filepath.Base(f.path), s.err)) {
				return
			}
			for _, d := range dmg {
				if !yield(HistoryEntry{}, fmt.Errorf("%w: %s: %v (run trailguard verify)", ErrHistoryDamaged, filepath.Base(f.path), d)) {
					return
				}
			}
		}
	}
}

// firstCheckpointTime reads the signed time of the first checkpoint of a
// history file, reading only that frame.
func firstCheckpointTime(path string) (time.Time, bool) {
	f, _, err := regfile.Open(path)
	if err != nil {
		return time.Time{}, false
	}
	defer f.Close()
	buf := make([]byte, frameOverhead+maxCheckpointSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF {
		return time.Time{}, false
	}
	_, rec, _, err := decodeFrame(buf[:n], maxCheckpointSize)
	if err != nil {
		return time.Time{}, false
	}
	c, err := parseUnverified(rec)
	if err != nil {
		return time.Time{}, false
	}
	return c.Time, true
}
