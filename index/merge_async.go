package index

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
)

// The last level's merge (idFanout runs of level idMaxLevel-1, 2^20
// records and ~2.1M ids at the default block size) took 0.33-0.55 s
// alone and 1.2-1.5 s under ingest inside one of the writer's batches
// (BENCHMARKS.md, nineteenth session), long enough for the index lag to
// outgrow the ledger's in-memory tail. Reading, decoding and sorting the
// runs (72-83 % of it) needs no write lock: sealed runs change only when
// the writer merges them or prune drops them. So the writer's transaction
// only notes the runs; after its commit a goroutine reads them in one read
// transaction (a WAL snapshot) on the read pool, sorts them and encodes
// the merged run's chunks, and a later batch that finds the work done
// (without waiting for it) swaps the inputs for the merged run in one
// short transaction of its own, if the inputs are still the same runs (a
// prune in between discards the work). Lookups see the inputs or the
// merged run, never both or neither: the swap is one transaction. A crash
// before the swap leaves the inputs, whose merge is prepared again.

// preparedMerge is the work of one prepared merge.
type preparedMerge struct {
	in     []idRun // the runs merged, as listed when they were read
	out    idRun
	chunks []preparedChunk
	stale  bool  // the inputs were gone when read (a prune)
	err    error // reading them failed
	done   chan struct{}
}

type preparedChunk struct {
	h0   int64
	data []byte
}

// mergeCounts counts what the writer did with the last level's merges
// (tests check it).
type mergeCounts struct {
	prepared, applied, discarded int
}

// mergeIDs is merge for the writer's transaction: levels below the last
// inline; idFanout sealed runs of the last level are noted, for a merge
// prepared once the transaction commits (startMerge). An index being
// rebuilt merges everything inline (its file has no journal: a reader
// would hold the writer's commit).
func (ix *Index) mergeIDs(ctx context.Context, tx writeTx, sealed uint64) error {
	if ix.syncMerge {
		return merge(ctx, tx, sealed)
	}
	rs, err := mergeLevels(ctx, tx, sealed, idMaxLevel-1)
	if err != nil || rs == nil {
		return err
	}
	if ix.merging == nil {
		// The runs may come from this transaction (a merge of the level
		// below): read only once it has committed.
		ix.mergeNext = rs
	}
	return nil
}

// startMerge starts preparing the merge mergeIDs noted, after the
// writer's transaction committed.
func (ix *Index) startMerge() {
	in := ix.mergeNext
	ix.mergeNext = nil
	if in == nil || ix.merging != nil {
		return
	}
	// Close waits for the goroutine (it reads on ix.r): none starts once
	// Close has begun (Run must have returned before, but a goroutine
	// started after Close's Wait would read a closed pool and outlive it).
	ix.closeMu.Lock()
	defer ix.closeMu.Unlock()
	if ix.closed {
		return
	}
	m := &preparedMerge{in: in, out: mergedRun(in), done: make(chan struct{})}
	ix.merging = m
	ix.mergeCounts.prepared++
	hook := ix.prepareHook
	ix.bg.Add(1)
	go func() {
		defer ix.bg.Done()
		defer close(m.done)
		if hook != nil {
			hook()
		}
		m.stale, m.err = ix.prepareMerge(ix.bgCtx, m)
	}()
}

// prepareMerge reads m.in in one read transaction, sorts their entries
// and encodes m.out's chunks.
func (ix *Index) prepareMerge(ctx context.Context, m *preparedMerge) (stale bool, err error) {
	tx, err := ix.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return false, fmt.Errorf("index: merge ids: %w", err)
	}
	defer tx.Rollback()
	if ok, err := runsListed(ctx, tx, m.in); err != nil || !ok {
		return !ok, err
	}
	all, err := readRuns(ctx, tx, m.in)
	if err != nil {
		return false, err
	}
	tx.Rollback() // the snapshot is no longer needed: let checkpoints go on
	all = sortIDs(all)
	err = encodeRun(m.out, all, func(h0 uint64, chunk []byte) error {
		m.chunks = append(m.chunks, preparedChunk{int64(h0), slices.Clone(chunk)})
		yieldCPU(ctx)
		return ctx.Err()
	})
	return false, err
}

// runsListed reports whether every run of rs is listed in idruns as it is
// in rs.
func runsListed(ctx context.Context, q querier, rs []idRun) (bool, error) {
	cur, err := runs(ctx, q, rs[0].lvl)
	if err != nil {
		return false, err
	}
	for _, r := range rs {
		if !slices.Contains(cur, r) {
			return false, nil
		}
	}
	return true, nil
}

// applyMerge swaps the inputs of a prepared merge that is done for its
// run, in a transaction of its own; a merge still being prepared is left
// for a later batch. Run's goroutine only (it owns ix.merging).
func (ix *Index) applyMerge(ctx context.Context) (err error) {
	m := ix.merging
	if m == nil {
		return nil
	}
	select {
	case <-m.done:
	default:
		return nil
	}
	ix.merging = nil
	if m.err != nil {
		return fmt.Errorf("index: merge ids of blocks %d-%d (prepared): %w", m.out.lo, m.out.hi, m.err)
	}
	if m.stale {
		ix.mergeCounts.discarded++
		return nil
	}
	sqlTx, err := ix.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index: merge ids: %w", err)
	}
	defer func() {
		if err != nil {
			sqlTx.Rollback()
		}
	}()
	tx := ix.writeTx(sqlTx)
	ok, err := runsListed(ctx, tx, m.in)
	if err != nil {
		return err
	}
	if !ok {
		// Pruned meanwhile: the runs left are merged again later.
		ix.mergeCounts.discarded++
		return sqlTx.Rollback()
	}
	if err = deleteRuns(ctx, tx, m.in, "merge ids"); err != nil {
		return err
	}
	if ix.swapHook != nil {
		ix.swapHook()
	}
	if _, err = tx.ExecContext(ctx, qRunPut, m.out.run, m.out.lvl, int64(m.out.lo), int64(m.out.hi)); err != nil {
		return fmt.Errorf("index: merge ids: %w", err)
	}
	for _, c := range m.chunks {
		if _, err = tx.ExecContext(ctx, qChunkPut, m.out.run, c.h0, c.data); err != nil {
			return fmt.Errorf("index: merge ids: %w", err)
		}
		yieldCPU(ctx)
	}
	if err = sqlTx.Commit(); err != nil {
		return fmt.Errorf("index: merge ids: %w", err)
	}
	ix.mergeCounts.applied++
	return nil
}
