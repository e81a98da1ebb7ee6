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

// indexBatchRows is the most rows the collector's index commits in one
// transaction (index.Options.BatchSize; the index's default is 5,000).
// Batches fill only while the index is behind (otherwise a batch is
// committed after index.Options.BatchDelay), and then each commit writes
// the pages its rows dirtied (random ones, for the id hashes) to the WAL:
// five times fewer commits took the index's CPU per event from 60-61 to
// 52-53 µs under ingestload (400k events, alternated, shared machine). A
// batch holds at most ~15 MB of records, and a crash loses at most the
// uncommitted batch, which the index reads again from the ledger.
const indexBatchRows = 25000
