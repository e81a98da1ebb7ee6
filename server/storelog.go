package server

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/trailguard/trailguard/internal/throttle"
	"github.com/trailguard/trailguard/ledger"
)

// noSpaceLogEvery is how often ingest refused for a full disk is logged:
// every shipper retries after its Retry-After for as long as the disk
// stays full, and a line per refused request would fill the log the
// operator reads (perhaps on the same disk).
const noSpaceLogEvery = time.Minute

// appendFailureLog logs failed ledger appends of ingest requests: every
// failure but a full disk's, and those once per noSpaceLogEvery with the
// requests and events refused since the last line. Its zero value is
// ready.
type appendFailureLog struct {
	once    sync.Once
	noSpace throttle.Gate // weights: events refused; Every set by gate
}

// gate is the full disk's Gate, its interval set on first use (the zero
// appendFailureLog is ready, as the Server holds it).
func (a *appendFailureLog) gate() *throttle.Gate {
	a.once.Do(func() { a.noSpace.Every = noSpaceLogEvery })
	return &a.noSpace
}

func (a *appendFailureLog) log(l *slog.Logger, now time.Time, what string, events int, err error) {
	if !errors.Is(err, ledger.ErrNoSpace) {
		l.Error(what+": ledger append failed", "events", events, "err", err)
		return
	}
	line, ok := a.gate().Note(now, uint64(events))
	if !ok {
		return
	}
	if line.Count == 1 { // nothing held back since the last line: none, or a minute without a refusal
		l.Error(what+": ledger append refused: disk full (while it lasts, logged once a minute with counts)", "events", events, "err", err)
		return
	}
	l.Error(what+": ledger appends still refused: disk full", "events", events,
		"refused_requests_since_last_line", line.Count-1, "refused_events_since_last_line", line.Sum-uint64(events),
		"since_last_line", line.Since.Round(time.Second).String(), "err", err)
}
