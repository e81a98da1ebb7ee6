package ledger

import (
	"fmt"
	"iter"
	"path/filepath"
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
	return func(yield func(HistoryEntry, error) bool) {
		files, err := listCPLogs(l.dir)
		if err != nil {
			yield(HistoryEntry{}, fmt.Errorf("ledger: checkpoint history: %w", err))
			return
		}
		for fi, f := range files {
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
