package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/internal/ipnet"
	"github.com/trailguard/trailguard/internal/username"
	"github.com/trailguard/trailguard/ship"
)

// Decision is a block decision, as CrowdSec's Local API serves it to
// bouncers (GET /v1/decisions/stream): the gateway refuses every request
// from an address it covers until it expires.
type Decision struct {
	// ID is the decision's id at its origin (0 when it has none).
	ID int64 `json:"id,omitempty"`
	// Origin says who decided ("trailguard", "crowdsec", "cscli").
	Origin string `json:"origin,omitempty"`
	// Type is "ban"; other types (captcha) are not enforced.
	Type string `json:"type"`
	// Scope is "Ip", "Range" or "Username" (case-insensitive). A user
	// name is enforced on the requests that carry it: the Basic-auth user,
	// and the user of a configured login route.
	Scope string `json:"scope"`
	// Value is the address or CIDR.
	Value string `json:"value"`
	// Duration is the time left, a Go duration ("3h59m58s").
	Duration string `json:"duration"`
	// Scenario is the rule that decided.
	Scenario string `json:"scenario,omitempty"`
}

// Update is a change to the decisions a Source holds. With Full, New is
// every decision the source has and replaces what it had before
// (CrowdSec's startup=true); otherwise New adds and Deleted removes.
type Update struct {
	Full    bool
	New     []Decision
	Deleted []Decision
}

// Source feeds decisions to the gateway: Run calls apply with each update
// until ctx ends, and health when it becomes reachable or unreachable
// (err nil when it is back). While a source is unreachable its last
// decisions stay in force.
type Source interface {
	Name() string
	Run(ctx context.Context, apply func(Update), health func(err error))
}

// entry is one enforced decision.
type entry struct {
	prefix   netip.Prefix
	until    time.Time
	scenario string
	origin   string
	source   string
	// provisional: enforced from the request path before detection's
	// decision (laneSource); any other decision on the value replaces it.
	provisional bool
}

// yields reports whether old gives way to e for the same value: a
// decision that bans longer, or a real one over a provisional one.
func (e *entry) yields(old *entry) bool {
	return old == nil || old.until.Before(e.until) || old.provisional && !e.provisional
}

// Blocklist holds the decisions in force. Lookups take a read lock and,
// when nothing is blocked, not even that.
type Blocklist struct {
	now   func() time.Time
	count atomic.Int64
	nuser atomic.Int64

	mu  sync.RWMutex
	ips map[netip.Addr]*entry // single addresses
	// ranges holds the CIDRs by network (each source's decision on it),
	// lens4 and lens6 the prefix lengths among them, longest first: a
	// lookup is one map look-up per length in use, not a look at every
	// range. A list scanned at each request cost 1 ms per request at
	// 100,000 ranges (decisions.max_active; every IPv6 host's ban is its
	// /64), and a full list took 16 s to apply, the lock held meanwhile.
	ranges  map[netip.Prefix][]*entry
	nranges int
	lens4   []int
	lens6   []int
	users   map[string]*entry // user names (scope Username)
}

// NewBlocklist returns an empty blocklist on the given clock (nil:
// time.Now).
func NewBlocklist(now func() time.Time) *Blocklist {
	if now == nil {
		now = time.Now
	}
	return &Blocklist{now: now, ips: map[netip.Addr]*entry{}, ranges: map[netip.Prefix][]*entry{}, users: map[string]*entry{}}
}

// Blocked returns the decision covering a, if one is in force.
func (b *Blocklist) Blocked(a netip.Addr) (scenario, origin string, until time.Time, ok bool) {
	if b.count.Load() == 0 || !a.IsValid() {
		return "", "", time.Time{}, false
	}
	// A link-local peer's address carries its zone (fe80::1%eth0); the
	// decisions are held without one, as a ban names the host, not the
	// interface it came in on.
	a = a.Unmap().WithZone("")
	now := b.now()
	b.mu.RLock()
	defer b.mu.RUnlock()
	if e := b.ips[a]; e != nil && now.Before(e.until) {
		return e.scenario, e.origin, e.until, true
	}
	lens := b.lens6
	if a.Is4() {
		lens = b.lens4
	}
	for _, bits := range lens {
		p, _ := a.Prefix(bits)
		for _, e := range b.ranges[p] {
			if now.Before(e.until) {
				return e.scenario, e.origin, e.until, true
			}
		}
	}
	return "", "", time.Time{}, false
}

// BlockedUser returns the decision covering a user name (scope Username),
// if one is in force.
func (b *Blocklist) BlockedUser(name string) (scenario, origin string, until time.Time, ok bool) {
	if b.nuser.Load() == 0 || name == "" {
		return "", "", time.Time{}, false
	}
	now := b.now()
	b.mu.RLock()
	defer b.mu.RUnlock()
	if e := b.users[userKey(name)]; e != nil && now.Before(e.until) {
		return e.scenario, e.origin, e.until, true
	}
	return "", "", time.Time{}, false
}

// covers reports whether a decision on d's value is already in force
// (whatever its length).
func (b *Blocklist) covers(d Decision) bool {
	if isUserScope(d.Scope) {
		_, _, _, ok := b.BlockedUser(d.Value)
		return ok
	}
	p, err := d.prefix()
	if err != nil {
		return false
	}
	if p.IsSingleIP() {
		_, _, _, ok := b.Blocked(p.Addr())
		return ok
	}
	now := b.now()
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, e := range b.ranges[p] {
		if now.Before(e.until) {
			return true
		}
	}
	return false
}

// hasUsers reports whether any user-name decision is held.
func (b *Blocklist) hasUsers() bool { return b.nuser.Load() > 0 }

// Len is the number of decisions held (expired ones included until the
// next update sweeps them).
func (b *Blocklist) Len() int { return int(b.count.Load() + b.nuser.Load()) }

// Apply applies an update from the named source and reports how many
// decisions it added and removed; decisions it cannot enforce (unknown
// scope or type, bad value) are skipped and reported in err.
func (b *Blocklist) Apply(source string, u Update) (added, removed int, err error) {
	now := b.now()
	var errs []error
	b.mu.Lock()
	defer func() {
		b.count.Store(int64(len(b.ips) + b.nranges))
		b.nuser.Store(int64(len(b.users)))
		b.mu.Unlock()
	}()
	if u.Full {
		for n, e := range b.users {
			if e.source == source {
				delete(b.users, n)
				removed++
			}
		}
		for a, e := range b.ips {
			if e.source == source {
				delete(b.ips, a)
				removed++
			}
		}
		removed += b.keepRanges(func(e *entry) bool { return e.source != source })
	}
	for _, d := range u.Deleted {
		if isUserScope(d.Scope) {
			if e := b.users[userKey(d.Value)]; e != nil && e.source == source {
				delete(b.users, userKey(d.Value))
				removed++
			}
			continue
		}
		p, err := d.prefix()
		if err != nil {
			continue
		}
		if p.IsSingleIP() {
			if e := b.ips[p.Addr()]; e != nil && e.source == source {
				delete(b.ips, p.Addr())
				removed++
			}
			continue
		}
		ents := b.ranges[p]
		if i := slices.IndexFunc(ents, func(e *entry) bool { return e.source == source }); i >= 0 {
			ents = slices.Delete(ents, i, i+1)
			b.nranges--
			removed++
			if len(ents) == 0 {
				delete(b.ranges, p)
			} else {
				b.ranges[p] = ents
			}
		}
	}
	for _, d := range u.New {
		if !strings.EqualFold(d.Type, "ban") {
			errs = append(errs, fmt.Errorf("decision %s %s: type %q is not enforced (only ban)", d.Scope, d.Value, d.Type))
			continue
		}
		dur, err := time.ParseDuration(d.Duration)
		if err != nil {
			errs = append(errs, fmt.Errorf("decision %s %s: duration %q: %v", d.Scope, d.Value, d.Duration, err))
			continue
		}
		if dur <= 0 {
			continue
		}
		if isUserScope(d.Scope) {
			if userKey(d.Value) == "" {
				continue
			}
			e := &entry{until: now.Add(dur), scenario: d.Scenario, origin: d.Origin, source: source, provisional: source == laneSource}
			if k := userKey(d.Value); e.yields(b.users[k]) {
				b.users[k] = e
			}
			added++
			continue
		}
		p, err := d.prefix()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e := &entry{prefix: p, until: now.Add(dur), scenario: d.Scenario, origin: d.Origin, source: source, provisional: source == laneSource}
		if p.IsSingleIP() {
			if e.yields(b.ips[p.Addr()]) {
				b.ips[p.Addr()] = e
			}
		} else {
			replaced := false
			ents := b.ranges[p]
			for i, old := range ents {
				if old.source == source || old.provisional && !e.provisional {
					ents[i], replaced = e, true
				}
			}
			if !replaced {
				b.ranges[p] = append(ents, e)
				b.nranges++
			}
		}
		added++
	}
	// Expired decisions are swept here rather than on lookups.
	for n, e := range b.users {
		if !now.Before(e.until) {
			delete(b.users, n)
		}
	}
	for a, e := range b.ips {
		if !now.Before(e.until) {
			delete(b.ips, a)
		}
	}
	b.keepRanges(func(e *entry) bool { return now.Before(e.until) })
	return added, removed, errors.Join(errs...)
}

// keepRanges keeps the ranges' entries for which keep is true, sets the
// prefix lengths in use anew and returns how many it dropped (b.mu held).
func (b *Blocklist) keepRanges(keep func(*entry) bool) (dropped int) {
	var in4 [33]bool
	var in6 [129]bool
	for p, ents := range b.ranges {
		kept := ents[:0]
		for _, e := range ents {
			if keep(e) {
				kept = append(kept, e)
			}
		}
		dropped += len(ents) - len(kept)
		clear(ents[len(kept):])
		if len(kept) == 0 {
			delete(b.ranges, p)
			continue
		}
		if len(kept) < len(ents) {
			b.ranges[p] = kept
		}
		if p.Addr().Is4() {
			in4[p.Bits()] = true
		} else {
			in6[p.Bits()] = true
		}
	}
	b.nranges -= dropped
	b.lens4, b.lens6 = b.lens4[:0], b.lens6[:0]
	for bits := 32; bits >= 0; bits-- {
		if in4[bits] {
			b.lens4 = append(b.lens4, bits)
		}
	}
	for bits := 128; bits >= 0; bits-- {
		if in6[bits] {
			b.lens6 = append(b.lens6, bits)
		}
	}
	return dropped
}

func isUserScope(scope string) bool { return strings.EqualFold(scope, "username") }

// userKey is how a user-name decision and a request's user are compared:
// as one account (username.Key: any case, spaces around, characters whose
// NFKC form is ASCII), the same key detection groups failed logins by.
func userKey(name string) string { return username.Key(name) }

func (d Decision) prefix() (netip.Prefix, error) {
	switch strings.ToLower(d.Scope) {
	case "ip":
		v := strings.TrimSpace(d.Value)
		if strings.Contains(v, "/") {
			return netip.Prefix{}, fmt.Errorf("decision Ip %q: not an address", d.Value)
		}
		p, err := ipnet.Parse(v)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("decision Ip: %w", err)
		}
		return p, nil
	case "range":
		v := strings.TrimSpace(d.Value)
		if !strings.Contains(v, "/") {
			return netip.Prefix{}, fmt.Errorf("decision Range %q: not a CIDR", d.Value)
		}
		p, err := ipnet.Parse(v)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("decision Range: %w", err)
		}
		return p, nil
	}
	return netip.Prefix{}, fmt.Errorf("decision %s %q: scope is not enforced by the gateway (Ip, Range and Username are)", d.Scope, d.Value)
}

// StreamSource polls a CrowdSec-compatible Local API decision stream
// (GET /v1/decisions/stream, X-Api-Key): trailguard's collector, or
// CrowdSec's own LAPI. The first call, and the first after an outage, ask
// for every active decision (startup=true); the others for the changes.
type StreamSource struct {
	// URL is the API's base URL (…/v1/decisions/stream is appended).
	URL string
	// APIKey is sent as X-Api-Key.
	APIKey string
	// Interval is the time between polls (default 50ms).
	Interval time.Duration
	// Client makes the requests (default: a client with a 5s timeout).
	Client *http.Client
}

// Name implements Source.
func (s *StreamSource) Name() string { return "stream:" + s.URL }

// maxStreamBody bounds a stream answer: a million decisions of ~200 bytes.
const maxStreamBody = 256 << 20

// Run implements Source.
func (s *StreamSource) Run(ctx context.Context, apply func(Update), health func(error)) {
	interval := s.Interval
	if interval <= 0 {
		interval = 50 * time.Millisecond
	}
	client := s.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	base := strings.TrimRight(s.URL, "/") + "/v1/decisions/stream"
	// The collector keeps a bouncer's place in the stream by its key,
	// address and User-Agent: a name of this run's own, which no one
	// else polling with the same key from the same address (a thief, a
	// shared NAT, a load balancer in front of the collector) can guess,
	// so that no one else takes the changes this gateway has not heard.
	var id [16]byte
	rand.Read(id[:])
	ua := "trailguard-proxy (stream " + hex.EncodeToString(id[:]) + ")"
	startup, down := true, false
	var retry time.Duration
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		u, err := s.poll(ctx, client, base, ua, startup)
		wait := interval
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !down {
				down = true
				health(err)
			}
			// After an outage the collector may have lost track of what
			// this bouncer saw: start over with the full list. Polls slow
			// down while it is away, to a second at most, so that its
			// return is noticed within a second.
			startup = true
			retry = min(max(2*retry, interval), time.Second)
			wait = retry
		default:
			apply(u)
			startup, retry = false, 0
			if down {
				down = false
				health(nil)
			}
		}
		t.Reset(wait)
	}
}

func (s *StreamSource) poll(ctx context.Context, client *http.Client, base, ua string, startup bool) (Update, error) {
	// Every scope the gateway enforces: a stream serves Ip and Range
	// unless asked for others (CrowdSec's default), and user-name bans
	// made at the collector would never arrive.
	url := base + "?scopes=ip,range,username"
	if startup {
		url += "&startup=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Update{}, err
	}
	req.Header.Set("X-Api-Key", s.APIKey)
	req.Header.Set("User-Agent", ua)
	resp, err := client.Do(req)
	if err != nil {
		return Update{}, fmt.Errorf("decision stream: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return Update{}, fmt.Errorf("decision stream: %w: %s", &ship.StatusError{Code: resp.StatusCode, Status: resp.Status}, strings.TrimSpace(string(b)))
	}
	var body struct {
		New     []Decision `json:"new"`
		Deleted []Decision `json:"deleted"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxStreamBody)).Decode(&body); err != nil {
		return Update{}, fmt.Errorf("decision stream: bad answer: %w", err)
	}
	return Update{Full: startup, New: body.New, Deleted: body.Deleted}, nil
}
