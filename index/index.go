// Package index is trailguard's embedded search index: a SQLite database
// (modernc.org/sqlite, pure Go) fed from the ledger by ledger index.
//
// # A cache, never the source of truth
//
// The ledger holds the events; the index only finds them. It keeps, per
// block of 4,096 consecutive ledger records, the columns lookups and
// statistics need (time, a few ECS fields as dictionary numbers,
// addresses), each column compressed on its own (block.go), and sorted
// runs from keyed hashes of event.id and http.request.id to ledger indexes
// (ids.go); no copy of the event. A record's values in these columns are
// its "row". Every event a query returns is read from the ledger (whose
// reads are checked against the Merkle tree) and matched there again with
// query.Expr.Match: an altered row can make a search miss an event or rank
// it wrongly, never return altered content, and a row whose record does
// not say what the row claims is dropped and reported
// (Result.Mismatches). Counts (Stats, Top) come from the rows; after
// suspected tampering, rebuild the index (trailguard reindex).
//
// Queries decode the columns they need of the blocks in their time range
// and evaluate their conditions there. Queries on fields without a column,
// free text and wildcards on hashed fields are answered by reading the
// candidate records the columns and the time range leave from the ledger,
// at most Options.ScanBudget per query; a query that runs out returns what
// it found with Partial set and a cursor to continue.
//
// # Durability
//
// A meta table holds how many records are indexed and is updated in the
// same transaction as every batch of records (with the blocks and id runs
// it rewrote), so a crash (even kill -9) leaves neither a gap nor a duplicate and Run resumes where the last committed
// batch ended. The database runs in WAL mode with synchronous=NORMAL: one
// writer connection (Run) and a pool of read-only connections, so queries
// never wait for indexing. The file is locked while open, and can always be
// thrown away and rebuilt with Rebuild (trailguard reindex); an index of an
// older format is rebuilt from the ledger by Run.
package index

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

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

// Records is where queries read the events they return: *ledger.Ledger
// satisfies it.
type Records interface {
	Read(i uint64) (ledger.Entry, error)
}

// pruner is implemented by *ledger.Ledger: records below Pruned() were
// deleted by retention and can no longer be read.
type pruner interface{ Pruned() uint64 }

// Options tunes an Index. The zero value is the default.
type Options struct {
	// Ledger is where queries read their hits; queries that return events
	// fail without it.
	Ledger Records
	// ScanBudget is the most ledger records one query reads to check
	// candidates (Search, ByEventID, ByRequestID; Stats and Top for
	// conditions the columns cannot decide). Default 50,000: about a
	// second on one core.
	ScanBudget int
	// ScanTime is the longest one query spends reading and checking
	// records against the conditions the columns cannot decide; then it
	// stops as when ScanBudget runs out. Default 10s. The budget of
	// records alone bounded nothing: a free-text condition of 4,000
	// characters took a second per 256 KiB record it was checked against.
	ScanTime time.Duration
	// BatchSize is the most rows Run inserts in one transaction.
	// Default 5000.
	BatchSize int
	// BatchDelay is the longest a record Run has read waits before its
	// batch is committed. Default 50ms.
	BatchDelay time.Duration
	// Readers is the size of the pool of read connections. Default 4.
	Readers int
	// Logger receives a warning for every row found to disagree with its
	// ledger record, and for records the ledger cannot read. Default
	// slog.Default().
	Logger *slog.Logger
}

// DefaultScanBudget is Options.ScanBudget's default.
const DefaultScanBudget = 50000

// DefaultScanTime is Options.ScanTime's default.
const DefaultScanTime = 10 * time.Second

// scanSpent reports whether a query that started at start and has read
// scanned records has used its budget of records or of time.
func (ix *Index) scanSpent(start time.Time, scanned int) bool {
	return scanned == ix.opts.ScanBudget || scanned > 0 && time.Since(start) >= ix.opts.ScanTime
}

// Index is an open index file. Its methods are safe for concurrent use;
// only one Run may be active at a time.
type Index struct {
	path    string
	opts    Options
	w       *sql.DB              // the one writer connection
	wstmts  map[string]*sql.Stmt // writerQueries prepared on w
	r       *sql.DB              // read-only pool
	lock    *os.File
	salt    []byte
	next    atomic.Uint64
	running atomic.Bool
	dict    *dict     // writer's term cache (Run's goroutine only)
	tail    *block    // writer's last block, all columns loaded (nil: read it from the file)
	tailRun idRun     // the id run of tail
	tailIDs []idEntry // its entries: sorted runs one after the other
	// tailDeltas are level-0 runs of tail's block besides tailRun, each
	// holding the ids of rows a batch added (storeTail); the file holds
	// the first tailStored of tailIDs.
	tailDeltas []idRun
	tailStored int
	stores     int // blocks the writer stored (tests count them)

	// The last level's id merge, prepared off the writer's path
	// (merge_async.go). Run's goroutine only, but for bg.
	syncMerge   bool            // merge inline (a file being rebuilt)
	mergeNext   []idRun         // runs to merge once the writer's transaction commits
	merging     *preparedMerge  // the merge being prepared or done, not yet applied
	mergeCounts mergeCounts     // tests count them
	prepareHook func()          // tests: run first by the preparing goroutine
	swapHook    func()          // tests: run by the swap between its deletes and inserts
	bgCtx       context.Context // the preparing goroutine's, cancelled by Close
	bgCancel    context.CancelFunc
	bg          sync.WaitGroup

	notifyMu sync.Mutex
	notify   chan struct{} // closed when next advances; nil once closed

	closeMu sync.Mutex
	closed  bool
}

// Errors returned by the index.
var (
	// ErrNotFound is returned by ByEventID when no event has the id.
	ErrNotFound = errors.New("index: not found")
	// ErrInUse is returned by Open and Rebuild when another Index, in this
	// process or another (a running collector), has the file open.
	ErrInUse = errors.New("index: in use by another process (a running collector?)")
	// ErrClosed is returned by WaitIndexed after Close.
	ErrClosed = errors.New("index: closed")
)

// schemaVersion is PRAGMA user_version of the current layout; a file with
// another is an older cache and is rebuilt. Bump it whenever the columns,
// the terms, the hash or what extract calls odd change: queries check rows
// against records with the current rules. Version 3: blocks of columns
// (block.go) instead of a row per record. Version 4: ids hashed with
// SipHash-2-4 instead of SHA-256 (idHash).
const schemaVersion = 4

const schema = `
CREATE TABLE IF NOT EXISTS blocks (
	blk   INTEGER PRIMARY KEY, -- ledger index / blockSize
	first INTEGER NOT NULL,    -- ledger index of the block's row 0
	n     INTEGER NOT NULL,    -- rows
	lo    INTEGER NOT NULL,    -- rows below this ledger index were pruned
	tmin  INTEGER NOT NULL,    -- time range of the rows, unix ns
	tmax  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cols (
	k    INTEGER PRIMARY KEY, -- blk<<5 | column
	data BLOB NOT NULL        -- zstd frame of the column
);
CREATE TABLE IF NOT EXISTS idruns (  -- runs of ids (ids.go)
	run INTEGER PRIMARY KEY,
	lvl INTEGER NOT NULL, -- merge level
	lo  INTEGER NOT NULL, -- first and last block covered
	hi  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS idchunks (
	run  INTEGER NOT NULL,
	h0   INTEGER NOT NULL, -- first hash in the chunk
	data BLOB NOT NULL,
	PRIMARY KEY (run, h0)
);
CREATE TABLE IF NOT EXISTS terms (
	f INTEGER NOT NULL, -- field (f* number)
	n INTEGER NOT NULL, -- number within the field
	v TEXT NOT NULL,
	PRIMARY KEY (f, n)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS terms_v ON terms(f, v);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v ANY NOT NULL) WITHOUT ROWID;
`

// Open opens or creates the index file at path and locks it (ErrInUse if
// another Index holds it). A file in an older format is replaced by an
// empty index, which Run fills from the ledger.
func Open(path string, opts Options) (*Index, error) {
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	if err := dropOldFormat(path, opts.logger()); err != nil {
		lock.Close()
		return nil, err
	}
	ix, err := open(path, opts, false)
	if err != nil {
		lock.Close()
		return nil, err
	}
	ix.lock = lock
	return ix, nil
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

// dropOldFormat removes an index file whose layout is not schemaVersion:
// the index is a cache, and Run rebuilds it from the ledger.
func dropOldFormat(path string, log *slog.Logger) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return fmt.Errorf("index: open %s: %w", path, err)
	}
	var version, tables int
	err = db.QueryRow(`PRAGMA user_version`).Scan(&version)
	if err == nil {
		err = db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE type='table'`).Scan(&tables)
	}
	db.Close()
	if err != nil {
		return fmt.Errorf("index: open %s: %w", path, err)
	}
	if version == schemaVersion || tables == 0 {
		return nil
	}
	log.Warn("index: replacing an index of another format; it is rebuilt from the ledger", "path", path, "format", version, "want", schemaVersion)
	for _, f := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("index: replace %s: %w", path, err)
		}
	}
	return nil
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
	if opts.ScanBudget <= 0 {
		opts.ScanBudget = DefaultScanBudget
	}
	if opts.ScanTime <= 0 {
		opts.ScanTime = DefaultScanTime
	}
	ix := &Index{path: path, opts: opts, notify: make(chan struct{}), syncMerge: bulk}
	ix.bgCtx, ix.bgCancel = context.WithCancel(context.Background())
	var err error
	if bulk {
		// A file being rebuilt is private until renamed into place: no
		// journal, no syncs; it is synced once at the end.
		ix.w, err = sql.Open("sqlite", dsn(path, "journal_mode(OFF)", "synchronous(OFF)", "cache_size(-262144)", "temp_store(MEMORY)"))
	} else {
		// The WAL is checkpointed every 10,000 pages (40 MiB) rather
		// than SQLite's 1,000: each event dirties a few index pages at
		// random (the id hashes), every commit writes them to the WAL and
		// every checkpoint again to the file, so checkpoints ten times
		// rarer write the pages hit by many commits once. At the batches
		// of a gateway's steady traffic (~250 rows) this cut the writer's
		// CPU per event by a quarter (33 -> 25 us).
		ix.w, err = sql.Open("sqlite", dsn(path, "journal_mode(WAL)", "synchronous(NORMAL)", "cache_size(-65536)", "temp_store(MEMORY)", "wal_autocheckpoint(10000)")+"&_txlock=immediate")
	}
	if err != nil {
		return nil, fmt.Errorf("index: open %s: %w", path, err)
	}
	ix.w.SetMaxOpenConns(1)
	ix.w.SetMaxIdleConns(1)
	ix.w.SetConnMaxLifetime(0)
	fail := func(err error) (*Index, error) {
		ix.bgCancel()
		ix.w.Close()
		return nil, fmt.Errorf("index: open %s: %w", path, err)
	}
	ctx := context.Background()
	if _, err := ix.w.ExecContext(ctx, schema+fmt.Sprintf("PRAGMA user_version=%d;", schemaVersion)); err != nil {
		return fail(fmt.Errorf("schema: %w", err))
	}
	var next sql.NullInt64
	var salt []byte
	if err := ix.w.QueryRowContext(ctx, `SELECT (SELECT v FROM meta WHERE k='next'), (SELECT v FROM meta WHERE k='salt')`).Scan(&next, &salt); err != nil {
		return fail(fmt.Errorf("read meta: %w", err))
	}
	if len(salt) == 0 {
		// A new salt for a file that holds ids would miss each of them,
		// silently (its salt deleted: altered).
		var ids bool
		if err := ix.w.QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM idruns)`).Scan(&ids); err != nil {
			return fail(fmt.Errorf("read meta: %w", err))
		}
		if ids {
			return fail(errors.New("id salt missing from meta while ids are stored (run trailguard reindex)"))
		}
		salt = make([]byte, 16)
		rand.Read(salt)
		if _, err := ix.w.ExecContext(ctx, `INSERT INTO meta(k,v) VALUES('salt',?)`, salt); err != nil {
			return fail(fmt.Errorf("write meta: %w", err))
		}
	}
	if len(salt) != 16 {
		// idHash's key: a file no writer made (altered).
		return fail(fmt.Errorf("malformed salt of %d bytes (run trailguard reindex)", len(salt)))
	}
	ix.salt = salt
	ix.next.Store(uint64(next.Int64))
	if err := ix.prepareWriter(ctx); err != nil {
		return fail(err)
	}
	if err := ix.checkSalt(ctx, uint64(next.Int64)); err != nil {
		return fail(err)
	}
	ix.r, err = sql.Open("sqlite", dsn(path, "query_only(1)", "cache_size(-65536)"))
	if err != nil {
		return fail(err)
	}
	ix.r.SetMaxOpenConns(opts.Readers)
	ix.r.SetMaxIdleConns(opts.Readers)
	return ix, nil
}

// Close closes the database and releases its lock. Run must have returned.
func (ix *Index) Close() error {
	ix.closeMu.Lock()
	defer ix.closeMu.Unlock()
	if ix.closed {
		return nil
	}
	ix.closed = true
	ix.notifyMu.Lock()
	close(ix.notify)
	ix.notify = nil
	ix.notifyMu.Unlock()
	// A merge being prepared reads on ix.r: stopped before it closes.
	ix.bgCancel()
	ix.bg.Wait()
	for _, st := range ix.wstmts {
		st.Close()
	}
	err := errors.Join(ix.r.Close(), ix.w.Close())
	if ix.lock != nil {
		ix.lock.Close()
	}
	if err != nil {
		return fmt.Errorf("index: close %s: %w", ix.path, err)
	}
	return nil
}

// Path returns the file name the index was opened with.
func (ix *Index) Path() string { return ix.path }

// checkSalt looks up the newest indexed record by its event.id under the
// salt meta holds: a salt changed (not deleted) by someone with write
// access to the disk would miss every id stored under the old one,
// silently (GET /v1/events/{id} answering 404 for every event). A record
// the ledger cannot read, without an event.id, or whose block no id run
// covers proves nothing and is passed over.
func (ix *Index) checkSalt(ctx context.Context, next uint64) error {
	if next == 0 || ix.opts.Ledger == nil {
		return nil
	}
	e, err := ix.opts.Ledger.Read(next - 1)
	if err != nil {
		return nil
	}
	r := decode(e)
	if !r.c.has[fEventID] {
		return nil
	}
	// Only a run that covers the record's block and holds chunks can
	// say the id is missing under this salt: ids deleted outright are the
	// cache missing rows, which searches already survive.
	var stored bool
	blk := int64((next - 1) / blockSize)
	if err := ix.w.QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM idruns r, idchunks c WHERE c.run = r.run AND r.lo <= ? AND r.hi >= ?)`,
		blk, blk).Scan(&stored); err != nil || !stored {
		return nil
	}
	got, err := ix.lookupID(ctx, ix.w, fEventID, r.c.str[fEventID])
	if err != nil {
		return err
	}
	if !slices.Contains(got, next-1) {
		return fmt.Errorf("id salt does not match the ids stored: record %d is not found by its event.id (run trailguard reindex)", next-1)
	}
	return nil
}

// Indexed returns the number of ledger records indexed: the next ledger
// index Run will read. Ledger size minus Indexed is the index lag.
func (ix *Index) Indexed() uint64 { return ix.next.Load() }

// WaitIndexed blocks until Indexed() >= n, ctx is done (its error) or the
// index is closed (ErrClosed). Queries that must see what a writer was
// just told is stored (read your writes) wait with the ledger size the
// writer saw.
func (ix *Index) WaitIndexed(ctx context.Context, n uint64) error {
	for {
		ix.notifyMu.Lock()
		ch := ix.notify
		ix.notifyMu.Unlock()
		if ix.Indexed() >= n {
			return nil
		}
		if ch == nil {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (ix *Index) advance(next uint64) {
	ix.next.Store(next)
	ix.notifyMu.Lock()
	if ix.notify != nil {
		close(ix.notify)
		ix.notify = make(chan struct{})
	}
	ix.notifyMu.Unlock()
}

// runLen is the most records Run's follower hands its writer at once.
const runLen = 64

// sizer is a Source that says how many records it holds (*ledger.Ledger
// does): records below Size() are yielded without a wait, so that Run's
// follower ends a run only where the next record may be a wait away.
// Without it every record is a run.
type sizer interface{ Size() uint64 }

// pruneEvery is how often Run checks whether retention deleted records
// while the ledger is idle.
const pruneEvery = 10 * time.Second

// Run follows src from Indexed() and indexes every record, in batched
// transactions of up to Options.BatchSize rows or Options.BatchDelay,
// whichever comes first. It returns when ctx is done (ctx.Err()), when src
// ends or fails (its error, such as ledger.ErrClosed), or on a database
// error. When src ends or fails, the records read before are committed
// first; when ctx is done, only the commit under way is finished: the
// records read and not yet committed (up to two batches) are left to the
// next Run, which reads them again from Indexed(). The index follows the
// ledger, so nothing is lost, and a stop does not wait for seconds of
// inserts on a loaded machine.
//
// If src has a Pruned() uint64 method (a ledger does), Run deletes the
// rows of records retention deleted, and starts at the first record still
// there if those below Indexed() are gone.
func (ix *Index) Run(ctx context.Context, src Source) error {
	if !ix.running.CompareAndSwap(false, true) {
		return errors.New("index: Run is already running")
	}
	defer ix.running.Store(false)

	from := ix.Indexed()
	p, _ := src.(pruner)
	if p != nil {
		if pr := p.Pruned(); pr > from {
			from = pr
		}
	}
	// The follower decodes the records, so that it runs in parallel with
	// the writer's inserts, and hands them over in runs of up to runLen.
	// The channel holds BatchSize records at most, as when it held single
	// records.
	var x extracted
	warned := false
	decodeRun := func(e ledger.Entry) rec {
		r, wrongSpans := decodeChecked(e, &x)
		if wrongSpans && !warned {
			// A bug upstream of the index (the record was parsed
			// instead): said once a Run, not once a record.
			warned = true
			ix.opts.logger().Warn("index: a record came with spans that do not describe it; parsing it instead", "record", e.Index)
		}
		return r
	}
	o := ledger.RunsOptions{Len: runLen, Queue: max(1, ix.opts.BatchSize/runLen)}
	if sz, ok := src.(sizer); ok {
		o.Size = sz.Size
	}
	follower := ledger.FollowRuns(ctx, src.Follow, from, decodeRun, o)
	defer follower.Stop()
	runs := follower.C()

	// prune deletes the rows of records retention deleted since last time.
	prunedTo := uint64(0)
	prune := func() error {
		if p == nil || p.Pruned() <= prunedTo || ctx.Err() != nil {
			return nil
		}
		prunedTo = p.Pruned()
		if err := ix.prune(ctx, prunedTo); err != nil {
			if ctx.Err() != nil {
				// Interrupted by the stop (SQLite's error need not wrap
				// ctx's): the next Run prunes again.
				return ctx.Err()
			}
			return err
		}
		return nil
	}
	want := from
	batch := make([]rec, 0, ix.opts.BatchSize)
	// pend is the rest of the run being taken, cur that run (returned to
	// the follower once taken whole).
	var pend, cur []rec
	take := func(r []rec) {
		if cur != nil {
			// Taken whole (pend is empty).
			follower.Release(cur)
		}
		pend, cur = r, r
	}
	// queued is how many records wait to be taken: the count behind had
	// as the channel's length when records came one at a time (Waiting
	// counts cur whole until it is released, pend is what is left of it).
	queued := func() int { return len(pend) + follower.Waiting() - len(cur) }
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	pruneTick := time.NewTicker(pruneEvery)
	defer pruneTick.Stop()
	flush := func() error {
		timer.Stop()
		if ctx.Err() != nil {
			// Stopped: the batch is left to the next Run.
			return ctx.Err()
		}
		if len(batch) == 0 {
			return nil
		}
		// A commit once begun is finished even if ctx ends meanwhile
		// (ix.tail must stay what the database holds).
		actx := context.WithoutCancel(ctx)
		if behind(len(batch), queued(), ix.opts.BatchSize) {
			actx = context.WithValue(actx, writerBehind{}, true)
		}
		err := ix.add(actx, want, batch)
		want = batch[len(batch)-1].idx + 1
		clear(batch)
		batch = batch[:0]
		if err != nil {
			return err
		}
		return prune()
	}
	// fill moves the records waiting (pend's, then the runs already in
	// the channel: the only receiver, len says they are there) into
	// batch, and flushes it when it is full or, the writer being behind,
	// ends with a block: the block is then encoded and written once,
	// instead of once more by every batch that adds rows to it (add
	// rewrites its last block whole). It returns after a flush, the rest
	// left in pend, or when nothing waits.
	fill := func() error {
		for {
			if len(pend) > 0 && len(batch) == 0 {
				timer.Reset(ix.opts.BatchDelay)
			}
			n := min(len(pend), ix.opts.BatchSize-len(batch))
			end := len(batch)+n >= ix.opts.BatchSize
			for i := range n {
				if (pend[i].idx+1)%blockSize == 0 && behind(len(batch)+i+1, queued()-i-1, ix.opts.BatchSize) {
					n, end = i+1, true
					break
				}
			}
			batch = append(batch, pend[:n]...)
			pend = pend[n:]
			if end {
				return flush()
			}
			if len(runs) == 0 {
				return nil
			}
			take(<-runs)
		}
	}
	if err := prune(); err != nil {
		return err
	}
	for {
		if len(pend) > 0 {
			// The rest of a run a flush ended in.
			if err := fill(); err != nil {
				return err
			}
			continue
		}
		select {
		case r, ok := <-runs:
			if !ok {
				// The follow ended: its records are all taken (pend is
				// empty).
				err := follower.Stop()
				if ctx.Err() != nil {
					// Stopped (the follower may have seen the ledger
					// close first): what was read is left to the next Run.
					return ctx.Err()
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
			take(r)
			if err := fill(); err != nil {
				return err
			}
		case <-timer.C:
			if err := flush(); err != nil {
				return err
			}
		case <-pruneTick.C:
			if err := prune(); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// prune forgets the records below pruned (deleted from the ledger by
// retention): the blocks and id runs wholly below go, the block it falls
// in keeps its rows but marks those below as gone.
func (ix *Index) prune(ctx context.Context, pruned uint64) error {
	var done sql.NullInt64
	if err := ix.w.QueryRowContext(ctx, `SELECT v FROM meta WHERE k='pruned'`).Scan(&done); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("index: prune: %w", err)
	}
	if pruned <= uint64(done.Int64) {
		return nil
	}
	cut := pruned / blockSize
	tx, err := ix.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index: prune: %w", err)
	}
	for _, st := range []struct {
		q string
		a []any
	}{
		{`DELETE FROM cols WHERE k < ?`, []any{colKey(cut, 0)}},
		{`DELETE FROM blocks WHERE blk < ?`, []any{int64(cut)}},
		{`UPDATE blocks SET lo = max(lo, ?) WHERE blk = ?`, []any{int64(pruned), int64(cut)}},
	} {
		if _, err := tx.ExecContext(ctx, st.q, st.a...); err != nil {
			tx.Rollback()
			return fmt.Errorf("index: prune below %d: %w", pruned, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index: prune below %d: %w", pruned, err)
	}
	if t := ix.tail; t != nil {
		if t.blk < cut {
			ix.tail, ix.tailIDs = nil, nil
		} else if t.blk == cut {
			t.lo = max(t.lo, pruned)
		}
	}
	// The id runs wholly below; entries of pruned records in a run that
	// also holds newer ones stay until it goes (a lookup finds their
	// records pruned).
	tx, err = ix.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index: prune: %w", err)
	}
	for _, q := range []string{
		`DELETE FROM idchunks WHERE run IN (SELECT run FROM idruns WHERE hi < ?)`,
		`DELETE FROM idruns WHERE hi < ?`,
	} {
		if _, err := tx.ExecContext(ctx, q, int64(cut)); err != nil {
			tx.Rollback()
			return fmt.Errorf("index: prune ids below %d: %w", pruned, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta(k,v) VALUES('pruned',?) ON CONFLICT(k) DO UPDATE SET v=excluded.v`, int64(pruned)); err != nil {
		tx.Rollback()
		return fmt.Errorf("index: prune: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index: prune ids below %d: %w", pruned, err)
	}
	return nil
}

// dict is the writer's cache of term numbers.
type dict struct {
	// ids has a map per field: a string key hashes faster than a
	// (field, string) pair (the lookups were a third of the writer's
	// per-row work under ingest load).
	ids  [nFields]map[string]int64
	size int // entries in ids
	next [nFields]int64
	last [nFields]lastTerm // each field's last term
}

type lastTerm struct {
	v  string
	n  int64
	ok bool
}

// maxDictCache bounds the writer's term cache; past it the cache starts
// over (lookups then go to the terms table until it warms up again).
const maxDictCache = 1 << 20

func (ix *Index) loadDict(ctx context.Context, tx *sql.Tx) (*dict, error) {
	d := &dict{}
	rows, err := tx.QueryContext(ctx, `SELECT f, max(n) FROM terms GROUP BY f`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var f, n int64
		if err := rows.Scan(&f, &n); err != nil {
			return nil, err
		}
		if f >= 0 && f < nFields {
			d.next[f] = n + 1
		}
	}
	return d, rows.Err()
}

// termStmts looks up and adds terms inside the writer's transaction.
type termStmts struct {
	get, put *sql.Stmt
}

func (ix *Index) term(ctx context.Context, st *termStmts, f int, v string) (int64, error) {
	d := ix.dict
	// Consecutive records mostly repeat a field's value (the service,
	// the host, the action, the outcome): one comparison instead of
	// hashing the value. (The last value may share a record's bytes:
	// one record per field kept alive at most.)
	last := &d.last[f]
	if last.ok && last.v == v {
		return last.n, nil
	}
	if n, ok := d.ids[f][v]; ok {
		*last = lastTerm{v, n, true}
		return n, nil
	}
	var n int64
	err := st.get.QueryRowContext(ctx, f, v).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		n = d.next[f]
		if _, err := st.put.ExecContext(ctx, f, n, v); err != nil {
			return 0, err
		}
		d.next[f]++
	} else if err != nil {
		return 0, err
	}
	if d.size >= maxDictCache {
		d.ids, d.size = [nFields]map[string]int64{}, 0
	}
	if d.ids[f] == nil {
		d.ids[f] = map[string]int64{}
	}
	// v may share a ledger record's bytes (decodeSpans): the cache keeps
	// its own copy.
	d.ids[f][strings.Clone(v)] = n
	d.size++
	*last = lastTerm{v, n, true}
	return n, nil
}

// add indexes a batch of consecutive records, the first of which must be
// want, and advances meta in the same transaction: the blocks they fall in
// are rewritten whole, their ids inserted.
func (ix *Index) add(ctx context.Context, want uint64, batch []rec) (err error) {
	if want < ix.next.Load() {
		return fmt.Errorf("index: record %d is already indexed (have %d)", want, ix.next.Load())
	}
	first := want
	// A merge prepared since the last batch is swapped in first, in its
	// own transaction (short: the ids were read and sorted elsewhere).
	if err := ix.applyMerge(ctx); err != nil {
		return err
	}
	sqlTx, err := ix.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index: begin: %w", err)
	}
	tx := ix.writeTx(sqlTx)
	defer func() {
		if err != nil {
			sqlTx.Rollback()
			// Terms numbered and blocks changed in the failed transaction
			// are gone.
			ix.dict = nil
			ix.tail, ix.tailIDs = nil, nil
			ix.mergeNext = nil
		}
	}()
	if ix.dict == nil {
		if ix.dict, err = ix.loadDict(ctx, sqlTx); err != nil {
			return fmt.Errorf("index: load terms: %w", err)
		}
	}
	ts := termStmts{get: tx.stmt(ctx, qTermGet), put: tx.stmt(ctx, qTermPut)}
	prev := ix.tail
	if err = ix.loadTail(ctx, tx, want); err != nil {
		return err
	}
	if prev != nil && ix.tail.blk != prev.blk {
		// The batch starts a block (the one before ended with the last
		// batch, Run's batches end with blocks when it is behind): the
		// runs of the blocks before are sealed, as when a batch crosses
		// into a new block below.
		if err = ix.mergeIDs(ctx, tx, ix.tail.blk); err != nil {
			return err
		}
	}
	var buf []byte
	var nums [nFields]uint32
	for i := range batch {
		r := &batch[i]
		if r.idx != want {
			return fmt.Errorf("index: ledger gave record %d, want %d", r.idx, want)
		}
		want++
		if i%yieldRows == yieldRows-1 {
			yieldCPU(ctx)
		}
		if r.idx/blockSize != ix.tail.blk {
			if buf, err = ix.storeTail(ctx, tx, buf); err != nil {
				return err
			}
			if err = ix.mergeIDs(ctx, tx, r.idx/blockSize); err != nil {
				return err
			}
			ix.tail = newBlock(r.idx)
			if ix.tailRun, ix.tailDeltas, ix.tailIDs, err = tailRuns(ctx, tx, ix.tail.blk); err != nil {
				return err
			}
			ix.tailStored = 0
		}
		c := &r.c
		for f := fAction; f <= fAgent; f++ {
			nums[f] = 0
			if c.has[f] {
				n, err := ix.term(ctx, &ts, f, c.str[f])
				if err != nil {
					return fmt.Errorf("index: terms of record %d: %w", r.idx, err)
				}
				nums[f] = uint32(n + 1)
			}
		}
		ix.tail.appendRow(c, &nums)
		for _, f := range []int{fEventID, fRequestID} {
			if c.has[f] {
				ix.tailIDs = append(ix.tailIDs, idEntry{idKey(ix.salt, f, c.str[f]), r.idx})
			}
		}
	}
	if _, err = ix.storeTail(ctx, tx, buf); err != nil {
		return err
	}
	yieldCPU(ctx)
	if _, err = tx.ExecContext(ctx, qNextPut, int64(want)); err != nil {
		return fmt.Errorf("index: update meta: %w", err)
	}
	if err = sqlTx.Commit(); err != nil {
		return fmt.Errorf("index: commit records %d..%d: %w", first, want-1, err)
	}
	ix.advance(want)
	ix.startMerge()
	return nil
}

// yieldCPU lets other goroutines run between the steps of a write
// transaction (each column of a block, each id chunk, every yieldRows
// rows, before the commit). SQLite here is Go code: without it one
// transaction (re-encoding a block of up to 4096 rows, its id run, the
// commit) held a P for 3-9 ms of CPU at 2,000 req/s (an execution trace
// of the single-node gateway), and with both Ps busy a gateway request
// waited that long; the scheduler takes a P back only after 10 ms. A yield with nothing else runnable
// costs well under a microsecond, a few dozen per batch.
//
// Not when the writer is behind (Run's batch at least half full, or as
// many records waiting): under ingest load every yield put the writer at
// the back of the run queue behind the request handlers, the index fell
// 1M records behind within seconds, off the ledger's in-memory tail, and
// then parsed every record again (index lag 11 s, 15.7 instead of 10.1 µs
// of CPU per event, `bench/cmd/ingestload`).
func yieldCPU(ctx context.Context) {
	if ctx.Value(writerBehind{}) == nil {
		yieldHook()
	}
}

// yieldHook is runtime.Gosched; tests count the yields.
var yieldHook = runtime.Gosched

// writerBehind is the context key by which Run tells add not to yield.
type writerBehind struct{}

// behind reports whether a batch of n records, with waiting more read
// and not yet batched, means the writer is behind the ledger.
func behind(n, waiting, batchSize int) bool {
	return n >= batchSize/2 || waiting >= batchSize/2
}

// yieldRows is how many rows add inserts between two yields.
const yieldRows = 256

// storeTail writes the writer's last block and its id run. (Run ends its
// batches with blocks when it is behind, so that each block and its ids
// are then encoded and written once: the next batch starts a new block.)
// A batch that adds rows to a block that is not full (a moderate rate)
// writes only what it added: a frame more per column (block.store) and a
// level-0 run more of the block, with the batch's ids (tailDeltas);
// lookups read each run's chunk. The block is written whole, its ids one
// run again, once it is full (before the level merges that take its run)
// or has maxFrames frames.
func (ix *Index) storeTail(ctx context.Context, tx writeTx, buf []byte) ([]byte, error) {
	// A block new to the writer (begun, or read from the file) is
	// written whole first: its delta runs, if any, folded into tailRun.
	t := ix.tail
	whole := t.wholeNext()
	buf, err := t.store(ctx, tx, buf)
	if err != nil {
		return buf, err
	}
	ix.stores++
	if !whole {
		if ix.tailStored == len(ix.tailIDs) {
			return buf, nil
		}
		added := ix.tailIDs[ix.tailStored:]
		bucketSort(added)
		var r idRun
		if err := tx.QueryRowContext(ctx, qNewRun).Scan(&r.run); err != nil {
			return buf, fmt.Errorf("index: id runs: %w", err)
		}
		r.lo, r.hi = t.blk, t.blk
		// Compact zeroes what it drops: on a copy, tailIDs keeps them.
		if err := writeRun(ctx, tx, r, slices.Compact(slices.Clone(added))); err != nil {
			return buf, err
		}
		ix.tailDeltas = append(ix.tailDeltas, r)
		ix.tailStored = len(ix.tailIDs)
		return buf, nil
	}
	if err := deleteRuns(ctx, tx, ix.tailDeltas, "write ids"); err != nil {
		return buf, err
	}
	ix.tailDeltas = ix.tailDeltas[:0]
	ix.tailIDs = sortIDs(ix.tailIDs)
	ix.tailStored = len(ix.tailIDs)
	return buf, writeRun(ctx, tx, ix.tailRun, ix.tailIDs)
}

// loadTail makes ix.tail the block that record want goes in, with the
// rows before want: read from the file if the writer does not hold it,
// rows of records pruned before they were indexed marked absent.
func (ix *Index) loadTail(ctx context.Context, tx writeTx, want uint64) error {
	blk := want / blockSize
	if t := ix.tail; t != nil && t.blk == blk && t.first+uint64(t.n) == want {
		return nil
	}
	ix.tail, ix.tailIDs = nil, nil
	r, deltas, es, err := tailRuns(ctx, tx, blk)
	if err != nil {
		return err
	}
	// The first store writes the block and its ids whole (the delta
	// runs folded into r).
	ix.tailDeltas, ix.tailStored = deltas, 0
	// Only ids of the rows kept (a block started again after a prune).
	es = slices.DeleteFunc(es, func(e idEntry) bool { return e.idx >= want })
	b, err := blockMeta(ctx, tx, blk)
	if err != nil {
		return err
	}
	if b == nil || b.first >= want {
		ix.tail, ix.tailRun, ix.tailIDs = newBlock(want), r, nil
		return nil
	}
	if b.first+uint64(b.n) > want {
		return fmt.Errorf("index: block %d already holds record %d", blk, want)
	}
	if err := b.load(ctx, tx, allNeeded); err != nil {
		return err
	}
	for b.first+uint64(b.n) < want {
		b.appendRow(nil, nil)
	}
	ix.tail, ix.tailRun, ix.tailIDs = b, r, es
	return nil
}
