package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/trailguard/trailguard/detect"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/server"
)

// DefaultBlockRules are the built-in rules whose alerts block the client
// address they name: sustained behaviour of one address, never a single
// request that a legitimate client could send by mistake.
var DefaultBlockRules = []string{
	"trailguard_brute_force_source",
	"trailguard_credential_stuffing",
	"trailguard_password_spraying",
	"trailguard_login_after_failures",
	"trailguard_forced_browsing",
}

// Block says which alerts become block decisions in a single-node
// gateway, and for how long.
type Block struct {
	// Rules are the names (or ids) of the rules whose alerts block the
	// client address they name (default DefaultBlockRules); "*" blocks on
	// every alert that names one.
	Rules []string `yaml:"rules"`
	// Duration is the first block of an address (default 10m); each
	// repeat offence doubles it, up to MaxDuration (default 24h).
	Duration    time.Duration `yaml:"duration"`
	MaxDuration time.Duration `yaml:"max_duration"`
	// Allow lists addresses and CIDRs that are never blocked (trusted
	// proxies never are).
	Allow []string `yaml:"allow"`
}

// embeddedSource is the decision source of a single-node gateway: the
// detection engine (package detect) following its own ledger, as the
// collector's would, from a persisted cursor. Every alert is appended to
// the ledger (tamper-evident like every event); alerts of the blocking
// rules that name a client address become block decisions at once, before
// the alert is even written.
func embeddedSource(srv *server.Server, cfg Config, log *slog.Logger) Source {
	if cfg.Detection.Disabled {
		return nil
	}
	return &engineSource{
		ledger: srv.Ledger(),
		cursor: filepath.Join(cfg.DataDir, "proxy-detect.cursor"),
		rules:  cfg.Detection.Rules,
		policy: newBlockPolicy(cfg),
		log:    log,
	}
}

type engineSource struct {
	ledger *ledger.Ledger
	cursor string
	rules  string
	policy *blockPolicy
	log    *slog.Logger
}

func (s *engineSource) Name() string { return "detect" }

// Run implements Source.
func (s *engineSource) Run(ctx context.Context, apply func(Update), health func(error)) {
	rs := detect.Builtin()
	if s.rules != "" {
		rs = rs.Merge(detect.LoadDir(s.rules))
	}
	eng, errs := detect.NewEngine(rs, detect.Options{})
	var bad []string
	for _, e := range rs.Errors {
		bad = append(bad, e.Error())
	}
	for _, e := range errs {
		bad = append(bad, e.Error())
	}
	if len(bad) > 0 {
		s.log.Warn("proxy: detection rules not loaded (the others run)", "count", len(bad), "errors", bad)
	}
	r := &detect.Runner{Engine: eng, Source: s.ledger, CursorPath: s.cursor, Emit: func(a *detect.Alert) error {
		if d, ok := s.policy.decide(a); ok {
			apply(Update{New: []Decision{d}})
		}
		if a.Rule.Level == "informational" {
			// Building blocks of correlations (a failed login, a 401):
			// one per request, so storing them would let any client
			// double what the trail costs.
			return nil
		}
		_, err := s.ledger.Append(ctx, a.AppendJSON(nil))
		return err
	}}
	backoff := 100 * time.Millisecond
	down := false
	for {
		err := r.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		// The ledger follower failed (a disk error, a pruned record):
		// the gateway keeps its decisions and serving; detection starts
		// over from its cursor.
		if !down {
			down = true
			health(fmt.Errorf("detection stopped: %w", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
			backoff = min(2*backoff, 10*time.Second)
		}
	}
}

// blockPolicy turns alerts into decisions.
type blockPolicy struct {
	rules    map[string]bool
	all      bool
	first    time.Duration
	maxDur   time.Duration
	allow    []netip.Prefix
	mu       sync.Mutex
	offences map[netip.Addr]int
	maxTrack int
}

func newBlockPolicy(cfg Config) *blockPolicy {
	b := cfg.Detection.Block
	p := &blockPolicy{rules: map[string]bool{}, first: cmpOr(b.Duration, 10*time.Minute),
		maxDur: cmpOr(b.MaxDuration, 24*time.Hour), offences: map[netip.Addr]int{}, maxTrack: 100000}
	names := b.Rules
	if names == nil {
		names = DefaultBlockRules
	}
	for _, n := range names {
		if n == "*" {
			p.all = true
		}
		p.rules[n] = true
	}
	for _, s := range slices.Concat(b.Allow, cfg.TrustedProxies) {
		if pr, err := parsePrefix(s); err == nil {
			p.allow = append(p.allow, pr)
		}
	}
	return p
}

// decide returns the decision an alert calls for, if any: a ban of the
// client address it names (client.ip, else source.ip, from the rule's
// group-by or the completing event), doubled for each repeat offence.
func (p *blockPolicy) decide(a *detect.Alert) (Decision, bool) {
	r := a.Rule
	if !p.all && !p.rules[r.Name] && !p.rules[r.ID] {
		return Decision{}, false
	}
	addr, ok := alertAddr(a)
	if !ok {
		return Decision{}, false
	}
	for _, pr := range p.allow {
		if pr.Contains(addr) {
			return Decision{}, false
		}
	}
	p.mu.Lock()
	if len(p.offences) >= p.maxTrack {
		clear(p.offences) // forget history rather than grow without bound
	}
	n := p.offences[addr]
	p.offences[addr] = n + 1
	p.mu.Unlock()
	d := p.first
	for range n {
		if d >= p.maxDur {
			break
		}
		d *= 2
	}
	d = min(d, p.maxDur)
	scenario := r.Name
	if scenario == "" {
		scenario = r.Ref()
	}
	return Decision{Origin: "trailguard", Type: "ban", Scope: "Ip", Value: addr.String(),
		Duration: d.String(), Scenario: scenario}, true
}

func alertAddr(a *detect.Alert) (netip.Addr, bool) {
	for _, name := range []string{"client.ip", "source.ip"} {
		for _, fs := range [][]detect.Field{a.Group, a.Fields} {
			for _, f := range fs {
				if f.ECS == name || f.Name == name {
					if ad, err := netip.ParseAddr(f.Value); err == nil {
						return ad.Unmap(), true
					}
				}
			}
		}
	}
	return netip.Addr{}, false
}
