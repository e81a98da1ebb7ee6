// Package decision turns alerts into block decisions and serves them the
// way CrowdSec's Local API serves them to bouncers, so the many existing
// CrowdSec bouncers (nginx, Traefik, HAProxy, firewalls) and trailguard's
// own gateway enforce them unchanged.
//
// A rule asks for a block with its response field (see detect.Response):
// the value of one of the alert's fields (an address, a user name) is
// banned for the rule's duration, longer for each repeat offence (times
// Factor, at most Max), unless it is inside an allowlisted network. Every
// decision, and every deletion, is an event in the ledger (dataset
// trailguard.decision), so blocks are as tamper-evident as the trail; the
// Store is their state, saved in a small file and caught up from the
// ledger on start. The file is not trusted: each decision it holds names
// its ledger record, which must exist, verify and say the same thing, or
// the state is rebuilt from the ledger (see Open).
//
// Bouncers poll Stream: the first call (startup) gets every active
// decision, the next ones what changed since their previous call, expiries
// included.
package decision

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"math"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/trailguard/trailguard/detect"
	"github.com/trailguard/trailguard/internal/ipnet"
	"github.com/trailguard/trailguard/internal/regfile"
	"github.com/trailguard/trailguard/internal/statefile"
	"github.com/trailguard/trailguard/ledger"
)

// maxStateFile bounds the state file read whole at Open: 100,000
// decisions in force (the default MaxActive) are some 35 MB, so a larger
// file is not one the collector wrote.
const maxStateFile = 512 << 20

// Decision is a block decision.
type Decision struct {
	ID     int64  `json:"id"`
	UUID   string `json:"uuid"`
	Origin string `json:"origin"`
	// Type is "ban".
	Type string `json:"type"`
	// Scope is "Ip", "Range" or "Username"; Value the address, network or
	// user name.
	Scope string `json:"scope"`
	Value string `json:"value"`
	// Scenario names the rule (or "manual" for an operator's decision).
	Scenario string    `json:"scenario"`
	Created  time.Time `json:"created"`
	Until    time.Time `json:"until"`
	// AlertID is the alert that asked for it.
	AlertID string `json:"alert_id,omitempty"`
	// Offence counts the value's offences within Options.Memory (1 for a
	// first one); the ban grows with it.
	Offence int `json:"offence"`
	// Reason is the alert's message or the operator's note.
	Reason string `json:"reason,omitempty"`
	// By names who made or deleted it (an operator's token), "" for rules.
	By string `json:"by,omitempty"`
}

// Scopes.
const (
	ScopeIP    = "Ip"
	ScopeRange = "Range"
	ScopeUser  = "Username"
)

// Options configure a Store.
type Options struct {
	// Path is the state file (decisions.json in the data directory).
	Path string
	// Append stores a decision event durably (the ledger's Append).
	Append func(ctx context.Context, rec []byte) (uint64, error)
	// Default is the ban of a first offence when the rule names none
	// (1h); Max the longest ban (7 days); Factor multiplies the ban for
	// each repeat offence (4: 1h, 4h, 16h, …); Memory is how long an
	// offence counts (30 days).
	Default, Max time.Duration
	Factor       float64
	Memory       time.Duration
	// Allowlist holds networks that are never blocked.
	Allowlist []netip.Prefix
	// Now is the clock (time.Now).
	Now func() time.Time
	// MaxActive bounds the decisions in force (100,000), so a flood of
	// distinct attackers cannot exhaust memory or the bouncers' tables.
	// When it is reached, the rules' address bans that share a network
	// are widened into one ban of it to make room (see WidenAt); a new
	// decision is refused (and counted) only when no two of them do.
	MaxActive int
	// WidenAt is how many rules' bans inside one IPv6 /48 (of /64s and
	// narrower), or inside one /32 (of /48s), are widened into one ban of
	// that network (16; -1 never widens before MaxActive is reached). A
	// host is its /64, and whoever holds a /48 holds 65,536 of them: banned
	// one by one, an attacker of one /48 could fill MaxActive and so stop
	// every new ban, its own next /64s' and everyone else's.
	WidenAt int
	// Log receives the loud line about a state file the ledger does not
	// support (slog.Default()).
	Log *slog.Logger
}

func (o *Options) defaults() {
	if o.Default <= 0 {
		o.Default = time.Hour
	}
	if o.Max <= 0 {
		o.Max = 7 * 24 * time.Hour
	}
	if o.Factor < 1 {
		o.Factor = 4
	}
	if o.Memory <= 0 {
		o.Memory = 30 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxActive <= 0 {
		o.MaxActive = 100_000
	}
	if o.WidenAt == 0 {
		o.WidenAt = 16
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

// Stats counts what the Store did.
type Stats struct {
	Active                 int
	Created, Deleted       uint64
	Expired, Allowlisted   uint64
	Refused, ExtendedNoOps uint64
	// Widened counts the bans of networks made from the rules' bans of
	// narrower ones (WidenAt, or MaxActive reached).
	Widened uint64
	// Rejected counts decisions of the state file that the ledger did not
	// support at Open (edited on disk): they were never enforced.
	Rejected uint64
}

// change is one entry of the change log bouncers read.
type change struct {
	seq     uint64
	d       Decision
	deleted bool
}

// maxLog bounds the change log (up to 1.25 maxLog: it is trimmed a quarter
// at a time); a bouncer further behind gets a full list (as at startup).
const maxLog = 1 << 16

// Store holds the decisions in force. Its methods are safe for concurrent
// use.
type Store struct {
	o  Options
	mu sync.Mutex
	st state
	// log is the change log, oldest first; logStart the seq before its
	// first entry.
	log      []change
	logStart uint64
	seq      uint64
	pulls    map[string]pull // bouncer → its last pull (at most maxPulls)
	notify   chan struct{}
	stats    Stats
	byAlert  map[string]int64
	// saver saves the state file (Run, Flush), marked at each change.
	saver statefile.Saver
}

// state is what the state file holds.
type state struct {
	Through  uint64              `json:"through"` // ledger records before this are applied
	NextID   int64               `json:"next_id"`
	Active   []stored            `json:"active"`
	Offences map[string]offences `json:"offences"`
	// active is the decisions in force, each with the ledger index of its
	// creation record, and the indexes plan and expire use (inForce).
	active inForce
}

// stored is a decision in the state file with the ledger index of the
// record that created it; Open checks the record says the same thing.
type stored struct {
	Decision
	Index *uint64 `json:"ledger_index"`
}

type offences struct {
	N    int       `json:"n"`
	Last time.Time `json:"last"`
}

// Source is what Open catches up from: *ledger.Ledger satisfies it.
type Source interface {
	Entries(from uint64) iter.Seq2[ledger.Entry, error]
}

// Open loads the state file and applies the decision events the ledger
// holds after it (those written after its last save).
//
// The state file is checked against the ledger: each decision in it must
// name its creation record (ledger_index), which must exist, pass the
// ledger's check and create the same decision (id, scope, value, creation
// and end). A decision the ledger does not support — the file was edited,
// say to ban 0.0.0.0/0 — is never served: Open logs it at error level,
// appends a block_decision_rejected event to the ledger, and rebuilds the
// whole state from the ledger's decision events, which are the truth. A
// file from before ledger_index existed is rebuilt the same way, quietly.
func Open(o Options, src Source) (*Store, error) {
	o.defaults()
	s := &Store{o: o, pulls: map[string]pull{}, notify: make(chan struct{}), byAlert: map[string]int64{}}
	s.saver = statefile.Saver{Lock: &s.mu, Snapshot: s.snapshot, Write: s.writeFile, Failed: func(err error) {
		s.o.Log.Error("decision: state file not saved", "err", err)
	}}
	s.reset()
	var loaded []stored
	if o.Path != "" {
		// A regular file of at most maxStateFile bytes (regfile): a FIFO
		// planted at the name would hang the collector's start, a link to
		// /dev/zero or a sparse file of terabytes take all its memory.
		data, err := regfile.Read(o.Path, maxStateFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case errors.Is(err, regfile.ErrNotRegular) || errors.Is(err, regfile.ErrTooLarge):
			return nil, fmt.Errorf("decision: %w: not a state file the collector writes; delete it and the ledger rebuilds it", err)
		case err != nil:
			return nil, fmt.Errorf("decision: %w", err)
		default:
			if err := json.Unmarshal(data, &s.st); err != nil {
				return nil, fmt.Errorf("decision: %s is damaged (%v): delete it and the ledger rebuilds it", o.Path, err)
			}
			if s.st.Offences == nil {
				s.st.Offences = map[string]offences{}
			}
			loaded, s.st.Active = s.st.Active, nil // the decisions in force are s.st.active's
		}
	}
	if src != nil {
		rebuild := false
		// A file written before ledger_index existed names no record for
		// any decision; one that names some is this version's, and a
		// decision without one in it was added by hand.
		legacy := true
		for _, sd := range loaded {
			legacy = legacy && sd.Index == nil
		}
		for _, sd := range loaded {
			if !o.Now().Before(sd.Until) {
				continue // ended: nothing to enforce
			}
			if legacy {
				rebuild = true
				break
			}
			d, why := verifyStored(src, sd)
			if why != "" {
				rebuild = true
				s.reject(sd.Decision, why)
				continue
			}
			s.st.active.add(d, *sd.Index, true)
			s.byAlert[d.AlertID] = d.ID
			s.st.NextID = max(s.st.NextID, d.ID+1)
		}
		if rebuild {
			s.reset()
			if p, ok := src.(interface{ Pruned() uint64 }); ok {
				s.st.Through = p.Pruned()
			}
		}
		// The file's through is not trusted either: an old copy put back
		// with through raised past a later unban would bring that ban
		// back (its creation record is real). So the catch-up starts at
		// the oldest kept decision's creation record, not at through: a
		// ban lasts at most Max, so this reads at most that much of the
		// ledger, and applying again what the file already holds changes
		// nothing. An end (unban, or a longer ban replacing it) of a kept
		// decision before through means the file is not what this
		// collector saved: rejected, as an edited decision is.
		claimed := s.st.Through
		kept := make(map[int64]bool, s.st.active.len())
		from := claimed
		for id, idx := range s.st.active.ledgerIndexes() {
			kept[id] = true
			from = min(from, idx)
		}
		var ended []Decision
		var why []string
		for e, err := range src.Entries(from) {
			if errors.Is(err, ledger.ErrPruned) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("decision: catch up from the ledger: %w", err)
			}
			if ev, ok := parseEvent(e.Data); ok {
				if e.Index < claimed {
					ids := append([]int64{ev.Replaces}, ev.Covers...)
					if ev.Action == ActionDeleted {
						ids = []int64{ev.Decision.ID}
					}
					for _, id := range ids {
						if d := s.st.active.get(id); d != nil && kept[id] {
							ended = append(ended, *d)
							why = append(why, fmt.Sprintf("ended by ledger record %d, before the file's through (%d)", e.Index, claimed))
						}
					}
				}
				s.apply(ev, e.Index)
			}
			s.st.Through = e.Index + 1
		}
		for i, d := range ended {
			s.reject(d, why[i])
		}
	} else {
		// No ledger to check against (tests, a store without one).
		for _, sd := range loaded {
			var idx uint64
			if sd.Index != nil {
				idx = *sd.Index
			}
			d := s.st.active.add(sd.Decision, idx, sd.Index != nil)
			s.byAlert[d.AlertID] = d.ID
		}
	}
	s.expire(o.Now())
	s.stats.Active = s.st.active.len()
	// Saved at once: the file then holds what Open rejected and applied.
	s.saver.Mark()
	return s, s.saver.Flush()
}

// reset empties the state (before a rebuild from the ledger).
func (s *Store) reset() {
	s.st = state{NextID: 1, Offences: map[string]offences{}, active: newInForce(s.o.Allowlist)}
	s.byAlert = map[string]int64{}
	s.log, s.logStart, s.seq = nil, 0, 0
}

// verifyStored checks a decision of the state file against its ledger
// record and returns the decision as the ledger has it, or why not.
func verifyStored(src Source, sd stored) (Decision, string) {
	if sd.Index == nil {
		return Decision{}, "no ledger_index"
	}
	idx := *sd.Index
	for e, err := range src.Entries(idx) {
		if err != nil {
			return Decision{}, fmt.Sprintf("ledger record %d unreadable: %v", idx, err)
		}
		ev, ok := parseEvent(e.Data)
		if !ok || ev.Action != ActionCreated {
			return Decision{}, fmt.Sprintf("ledger record %d is not a decision's creation", idx)
		}
		d := ev.Decision
		if d.ID != sd.ID || d.Scope != sd.Scope || d.Value != sd.Value || !d.Until.Equal(sd.Until) || !d.Created.Equal(sd.Created) {
			return Decision{}, fmt.Sprintf("ledger record %d creates decision %d (%s %s until %s), not this one",
				idx, d.ID, d.Scope, d.Value, d.Until.UTC().Format(time.RFC3339))
		}
		return d, ""
	}
	return Decision{}, fmt.Sprintf("ledger record %d does not exist", idx)
}

// reject reports a decision of the state file the ledger does not
// support: a loud log line and a ledger event, so the tampering is on the
// trail an auditor reads.
func (s *Store) reject(d Decision, why string) {
	s.stats.Rejected++
	s.o.Log.Error("decision: state file holds a decision the ledger does not support; not enforced, state rebuilt from the ledger",
		"file", s.o.Path, "id", d.ID, "scope", d.Scope, "value", d.Value, "until", d.Until, "reason", why)
	d.Reason = "state file not supported by the ledger: " + why
	d.By = ""
	if s.o.Append == nil {
		return
	}
	if _, err := s.o.Append(context.Background(), Event{Action: ActionRejected, Decision: d, At: s.o.Now()}.AppendJSON(nil)); err != nil {
		s.o.Log.Error("decision: could not record the rejected decision in the ledger", "id", d.ID, "err", err)
	}
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Active = s.st.active.len()
	return st
}

// Changed returns a channel closed at the next change: the in-process
// gateway waits on it instead of polling.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notify
}

// Decide makes the block decision an alert's rule asks for, if any: nil
// when the rule asks for none, the value is allowlisted, or a ban at least
// as long is already in force. It is idempotent by alert id.
func (s *Store) Decide(ctx context.Context, a *detect.Alert) (*Decision, error) {
	r := a.Rule
	if r == nil || r.Response == nil || r.Response.Block == "" {
		return nil, nil
	}
	value, ok := a.Value(r.Response.Block)
	if !ok || value == "" {
		return nil, nil
	}
	scope, value, err := classify(r.Response.Block, value)
	if err != nil {
		return nil, err
	}
	scope, value = hostWide(scope, value)
	base := r.Response.Duration
	if base <= 0 {
		base = s.o.Default
	}
	name := r.Name
	if name == "" {
		name = r.Ref()
	}
	return s.decide(ctx, scope, value, base, name, a.ID, a.Message(), "", a.Time)
}

// Target is what Decide would ban for an alert, without deciding: the
// scope and value its rule's response names, and false when there is none
// or the allowlist spares it. A gateway that evaluates the rules on its
// own events as they are written enforces that at once, before Decide has
// recorded the decision durably.
func (s *Store) Target(a *detect.Alert) (scope, value string, ok bool) {
	r := a.Rule
	if r == nil || r.Response == nil || r.Response.Block == "" {
		return "", "", false
	}
	value, found := a.Value(r.Response.Block)
	if !found || value == "" {
		return "", "", false
	}
	scope, value, err := classify(r.Response.Block, value)
	if err != nil {
		return "", "", false
	}
	scope, value = hostWide(scope, value)
	if s.allowlisted(scope, value) {
		return "", "", false
	}
	return scope, value, true
}

// Manual bans a value by an operator's order for d (or the escalating
// default when d is 0).
func (s *Store) Manual(ctx context.Context, scope, value string, d time.Duration, reason, by string) (*Decision, error) {
	switch strings.ToLower(scope) {
	case "ip":
		scope = ScopeIP
	case "range":
		scope = ScopeRange
	case "username", "user":
		scope = ScopeUser
	default:
		return nil, fmt.Errorf("scope %q: want Ip, Range or Username", scope)
	}
	sc, v, err := classify(map[string]string{ScopeIP: "ip", ScopeRange: "range", ScopeUser: "user.name"}[scope], value)
	if err != nil {
		return nil, err
	}
	if sc != scope {
		return nil, fmt.Errorf("value %q is not a %s", value, scope)
	}
	if d == 0 {
		d = s.o.Default
	}
	return s.decide(ctx, scope, v, d, "manual", "", reason, by, s.o.Now())
}

// classify finds the scope of a value blocked on field: an address (Ip)
// or a network (Range) for an address field, a user name for any other.
// The field decides, not the value: a user name that reads as an address
// or a network ("0.0.0.0/0", the operator's own address) is still a user
// name. Decided by the value, an attacker who chose it at a login form,
// under a rule that blocks user.name, banned every address at every
// gateway.
func classify(field, value string) (scope, v string, err error) {
	value = strings.TrimSpace(value)
	f := strings.ToLower(field)
	if !(strings.HasSuffix(f, ".ip") || f == "ip" || f == "range" || f == "c-ip" || f == "src_ip") {
		if len(value) > 256 {
			return "", "", fmt.Errorf("block %s: value longer than 256 bytes", field)
		}
		return ScopeUser, value, nil
	}
	// Read as the gateways and the allowlist read it: kept mapped,
	// ::ffff:10.0.0.0/104 overlapped no allowlisted IPv4 network, and the
	// gateways, which unmap, banned 10.0.0.0/8 all the same.
	p, err := ipnet.Parse(value)
	if err != nil {
		return "", "", fmt.Errorf("block %s: %w", field, err)
	}
	if p.Bits() == p.Addr().BitLen() {
		return ScopeIP, p.Addr().String(), nil
	}
	return ScopeRange, p.String(), nil
}

// hostWide widens a rule's ban of one IPv6 address to the /64 it belongs
// to (ipnet.HostNet), as detection counts it: the host that sent from one
// address of its /64 sends from the next one at will, so a ban of the
// address alone stopped nothing. A ban by hand (Manual) bans what the
// operator named.
func hostWide(scope, value string) (string, string) {
	if scope != ScopeIP {
		return scope, value
	}
	if n, ok := ipnet.HostNet(value); ok && strings.Contains(n, "/") {
		return ScopeRange, n
	}
	return scope, value
}

func (s *Store) allowlisted(scope, value string) bool {
	switch scope {
	case ScopeIP:
		a, err := netip.ParseAddr(value)
		if err != nil {
			return false
		}
		for _, p := range s.o.Allowlist {
			if p.Contains(a) {
				return true
			}
		}
	case ScopeRange:
		n, err := netip.ParsePrefix(value)
		if err != nil {
			return false
		}
		for _, p := range s.o.Allowlist {
			if p.Overlaps(n) {
				return true // a range touching an allowlisted network is never banned
			}
		}
	}
	return false
}

func (s *Store) decide(ctx context.Context, scope, value string, base time.Duration, scenario, alertID, reason, by string, at time.Time) (*Decision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if alertID != "" {
		if id, ok := s.byAlert[alertID]; ok {
			if d := s.st.active.get(id); d != nil {
				c := *d
				return &c, nil
			}
			return nil, nil
		}
	}
	if s.allowlisted(scope, value) {
		s.stats.Allowlisted++
		return nil, nil
	}
	now := s.o.Now()
	s.expire(now)
	rule := scenario != "manual"
	// Each widening to make room (compact) merges at least two decisions
	// into one, so a few rounds free room or show there is none to free.
	for round := 0; ; round++ {
		p := s.plan(scope, value, base, rule, now)
		if p.noop != nil {
			s.stats.ExtendedNoOps++
			c := *p.noop
			return &c, nil
		}
		grows := 1 - len(p.covers)
		if p.replaced != nil {
			grows--
		}
		if s.st.active.len()+grows > s.o.MaxActive {
			if round < 8 {
				merged, err := s.compact(ctx, now)
				if err != nil {
					return nil, err
				}
				if merged {
					continue
				}
			}
			s.stats.Refused++
			return nil, fmt.Errorf("decision: %d decisions in force (max_active) and no two rules' bans share a network to widen: %s %s not banned", s.st.active.len(), scope, value)
		}
		if p.scope != scope || p.value != value {
			s.stats.Widened++
			reason = fmt.Sprintf("%s (widened from %s: %d rules' bans in %s)", reason, value, len(p.covers)+1, p.value)
		}
		d := Decision{ID: s.st.NextID, Origin: "trailguard", Type: "ban", Scope: p.scope, Value: p.value, Scenario: scenario,
			Created: now, Until: p.until, AlertID: alertID, Offence: p.offence, Reason: reason, By: by}
		return s.create(ctx, d, p.replaced, p.covers)
	}
}

// plan is what a decision on a value comes to.
type plan struct {
	scope, value string
	offence      int
	until        time.Time
	// noop is the decision in force that makes a new one pointless.
	noop *Decision
	// replaced is the decision on the same value a longer ban takes over
	// from; covers the rules' decisions inside a widened ban, which ends
	// them.
	replaced *Decision
	covers   []int64
}

// plan decides what a ban of value comes to (s.mu held): the escalating
// ban of the value, or of the network it is widened to (WidenAt), or
// nothing when a ban at least as long is in force on it or, for a rule's,
// on a rules' ban of a network holding it.
func (s *Store) plan(scope, value string, base time.Duration, rule bool, now time.Time) plan {
	p := plan{scope: scope, value: value}
	net, isNet := netOf(scope, value)
	widen := rule && isNet && net.Addr().Is6() && s.o.WidenAt > 0
	// A /64 (or narrower) among WidenAt-1 others in its /48 bans the /48;
	// a /48 so banned among WidenAt-1 others in its /32, the /32.
	levels := [...]struct{ bits, under int }{{48, 128}, {32, 48}}
	lv := 0
	for lv < len(levels) && net.Bits() <= levels[lv].bits {
		lv++
	}
	// The indexes of the decisions in force (inForce) find the value's
	// own, a rules' ban of a network holding it, and the rules' bans in its
	// network of the first level, without a pass over all of them: a pass
	// cost ~20 ms a decision at 100,000 in force.
	current := s.ownActive(scope, value)
	var parent netip.Prefix
	count := 0
	if widen && lv < len(levels) {
		parent = netip.PrefixFrom(net.Addr(), levels[lv].bits).Masked()
		count = s.rulesIn(parent, levels[lv].bits, levels[lv].under, scope, value)
	}
	if rule && isNet {
		// Checked again below: a repeat offence may ban longer than the
		// network's ban.
		p.noop = s.st.active.holding(net)
	}
	// A network touching an allowlisted one (the gateway's trusted
	// proxies, an office) is never banned: the bans stay as narrow as
	// they were.
	for parent.IsValid() && count >= s.o.WidenAt && !s.allowlisted(ScopeRange, parent.String()) {
		net = parent
		p.scope, p.value = ScopeRange, parent.String()
		current = s.ownActive(p.scope, p.value)
		lv++
		parent, count = netip.Prefix{}, 0
		if lv < len(levels) {
			parent = netip.PrefixFrom(net.Addr(), levels[lv].bits).Masked()
			count = s.rulesIn(parent, levels[lv].bits, levels[lv].under, p.scope, p.value)
		}
	}
	// An offence is counted once per ban: alerts raised while the value is
	// banned (the same attack seen by several rules, or going on) belong to
	// the offence in force, and can only make its ban longer.
	key := p.scope + "|" + p.value
	n := 1
	if current != nil {
		n = current.Offence
	} else if off := s.st.Offences[key]; now.Sub(off.Last) <= s.o.Memory {
		n = off.N + 1
	}
	dur := time.Duration(math.Min(float64(base)*math.Pow(s.o.Factor, float64(n-1)), float64(s.o.Max)))
	p.offence, p.until = n, now.Add(dur)
	if p.noop != nil {
		if p.until.Sub(p.noop.Until) <= max(time.Minute, p.noop.Until.Sub(p.noop.Created)/10) {
			return p
		}
		p.noop = nil
	}
	if p.scope != scope || p.value != value {
		// Widened: the network's ban ends the rules' bans inside it, and
		// lasts as long as the longest of them.
		for d := range s.st.active.rulesUnder(net) {
			if len(p.covers) == maxCovers {
				break
			}
			p.covers = append(p.covers, d.ID)
			p.until = maxTime(p.until, d.Until)
		}
	}
	if current != nil {
		// Worth a new decision only if it bans noticeably longer (or ends
		// bans inside it).
		if len(p.covers) == 0 && p.until.Sub(current.Until) <= max(time.Minute, current.Until.Sub(current.Created)/10) {
			p.noop = current
			return p
		}
		p.until = maxTime(p.until, current.Until)
		p.replaced = current
	}
	return p
}

// ownActive is a decision in force on exactly (scope, value), nil if none
// (s.mu held). There is one at most, but for a state file or ledger that
// says otherwise.
func (s *Store) ownActive(scope, value string) *Decision {
	var current *Decision
	for d := range s.st.active.own(scope, value) {
		current = d
	}
	return current
}

// rulesIn is what widening counts in parent (s.mu held): the ban of
// (scope, value), in force or to be, and the rules' IPv6 bans of /bits+1 to
// /under in parent besides it.
func (s *Store) rulesIn(parent netip.Prefix, bits, under int, scope, value string) int {
	count := 1 + s.st.active.rulesIn(parent)
	for d := range s.st.active.own(scope, value) {
		// Counted among the rules' bans, and already as the value's own.
		if c, ok := netOf(d.Scope, d.Value); ok && isRules(d) && c.Addr().Is6() && c.Bits() > bits && c.Bits() <= under && parent.Contains(c.Addr()) {
			count--
		}
	}
	return count
}

// maxCovers bounds the decisions one widened ban ends, so that its ledger
// record stays far under the ledger's record size; those left are ended by
// the next widening of the same network.
const maxCovers = 8192

// compact makes room when MaxActive is reached (s.mu held): the network
// (an IPv6 /48 or IPv4 /24, else an IPv6 /32 or IPv4 /16) holding the
// most rules' bans, at least two, and no allowlisted address, is banned
// instead of them (the oldest maxCovers of them), as long as the longest
// of them. It reports whether it found one.
//
// The network is the first of inForce's ranking: an address spray keeps
// the store at MaxActive, and compact then runs at nearly every decision;
// counting the decisions in force by network each time, as it did, cost
// tens of milliseconds at 100,000 under the lock every decision takes.
func (s *Store) compact(ctx context.Context, now time.Time) (bool, error) {
	for k := range 2 {
		best, members, ok := s.st.active.largestGroup(k)
		if !ok {
			continue
		}
		current := s.ownActive(ScopeRange, best.String())
		d := Decision{ID: s.st.NextID, Origin: "trailguard", Type: "ban", Scope: ScopeRange, Value: best.String(), Created: now}
		var covers []int64
		for _, m := range members {
			if len(covers) == maxCovers {
				break
			}
			covers = append(covers, m.ID)
			if m.Until.After(d.Until) {
				d.Until, d.Scenario = m.Until, m.Scenario
			}
			d.Offence = max(d.Offence, m.Offence)
		}
		if current != nil {
			d.Until = maxTime(d.Until, current.Until)
			d.Offence = max(d.Offence, current.Offence)
		}
		d.Reason = fmt.Sprintf("widened: %d rules' bans in %s, %d decisions in force (max_active)", len(covers), best, s.st.active.len())
		s.stats.Widened++
		_, err := s.create(ctx, d, current, covers)
		return err == nil, err
	}
	return false, nil
}

// create records a new decision, ending the one it replaces and those it
// covers, in one ledger record (s.mu held).
func (s *Store) create(ctx context.Context, d Decision, replaced *Decision, covers []int64) (*Decision, error) {
	d.UUID = decisionUUID(d)
	ev := Event{Action: ActionCreated, Decision: d, Covers: covers}
	if replaced != nil {
		ev.Replaces = replaced.ID
	}
	idx, err := s.write(ctx, ev)
	if err != nil {
		return nil, err
	}
	s.apply(ev, idx)
	s.stats.Created++
	s.saver.Mark()
	return &d, nil
}

// isRules reports whether a decision was made by a rule (or widened from
// rules' decisions), not by an operator, whose bans stay as typed.
func isRules(d *Decision) bool { return d.By == "" && d.Scenario != "manual" }

// netOf is the network an Ip or Range decision bans.
func netOf(scope, value string) (netip.Prefix, bool) {
	switch scope {
	case ScopeIP:
		a, err := netip.ParseAddr(value)
		if err != nil {
			return netip.Prefix{}, false
		}
		return netip.PrefixFrom(a, a.BitLen()), true
	case ScopeRange:
		p, err := netip.ParsePrefix(value)
		return p.Masked(), err == nil
	}
	return netip.Prefix{}, false
}

// Delete ends a decision by an operator's order. It returns the decision,
// or an error when no decision in force has that id.
func (s *Store) Delete(ctx context.Context, id int64, by, reason string) (*Decision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.st.active.get(id)
	if d == nil {
		return nil, ErrNotFound
	}
	c := *d
	c.By, c.Reason = by, reason
	idx, err := s.write(ctx, Event{Action: ActionDeleted, Decision: c, At: s.o.Now()})
	if err != nil {
		return nil, err
	}
	s.apply(Event{Action: ActionDeleted, Decision: c}, idx)
	s.stats.Deleted++
	s.saver.Mark()
	return &c, nil
}

// ErrNotFound is returned by Delete for an unknown or ended decision.
var ErrNotFound = errors.New("decision: no such decision in force")

// write appends an event to the ledger and returns its index.
func (s *Store) write(ctx context.Context, ev Event) (uint64, error) {
	if s.o.Append == nil {
		return 0, nil
	}
	if ev.At.IsZero() {
		ev.At = ev.Decision.Created
	}
	idx, err := s.o.Append(ctx, ev.AppendJSON(nil))
	if err != nil {
		return 0, fmt.Errorf("decision: store: %w", err)
	}
	s.st.Through = max(s.st.Through, idx+1)
	return idx, nil
}

// apply changes the state by one event (also when catching up from the
// ledger: it is idempotent). idx is the event's ledger index.
func (s *Store) apply(ev Event, idx uint64) {
	d := ev.Decision
	switch ev.Action {
	case ActionCreated:
		s.st.NextID = max(s.st.NextID, d.ID+1)
		if d.AlertID != "" {
			s.byAlert[d.AlertID] = d.ID
		}
		key := d.Scope + "|" + d.Value
		if o := s.st.Offences[key]; d.Offence >= o.N || d.Created.After(o.Last) {
			s.st.Offences[key] = offences{N: max(d.Offence, o.N), Last: maxTime(d.Created, o.Last)}
		}
		// What it ends is ended even when it is in force already: a
		// restart reads again the creations after the oldest decision the
		// state file keeps, and the bans this one ended would be back.
		for _, id := range append([]int64{ev.Replaces}, ev.Covers...) {
			if id == 0 || id == d.ID {
				continue
			}
			if old, ok := s.st.active.remove(id); ok {
				s.logChange(*old, true)
			}
		}
		if s.st.active.get(d.ID) != nil {
			return
		}
		if !s.o.Now().Before(d.Until) {
			return // ended while the collector was away
		}
		s.logChange(*s.st.active.add(d, idx, true), false)
	case ActionDeleted:
		if old, ok := s.st.active.remove(d.ID); ok {
			s.logChange(*old, true)
		}
	}
}

func (s *Store) logChange(d Decision, deleted bool) {
	s.seq++
	s.log = append(s.log, change{seq: s.seq, d: d, deleted: deleted})
	// Trimmed a quarter at a time: trimming one entry per change moved the
	// other 65,535 (some 14 MB) at every decision and expiry once the log
	// was full, ~0.7 ms each under the store's lock.
	if len(s.log) >= maxLog+maxLog/4 {
		drop := len(s.log) - maxLog
		s.logStart = s.log[drop-1].seq
		s.log = append(s.log[:0], s.log[drop:]...)
	}
	close(s.notify)
	s.notify = make(chan struct{})
}

// expire ends the decisions whose time is up (no ledger event: the end is
// in the decision itself).
//
// Only the due ones are looked at (inForce keeps them by Until): expire
// runs at every decision, poll and tick, and a pass over 100,000 in force
// took ~6 ms.
func (s *Store) expire(now time.Time) {
	for {
		d, ok := s.st.active.popDue(now)
		if !ok {
			return
		}
		s.logChange(*d, true)
		s.stats.Expired++
	}
}

// Run expires decisions on time until ctx ends, so bouncers hear of them
// on their next poll, and saves the state file now and then (see Flush);
// it saves it a last time when ctx ends. A save writes every decision in
// force (100,000 of them are some 35 MB): the Saver spends at most a
// twentieth of the time on it, and lets at least a second pass between
// two.
func (s *Store) Run(ctx context.Context) {
	s.saver.Run(ctx, func(now time.Time) {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := s.st.active.len()
		s.expire(now)
		if s.st.active.len() != n {
			s.saver.Mark()
		}
	})
}

// Flush saves the state file if decisions changed since its last save.
//
// A decision is durable once its ledger record is (Open applies the
// records after the file's through), so the file is only where a start
// begins reading the ledger: it is saved by Run now and then, not at every
// decision. Saving it at each one rewrote and synced every decision in
// force under the lock every decision takes: at 6,000 in force a decision
// took 20-290 ms, and anyone who could provoke bans (an ingest token, a
// botnet) slowed every later one, the attacker's own ban included.
func (s *Store) Flush() error {
	return s.saver.Flush()
}

// Active returns the decisions in force, oldest first, with Until in the
// future.
func (s *Store) Active() []Decision {
	s.mu.Lock()
	s.expire(s.o.Now())
	refs := s.st.active.refs()
	s.mu.Unlock()
	return decisionsOf(refs, nil)
}

// decisionsOf copies the decisions of refs that want accepts (all when
// want is nil), oldest first. It runs after s.mu is released: the
// decisions in force are never changed (inForce.refs), and copying and
// sorting 100,000 of them under the lock, as Active and a bouncer's
// startup poll did, held every decision and poll for ~260 ms.
func decisionsOf(refs []inForceRef, want func(*Decision) bool) []Decision {
	out := make([]Decision, 0, len(refs))
	for _, r := range refs {
		if want == nil || want(r.d) {
			out = append(out, *r.d)
		}
	}
	slices.SortFunc(out, func(a, b Decision) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Stream returns what bouncer must hear: with startup (or for a bouncer
// not seen before, or too far behind), every decision in force as new,
// and without startup also those the change log shows ended before their
// time as deleted; otherwise the decisions created and ended since its
// previous call.
// scopes filters by scope (case-insensitive); empty means all.
func (s *Store) Stream(bouncer string, startup bool, scopes []string) (added, deleted []Decision) {
	s.mu.Lock()
	finish := s.stream(bouncer, startup, scopes)
	s.mu.Unlock()
	return finish()
}

// stream is Stream's part under s.mu; it returns what completes it after
// the lock is released (decisionsOf).
func (s *Store) stream(bouncer string, startup bool, scopes []string) func() (added, deleted []Decision) {
	s.expire(s.o.Now())
	want := func(d *Decision) bool {
		if len(scopes) == 0 {
			return true
		}
		for _, sc := range scopes {
			if strings.EqualFold(sc, d.Scope) {
				return true
			}
		}
		return false
	}
	p, seen := s.pulls[bouncer]
	last := p.seq
	if !seen && len(s.pulls) >= maxPulls {
		s.forgetPull()
	}
	s.pulls[bouncer] = pull{seq: s.seq, used: s.o.Now()}
	var added, deleted []Decision
	if startup || !seen || last < s.logStart {
		refs := s.st.active.refs()
		if !startup {
			// A bouncer that polls on but was forgotten (maxPulls: a
			// thief of its key naming itself anew thousands of times) or
			// fell behind the log still holds what it heard before: the
			// decisions the log shows ended before their time (an
			// unban) are deleted for it, else it enforced them until
			// they expired. Those that ran out it drops by itself.
			now := s.o.Now()
			done := map[int64]bool{}
			for _, c := range s.log {
				if c.deleted && c.d.Until.After(now) && !done[c.d.ID] && !s.st.active.holds(c.d.Scope, c.d.Value) && want(&c.d) {
					done[c.d.ID] = true
					deleted = append(deleted, c.d)
				}
			}
		}
		return func() ([]Decision, []Decision) { return decisionsOf(refs, want), deleted }
	}
	// The net effect of the changes since last: a decision created and
	// ended in between is neither. The log is in seq order: the changes
	// since last are found, not passed over (65,536 of them at most).
	since, _ := slices.BinarySearchFunc(s.log, last+1, func(c change, seq uint64) int { return cmp.Compare(c.seq, seq) })
	net := map[int64]change{}
	var order []int64
	for _, c := range s.log[since:] {
		if _, ok := net[c.d.ID]; !ok {
			order = append(order, c.d.ID)
		}
		prev, had := net[c.d.ID]
		if had && !prev.deleted && c.deleted {
			delete(net, c.d.ID) // created and ended since the last pull
			continue
		}
		net[c.d.ID] = c
	}
	for _, id := range order {
		c, ok := net[id]
		if !ok || !want(&c.d) {
			continue
		}
		if c.deleted {
			deleted = append(deleted, c.d)
		} else if s.st.active.get(id) != nil {
			added = append(added, c.d)
		}
	}
	return func() ([]Decision, []Decision) { return added, deleted }
}

// pull is where a bouncer's last Stream call left it.
type pull struct {
	seq  uint64
	used time.Time
}

// maxPulls bounds the bouncers Stream remembers: callers name themselves
// (the collector keys them by token, address and User-Agent), so a
// client varying its name must not grow the map without end. A bouncer
// forgotten hears every decision in force as new at its next call.
const maxPulls = 4096

// forgetPull drops the bouncer that called Stream least recently (s.mu
// held): a polling bouncer calls every few seconds at most, so it is one
// that stopped, or a client that named itself anew.
func (s *Store) forgetPull() {
	var oldest string
	var t time.Time
	for k, p := range s.pulls {
		if oldest == "" || p.used.Before(t) {
			oldest, t = k, p.used
		}
	}
	delete(s.pulls, oldest)
}

// Covering returns the decisions in force that cover an address (Ip and
// Range), or match a value exactly (Username): CrowdSec's live mode, where
// a bouncer asks for each client it has not cached, so it looks the value
// up in the indexes (inForce.covering) rather than passing over every
// decision in force (milliseconds at 100,000, under the lock every
// decision takes).
func (s *Store) Covering(value string) []Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(s.o.Now())
	a, err := netip.ParseAddr(strings.TrimSpace(value))
	if err == nil {
		a = a.Unmap()
	}
	var out []Decision
	for d := range s.st.active.covering(a, value) {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b Decision) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// snapshot copies what the state file holds (s.mu held) and returns what
// encodes the copy, which the Saver runs after releasing s.mu: the JSON
// of 100,000 decisions took 0.4-2 s, and every decision and bouncer poll
// waited for it at each save.
func (s *Store) snapshot() func() ([]byte, error) {
	if s.o.Path == "" {
		return func() ([]byte, error) { return nil, nil }
	}
	now := s.o.Now()
	for k, o := range s.st.Offences {
		if now.Sub(o.Last) > s.o.Memory {
			delete(s.st.Offences, k)
		}
	}
	st := state{Through: s.st.Through, NextID: s.st.NextID, Offences: maps.Clone(s.st.Offences)}
	refs := s.st.active.refs()
	return func() ([]byte, error) {
		st.Active = make([]stored, 0, len(refs))
		for _, r := range refs {
			sd := stored{Decision: *r.d}
			if r.hasIndex {
				sd.Index = &r.index
			}
			st.Active = append(st.Active, sd)
		}
		slices.SortFunc(st.Active, func(a, b stored) int { return cmp.Compare(a.ID, b.ID) })
		data, err := json.Marshal(&st)
		if err != nil {
			return nil, fmt.Errorf("decision: save: %w", err)
		}
		return data, nil
	}
}

// writeFile replaces the state file with data, synced.
func (s *Store) writeFile(data []byte) error {
	if s.o.Path == "" {
		return nil
	}
	if err := statefile.Write(s.o.Path, data); err != nil {
		return fmt.Errorf("decision: save: %w", err)
	}
	return nil
}

// decisionUUID is deterministic: the same decision, rebuilt from the
// ledger, keeps its UUID.
func decisionUUID(d Decision) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%d|%s|%s|%s|%d", d.ID, d.Scope, d.Value, d.AlertID, d.Created.UnixNano()))
	h[6] = h[6]&0x0f | 0x80
	h[8] = h[8]&0x3f | 0x80
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// Remaining is the time a decision has left, as a Go duration string
// (CrowdSec's "duration").
func (d Decision) Remaining(now time.Time) string {
	r := d.Until.Sub(now)
	if r < 0 {
		r = 0
	}
	return r.Round(time.Millisecond).String()
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Watch calls fn with every decision in force (full true), then with each
// change as it happens (full false: added and ended decisions), until ctx
// ends: how a gateway embedding the collector enforces its decisions
// without polling. name identifies the watcher like a bouncer's token.
func (s *Store) Watch(ctx context.Context, name string, fn func(full bool, added, deleted []Decision)) {
	added, _ := s.Stream(name, true, nil)
	fn(true, added, nil)
	// Expiries are noticed by Run, or at the latest on the next tick here.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		changed := s.Changed()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
		added, deleted := s.Stream(name, false, nil)
		if len(added)+len(deleted) > 0 {
			fn(false, added, deleted)
		}
	}
}
