package server

import (
	"context"
	"iter"

	"github.com/trailguard/trailguard/ledger"
)

// followTailBytes is how much of the newest records the collector's ledger
// keeps in memory for its own followers (ledger.Options.TailBytes): about
// a minute of ingest at 1,000 events/s, a second at 100,000 — the index
// lag issue 15 allows (1 s) at the rate it asks for, and room for the
// report warmer's chunk (32,768 records, ~20 MB) while it waits for the
// checkpoint that covers it. Followers further behind read from disk, as
// before.
const followTailBytes = 64 << 20

// appendedFollower is the ledger as the collector's own consumers follow
// it (the index, detection, the UI's overview): records this process
// appended recently come from the copies Append kept of the bytes it
// hashed (ledger.FollowAppended), instead of being read back and hashed
// again by every follower. Reads that answer clients (queries, the live
// tail, proofs) go through the ledger's checked reads.
type appendedFollower struct{ *ledger.Ledger }

func (a appendedFollower) Follow(ctx context.Context, from uint64) iter.Seq2[ledger.Entry, error] {
	return a.Ledger.FollowAppended(ctx, from)
}
