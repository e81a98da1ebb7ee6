// Package index is trailguard's embedded search index: a SQLite database
// (modernc.org/sqlite, pure Go) fed from the ledger by ledger index.
//
// The ledger is the source of truth. The index holds one row per ledger
// record, keyed by the record's ledger index, with columns for the common
// ECS fields and the raw JSON; a meta table holds how many records are
// indexed and is updated in the same transaction as every batch of rows, so
// a crash (even kill -9) leaves neither a gap nor a duplicate and Run
// resumes where the last committed batch ended. The file can always be
// thrown away and rebuilt with Rebuild (trailguard reindex).
//
// The database runs in WAL mode with synchronous=NORMAL: one writer
// connection (Run) and a pool of read-only connections (Search, Stats, Top,
// ByEventID, ByRequestID), so queries never wait for indexing. A power loss
// can lose the last batches committed before it, never part of one; Run
// indexes them again from the ledger.
//
// Queries are query.Expr values compiled to SQL: fields with a column use
// it (and its indexes), other fields use json_extract-style access to the
// raw JSON, and every value is a bound parameter.
package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/ledger"
)

// Source is what Run follows: *ledger.Ledger satisfies it.
type Source interface {
	Follow(ctx context.Context, from uint64) iter.Seq2[ledger.Entry, error]
}

// Snapshot is what Rebuild reads to its end: *ledger.Ledger satisfies it.
type Snapshot interface {
	Entries(from uint64) iter.Seq2[ledger.Entry, error]
}

// pruner is implemented by *ledger.Ledger: records below Pruned() were
// deleted by retention and can no longer be read.
type pruner interface{ Pruned() uint64 }

// Options tunes an Index. The zero value is the default.
type Options struct {
	// BatchSize is the most rows Run inserts in one transaction.
	// Default 5000.
	BatchSize int
	// BatchDelay is the longest a record Run has read waits before its
	// batch is committed. Default 50ms.
	BatchDelay time.Duration
	// Readers is the size of the pool of read connections. Default 4.
	Readers int
}

// Index is an open index file. Its methods are safe for concurrent use;
// only one Run may be active at a time.
type Index struct {
	path    string
	opts    Options
	w       *sql.DB // the one writer connection
	r       *sql.DB // read-only pool
	next    atomic.Uint64
	running atomic.Bool
	closeMu sync.Mutex
	closed  bool
}

// ErrNotFound is returned by ByEventID when no event has the id.
var ErrNotFound = errors.New("index: not found")

const schema = `
CREATE TABLE IF NOT EXISTS events (
	idx        INTEGER PRIMARY KEY, -- ledger index
	ts         INTEGER NOT NULL,    -- @timestamp, unix nanoseconds (append time if absent)
	event_id   TEXT,
	action     TEXT,
	outcome    TEXT,
	kind       TEXT,
	dataset    TEXT,
	category   TEXT,                -- event.category joined with ','
	request_id TEXT,
	method     TEXT,
	url_path   TEXT,
	status     INTEGER,
	source_ip  TEXT,
	source_ipb BLOB,                -- source.ip as 16 bytes (IPv4 mapped): CIDR is a range
	client_ip  TEXT,
	client_ipb BLOB,
	user_id    TEXT,
	user_name  TEXT,
	user_agent TEXT,
	service    TEXT,
	host       TEXT,
	duration   INTEGER,
	raw        TEXT NOT NULL        -- the event as JSON (a JSON string if the record is not a JSON object)
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
`

// indexes are created after a bulk load rather than maintained during it.
// idx is the rowid, so every index ends in it: (ts) orders by (ts, idx).
var indexes = []string{
	`CREATE INDEX IF NOT EXISTS events_ts ON events(ts)`,
	`CREATE INDEX IF NOT EXISTS events_request ON events(request_id)`,
	`CREATE INDEX IF NOT EXISTS events_event ON events(event_id)`,
	`CREATE INDEX IF NOT EXISTS events_action_ts ON events(action, ts)`,
	`CREATE INDEX IF NOT EXISTS events_status_ts ON events(status, ts)`,
	`CREATE INDEX IF NOT EXISTS events_client_ts ON events(client_ipb, ts)`,
	`CREATE INDEX IF NOT EXISTS events_user_ts ON events(user_name, ts)`,
}

// Open opens or creates the index file at path.
func Open(path string, opts Options) (*Index, error) {
	return open(path, opts, false)
}

func dsn(path string, pragmas ...string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

func open(path string, opts Options, bulk bool) (*Index, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 5000
	}
	if opts.BatchDelay <= 0 {
		opts.BatchDelay = 50 * time.Millisecond
	}
	if opts.Readers <= 0 {
		opts.Readers = 4
	}
	ix := &Index{path: path, opts: opts}
	var err error
	if bulk {
		// A file being rebuilt is private until renamed into place: no
		// journal, no syncs; it is synced once at the end.
		ix.w, err = sql.Open("sqlite", dsn(path, "journal_mode(OFF)", "synchronous(OFF)", "cache_size(-262144)", "temp_store(MEMORY)"))
	} else {
		ix.w, err = sql.Open("sqlite", dsn(path, "journal_mode(WAL)", "synchronous(NORMAL)", "cache_size(-65536)", "temp_store(MEMORY)")+"&_txlock=immediate")
	}
	if err != nil {
		return nil, fmt.Errorf("index: open %s: %w", path, err)
	}
	ix.w.SetMaxOpenConns(1)
	ix.w.SetMaxIdleConns(1)
	ix.w.SetConnMaxLifetime(0)
	ctx := context.Background()
	if _, err := ix.w.ExecContext(ctx, schema); err != nil {
		ix.w.Close()
		return nil, fmt.Errorf("index: open %s: schema: %w", path, err)
	}
	if !bulk {
		for _, s := range indexes {
			if _, err := ix.w.ExecContext(ctx, s); err != nil {
				ix.w.Close()
				return nil, fmt.Errorf("index: open %s: %w", path, err)
			}
		}
	}
	var next sql.NullInt64
	if err := ix.w.QueryRowContext(ctx, `SELECT (SELECT v FROM meta WHERE k='next')`).Scan(&next); err != nil {
		ix.w.Close()
		return nil, fmt.Errorf("index: open %s: read meta: %w", path, err)
	}
	ix.next.Store(uint64(next.Int64))
	ix.r, err = sql.Open("sqlite", dsn(path, "query_only(1)", "cache_size(-65536)"))
	if err != nil {
		ix.w.Close()
		return nil, fmt.Errorf("index: open %s: %w", path, err)
	}
	ix.r.SetMaxOpenConns(opts.Readers)
	ix.r.SetMaxIdleConns(opts.Readers)
	return ix, nil
}

// Close closes the database. Run must have returned.
func (ix *Index) Close() error {
	ix.closeMu.Lock()
	defer ix.closeMu.Unlock()
	if ix.closed {
		return nil
	}
	ix.closed = true
	err := errors.Join(ix.r.Close(), ix.w.Close())
	if err != nil {
		return fmt.Errorf("index: close %s: %w", ix.path, err)
	}
	return nil
}

// Path returns the file name the index was opened with.
func (ix *Index) Path() string { return ix.path }

// Indexed returns the number of ledger records indexed: the next ledger
// index Run will read. Ledger size minus Indexed is the index lag.
func (ix *Index) Indexed() uint64 { return ix.next.Load() }

// Run follows src from Indexed() and indexes every record, in batched
// transactions of up to Options.BatchSize rows or Options.BatchDelay,
// whichever comes first. It returns when ctx is done (ctx.Err()), when src
// ends or fails (its error, such as ledger.ErrClosed), or on a database
// error; the records read before that are committed first.
//
// If src has a Pruned() uint64 method (a ledger does) and records below
// Indexed() were pruned by retention, indexing starts at the first record
// still there.
func (ix *Index) Run(ctx context.Context, src Source) error {
	if !ix.running.CompareAndSwap(false, true) {
		return errors.New("index: Run is already running")
	}
	defer ix.running.Store(false)

	from := ix.Indexed()
	if p, ok := src.(pruner); ok {
		if pr := p.Pruned(); pr > from {
			from = pr
		}
	}
	fctx, cancel := context.WithCancel(ctx)
	// The follower decodes the JSON, so that it runs in parallel with the
	// writer's inserts.
	entries := make(chan rec, ix.opts.BatchSize)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for e, err := range src.Follow(fctx, from) {
			if err != nil {
				errc <- err
				return
			}
			select {
			case entries <- decode(e):
			case <-fctx.Done():
				errc <- fctx.Err()
				return
			}
		}
		errc <- nil
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()

	want := from
	batch := make([]rec, 0, ix.opts.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() error {
		timer.Stop()
		if len(batch) == 0 {
			return nil
		}
		// The last batch is committed even when ctx is done.
		err := ix.add(context.WithoutCancel(ctx), want, batch)
		want = batch[len(batch)-1].idx + 1
		clear(batch)
		batch = batch[:0]
		return err
	}
	for {
		select {
		case e := <-entries:
			if len(batch) == 0 {
				timer.Reset(ix.opts.BatchDelay)
			}
			batch = append(batch, e)
			if len(batch) >= ix.opts.BatchSize {
				if err := flush(); err != nil {
					return err
				}
			}
		case <-timer.C:
			if err := flush(); err != nil {
				return err
			}
		case err := <-errc:
			// Everything the follower sent before its error is buffered.
			for len(entries) > 0 {
				batch = append(batch, <-entries)
				if len(batch) >= ix.opts.BatchSize {
					if ferr := flush(); ferr != nil {
						return ferr
					}
				}
			}
			if ferr := flush(); ferr != nil {
				return ferr
			}
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("index: follow ledger: %w", err)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
}

// add inserts a batch of consecutive records, the first of which must be
// want, and advances meta in the same transaction.
func (ix *Index) add(ctx context.Context, want uint64, batch []rec) error {
	if want < ix.next.Load() {
		return fmt.Errorf("index: record %d is already indexed (have %d)", want, ix.next.Load())
	}
	first := want
	tx, err := ix.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index: begin: %w", err)
	}
	defer tx.Rollback()
	// Rows go in groups of insertGroup per statement: per-statement
	// overhead, not SQLite, dominates single-row inserts.
	group, err := tx.PrepareContext(ctx, insertSQLRows(insertGroup))
	if err != nil {
		return fmt.Errorf("index: prepare insert: %w", err)
	}
	defer group.Close()
	args := make([]any, 0, insertGroup*numCols)
	for i := range batch {
		if batch[i].idx != want {
			return fmt.Errorf("index: ledger gave record %d, want %d", batch[i].idx, want)
		}
		want++
		args = append(args, batch[i].vals[:]...)
		if len(args) == cap(args) || i == len(batch)-1 {
			st := group
			if len(args) < cap(args) {
				if st, err = tx.PrepareContext(ctx, insertSQLRows(len(args)/numCols)); err != nil {
					return fmt.Errorf("index: prepare insert: %w", err)
				}
				defer st.Close()
			}
			if _, err := st.ExecContext(ctx, args...); err != nil {
				return fmt.Errorf("index: insert records %d..%d: %w", want-uint64(len(args)/numCols), want-1, err)
			}
			args = args[:0]
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta(k,v) VALUES('next',?) ON CONFLICT(k) DO UPDATE SET v=excluded.v`, int64(want)); err != nil {
		return fmt.Errorf("index: update meta: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index: commit records %d..%d: %w", first, want-1, err)
	}
	ix.next.Store(want)
	return nil
}
