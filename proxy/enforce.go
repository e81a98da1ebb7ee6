package proxy

import "github.com/trailguard/trailguard/server"

// embeddedSource is the decision source of a single-node gateway: the
// detection engine running over its own ledger. It is nil until the
// collector embeds a detection engine (package detect), or when
// detection.disabled is set.
func embeddedSource(srv *server.Server, cfg Config) Source {
	_ = srv
	_ = cfg
	return nil
}
