// Package ledger is trailguard's store of record: an append-only,
// tamper-evident log of opaque records (encoded audit events) on local disk.
//
// Every record is a leaf of an RFC 6962 Merkle tree whose hashes are kept
// in the C2SP tlog-tiles layout, and the tree head is published as a C2SP
// tlog-checkpoint, signed as a note with Ed25519 (golang.org/x/mod/sumdb/note),
// at least every CheckpointEvery records or CheckpointInterval, on a fixed
// cadence while idle, and on Close. Append uses group commit: concurrent
// callers share one write and one fdatasync, and Append returns only once its
// records are durable. On Open, a torn tail left by a crash is cut back to
// the last complete record and the tree is resumed from the last checkpoint.
//
// Verify checks a ledger directory offline with only the public key and
// names the first problem; InclusionProof and ConsistencyProof produce
// standard RFC 6962 proofs that golang.org/x/mod/sumdb/tlog checks.
//
// Layout of a ledger directory:
//
//	seg/<first index>.seg   records, framed (length, time, bytes, CRC-32C)
//	seg/<first index>.idx   per-record offset and append time (derived)
//	tile/<L>/<N>[.p/<W>]    Merkle hash tiles (C2SP tlog-tiles)
//	checkpoint              latest signed checkpoint (C2SP tlog-checkpoint)
//	checkpoints/<n>.log     every signed checkpoint, framed, rotated at 4 MiB
//	pruned.log              signed records of retention pruning, framed
//	lock                    held by the writing process
package ledger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/retention"
)

// Options configure a Ledger. Origin and Signer are required for writing.
type Options struct {
	// Origin is the checkpoint origin line: a name for this log, such as
	// "audit.example.com/trailguard". It must stay the same for the life
	// of the ledger.
	Origin string
	// Signer signs checkpoints (and retention records).
	Signer note.Signer
	// HandoverSigner, if set, is the previous key: it co-signs the first
	// checkpoint made by this Open, so verifiers see an unbroken chain of
	// trust from the old key to Signer (key rotation). After that
	// checkpoint, verify rejects checkpoints signed only by the old key.
	HandoverSigner note.Signer

	// CheckpointEvery is the number of records after which a checkpoint is
	// made. Default 16384.
	CheckpointEvery int
	// CheckpointInterval bounds how long appended records wait for a
	// checkpoint. Default 1s.
	CheckpointInterval time.Duration
	// IdleInterval is the cadence of checkpoints while nothing is appended,
	// so that a period in which the logger was down or silenced is visible.
	// Default 1m.
	IdleInterval time.Duration
	// SegmentSize is the size at which a segment file is closed and a new
	// one started. Default 64 MiB.
	SegmentSize int64
	// MaxRecordSize is the largest record Append accepts. Default 1 MiB.
	MaxRecordSize int

	// Retention, if its Retain period is non-zero, deletes whole segments
	// whose newest record is older than the period (see Prune).
	Retention retention.Profile
	// LegalHold stops all pruning.
	LegalHold bool
	// PruneInterval is how often retention runs. Default 1h.
	PruneInterval time.Duration
	// PruneFloor, if set, returns the lowest record index a reader still
	// needs (the collector's forwarding outputs: what they have not
	// delivered yet); retention deletes no segment holding a record at or
	// above it. It is called from the retention goroutine and must not
	// block.
	PruneFloor func() uint64

	// Witnesses receive a copy of every checkpoint.
	Witnesses []Witness

	// Now returns the time stamped on records and checkpoints.
	// Default time.Now.
	Now func() time.Time
	// Logger receives operational errors that have no caller to return to
	// (witness delivery, retention). Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 16384
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Second
	}
	if o.IdleInterval <= 0 {
		o.IdleInterval = time.Minute
	}
	if o.SegmentSize <= 0 {
		o.SegmentSize = 64 << 20
	}
	if o.MaxRecordSize <= 0 {
		o.MaxRecordSize = 1 << 20
	}
	if o.MaxRecordSize > maxFrameLen {
		o.MaxRecordSize = maxFrameLen
	}
	if o.PruneInterval <= 0 {
		o.PruneInterval = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Entry is one record read back from the ledger.
type Entry struct {
	Index uint64
	// Time is when the record was appended (kept in the segment, not
	// covered by the Merkle tree; see the package documentation).
	Time time.Time
	Data []byte
}

// Errors returned by the ledger.
var (
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("ledger: closed")
	// ErrReadOnly is returned by writing methods of a ledger opened with OpenReadOnly.
	ErrReadOnly = errors.New("ledger: opened read-only")
	// ErrPruned is returned when reading a record deleted by retention.
	ErrPruned = errors.New("ledger: record pruned by retention policy")
	// ErrNotFound is returned when reading past the end of the ledger.
	ErrNotFound = errors.New("ledger: no such record")
	// ErrTooLarge is returned by Append for a record above MaxRecordSize.
	ErrTooLarge = errors.New("ledger: record too large")
)

// Ledger is an open ledger. Its methods are safe for concurrent use.
type Ledger struct {
	dir      string
	segDir   string
	opts     Options
	tiles    tileStore
	lock     *os.File
	readOnly bool

	segMu  sync.RWMutex
	segs   []*segment
	pruned uint64 // records below this index were deleted by retention

	durable  atomic.Uint64
	notifyMu sync.Mutex
	notify   chan struct{}

	cpMu     sync.Mutex
	latest   []byte
	latestCP Checkpoint

	closeMu sync.RWMutex
	closed  bool
	fatal   atomic.Pointer[error]

	in        chan *appendReq
	cpReq     chan chan cpResult
	syncCh    chan *syncJob
	syncDone  chan struct{}
	pubCh     chan pubJob
	pubDone   chan struct{}
	stop      chan struct{}
	bg        sync.WaitGroup
	pruneMu   sync.Mutex
	legalHold atomic.Bool

	w         writer
	cpl       cpLog // checkpoint history (publisher)
	witnesses []*witnessQueue
}

// writer is the state owned by the sequencer goroutine.
type writer struct {
	seg      *segment
	f, idx   *os.File
	off      int64
	next     uint64
	tree     *tree
	buf      []byte
	ibuf     []byte
	cpSize   uint64
	cpMono   time.Time
	handover note.Signer
	partial  map[int]tileRef // newest partial tile written, per level (publisher)
	// fullTiles counts the full tiles written per level (publisher).
	fullTiles map[int]uint64
}

type tileRef struct {
	n uint64
	w int
}

type appendReq struct {
	recs   [][]byte
	leaves []Hash
	first  uint64
	done   chan error
}

type cpResult struct {
	signed []byte
	err    error
}

type syncJob struct {
	seal    []sealed
	active  *os.File
	newSeg  bool
	upTo    uint64
	reqs    []*appendReq
	tiles   []tileData
	cp      *Checkpoint
	partial []tileData
	replies []chan cpResult
}

type sealed struct{ f, idx *os.File }

// Open opens (creating if needed) the ledger in dir for writing, recovering
// from a crash if the last process did not close it: a torn tail is cut
// back to the last complete record and a checkpoint is made for the
// recovered size. Open fails, rather than cut, if recovery would remove
// records covered by a signed checkpoint.
func Open(dir string, opts Options) (*Ledger, error) {
	opts.defaults()
	if opts.Origin == "" || opts.Signer == nil {
		return nil, errors.New("ledger: Options.Origin and Options.Signer are required")
	}
	l := &Ledger{dir: dir, segDir: filepath.Join(dir, "seg"), opts: opts, tiles: tileStore{dir: dir, made: new(sync.Map)}, notify: make(chan struct{})}
	if err := os.MkdirAll(l.segDir, 0o755); err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	if err := lockFile(lf); err != nil {
		lf.Close()
		return nil, fmt.Errorf("ledger: open %s: locked by another process: %w", dir, err)
	}
	l.lock = lf
	if err := l.recover(); err != nil {
		l.closeFiles()
		return nil, fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	l.in = make(chan *appendReq, 1024)
	l.cpReq = make(chan chan cpResult)
	l.syncCh = make(chan *syncJob, 4)
	l.syncDone = make(chan struct{})
	l.pubCh = make(chan pubJob, 64)
	l.pubDone = make(chan struct{})
	l.stop = make(chan struct{})
	for _, w := range opts.Witnesses {
		q := newWitnessQueue(w, opts.Logger)
		l.witnesses = append(l.witnesses, q)
	}
	l.w.handover = opts.HandoverSigner
	l.legalHold.Store(opts.LegalHold)
	l.w.cpMono = time.Now()
	go l.sequence()
	go l.syncLoop()
	go l.publishLoop()
	// A checkpoint at every open marks the restart and covers what a
	// crash left unsigned.
	if _, err := l.Checkpoint(context.Background()); err != nil {
		l.Close()
		return nil, fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	if opts.Retention.Retain > 0 {
		l.bg.Add(1)
		go l.pruneLoop()
	}
	return l, nil
}

// OpenReadOnly opens a ledger for reading and proofs without taking the
// writer's lock and without repairing anything; a live writer may keep
// appending. Size is the number of complete records found.
func OpenReadOnly(dir string) (*Ledger, error) {
	var opts Options
	opts.defaults()
	l := &Ledger{dir: dir, segDir: filepath.Join(dir, "seg"), opts: opts, tiles: tileStore{dir: dir}, readOnly: true, notify: make(chan struct{})}
	if _, err := os.Stat(l.segDir); err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	if err := l.recover(); err != nil {
		l.closeFiles()
		return nil, fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	return l, nil
}

// recover loads segments, checkpoints and the tree; for a writer it also
// repairs the torn tail and brings the tiles up to date.
func (l *Ledger) recover() error {
	maxLen := maxFrameLen
	// Retention history.
	pents, pend, perr := readFrameLog(filepath.Join(l.dir, "pruned.log"), maxCheckpointSize)
	if perr != nil && !l.readOnly {
		if err := os.Truncate(filepath.Join(l.dir, "pruned.log"), pend); err != nil {
			return err
		}
	}
	for _, e := range pents {
		if m, err := parsePruneNote(e.data); err == nil && m.End > l.pruned {
			l.pruned = m.End
		}
	}
	// Checkpoints.
	cpl, lastSigned, err := loadCPLog(l.dir, !l.readOnly)
	if err != nil {
		return err
	}
	l.cpl = cpl
	var last Checkpoint
	haveCP := false
	if lastSigned != nil {
		c, err := parseUnverified(lastSigned)
		if err != nil {
			return fmt.Errorf("%s: last checkpoint: %w", cpDir, err)
		}
		if !l.readOnly && c.Origin != l.opts.Origin {
			return fmt.Errorf("origin %q does not match the ledger's %q", l.opts.Origin, c.Origin)
		}
		last, haveCP = c, true
		l.latest = lastSigned
		l.latestCP = c
	}

	segs, err := listSegments(l.segDir)
	if err != nil {
		return err
	}
	for i, s := range segs {
		lastSeg := i == len(segs)-1
		want := uint64(0)
		if i+1 < len(segs) {
			want = segs[i+1].first - s.first
		}
		if !lastSeg {
			// A closed segment's .idx was synced when it was closed: if its
			// size matches, trust it without reading either file.
			if st, err := os.Stat(idxPath(s.path)); err == nil && uint64(st.Size()) == want*idxEntrySize {
				s.count.Store(want)
				continue
			}
		}
		res, err := scanSegment(s.path, s.first, maxLen)
		if err != nil {
			return err
		}
		n := uint64(len(res.entries))
		if !lastSeg && n != want {
			return fmt.Errorf("segment %s holds %d complete records, the next segment expects %d (%v); run trailguard verify", s.path, n, want, res.err)
		}
		s.count.Store(n)
		if l.readOnly {
			s.mem = res.entries
			continue
		}
		if lastSeg && (res.end < res.size || res.end < int64(segHeaderSize)) {
			end := res.end
			if end < int64(segHeaderSize) {
				end = 0 // torn header: rewritten below
			}
			l.opts.Logger.Warn("ledger: cutting torn tail", "segment", s.path, "from", end, "size", res.size, "reason", res.err)
			if err := os.Truncate(s.path, end); err != nil {
				return err
			}
			if end == 0 {
				if err := os.WriteFile(s.path, segHeader(s.first), 0o644); err != nil {
					return err
				}
				res.end = int64(segHeaderSize)
			}
		}
		if err := writeIdx(idxPath(s.path), res.entries); err != nil {
			return err
		}
	}
	if len(segs) > 0 && segs[0].first != l.pruned && !l.readOnly {
		return fmt.Errorf("first segment starts at record %d but retention pruned only below %d; run trailguard verify", segs[0].first, l.pruned)
	}
	l.segs = segs
	size := l.pruned
	if len(segs) > 0 {
		lastS := segs[len(segs)-1]
		size = lastS.first + lastS.count.Load()
	}
	if haveCP && last.Size > size {
		return fmt.Errorf("records end at %d but a signed checkpoint covers %d: records were lost or removed; run trailguard verify", size, last.Size)
	}
	l.durable.Store(size)
	if l.readOnly {
		return nil
	}

	// Writer: the active segment.
	if len(segs) == 0 {
		s := &segment{first: l.pruned, path: filepath.Join(l.segDir, segName(l.pruned))}
		if err := os.WriteFile(s.path, segHeader(s.first), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(idxPath(s.path), nil, 0o644); err != nil {
			return err
		}
		if err := syncFile(l.segDir); err != nil {
			return err
		}
		l.segs = []*segment{s}
	}
	act := l.segs[len(l.segs)-1]
	f, err := os.OpenFile(act.path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	off, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return err
	}
	idx, err := os.OpenFile(idxPath(act.path), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		f.Close()
		return err
	}
	// Make the repaired state durable before anything new is acknowledged.
	if err := f.Sync(); err != nil {
		return err
	}
	l.w.seg, l.w.f, l.w.idx, l.w.off, l.w.next = act, f, idx, off, size
	l.w.partial = map[int]tileRef{}
	l.w.fullTiles = map[int]uint64{}

	// The tree: resume from the last checkpoint's tiles, or rebuild.
	t, err := l.resumeTree(last, haveCP)
	if err != nil {
		return err
	}
	l.w.tree = t
	l.w.cpSize = last.Size
	return nil
}

// resumeTree returns the tree at the current size. It loads the tiles of
// the last checkpoint, checks them against its root and replays the
// records after it; if the tiles do not match (e.g. lost in a power
// failure) it rebuilds from the leaf tiles of pruned records and the
// records themselves, and checks the result against the checkpoint.
func (l *Ledger) resumeTree(last Checkpoint, haveCP bool) (*tree, error) {
	size := l.w.next
	emit := func(level int, n uint64, hs []Hash) {
		l.tiles.write(level, n, tileWidth, hashesBytes(hs))
	}
	if haveCP {
		if t, err := loadTree(last.Size, l.tiles.read); err == nil && t.root() == last.Root {
			if err := l.replay(t, size, emit, nil); err != nil {
				return nil, err
			}
			return t, nil
		}
		l.opts.Logger.Warn("ledger: hash tiles do not match the last checkpoint; rebuilding them", "dir", l.dir, "size", last.Size)
	}
	t := &tree{}
	if l.pruned > 0 {
		for t.size < l.pruned {
			n := t.size / tileWidth
			data, err := l.tiles.read(0, n, tileWidth)
			if err != nil {
				return nil, fmt.Errorf("leaf hashes of pruned records: %w", err)
			}
			for i := 0; i < tileWidth && t.size < l.pruned; i++ {
				t.append(Hash(data[i*HashSize:(i+1)*HashSize]), emit)
			}
		}
	}
	var check func(*tree) error
	if haveCP {
		check = func(t *tree) error {
			if t.size == last.Size && t.root() != last.Root {
				return fmt.Errorf("records do not match the last signed checkpoint (size %d); run trailguard verify", last.Size)
			}
			return nil
		}
		if err := check(t); err != nil {
			return nil, err
		}
	}
	if err := l.replay(t, size, emit, check); err != nil {
		return nil, err
	}
	return t, nil
}

// replay appends the leaf hashes of records [t.size, to) to t.
func (l *Ledger) replay(t *tree, to uint64, emit emitFunc, check func(*tree) error) error {
	for e, err := range l.entries(t.size, to) {
		if err != nil {
			return err
		}
		t.append(LeafHash(e.Data), emit)
		if check != nil {
			if err := check(t); err != nil {
				return err
			}
		}
	}
	if t.size != to {
		return fmt.Errorf("replay ended at %d, want %d", t.size, to)
	}
	return nil
}

// Size returns the number of durable records (the index the next Append
// will get, counting pruned records).
func (l *Ledger) Size() uint64 { return l.durable.Load() }

// Pruned returns the index of the oldest record not deleted by retention.
func (l *Ledger) Pruned() uint64 {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	return l.pruned
}

// Dir returns the ledger directory.
func (l *Ledger) Dir() string { return l.dir }

func (l *Ledger) err() error {
	if p := l.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

func (l *Ledger) setFatal(err error) {
	err = fmt.Errorf("ledger: %s: write failed, reopen to recover: %w", l.dir, err)
	l.fatal.CompareAndSwap(nil, &err)
}

// Append writes records and returns the index of the first once all of
// them are durable (written and fdatasync'ed); they get consecutive indices.
// Concurrent Appends share writes and syncs (group commit). ctx bounds only
// the wait to enter the queue: once queued, the records are written and
// Append waits for durability.
func (l *Ledger) Append(ctx context.Context, records ...[]byte) (uint64, error) {
	if l.readOnly {
		return 0, ErrReadOnly
	}
	if len(records) == 0 {
		return l.Size(), nil
	}
	r := &appendReq{recs: records, leaves: make([]Hash, len(records)), done: make(chan error, 1)}
	for i, rec := range records {
		if len(rec) > l.opts.MaxRecordSize {
			return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(rec), l.opts.MaxRecordSize)
		}
		// Leaf hashing happens here, on the callers' goroutines, so it
		// spreads over all cores instead of loading the sequencer.
		r.leaves[i] = LeafHash(rec)
	}
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		return 0, ErrClosed
	}
	if err := l.err(); err != nil {
		l.closeMu.RUnlock()
		return 0, err
	}
	select {
	case l.in <- r:
	case <-ctx.Done():
		l.closeMu.RUnlock()
		return 0, ctx.Err()
	}
	l.closeMu.RUnlock()
	if err := <-r.done; err != nil {
		return 0, err
	}
	return r.first, nil
}

// Checkpoint makes a signed checkpoint covering every durable record and
// returns it once it is written (and handed to the witnesses).
func (l *Ledger) Checkpoint(ctx context.Context) ([]byte, error) {
	if l.readOnly {
		return nil, ErrReadOnly
	}
	reply := make(chan cpResult, 1)
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case l.cpReq <- reply:
	case <-ctx.Done():
		l.closeMu.RUnlock()
		return nil, ctx.Err()
	}
	l.closeMu.RUnlock()
	select {
	case r := <-reply:
		return r.signed, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// LatestCheckpoint returns the newest signed checkpoint and its contents
// (nil if none was made yet).
func (l *Ledger) LatestCheckpoint() ([]byte, Checkpoint) {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	return l.latest, l.latestCP
}

// Close makes a final checkpoint, waits for the witnesses to receive it
// (at most 5 s) and closes the ledger.
func (l *Ledger) Close() error {
	if l.readOnly {
		l.closeMu.Lock()
		defer l.closeMu.Unlock()
		if !l.closed {
			l.closed = true
			l.closeFiles()
		}
		return nil
	}
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		return ErrClosed
	}
	l.closed = true
	close(l.in)
	l.closeMu.Unlock()
	<-l.syncDone
	<-l.pubDone
	close(l.stop)
	l.bg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, q := range l.witnesses {
		q.close(ctx)
	}
	err := l.err()
	if cerr := l.w.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	l.w.idx.Close()
	l.closeFiles()
	l.notifyMu.Lock()
	close(l.notify)
	l.notify = nil
	l.notifyMu.Unlock()
	return err
}

func (l *Ledger) closeFiles() {
	for _, s := range l.segs {
		s.closeRead()
	}
	if l.lock != nil {
		l.lock.Close()
	}
}

// sequence is the single writer: it assigns indices, frames records into
// the segment, extends the tree and hands each batch to the syncer. While
// the syncer waits for fdatasync, the next batch is already being written.
func (l *Ledger) sequence() {
	defer close(l.syncCh)
	timer := time.NewTimer(l.cpDelay())
	defer timer.Stop()
	for {
		var job *syncJob
		select {
		case r, ok := <-l.in:
			if !ok {
				// Close: a final checkpoint, always.
				j := l.cpJob(nil, nil)
				j.cp.Extra = append(j.cp.Extra, shutdownExt)
				l.syncCh <- j
				return
			}
			batch := []*appendReq{r}
			bytes := l.reqBytes(r)
		drain:
			for bytes < 8<<20 {
				select {
				case r2, ok := <-l.in:
					if !ok {
						// Process what we have; the closed channel is seen next round.
						break drain
					}
					batch = append(batch, r2)
					bytes += l.reqBytes(r2)
				default:
					break drain
				}
			}
			job = l.write(batch)
		case reply := <-l.cpReq:
			l.syncCh <- l.cpJob(nil, reply)
			l.resetTimer(timer)
			continue
		case <-timer.C:
		}
		if l.cpDue() {
			job = l.cpJob(job, nil)
		}
		if job != nil {
			l.syncCh <- job
		}
		l.resetTimer(timer)
	}
}

func (l *Ledger) reqBytes(r *appendReq) int {
	n := 0
	for _, rec := range r.recs {
		n += len(rec) + frameOverhead
	}
	return n
}

func (l *Ledger) resetTimer(t *time.Timer) {
	t.Stop()
	select {
	case <-t.C:
	default:
	}
	t.Reset(l.cpDelay())
}

func (l *Ledger) cpDelay() time.Duration {
	d := l.opts.IdleInterval
	if l.w.next > l.w.cpSize {
		d = l.opts.CheckpointInterval
	}
	if d = d - time.Since(l.w.cpMono); d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

func (l *Ledger) cpDue() bool {
	pending := l.w.next - l.w.cpSize
	since := time.Since(l.w.cpMono)
	return pending >= uint64(l.opts.CheckpointEvery) ||
		(pending > 0 && since >= l.opts.CheckpointInterval) ||
		since >= l.opts.IdleInterval
}

// shutdownExt marks the checkpoint made by Close: a gap after it is a
// planned stop, not a crash or a silenced logger.
const shutdownExt = "shutdown"

// cpJob attaches a checkpoint of the current tree to job (or a new job).
func (l *Ledger) cpJob(job *syncJob, reply chan cpResult) *syncJob {
	if job == nil {
		job = &syncJob{upTo: l.w.next, active: l.w.f}
	}
	job.cp = &Checkpoint{Origin: l.opts.Origin, Size: l.w.tree.size, Root: l.w.tree.root(), Time: l.opts.Now()}
	job.partial = l.w.tree.partialTiles()
	if reply != nil {
		job.replies = append(job.replies, reply)
	}
	l.w.cpSize = l.w.tree.size
	l.w.cpMono = time.Now()
	return job
}

// write frames and writes one batch. Errors make the ledger unusable until
// reopened (recovery then cuts whatever was half written).
func (l *Ledger) write(batch []*appendReq) *syncJob {
	job := &syncJob{reqs: batch}
	if err := l.err(); err != nil {
		return job
	}
	now := l.opts.Now().UnixNano()
	buf, ibuf := l.w.buf[:0], l.w.ibuf[:0]
	emit := func(level int, n uint64, hs []Hash) {
		job.tiles = append(job.tiles, tileData{level: level, n: n, data: hashesBytes(hs)})
	}
	fail := func(err error) *syncJob {
		l.setFatal(err)
		return job
	}
	for _, r := range batch {
		r.first = l.w.next
		for i, rec := range r.recs {
			fl := int64(len(rec) + frameOverhead)
			if l.w.off+int64(len(buf))+fl > l.opts.SegmentSize && l.w.off+int64(len(buf)) > int64(segHeaderSize) {
				if err := l.flush(buf, ibuf); err != nil {
					return fail(err)
				}
				buf, ibuf = buf[:0], ibuf[:0]
				if err := l.rotate(job); err != nil {
					return fail(err)
				}
			}
			ibuf = appendIdx(ibuf, l.w.off+int64(len(buf)), now)
			buf = appendFrame(buf, now, rec)
			l.w.tree.append(r.leaves[i], emit)
			l.w.next++
		}
	}
	if err := l.flush(buf, ibuf); err != nil {
		return fail(err)
	}
	if cap(buf) <= 16<<20 {
		l.w.buf, l.w.ibuf = buf[:0], ibuf[:0]
	}
	job.upTo = l.w.next
	job.active = l.w.f
	return job
}

func (l *Ledger) flush(buf, ibuf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	n, err := l.w.f.Write(buf)
	l.w.off += int64(n)
	if err != nil {
		return err
	}
	if _, err := l.w.idx.Write(ibuf); err != nil {
		return err
	}
	l.w.seg.count.Store(l.w.next - l.w.seg.first)
	return nil
}

// rotate closes the active segment (the syncer makes it durable) and
// starts a new one at the next index.
func (l *Ledger) rotate(job *syncJob) error {
	job.seal = append(job.seal, sealed{l.w.f, l.w.idx})
	s := &segment{first: l.w.next, path: filepath.Join(l.segDir, segName(l.w.next))}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	idx, err := os.OpenFile(idxPath(s.path), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		f.Close()
		return err
	}
	h := segHeader(s.first)
	if _, err := f.Write(h); err != nil {
		return err
	}
	l.w.seg, l.w.f, l.w.idx, l.w.off = s, f, idx, int64(len(h))
	l.segMu.Lock()
	l.segs = append(l.segs, s)
	l.segMu.Unlock()
	job.newSeg = true
	return nil
}

// syncLoop makes batches durable, acknowledges them, then writes tiles and
// checkpoints. Jobs that queue up while it waits are merged (group commit).
func (l *Ledger) syncLoop() {
	defer close(l.syncDone)
	defer close(l.pubCh)
	for job := range l.syncCh {
		jobs := []*syncJob{job}
	drain:
		for {
			select {
			case j, ok := <-l.syncCh:
				if !ok {
					break drain
				}
				jobs = append(jobs, j)
			default:
				break drain
			}
		}
		l.syncJobs(jobs)
	}
}

func (l *Ledger) syncJobs(jobs []*syncJob) {
	err := l.err()
	if err == nil {
		err = l.makeDurable(jobs)
		if err != nil {
			l.setFatal(err)
			err = l.err()
		}
	}
	if err == nil {
		l.durable.Store(jobs[len(jobs)-1].upTo)
		l.notifyMu.Lock()
		close(l.notify)
		l.notify = make(chan struct{})
		l.notifyMu.Unlock()
	}
	for _, j := range jobs {
		for _, r := range j.reqs {
			r.done <- err
		}
	}
	// Tiles and checkpoints follow the acknowledgement, on their own
	// goroutine so that file creation never delays the next sync: they
	// are derived from durable records and rebuilt by recovery if lost.
	pj := pubJob{err: err}
	for _, j := range jobs {
		pj.tiles = append(pj.tiles, j.tiles...)
		if j.cp != nil {
			pj.cp, pj.partial = j.cp, j.partial
			pj.replies = append(pj.replies, j.replies...)
		}
	}
	if len(pj.tiles) > 0 || pj.cp != nil {
		l.pubCh <- pj
	}
}

// pubJob is work for the publisher: full tiles, then maybe a checkpoint.
type pubJob struct {
	err     error
	tiles   []tileData
	cp      *Checkpoint
	partial []tileData
	replies []chan cpResult
}

func (l *Ledger) publishLoop() {
	defer close(l.pubDone)
	for pj := range l.pubCh {
		err := pj.err
		if err == nil {
			err = l.err()
		}
		if err == nil {
			for _, t := range pj.tiles {
				if werr := l.tiles.write(t.level, t.n, tileWidth, t.data); werr != nil {
					l.setFatal(werr)
					err = l.err()
					break
				}
				l.w.fullTiles[t.level] = max(l.w.fullTiles[t.level], t.n+1)
				if p, ok := l.w.partial[t.level]; ok && p.n == t.n {
					l.tiles.removePartials(t.level, t.n, tileWidth)
					delete(l.w.partial, t.level)
				}
			}
		}
		if pj.cp == nil {
			continue
		}
		var signed []byte
		if err == nil {
			signed, err = l.publish(pj.cp, pj.partial)
			if err != nil {
				l.setFatal(err)
				err = l.err()
			}
		}
		for _, r := range pj.replies {
			r <- cpResult{signed, err}
		}
	}
}

func (l *Ledger) makeDurable(jobs []*syncJob) error {
	newSeg := false
	for _, j := range jobs {
		for _, s := range j.seal {
			if err := s.f.Sync(); err != nil {
				return err
			}
			if err := s.idx.Sync(); err != nil {
				return err
			}
			s.f.Close()
			s.idx.Close()
		}
		newSeg = newSeg || j.newSeg
	}
	if newSeg {
		if err := syncFile(l.segDir); err != nil {
			return err
		}
	}
	if last := jobs[len(jobs)-1]; last.upTo > l.durable.Load() || newSeg {
		return datasync(last.active)
	}
	return nil
}

// publish writes a checkpoint's partial tiles, signs it, appends it to
// the checkpoint history (durably), replaces the checkpoint file and queues it
// for the witnesses.
func (l *Ledger) publish(cp *Checkpoint, partial []tileData) ([]byte, error) {
	for _, t := range partial {
		if t.n < l.w.fullTiles[t.level] {
			// A later batch already completed this tile; readers of
			// this checkpoint take a prefix of the full tile.
			continue
		}
		w := len(t.data) / HashSize
		if err := l.tiles.write(t.level, t.n, w, t.data); err != nil {
			return nil, err
		}
		if old, ok := l.w.partial[t.level]; ok && old.n == t.n && old.w < w {
			l.tiles.removePartials(t.level, t.n, w)
		}
		l.w.partial[t.level] = tileRef{t.n, w}
	}
	signers := []note.Signer{l.opts.Signer}
	if l.w.handover != nil {
		signers = append(signers, l.w.handover)
	}
	signed, err := SignCheckpoint(*cp, signers...)
	if err != nil {
		return nil, err
	}
	if err := l.cpl.append(cp.Time.UnixNano(), signed); err != nil {
		return nil, err
	}
	l.w.handover = nil
	tmp := filepath.Join(l.dir, "checkpoint.tmp")
	if err := os.WriteFile(tmp, signed, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, filepath.Join(l.dir, "checkpoint")); err != nil {
		return nil, err
	}
	l.cpMu.Lock()
	l.latest, l.latestCP = signed, *cp
	l.cpMu.Unlock()
	for _, q := range l.witnesses {
		q.enqueue(signed)
	}
	return signed, nil
}

// segmentFor returns the segment holding record i.
func (l *Ledger) segmentFor(i uint64) (*segment, error) {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	if i < l.pruned {
		return nil, fmt.Errorf("%w: record %d (records below %d were pruned)", ErrPruned, i, l.pruned)
	}
	k := sort.Search(len(l.segs), func(k int) bool { return l.segs[k].first > i }) - 1
	if k < 0 {
		return nil, fmt.Errorf("%w: record %d", ErrNotFound, i)
	}
	return l.segs[k], nil
}

// Read returns record i.
func (l *Ledger) Read(i uint64) (Entry, error) {
	if i >= l.Size() {
		return Entry{}, fmt.Errorf("%w: record %d (size %d)", ErrNotFound, i, l.Size())
	}
	s, err := l.segmentFor(i)
	if err != nil {
		return Entry{}, err
	}
	e, err := s.read(i-s.first, maxFrameLen)
	if errors.Is(err, errSegmentClosed) {
		if l.isClosed() {
			return Entry{}, ErrClosed
		}
		return Entry{}, fmt.Errorf("%w: record %d", ErrPruned, i)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: read %d: %w", i, err)
	}
	return e, nil
}

func (l *Ledger) isClosed() bool {
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	return l.closed
}
