package proxy

import (
	"testing"
	"time"
)

// TestHalfRenewal: the deadline is set at the first use, 1.5×d ahead,
// and renewed only from d/2 after that, so that it is always d or more
// ahead of a use; reset makes the next use set it.
func TestHalfRenewal(t *testing.T) {
	const d = 10 * time.Second
	t0 := time.Unix(1_000_000, 0)
	var h halfRenewal
	h.d = d
	for _, tc := range []struct {
		at    time.Duration // after t0
		reset bool          // before the use
		set   bool
		want  time.Duration // the deadline, after t0
	}{
		{at: 0, set: true, want: 15 * time.Second},
		{at: time.Second},
		{at: 5*time.Second - 1},
		{at: 5 * time.Second, set: true, want: 20 * time.Second},
		{at: 6 * time.Second},
		{at: 7 * time.Second, reset: true, set: true, want: 22 * time.Second},
		{at: 11 * time.Second},
		{at: time.Minute, set: true, want: time.Minute + 15*time.Second},
	} {
		if tc.reset {
			h.reset()
		}
		dl, ok := h.due(t0.Add(tc.at))
		if ok != tc.set || ok && !dl.Equal(t0.Add(tc.want)) {
			t.Errorf("use at %v: deadline %v (set %v), want set %v at %v", tc.at, dl.Sub(t0), ok, tc.set, tc.want)
		}
	}
}
