package server

import (
	"sync"
	"time"
)

// pollSampler decides which of a bouncer's decision-stream polls that
// bring nothing are recorded: the first of each minute per bouncer. A
// gateway polls every 50 ms, so recording each empty poll put 20 records a
// second per gateway into the ledger (1.7 million a day, kept as long as
// the retention), drowning the trail and its disk in nothing; a poll that
// delivers decisions, a startup poll and a refused one are always
// recorded, and each bouncer still shows in the trail once a minute.
type pollSampler struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// pollBouncers bounds the bouncers remembered; past it the memory starts
// over (a few more polls recorded, never fewer).
const pollBouncers = 4096

// record reports whether this empty poll of bouncer is to be recorded.
func (p *pollSampler) record(bouncer string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil || len(p.last) >= pollBouncers {
		p.last = map[string]time.Time{}
	}
	if t, ok := p.last[bouncer]; ok && now.Sub(t) < time.Minute && now.After(t) {
		return false
	}
	p.last[bouncer] = now
	return true
}
