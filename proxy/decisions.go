package proxy

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
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
	// user is the user-name key of a Username decision ("" otherwise).
	user string
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
	nbits4  [33]int           // ranges held per IPv4 prefix length
	nbits6  [129]int          // and per IPv6 one
	users   map[string]*entry // user names (scope Username)
	// expiry orders the entries by their end, so that an update removes
	// the expired ones without a look at the others: sweeping every map
	// at each update took 22 ms at 100,000 addresses and 100,000 ranges,
	// the write lock held, and the request lane applies one update per
	// provisional block. Entries replaced or deleted since they were
	// pushed stay in it until their end (or the next rebuild) and are
	// skipped then.
	expiry expiryHeap
}

// expiryHeap is a min-heap of entries by their end (container/heap).
type expiryHeap []*entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(*entry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
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
		for p, ents := range b.ranges {
			kept := ents[:0]
			for _, e := range ents {
				if e.source != source {
					kept = append(kept, e)
					continue
				}
				b.nranges--
				b.rangeBits(p, -1)
				removed++
			}
			clear(ents[len(kept):])
			if len(kept) == 0 {
				delete(b.ranges, p)
			} else {
				b.ranges[p] = kept
			}
		}
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
		if i := slices.IndexFunc(b.ranges[p], func(e *entry) bool { return e.source == source }); i >= 0 {
			b.dropRange(p, b.ranges[p][i])
			removed++
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
			k := userKey(d.Value)
			if k == "" {
				continue
			}
			e := &entry{until: now.Add(dur), scenario: d.Scenario, origin: d.Origin, source: source, provisional: source == laneSource, user: k}
			if e.yields(b.users[k]) {
				b.users[k] = e
				heap.Push(&b.expiry, e)
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
				heap.Push(&b.expiry, e)
			}
		} else {
			// e takes the place of this source's decision on the range
			// and of a provisional one (at most one of each is held).
			for _, old := range slices.Clone(b.ranges[p]) {
				if old.source == source || old.provisional && !e.provisional {
					b.dropRange(p, old)
				}
			}
			b.ranges[p] = append(b.ranges[p], e)
			b.nranges++
			b.rangeBits(p, 1)
			heap.Push(&b.expiry, e)
		}
		added++
	}
	// Expired decisions are removed here rather than on lookups.
	for len(b.expiry) > 0 && !now.Before(b.expiry[0].until) {
		b.expire(heap.Pop(&b.expiry).(*entry))
	}
	// Replaced and deleted entries wait in the heap until their end; a
	// source that replaces its decisions again and again must not grow it
	// without bound.
	if live := len(b.ips) + b.nranges + len(b.users); len(b.expiry) > 2*live+1024 {
		b.rebuildExpiry()
	}
	b.setLens()
	return added, removed, errors.Join(errs...)
}

// expire removes e if it is still the entry held for its value (b.mu
// held): one replaced or deleted since is not.
func (b *Blocklist) expire(e *entry) {
	switch {
	case e.user != "":
		if b.users[e.user] == e {
			delete(b.users, e.user)
		}
	case e.prefix.IsSingleIP():
		if b.ips[e.prefix.Addr()] == e {
			delete(b.ips, e.prefix.Addr())
		}
	default:
		b.dropRange(e.prefix, e)
	}
}

// rebuildExpiry makes the heap hold exactly the entries in force (b.mu
// held).
func (b *Blocklist) rebuildExpiry() {
	h := b.expiry[:0]
	for _, e := range b.users {
		h = append(h, e)
	}
	for _, e := range b.ips {
		h = append(h, e)
	}
	for _, ents := range b.ranges {
		h = append(h, ents...)
	}
	clear(b.expiry[len(h):cap(b.expiry)])
	b.expiry = h
	heap.Init(&b.expiry)
}

// dropRange removes entry e of range p, if held (b.mu held).
func (b *Blocklist) dropRange(p netip.Prefix, e *entry) {
	ents := b.ranges[p]
	i := slices.Index(ents, e)
	if i < 0 {
		return
	}
	ents = slices.Delete(ents, i, i+1)
	b.nranges--
	b.rangeBits(p, -1)
	if len(ents) == 0 {
		delete(b.ranges, p)
	} else {
		b.ranges[p] = ents
	}
}

// rangeBits counts a range in or out of the prefix lengths in use.
func (b *Blocklist) rangeBits(p netip.Prefix, n int) {
	if p.Addr().Is4() {
		b.nbits4[p.Bits()] += n
	} else {
		b.nbits6[p.Bits()] += n
	}
}

// setLens sets the prefix lengths a lookup tries, longest first, from
// the ranges held (b.mu held).
func (b *Blocklist) setLens() {
	b.lens4, b.lens6 = b.lens4[:0], b.lens6[:0]
	for bits := 32; bits >= 0; bits-- {
		if b.nbits4[bits] > 0 {
			b.lens4 = append(b.lens4, bits)
		}
	}
	for bits := 128; bits >= 0; bits-- {
		if b.nbits6[bits] > 0 {
			b.lens6 = append(b.lens6, bits)
		}
	}
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
	// Client makes the requests (default: connection within streamWait,
	// answer headers within streamWait (streamStartupWait for the full
	// list), the body read while it keeps coming: no streamWait without
	// a byte, streamTotal in all).
	Client *http.Client
}

// streamWait bounds a poll's connection and answer headers, and each
// wait for more of its body; streamTotal bounds a whole poll. A startup
// poll's headers may take streamStartupWait: the full list is made
// before its first byte is sent (the test LAPI marshals 100,000
// decisions at once; seconds at load). A bound on the whole answer as
// short as streamWait is a rate: a full list of 100,000 decisions (~12 MB
// of JSON, seconds of decoding on a loaded core) was cut at 5 s, asked
// for again in full, and never applied.
const (
	streamWait        = 5 * time.Second
	streamStartupWait = time.Minute
	streamTotal       = 5 * time.Minute
)

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
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{Timeout: streamWait, KeepAlive: 30 * time.Second}).DialContext
		tr.TLSHandshakeTimeout = streamWait
		client = &http.Client{Transport: tr, Timeout: streamTotal}
		defer tr.CloseIdleConnections()
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

// progressReader reads r and pushes idle back by streamWait at every read
// that brought bytes.
type progressReader struct {
	r    io.Reader
	idle *time.Timer
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.idle.Reset(streamWait)
	}
	return n, err
}

func (s *StreamSource) poll(ctx context.Context, client *http.Client, base, ua string, startup bool) (Update, error) {
	// Every scope the gateway enforces: a stream serves Ip and Range
	// unless asked for others (CrowdSec's default), and user-name bans
	// made at the collector would never arrive.
	url := base + "?scopes=ip,range,username"
	if startup {
		url += "&startup=true"
	}
	// The headers come within wait, and the body is read while it keeps
	// coming: cut after streamWait without a byte.
	wait := streamWait
	if startup {
		wait = streamStartupWait
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(wait, func() {
		cancel(errors.New("no byte of the answer in time"))
	})
	defer idle.Stop()
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
	idle.Reset(streamWait)
	in := &progressReader{r: io.LimitReader(resp.Body, maxStreamBody), idle: idle}
	if err := json.NewDecoder(in).Decode(&body); err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return Update{}, fmt.Errorf("decision stream: answer cut: %w", cause)
		}
		return Update{}, fmt.Errorf("decision stream: bad answer: %w", err)
	}
	return Update{Full: startup, New: body.New, Deleted: body.Deleted}, nil
}
