package index

import (
	"context"
	"database/sql"
	"fmt"
)

// writeTx is what the writer's steps run on: its transaction (tests pass
// a plain *sql.Tx) or the same with its statements prepared once (stmtTx).
type writeTx interface {
	querier
	execer
}

// writerQueries are the statements of the writer's transactions (add,
// merge, the id runs, the blocks, the terms). SQLite compiled each anew
// on every call (database/sql prepares, runs and finalizes a statement
// given as text): a tenth of the writer's CPU under ingest load, dozens
// of statements per batch. They are prepared once, when the index is
// opened, on the writer's one connection, and each transaction runs them
// from there.
var writerQueries = []string{
	qColPut, qBlockPut, qBlockGet,
	qChunksDel, qRunPut, qChunkPut, qChunksGet, qRunsGet, qRunDel, qTailRun, qNewRun,
	qTermGet, qTermPut, qNextPut,
}

const (
	qColPut    = `INSERT OR REPLACE INTO cols(k, data) VALUES(?, ?)`
	qBlockPut  = `INSERT OR REPLACE INTO blocks(blk, first, n, lo, tmin, tmax) VALUES(?,?,?,?,?,?)`
	qBlockGet  = `SELECT first, n, lo, tmin, tmax FROM blocks WHERE blk=?`
	qChunksDel = `DELETE FROM idchunks WHERE run=?`
	qRunPut    = `INSERT OR REPLACE INTO idruns(run, lvl, lo, hi) VALUES(?,?,?,?)`
	qChunkPut  = `INSERT INTO idchunks(run, h0, data) VALUES(?,?,?)`
	qChunksGet = `SELECT h0, data FROM idchunks WHERE run=? ORDER BY h0`
	qRunsGet   = `SELECT run, lvl, lo, hi FROM idruns WHERE ? < 0 OR lvl = ? ORDER BY lo`
	qRunDel    = `DELETE FROM idruns WHERE run=?`
	qTailRun   = `SELECT run FROM idruns WHERE lvl=0 AND lo=? ORDER BY run LIMIT ?` // maxFrames+1: tailRuns refuses more than maxFrames
	qNewRun    = `SELECT coalesce(max(run), 0) + 1 FROM idruns`
	qTermGet   = `SELECT n FROM terms WHERE f=? AND v=?`
	qTermPut   = `INSERT INTO terms(f,n,v) VALUES(?,?,?)`
	qNextPut   = `INSERT INTO meta(k,v) VALUES('next',?) ON CONFLICT(k) DO UPDATE SET v=excluded.v`
)

// prepareWriter prepares writerQueries on ix.w (before any transaction:
// the pool's one connection is free).
func (ix *Index) prepareWriter(ctx context.Context) error {
	ix.wstmts = make(map[string]*sql.Stmt, len(writerQueries))
	for _, q := range writerQueries {
		st, err := ix.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		ix.wstmts[q] = st
	}
	return nil
}

// stmtTx is the writer's transaction running the prepared writerQueries
// (any other text as the transaction would).
type stmtTx struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
	bound map[string]*sql.Stmt // stmts bound to tx, once each
}

// writeTx returns tx with ix's prepared statements.
func (ix *Index) writeTx(tx *sql.Tx) *stmtTx {
	return &stmtTx{tx: tx, stmts: ix.wstmts, bound: make(map[string]*sql.Stmt, len(ix.wstmts))}
}

// stmt is the prepared statement q bound to the transaction (its
// connection's compiled statement, reused), nil if q is not prepared.
func (t *stmtTx) stmt(ctx context.Context, q string) *sql.Stmt {
	if st := t.bound[q]; st != nil {
		return st
	}
	st := t.stmts[q]
	if st == nil {
		return nil
	}
	st = t.tx.StmtContext(ctx, st)
	t.bound[q] = st
	return st
}

// ExecContext is sql.Tx's.
func (t *stmtTx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := t.stmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, q, args...)
}

// QueryContext is sql.Tx's.
func (t *stmtTx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, q, args...)
}

// QueryRowContext is sql.Tx's.
func (t *stmtTx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	if st := t.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, q, args...)
}
