package proxy

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// ActionAuditUnrecorded is event.action of the once-a-minute summary of
// refused requests that were counted but not recorded one by one, as the
// collector names its own.
const ActionAuditUnrecorded = "audit_events_unrecorded"

// sampler decides which refused requests (blocked, rate limited) are
// recorded one by one: at most perAddr per client address and total in
// all per window. A blocked attacker keeps sending; recording every
// refusal would let it fill the disk, recording none would hide it. The
// others are counted per address and summarised at the end of the window.
type sampler struct {
	perAddr, total, maxKeys int

	mu       sync.Mutex
	start    time.Time
	recorded int
	skipped  uint64
	byKey    map[netip.Addr]*sampleCount
	other    sampleCount // addresses beyond maxKeys
}

type sampleCount struct {
	recorded, skipped int
	reasons           map[string]int
}

func newSampler(perAddr, total int, now time.Time) *sampler {
	return &sampler{perAddr: perAddr, total: total, maxKeys: 10000, start: now, byKey: map[netip.Addr]*sampleCount{}}
}

// allow reports whether one more refusal of addr (for reason) is
// recorded, and counts it.
func (s *sampler) allow(addr netip.Addr, reason string) bool {
	key := limitKey(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.byKey[key]
	if c == nil {
		if len(s.byKey) >= s.maxKeys {
			c = &s.other
		} else {
			c = &sampleCount{}
			s.byKey[key] = c
		}
	}
	if c != &s.other && c.recorded < s.perAddr && s.recorded < s.total {
		c.recorded++
		s.recorded++
		return true
	}
	c.skipped++
	s.skipped++
	if c.reasons == nil {
		c.reasons = map[string]int{}
	}
	if len(c.reasons) < 8 {
		c.reasons[reason]++
	}
	return false
}

// summary is what a window left unrecorded.
type summary struct {
	From, To   time.Time
	Unrecorded uint64
	Addresses  int
	Top        []addrSkipped
}

type addrSkipped struct {
	Address    string         `json:"address"`
	Unrecorded int            `json:"unrecorded"`
	Reasons    map[string]int `json:"reasons,omitempty"`
}

// roll closes the window at now; ok is false when nothing went
// unrecorded.
func (s *sampler) roll(now time.Time) (sum summary, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum = summary{From: s.start, To: now, Unrecorded: s.skipped}
	if s.skipped > 0 {
		for k, c := range s.byKey {
			if c.skipped > 0 {
				sum.Addresses++
				sum.Top = append(sum.Top, addrSkipped{k.String(), c.skipped, c.reasons})
			}
		}
		if s.other.skipped > 0 {
			sum.Top = append(sum.Top, addrSkipped{"other", s.other.skipped, s.other.reasons})
		}
		slices.SortFunc(sum.Top, func(a, b addrSkipped) int {
			return cmp.Or(cmp.Compare(b.Unrecorded, a.Unrecorded), cmp.Compare(a.Address, b.Address))
		})
		sum.Top = sum.Top[:min(len(sum.Top), 20)]
	}
	s.start, s.recorded, s.skipped, s.other = now, 0, 0, sampleCount{}
	clear(s.byKey)
	return sum, sum.Unrecorded > 0
}
