package server

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/trailguard/trailguard/ledger"
)

// noSpaceLogEvery is how often ingest refused for a full disk is logged:
// every shipper retries after its Retry-After for as long as the disk
// stays full, and a line per refused request would fill the log the
// operator reads (perhaps on the same disk).
const noSpaceLogEvery = time.Minute

// appendFailureLog logs failed ledger appends of ingest requests: every
// failure but a full disk's, and those once per noSpaceLogEvery with the
// requests and events refused since the last line.
type appendFailureLog struct {
	mu       sync.Mutex
	last     time.Time // the last line about a full disk
	requests uint64    // refused requests since then, unlogged
	events   uint64
}

func (a *appendFailureLog) log(l *slog.Logger, now time.Time, what string, events int, err error) {
	if !errors.Is(err, ledger.ErrNoSpace) {
		l.Error(what+": ledger append failed", "events", events, "err", err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.last.IsZero() && now.Sub(a.last) < noSpaceLogEvery {
		a.requests++
		a.events += uint64(events)
		return
	}
	if a.last.IsZero() || a.requests == 0 {
		l.Error(what+": ledger append refused: disk full (while it lasts, logged once a minute with counts)", "events", events, "err", err)
	} else {
		l.Error(what+": ledger appends still refused: disk full", "events", events,
			"refused_requests_since_last_line", a.requests, "refused_events_since_last_line", a.events,
			"since_last_line", now.Sub(a.last).Round(time.Second).String(), "err", err)
	}
	a.last, a.requests, a.events = now, 0, 0
}
