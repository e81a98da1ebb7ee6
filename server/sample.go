package server

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/httpaudit"
)

// ActionAuditUnrecorded is event.action of the collector's summary of the
// events it chose not to record (see RefusedAuditPerMinute).
const ActionAuditUnrecorded = "audit_events_unrecorded"

// sampler decides which requests without a valid token (refused with 401,
// 403 or 429, or anonymous like /healthz) are recorded in the collector's
// own trail: at most perAddr per client address and total for all
// addresses in each window. Anyone can send such requests, so recording
// all of them would let anyone fill the disk; recording none would hide an
// attack. The rest are counted, per address, and summarised once per
// window in one event.
type sampler struct {
	perAddr, total int
	maxKeys        int

	mu       sync.Mutex
	start    time.Time
	recorded int
	byKey    map[string]*sampleCount
	skipped  uint64

	unrecorded atomic.Uint64 // since start, for /metrics
}

type sampleCount struct{ recorded, skipped int }

// sampleOther is where addresses go once maxKeys are tracked in a window.
const sampleOther = "other"

func newSampler(perAddr, total int, now time.Time) *sampler {
	return &sampler{perAddr: perAddr, total: total, maxKeys: 10000, start: now, byKey: map[string]*sampleCount{}}
}

// sampleKey is the address a budget belongs to: an IPv4 address, or the
// /64 of an IPv6 address (one host usually holds a whole /64).
func sampleKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// allow reports whether the events of one more request from addr are
// recorded, and counts it.
func (s *sampler) allow(addr string) bool {
	key := sampleKey(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.byKey[key]
	if c == nil {
		if len(s.byKey) >= s.maxKeys {
			key = sampleOther
			if c = s.byKey[key]; c == nil {
				c = &sampleCount{}
				s.byKey[key] = c
			}
		} else {
			c = &sampleCount{}
			s.byKey[key] = c
		}
	}
	if key != sampleOther && c.recorded < s.perAddr && s.recorded < s.total {
		c.recorded++
		s.recorded++
		return true
	}
	c.skipped++
	s.skipped++
	s.unrecorded.Add(1)
	return false
}

// unrecordedSummary is what the periodic summary event says.
type unrecordedSummary struct {
	From, To   time.Time
	Unrecorded uint64
	Addresses  int
	Top        []addrSkipped
}

type addrSkipped struct {
	Address    string `json:"address"`
	Unrecorded int    `json:"unrecorded"`
}

// roll ends the current window at now and returns what it left out, with
// ok false when everything was recorded.
func (s *sampler) roll(now time.Time) (sum unrecordedSummary, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum = unrecordedSummary{From: s.start, To: now, Unrecorded: s.skipped}
	if s.skipped > 0 {
		for k, c := range s.byKey {
			if c.skipped > 0 {
				sum.Addresses++
				sum.Top = append(sum.Top, addrSkipped{k, c.skipped})
			}
		}
		slices.SortFunc(sum.Top, func(a, b addrSkipped) int {
			return cmp.Or(cmp.Compare(b.Unrecorded, a.Unrecorded), cmp.Compare(a.Address, b.Address))
		})
		sum.Top = sum.Top[:min(len(sum.Top), 20)]
	}
	s.start, s.recorded, s.skipped = now, 0, 0
	clear(s.byKey)
	return sum, sum.Unrecorded > 0
}

// summarizeUnrecorded closes the sampling window and, if requests went
// unrecorded in it, records one event saying how many and from where.
func (s *Server) summarizeUnrecorded(now time.Time) {
	sum, ok := s.sampler.roll(now)
	if !ok {
		return
	}
	attrs, _ := json.Marshal(map[string]any{
		"unrecorded": sum.Unrecorded, "addresses": sum.Addresses, "top": sum.Top,
		"window_start": sum.From.UTC(), "window_end": sum.To.UTC(),
		"per_address_limit": s.sampler.perAddr, "total_limit": s.sampler.total,
	})
	ev := &event.Event{
		Kind: event.KindEvent, Category: []string{event.CategoryWeb}, Type: []string{event.TypeInfo},
		Action: ActionAuditUnrecorded, Outcome: event.OutcomeUnknown, Dataset: event.DatasetAudit,
		Message: fmt.Sprintf("%d requests without a valid token from %d addresses were not recorded between %s and %s (limits: %d per address, %d in all)",
			sum.Unrecorded, sum.Addresses, sum.From.UTC().Format(time.RFC3339), sum.To.UTC().Format(time.RFC3339), s.sampler.perAddr, s.sampler.total),
		Attrs: attrs,
	}
	if err := s.audit.Log(context.Background(), ev); err != nil {
		s.log.Error("summary of unrecorded requests not recorded", "unrecorded", sum.Unrecorded, "err", err)
	}
}

// sampleLoop summarises unrecorded requests once a minute until stop.
func (s *Server) sampleLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			s.summarizeUnrecorded(now)
		case <-stop:
			s.summarizeUnrecorded(time.Now())
			return
		}
	}
}

// reqMark travels with a request so that the decision to record it is
// taken once: by requireRole for a refused request (its access event and
// its authn_login_fail event go together), or after the handler for a
// request that presented no token at all.
type reqMark struct {
	mu         sync.Mutex
	authorized bool // a valid token with the needed role
	decided    bool
	record     bool
}

type markKey struct{}

func markFrom(ctx context.Context) *reqMark {
	m, _ := ctx.Value(markKey{}).(*reqMark)
	return m
}

// shouldRecord decides, once per request, whether a request without a
// valid token is recorded.
func (s *Server) shouldRecord(m *reqMark, addr string) bool {
	if m == nil {
		return s.sampler.allow(addr)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.decided {
		m.decided, m.record = true, s.sampler.allow(addr)
	}
	return m.record
}

func (m *reqMark) setAuthorized() {
	m.mu.Lock()
	m.authorized = true
	m.mu.Unlock()
}

// sampleUnauthorized wraps the routes: a request that ends without a
// valid token having been accepted for it has its access event recorded
// only within the sampling budget.
func (s *Server) sampleUnauthorized(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := &reqMark{}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), markKey{}, m)))
		m.mu.Lock()
		authorized := m.authorized
		m.mu.Unlock()
		if !authorized && !s.shouldRecord(m, clientAddr(r)) {
			httpaudit.Discard(r.Context())
		}
	})
}
