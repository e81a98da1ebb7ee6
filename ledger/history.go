package ledger

import (
	"fmt"
	"io"
	"iter"
	"path/filepath"
	"sort"
	"time"

	"github.com/trailguard/trailguard/internal/regfile"
)

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
// Entries that do not parse are skipped; a damaged file ends the
// iteration with an error naming it (Verify says more).
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
			ents, _, why := readFrameLog(f.path, maxCheckpointSize)
			for _, e := range ents {
				c, err := parseUnverified(e.data)
				if err != nil {
					continue
				}
				if !yield(HistoryEntry{Checkpoint: c, Signed: e.data, Shutdown: isShutdown(c)}, nil) {
					return
				}
			}
			// A torn tail of the newest file is what a crash leaves while
			// writing a checkpoint; anything else is damage.
			if why != nil && fi < len(files)-1 {
				yield(HistoryEntry{}, fmt.Errorf("ledger: checkpoint history %s: %w (run trailguard verify)", filepath.Base(f.path), why))
				return
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
