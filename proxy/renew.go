package proxy

import (
	"sync/atomic"
	"time"
)

// halfRenewal keeps a deadline d or more ahead of each use without
// changing it at every use: the deadline is set 1.5×d ahead, and renewed
// only once half of d has passed since it was last set. The gateway's
// per-write and per-read timeouts (timeouts.write on a connection,
// wtConn, and on an HTTP/2 stream, exchange; timeouts.body, timedBody)
// all use it: a busy connection pays a clock read per use and a deadline
// change every d/2. An operation that starts at t and makes no progress
// thus fails between t+d and t+1.5×d.
//
// It is safe for concurrent use (a wtConn's writes and its
// SetWriteDeadline may race); the others have one user at a time.
type halfRenewal struct {
	d     time.Duration
	renew atomic.Int64 // UnixNano from which the deadline is renewed (0: at the next use)
}

// due returns the deadline to set for a use at now, or false if the one
// set last is still d or more away.
func (h *halfRenewal) due(now time.Time) (time.Time, bool) {
	n := now.UnixNano()
	if n < h.renew.Load() {
		return time.Time{}, false
	}
	h.renew.Store(n + int64(h.d/2))
	return now.Add(h.d + h.d/2), true
}

// reset makes the next use set the deadline.
func (h *halfRenewal) reset() { h.renew.Store(0) }
