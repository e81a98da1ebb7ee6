package proxy

import (
	"context"
	"time"

	"github.com/trailguard/trailguard/decision"
	"github.com/trailguard/trailguard/server"
)

// Block tunes the block decisions of a single-node gateway's detection
// (the collector's `decisions:` setting): which rules block, and what,
// is said by each rule's response field.
type Block struct {
	// Duration is the ban of a first offence when the rule names none
	// (default 1h); MaxDuration the longest (default 168h); each repeat
	// offence multiplies the ban by Factor (default 4).
	Duration    time.Duration `yaml:"duration"`
	MaxDuration time.Duration `yaml:"max_duration"`
	Factor      float64       `yaml:"factor"`
	// Allow lists addresses and CIDRs that are never blocked; the
	// trusted proxies never are either.
	Allow []string `yaml:"allow"`
	// Disabled makes no block decisions (alerts are still raised).
	Disabled bool `yaml:"disabled"`
}

// collectorConfig is the embedded collector of a single-node gateway:
// ledger, index, detection and decisions in DataDir, as `trailguard
// serve` would keep them.
// indexBatchDelay is how long the single node's index gathers records
// before a transaction. Each transaction rewrites the index's last block
// (up to 4,096 rows, every column compressed again) and its id run,
// whatever it adds: at the index's default of 50 ms, a gateway serving
// 2,000 requests/s spent more CPU rewriting that block than indexing,
// in runs of milliseconds that made its latency tail. The index still lags
// well under a second behind the ledger.
const indexBatchDelay = 250 * time.Millisecond

// followerPace is how often the single node's UI overview and report
// cache followers catch up with the ledger (server.Config.FollowerPace)
// instead of at every commit (every 4 ms or so): neither is read that
// soon (the overview only with --api, counted by minute; the report cache
// by `trailguard report`, in whole chunks), and each wakeup cost CPU and
// scheduler hand-offs per request. Detection and the index are not paced.
const followerPace = time.Second

func collectorConfig(cfg Config) server.Config {
	sc := server.Defaults()
	sc.DataDir = cfg.DataDir
	sc.RedactMode = cfg.RedactMode
	sc.RedactSecretFile = cfg.RedactSecretFile
	// One budget for the whole gateway: its shutdown follows the
	// collector's shares of it (Gateway.Serve).
	if cfg.Timeouts.Shutdown > 0 {
		sc.ShutdownTimeout = cfg.Timeouts.Shutdown
	}
	d := cfg.Detection
	sc.Detection.Disabled = d.Disabled
	sc.Detection.NoBuiltin = d.NoBuiltin
	if d.Rules != "" {
		sc.Detection.Rules = []string{d.Rules}
	}
	sc.Decisions.Disabled = d.Block.Disabled
	sc.Decisions.Duration = d.Block.Duration
	sc.Decisions.MaxDuration = d.Block.MaxDuration
	sc.Decisions.Factor = d.Block.Factor
	// A gateway must never block the proxies in front of it: every
	// client behind them would be refused.
	sc.Decisions.Allowlist = append(append([]string(nil), d.Block.Allow...), cfg.TrustedProxies...)
	sc.IndexBatchDelay = indexBatchDelay
	sc.FollowerPace = followerPace
	// The UI overview is read only through --api (Gateway.Serve starts
	// its follower then): without it the gateway does not count for it.
	sc.OverviewOnDemand = true
	return sc
}

// storeSource enforces the embedded collector's decision store in the
// same process: no polling, the store says when it changed.
type storeSource struct{ store *decision.Store }

// bouncerName is how the gateway's position in the store's change log is
// named.
const bouncerName = "trailguard-proxy"

func (s *storeSource) Name() string { return "detection" }

// Run implements Source.
func (s *storeSource) Run(ctx context.Context, apply func(Update), health func(error)) {
	startup := true
	for {
		changed := s.store.Changed()
		added, deleted := s.store.Stream(bouncerName, startup, []string{decision.ScopeIP, decision.ScopeRange, decision.ScopeUser})
		if startup || len(added)+len(deleted) > 0 {
			now := time.Now()
			u := Update{Full: startup}
			for _, d := range added {
				u.New = append(u.New, fromStore(d, now))
			}
			for _, d := range deleted {
				u.Deleted = append(u.Deleted, fromStore(d, now))
			}
			apply(u)
		}
		startup = false
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

func fromStore(d decision.Decision, now time.Time) Decision {
	return Decision{ID: d.ID, Origin: d.Origin, Type: d.Type, Scope: d.Scope, Value: d.Value,
		Duration: d.Remaining(now), Scenario: d.Scenario}
}

// StoreSource enforces a decision store of the same process (an
// embedded collector's, server.Server.Decisions) in a gateway built with
// New: add it to Config.Sources. Changes apply as soon as the store makes
// them, without polling.
func StoreSource(st *decision.Store) Source { return &storeSource{store: st} }

// embeddedSource is the decision source of a single-node gateway, nil
// when detection or decisions are off.
func embeddedSource(srv *server.Server) Source {
	if st := srv.Decisions(); st != nil {
		return StoreSource(st)
	}
	return nil
}
