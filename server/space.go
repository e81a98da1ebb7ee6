package server

import (
	"context"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/ledger"
)

// spaceMonitor watches the free space of the data directory's file
// system, which the ledger (the trail), the index (a cache of it) and the
// collector's own audit events share. The ledger refuses appends below
// disk_reserve (ledger.Options.Reserve), keeping that much for its
// checkpoints and final shutdown checkpoint; the indexer holds back below
// twice that, so that a cache never takes the space the trail needs.
type spaceMonitor struct {
	dir     string
	reserve int64

	mu   sync.Mutex
	at   time.Time
	free int64

	indexPaused atomic.Bool
}

// free returns the bytes available on the data directory's file system,
// at most 100 ms old, or -1 when the platform cannot tell.
func (m *spaceMonitor) freeBytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if time.Since(m.at) > 100*time.Millisecond {
		m.free, m.at = ledger.FreeBytes(m.dir), time.Now()
	}
	return m.free
}

// belowReserve reports whether the ledger refuses appends for lack of
// space (disk full, or free space under disk_reserve).
func (m *spaceMonitor) belowReserve() bool {
	f := m.freeBytes()
	return f >= 0 && f < m.reserve
}

// indexMayWrite reports whether the indexer may take more space.
func (m *spaceMonitor) indexMayWrite() bool {
	f := m.freeBytes()
	return f < 0 || f >= 2*m.reserve
}

// gatedSource is the ledger as the indexer follows it: while free space
// is below twice disk_reserve it holds back the next record, so the index
// stops growing, and resumes by itself when space returns.
type gatedSource struct {
	*ledger.Ledger
	space *spaceMonitor
}

// gateEvery is how many records the indexer takes between two looks at
// the free space at most (a look per record, a lock and a clock reading,
// was half a percent of the collector's CPU under ingest load): a few
// KiB of index at most, and none appended more than freeBytes' 100 ms
// after the last look.
const gateEvery = 64

func (g gatedSource) Follow(ctx context.Context, from uint64) iter.Seq2[ledger.Entry, error] {
	return func(yield func(ledger.Entry, error) bool) {
		var looked time.Time // the append time of the record last looked at
		since := gateEvery
		for e, err := range g.Ledger.FollowAppended(ctx, from) {
			if err == nil {
				if since++; since < gateEvery && e.Time.Sub(looked) <= 100*time.Millisecond && e.Time.Sub(looked) >= 0 {
					if !yield(e, err) {
						return
					}
					continue
				}
				since, looked = 0, e.Time
			}
			if err == nil && !g.space.indexMayWrite() {
				g.space.indexPaused.Store(true)
				for !g.space.indexMayWrite() {
					select {
					case <-ctx.Done():
						yield(ledger.Entry{}, ctx.Err())
						return
					case <-time.After(200 * time.Millisecond):
					}
				}
				g.space.indexPaused.Store(false)
			}
			if !yield(e, err) {
				return
			}
		}
	}
}
