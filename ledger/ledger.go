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
//	hashes/<L>              Merkle hashes, one file per tile level: the C2SP
//	                        tlog-tiles of every checkpoint are byte ranges
//	                        of them (TileHandler, ExportTiles); level-0
//	                        tiles of compressed segments are holes, derived
//	                        from the records when read (derived.go)
//	checkpoint              latest signed checkpoint (C2SP tlog-checkpoint)
//	checkpoints/<n>.log     every signed checkpoint, framed, rotated at 4 MiB
//	pruned.log              signed records of retention pruning, framed
//	lock                    held by the writing process
package ledger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/internal/flock"
	"github.com/trailguard/trailguard/ledger/internal/sha256x2"
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
	// one started. Default 16 MiB: the open segment is the only one kept
	// uncompressed, so it bounds the uncompressed window (~21k events of
	// 750 bytes).
	SegmentSize int64
	// DisableCompression keeps closed segments as they were written.
	// By default each closed segment is compressed in the background
	// (zstd, in blocks of 128 KiB that decode on their own: reads and
	// proofs stay random-access, verify needs only the public key); the
	// demo's traffic takes about 65 bytes per event instead of 766.
	DisableCompression bool
	// CompactBacklog bounds the closed segments waiting uncompressed.
	// Compressing a segment costs about as much CPU as appending its
	// records, so while records arrive (a batch within the last 200 ms)
	// the compactor leaves the cores to the appenders, until more than
	// CompactBacklog closed segments wait; then it runs flat out. At twice
	// CompactBacklog the writer itself waits for the compactor before
	// writing more (a write stall), so no more than 2 × CompactBacklog
	// closed segments ever wait uncompressed (more only while one batch
	// larger than a segment is written): with the open segment, disk use
	// beyond the compressed form stays within (2 × CompactBacklog + 1) ×
	// SegmentSize. The writer never waits on a compactor that has no room
	// beyond Reserve for its copy.
	// Default 8 (with 16 MiB segments: bursts of up to ~128 MiB of
	// records are appended without compaction taking cores from them).
	CompactBacklog int
	// MaxRecordSize is the largest record Append accepts. Default 1 MiB.
	MaxRecordSize int
	// TailBytes, if positive, keeps copies of the records most recently
	// appended by this Ledger, up to this many bytes, for FollowAppended:
	// consumers in the writing process (an index, detection) then take
	// them from memory instead of reading them back and hashing them
	// again. Default 0: none.
	TailBytes int

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

	// Witnesses receive a copy of every checkpoint. At Open, the ledger
	// compares its newest checkpoint with each witness's newest and refuses
	// to start if it is behind or forks from it (ErrWitness).
	Witnesses []Witness
	// StartWithoutWitness lets Open proceed, logging an error, when a
	// witness cannot be reached to compare checkpoints. A ledger behind or
	// forked from a witness that answers is refused regardless.
	StartWithoutWitness bool
	// PreviousKeys are the verifier keys of earlier signing keys (before a
	// rotation). Retention and the witness check at Open accept checkpoints
	// signed by Signer, HandoverSigner or one of these.
	PreviousKeys []note.Verifier

	// AdoptUnsigned lets Open sign records that no signed checkpoint
	// vouches for beyond what a crash can leave (the checkpoint history
	// is gone, records follow a clean shutdown, or the unsigned tail is
	// longer than its writer's bound), which Open otherwise refuses with
	// ErrUnsignedRecords. Set it to the number of records the ledger
	// holds, as Open's error states, so that a value left in place never
	// adopts a later, different state; 0 never adopts. The adopting
	// checkpoint records the range and the reason ("adopt" line), verify
	// reports it for ever after, and Adopted returns it.
	AdoptUnsigned uint64

	// Reserve is free space, in bytes, on the ledger's file system that
	// appends never use: while less is available, Append fails with
	// ErrNoSpace, so that checkpoints, tiles and the final shutdown
	// checkpoint always have room. Free space is checked with statfs at
	// most every 100 ms or every min(4 MiB, Reserve/16) appended, and about
	// once per batch within one Reserve of the limit (between checks the
	// writer counts what it takes). Default 0: no reserve (a
	// full disk still fails appends with ErrNoSpace, and may leave no room
	// for the final checkpoint).
	Reserve int64
	// CloseTimeout bounds Close, even when the disk or a witness does not
	// answer. Default 10s.
	CloseTimeout time.Duration

	// Now returns the time stamped on records and checkpoints.
	// Default time.Now.
	Now func() time.Time
	// Logger receives operational errors that have no caller to return to
	// (witness delivery, retention). Default slog.Default().
	Logger *slog.Logger

	// compactHook, if set (tests), runs before each segment is compressed;
	// an error it returns is the compaction's.
	compactHook func() error
	// trimHook, if set (tests), runs between a compaction and the punch
	// of its leaf hashes.
	trimHook func()
	// zeroAheadHook, if set (tests), runs before the next segment is
	// zeroed ahead.
	zeroAheadHook func()
	// closeFilesHook, if set (tests), runs as Close starts closing the
	// writer's files (a disk slow to close them).
	closeFilesHook func()
	// noDirect, if set (tests), writes every segment through the page
	// cache and syncs it with fdatasync.
	noDirect bool
	// readFiles, if set (tests), replaces maxReadFiles.
	readFiles int
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
		o.SegmentSize = 16 << 20
	}
	if o.CompactBacklog <= 0 {
		o.CompactBacklog = 8
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
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 10 * time.Second
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
	// Aux is what the appender passed to AppendAux with the record, and
	// AuxPos the record's position among that call's records; only
	// FollowAppended yields them, for records it serves from memory (nil
	// and 0 otherwise: a follower must be able to do without).
	Aux    any
	AuxPos int
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
	// ErrNoSpace is returned (wrapped) by Append when the file system is
	// full, the writer's quota is exhausted or free space is below
	// Options.Reserve. It means the records were definitely not stored:
	// whatever was half written has been cut back. Appends succeed again
	// once space returns, without reopening.
	ErrNoSpace = errors.New("ledger: no space left on the ledger's file system; records not stored")
	// ErrUnknownOutcome is returned (wrapped) by Append when the records
	// were written but making them durable failed (fdatasync: an I/O
	// error), or when a disk-full error struck after part of one Append
	// was stored: some or all of the records may be in the ledger. Resend
	// them with their event ids so duplicates can be dropped. After a
	// failed sync the ledger is failed until reopened (ErrFailed).
	ErrUnknownOutcome = errors.New("ledger: outcome unknown: the records may or may not be stored")
	// ErrFailed is returned (wrapped) by Append after an I/O error made
	// the ledger unusable: those records were not stored. Reopen the
	// ledger to recover.
	ErrFailed = errors.New("ledger: failed after an I/O error; reopen to recover")
	// ErrNoFinalCheckpoint is returned (wrapped) by Close when the final
	// signed checkpoint could not be written (disk full, I/O error, or
	// CloseTimeout): records since the last checkpoint stay unsigned until
	// the next Open signs them.
	ErrNoFinalCheckpoint = errors.New("ledger: final checkpoint not written")
	// ErrCorrupt is returned (wrapped) by reads when a record does not
	// hash to its leaf in the signed tree (the segment was damaged or
	// altered) or the hash tiles do not authenticate; run verify.
	ErrCorrupt = errors.New("ledger: record does not match the signed tree")
)

// Ledger is an open ledger. Its methods are safe for concurrent use.
type Ledger struct {
	dir      string
	segDir   string
	opts     Options
	tiles    *tileStore
	lock     *os.File
	readOnly bool

	segMu  sync.RWMutex
	segs   []*segment
	pruned uint64 // records below this index were deleted by retention
	zcache *blockCache
	fds    *readFiles // the segments' read handles (readfiles.go)

	// Closed segments waiting to be compressed (compactLoop).
	compactMu   sync.Mutex
	compactQ    []*segment
	compactWake chan struct{}
	lastWrite   atomic.Int64 // Unix ns of the last batch written (the compactor waits while busy)
	// backlog counts the segments this writer closed (from the rotation
	// on) that are not compressed yet (the write stall's measure);
	// compactProgress is closed and replaced (compactMu) whenever one is
	// done or the compactor defers for lack of room (compactStuck).
	backlog         atomic.Int64
	compactProgress chan struct{}
	compactStuck    atomic.Bool
	compacting      atomic.Bool   // a segment is being compressed
	compactBufs     *compactBufs  // the compactor's buffers (its goroutine only)
	compactStalls   atomic.Uint64 // write stalls (tests, benchmarks)
	zeroing         atomic.Int32  // segments being zeroed ahead (benchmarks wait for none)

	durable  atomic.Uint64
	notifyMu sync.Mutex
	notify   chan struct{}

	cpMu     sync.Mutex
	latest   []byte
	latestCP Checkpoint
	// signed is the size of the newest checkpoint durably in the history:
	// the writer never has more than bound records on disk beyond it.
	signed     atomic.Uint64
	signedWake chan struct{} // closed after every checkpoint attempt (cpMu)
	bound      uint64
	boundWaits atomic.Uint64 // times the sequencer waited for a checkpoint (benchmarks)
	// rotations and the sequencer's time in them, the longest (benchmarks)
	rotations, rotateNs, rotateMax atomic.Int64
	sealNs                         atomic.Int64  // the syncer's time in rotations' syncs and links (benchmarks)
	syncs                          atomic.Uint64 // fdatasyncs of segments (benchmarks)
	direct                         atomic.Uint64 // direct writes to segments (tests, benchmarks)
	directOut                      atomic.Uint64 // segments written past their zeros (tests)
	directOff                      atomic.Uint64 // direct writes refused as unsupported, then written through the page cache (tests)
	aioWrites                      atomic.Uint64 // direct writes made through AIO (tests)
	flushes                        atomic.Uint64 // flushes submitted through AIO (tests)
	cacheFlushes                   atomic.Uint64 // of them, fdatasyncs of batches written through the page cache (tests)
	// The last sync's requests and duration (syncer), for the sequencer's
	// wait before handing it the next batch.
	lastSyncReqs atomic.Int64
	lastSyncDur  atomic.Int64
	cpFailed     atomic.Bool // the last checkpoint could not be written (disk full)
	adopted      *Adoption
	auth         *leafAuth
	tail         *appendedTail // nil without Options.TailBytes

	closeMu sync.RWMutex
	closed  bool
	fatal   atomic.Pointer[error]

	in       chan *appendReq
	cpReq    chan chan cpResult
	syncCh   chan *syncJob
	syncIdle chan struct{} // the syncer waits for work (a token, see sequence)
	// inBytes: bytes of the requests in l.in (callers add after sending,
	// the sequencer subtracts on receiving); inNudge: a caller whose
	// request takes them to holdBytes tells the sequencer, which does not
	// receive while the syncer is busy (see sequence).
	inBytes   atomic.Int64
	inCount   atomic.Int64 // requests in l.in, likewise
	inWant    atomic.Int64 // callers nudge when inCount reaches it
	inNudge   chan struct{}
	syncDone  chan struct{}
	pubCh     chan pubJob
	pubDone   chan struct{}
	final     chan cpResult // the shutdown checkpoint's outcome
	stop      chan struct{}
	bg        sync.WaitGroup
	pruneMu   sync.Mutex
	legalHold atomic.Bool
	// retHolds: HoldRetention's holds in force; Prune deletes nothing
	// while it is above zero.
	retHolds atomic.Int64

	// flusher: the direct writes' flushes (sequencer submits, syncer
	// waits); pipe: jobs sent to the syncer and not yet acknowledged
	// (low 32 bits) and those among them with a flush (high 32 bits),
	// one word so that the sequencer never sees one count changed
	// without the other (see slot in sequence); slotFree: the syncer
	// acknowledged a job.
	flusher *aioFlusher
	// pubFlusher: the publisher's AIO context for the level files' syncs
	// (none: not made yet, or noPubFlusher, unavailable).
	pubFlusher   *aioFlusher
	noPubFlusher bool
	// syncFlusher: the syncer's, for its fdatasyncs of page-cache writes.
	syncFlusher   *aioFlusher
	noSyncFlusher bool
	pipe          atomic.Int64
	slotFree      chan struct{}

	w     writer
	space spaceGuard
	cpl   cpLog // checkpoint history (publisher)
	// cpFile: the size and time of the checkpoint in the checkpoint file,
	// and how many checkpoints left it as it was (publisher).
	cpFile  cpFileState
	pending []nodeBuf // hashes not written yet for lack of space (publisher)
	// pubHeld: hashes of acknowledged records not yet handed to the
	// publisher, pubHeldBytes of them (syncer).
	pubHeld      []nodeBuf
	pubHeldBytes int
	witnesses    []*witnessQueue
	// closeTrace records where Close's time went (tests).
	closeTrace closeTrace
}

// closeTrace is where Close's time went.
type closeTrace struct {
	deadline time.Time     // Close's start plus CloseTimeout
	files    time.Duration // closing the writer's files
	waited   time.Time     // the wait for the witnesses ended
}

// writer is the state owned by the sequencer goroutine.
type writer struct {
	sent uint64 // jobs handed to the syncer
	// zeroed: the active segment was zeroed ahead (zeroahead.go): zeros
	// follow its records. ahead: the next one being zeroed, if any.
	zeroed bool
	ahead  chan bool
	// segSyncs: l.syncs when the active segment was started (whether
	// zeroing ahead pays, see zeroAheadIfWorth).
	segSyncs uint64
	// dio: the active segment opened for direct, synchronous writes
	// (direct.go), if it is; dsize: how far it was zeroed; dbuf: the
	// aligned buffer, starting with the bytes of the block being written.
	dio      *os.File
	dsize    int64
	dbuf     []byte
	directOK bool // the batch being written may be written directly (the syncer is idle)
	// noDirect: a direct write was refused as unsupported (EINVAL,
	// EOPNOTSUPP: some file systems accept O_DIRECT at open and refuse its
	// writes); the ledger writes through the page cache from then on.
	noDirect bool
	// aio: the direct writes' AIO context, made at the first (direct.go,
	// aio_linux.go); noAIO: none could be made or the kernel refused a
	// write through it: pwrite.
	aio   *aioFile
	noAIO bool
	// noFlusher: no AIO context for flushes could be made or the kernel
	// refused one: fdatasync after each direct write.
	noFlusher bool

	seg      *segment
	f, idx   *os.File
	off      int64
	next     uint64
	tree     *tree
	buf      []byte
	ibuf     []byte
	leaves   []Hash // kept with buf and ibuf (frameBufKeep)
	cpSize   uint64
	cpMono   time.Time
	handover note.Signer
	// openExtra are extension lines for the first checkpoint (adoption).
	openExtra []string
}

type appendReq struct {
	recs   [][]byte
	leaves []Hash
	first  uint64
	at     int64 // the time in the records' frames (Unix ns)
	aux    any   // AppendAux's value, kept in the tail
	done   chan error
	bytes  int // framed size of recs
}

type cpResult struct {
	signed []byte
	err    error
}

type syncJob struct {
	// buffered: records of this job went through the page cache and
	// need the fdatasync (not those written directly, direct.go).
	buffered bool
	seal     []sealed
	link     []linked
	active   *os.File
	newSeg   bool
	upTo     uint64
	reqs     []*appendReq
	nodes    nodeBuf // hashes for the level files
	cp       *Checkpoint
	replies  []chan cpResult

	// ticket: the last flush submitted for this job's direct writes
	// (aio_linux.go), 0 if none: the syncer waits for every flush up to
	// it before the acknowledgement. wrote: when its direct write began.
	ticket uint64
	wrote  time.Time
}

// sealed is a segment the writer closed: the syncer cuts its zeros (if
// cut >= 0, at that offset) and makes it durable before any later
// segment's name can be.
type sealed struct {
	f, idx *os.File
	seg    *segment
	cut    int64
}

// linked is a new segment written under its pending name (pendingPath):
// the syncer links it to its name once the segments before it are
// durable, and its header with them.
type linked struct {
	f   *os.File
	seg *segment
}

// lockWait bounds Open's wait for the ledger's lock.
const lockWait = time.Second

// pendingPath is where a new segment is written until the syncer links it
// to path (rotate): listSegments ignores the name, Open removes what a
// crash left (records no one was told were stored).
func pendingPath(path string) string { return path + ".new" }

// Open opens (creating if needed) the ledger in dir for writing, recovering
// from a crash if the last process did not close it: a torn tail is cut
// back to the last complete record and a checkpoint is made for the
// recovered size. Open fails, rather than cut, if recovery would remove
// records covered by a signed checkpoint. It refuses (ErrUnsignedRecords)
// to sign records no checkpoint vouches for beyond what a crash can leave,
// unless Options.AdoptUnsigned says so, and (ErrWitness) to start behind or
// forked from a witness.
func Open(dir string, opts Options) (*Ledger, error) {
	opts.defaults()
	if opts.Origin == "" || opts.Signer == nil {
		return nil, errors.New("ledger: Options.Origin and Options.Signer are required")
	}
	l := &Ledger{dir: dir, segDir: filepath.Join(dir, "seg"), opts: opts, tiles: newTileStore(dir, true), notify: make(chan struct{}), zcache: newBlockCache(zCacheBlocks), fds: newReadFiles(cmp.Or(opts.readFiles, maxReadFiles)),
		compactWake: make(chan struct{}, 1), compactProgress: make(chan struct{}),
		bound: 2 * uint64(opts.CheckpointEvery), space: spaceGuard{dir: dir, reserve: opts.Reserve}}
	l.tiles.deriver.source = l.zsegRecords
	if opts.TailBytes > 0 {
		l.tail = &appendedTail{max: opts.TailBytes}
	}
	if err := os.MkdirAll(l.segDir, 0o755); err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	// Two processes never write one ledger. The wait is for this
	// process's own children: one being started holds a copy of the lock
	// until its exec, so a ledger closed and opened again meanwhile would
	// find its lock still held (internal/flock).
	lf, err := flock.Lock(filepath.Join(dir, "lock"), lockWait)
	if errors.Is(err, flock.ErrBusy) {
		return nil, fmt.Errorf("ledger: open %s: its lock is %w", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	l.lock = lf
	if err := l.recover(); err != nil {
		l.closeWriterFiles()
		l.closeFiles()
		return nil, fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	if err := l.checkWitnesses(); err != nil {
		l.closeWriterFiles()
		l.closeFiles()
		return nil, fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	l.stop = make(chan struct{})
	l.zeroAtOpen()
	l.in = make(chan *appendReq, 1024)
	l.cpReq = make(chan chan cpResult)
	l.syncCh = make(chan *syncJob, 4)
	l.syncIdle = make(chan struct{}, 1)
	l.slotFree = make(chan struct{}, 1)
	l.inNudge = make(chan struct{}, 1)
	l.inWant.Store(math.MaxInt64)
	l.syncDone = make(chan struct{})
	l.pubCh = make(chan pubJob, 64)
	l.pubDone = make(chan struct{})
	l.final = make(chan cpResult, 1)
	l.signedWake = make(chan struct{})
	for _, w := range opts.Witnesses {
		q := newWitnessQueue(w, opts.Logger)
		l.witnesses = append(l.witnesses, q)
	}
	l.w.handover = opts.HandoverSigner
	l.legalHold.Store(opts.LegalHold)
	l.w.cpMono = time.Now()
	// A new segment (and its .idx) that was not yet linked to its name
	// (rotate) when the last process stopped: none of its records were
	// acknowledged.
	if news, _ := filepath.Glob(filepath.Join(l.segDir, "*.new")); len(news) > 0 {
		for _, p := range news {
			os.Remove(p)
		}
	}
	go l.sequence()
	go l.syncLoop()
	go l.publishLoop()
	// A checkpoint at every open marks the restart and covers what a
	// crash left unsigned (and what the operator adopted).
	if _, err := l.Checkpoint(context.Background()); err != nil {
		l.Close()
		return nil, fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	// Compressed segments whose leaf hashes are still stored: a crash
	// between a compaction and its trim, or a ledger written before.
	l.trimLeaves()
	if opts.Retention.Retain > 0 {
		l.bg.Add(1)
		go l.pruneLoop()
	}
	if !opts.DisableCompression {
		// Closed segments not compressed yet (a ledger written before
		// compression, or a compaction a stop interrupted).
		l.segMu.RLock()
		for _, s := range l.segs[:len(l.segs)-1] {
			if _, z := s.source(); z == nil {
				l.compactQ = append(l.compactQ, s)
			}
		}
		l.segMu.RUnlock()
		l.bg.Add(1)
		go l.compactLoop()
		l.wakeCompactor()
	}
	return l, nil
}

// OpenReadOnly opens a ledger for reading and proofs without taking the
// writer's lock and without repairing anything; a live writer may keep
// appending. Size is the number of complete records found. Reads are
// checked against the newest checkpoint's tree (not its signature: there
// is no key here; verify checks signatures).
func OpenReadOnly(dir string) (*Ledger, error) {
	var opts Options
	opts.defaults()
	l := &Ledger{dir: dir, segDir: filepath.Join(dir, "seg"), opts: opts, tiles: newTileStore(dir, false), readOnly: true, notify: make(chan struct{}), zcache: newBlockCache(zCacheBlocks), fds: newReadFiles(maxReadFiles)}
	l.tiles.deriver.source = l.zsegRecords
	if _, err := os.Stat(l.segDir); err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	if err := l.recover(); err != nil {
		l.closeFiles()
		return nil, fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	return l, nil
}

// Adopted returns the records this Open signed at the operator's request
// (Options.AdoptUnsigned) although no checkpoint vouched for them, or nil.
func (l *Ledger) Adopted() *Adoption { return l.adopted }

// recover loads segments, checkpoints and the tree; for a writer it also
// repairs the torn tail, checks that every record found is vouched for and
// brings the tiles up to date.
func (l *Ledger) recover() error {
	maxLen := maxFrameLen
	// Retention history.
	// Only a torn tail is cut (damage followed by valid records is kept
	// for verify to report, as in the checkpoint history).
	ps := scanFrameLog(filepath.Join(l.dir, "pruned.log"), frameLogMax, maxCheckpointSize, validPrune)
	if cut, ok := ps.crashTail(); ok && !l.readOnly {
		if err := truncateNoFollow(filepath.Join(l.dir, "pruned.log"), cut); err != nil {
			return err
		}
	}
	for _, d := range ps.inner() {
		l.opts.Logger.Error("ledger: pruned.log is damaged; not repaired: run trailguard verify", "damage", d.String())
	}
	pents := ps.ents
	for _, e := range pents {
		if m, err := parsePruneNote(e.data); err == nil && m.End > l.pruned {
			l.pruned = m.End
		}
	}
	// Checkpoints.
	cpl, lastSigned, damaged, err := loadCPLog(l.dir, !l.readOnly)
	if err != nil {
		return err
	}
	for _, d := range damaged {
		l.opts.Logger.Error("ledger: the checkpoint history is damaged; not repaired (the signed checkpoints after the damage are kept and used): run trailguard verify", "damage", d)
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
	migrated := false
	if !l.readOnly {
		if migrated, err = migrateLegacyTiles(l.dir); err != nil {
			return fmt.Errorf("converting the hash tiles to level files: %w", err)
		}
		if migrated {
			l.opts.Logger.Info("ledger: hash tiles converted from one file per tile to level files", "dir", l.dir)
		}
	}
	l.auth = newLeafAuth(l.tiles)
	if haveCP {
		l.auth.setAnchor(last.Size, last.Root)
	}

	if !l.readOnly {
		// Compressions a stop interrupted before they were complete.
		tmps, _ := filepath.Glob(filepath.Join(l.segDir, "*.zseg.tmp"))
		for _, p := range tmps {
			os.Remove(p)
		}
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
		if s.leftover != "" && !l.readOnly {
			// A compaction stopped between writing the .zseg and removing
			// the .seg (or left a damaged .zseg beside its .seg).
			l.opts.Logger.Info("ledger: removing a segment file left by an interrupted compaction", "file", s.leftover, "kept", s.path)
			os.Remove(s.leftover)
			if strings.HasSuffix(s.leftover, ".seg") {
				os.Remove(idxPath(s.leftover))
			}
			s.leftover = ""
		}
		if s.zerr != nil {
			return fmt.Errorf("compressed segment %s cannot be read: %w; run trailguard verify", s.path, s.zerr)
		}
		if s.z != nil {
			if !lastSeg && s.z.count != want {
				return fmt.Errorf("compressed segment %s holds %d records, the next segment expects %d; run trailguard verify", s.path, s.z.count, want)
			}
			s.count.Store(s.z.count)
			continue
		}
		// A read-only open keeps in memory where the records are in the
		// segments beyond the newest checkpoint: no leaf hash is known for
		// them, so their positions come from the segment itself.
		unanchored := l.readOnly && (!haveCP || lastSeg || s.first+want > last.Size)
		if !lastSeg && !unanchored {
			// A closed segment's .idx was synced when it was closed: if its
			// size matches, use it without reading either file (reads check
			// every record against its leaf hash, so a damaged .idx cannot
			// return a wrong record).
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
			s.mem, s.memAll = res.entries, true
			continue
		}
		if lastSeg && (res.end < res.size || res.end < int64(segHeaderSize)) {
			end := res.end
			if end < int64(segHeaderSize) {
				end = 0 // torn header: rewritten below
			}
			l.opts.Logger.Warn("ledger: cutting torn tail", "segment", s.path, "from", end, "size", res.size, "reason", res.err)
			// Never through a link planted at the name (plant.go).
			if err := truncateNoFollow(s.path, end); err != nil {
				return fmt.Errorf("ledger: cut torn tail: %w", err)
			}
			if end == 0 {
				if err := writeFresh(s.path, segHeader(s.first), false); err != nil {
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
	// Never sign what was not vouched for.
	adopted, err := l.vouch(size, last, haveCP)
	if err != nil {
		return err
	}
	if adopted != nil {
		l.adopted = adopted
		l.w.openExtra = []string{adopted.ext()}
	}
	if haveCP {
		l.signed.Store(last.Size)
	}

	// Writer: the active segment (never a compressed one).
	if len(segs) == 0 || segs[len(segs)-1].z != nil {
		s := &segment{first: size, path: filepath.Join(l.segDir, segName(size))}
		if err := writeFresh(s.path, segHeader(s.first), false); err != nil {
			return err
		}
		if err := writeFresh(idxPath(s.path), nil, false); err != nil {
			return err
		}
		if err := syncFile(l.segDir); err != nil {
			return err
		}
		l.segs = append(l.segs, s)
	}
	act := l.segs[len(l.segs)-1]
	f, err := os.OpenFile(act.path, os.O_WRONLY|oNoFollow, 0)
	if err != nil {
		return err
	}
	off, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return err
	}
	idx, err := os.OpenFile(idxPath(act.path), os.O_WRONLY|os.O_APPEND|oNoFollow, 0)
	if err != nil {
		f.Close()
		return err
	}
	l.w.seg, l.w.f, l.w.idx, l.w.off, l.w.next = act, f, idx, off, size
	// Make the repaired state durable before anything new is acknowledged.
	if err := f.Sync(); err != nil {
		return err
	}

	// The tree: resume from the last checkpoint's tiles, or rebuild.
	t, err := l.resumeTree(last, haveCP)
	if err != nil {
		return err
	}
	if err := l.tiles.sync(); err != nil {
		return err
	}
	if err := removeLegacyTiles(l.dir); err != nil {
		l.opts.Logger.Warn("ledger: old tile files not removed", "dir", l.dir, "err", err)
	}
	l.w.tree = t
	l.w.cpSize = last.Size
	// Records after the last checkpoint are signed by Open's checkpoint
	// before anyone can read them; leaf hashes are kept from there on.
	l.auth.resetRecent(size)
	return nil
}

// closeWriterFiles closes the active segment's handles (failed Open).
func (l *Ledger) closeWriterFiles() {
	if l.w.f != nil {
		l.w.f.Close()
	}
	if l.w.idx != nil {
		l.w.idx.Close()
	}
}

// resumeTree returns the tree at the current size. It loads the tiles of
// the last checkpoint, checks them against its root and replays the
// records after it; if the tiles do not match (e.g. lost in a power
// failure) it rebuilds from the leaf tiles of pruned records and the
// records themselves, and checks the result against the checkpoint.
func (l *Ledger) resumeTree(last Checkpoint, haveCP bool) (*tree, error) {
	size := l.w.next
	if haveCP {
		if t, err := loadTree(last.Size, l.tiles.read); err == nil && t.root() == last.Root {
			// What the level files hold beyond the checkpoint is rebuilt
			// from the records.
			if err := l.tiles.truncate(last.Size); err != nil {
				return nil, err
			}
			if err := l.replay(t, size, nil); err != nil {
				return nil, err
			}
			return t, nil
		}
		l.opts.Logger.Warn("ledger: hash tiles do not match the last checkpoint; rebuilding them", "dir", l.dir, "size", last.Size)
	}
	// Rebuild: only the leaf hashes of pruned records are kept.
	if err := l.tiles.truncateLevels(func(L int) uint64 {
		if L == 0 {
			return l.pruned
		}
		return 0
	}); err != nil {
		return nil, err
	}
	t := &tree{}
	var nb nodeBuf
	if l.pruned > 0 {
		data := make([]byte, tileBytes)
		for t.size < l.pruned {
			w := min(tileWidth, l.pruned-t.size)
			if err := l.tiles.readAt(0, t.size, data[:w*HashSize]); err != nil {
				return nil, fmt.Errorf("leaf hashes of pruned records [%d, %d): %w", t.size, t.size+w, err)
			}
			for i := range w {
				t.append(Hash(data[i*HashSize:(i+1)*HashSize]), nb.add)
			}
			if err := nb.writeTo(l.tiles); err != nil {
				return nil, err
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
	if err := l.replay(t, size, check); err != nil {
		return nil, err
	}
	return t, nil
}

// replay appends the leaf hashes of records [t.size, to) to t and their
// hashes to the level files.
func (l *Ledger) replay(t *tree, to uint64, check func(*tree) error) error {
	var nb nodeBuf
	for e, err := range l.entries(t.size, to, false) {
		if err != nil {
			return err
		}
		t.append(LeafHash(e.Data), nb.add)
		if check != nil {
			if err := check(t); err != nil {
				return err
			}
		}
		if nb.bytes() >= 1<<20 {
			if err := nb.writeTo(l.tiles); err != nil {
				return err
			}
		}
	}
	if t.size != to {
		return fmt.Errorf("replay ended at %d, want %d", t.size, to)
	}
	return nb.writeTo(l.tiles)
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
	err = fmt.Errorf("%w: %s: %w", ErrFailed, l.dir, err)
	l.fatal.CompareAndSwap(nil, &err)
}

// Append writes records and returns the index of the first once all of
// them are durable (written and fdatasync'ed); they get consecutive indices.
// Concurrent Appends share writes and syncs (group commit). ctx bounds only
// the wait to enter the queue: once queued, the records are written and
// Append waits for durability.
//
// Errors say what happened to the records: ErrNoSpace (not stored; retry
// when space returns), ErrUnknownOutcome (maybe stored: resend, dropping
// duplicates), ErrFailed or ErrClosed (not stored; the ledger must be
// reopened), ErrTooLarge (not stored).
func (l *Ledger) Append(ctx context.Context, records ...[]byte) (uint64, error) {
	return l.AppendAux(ctx, nil, records...)
}

// AppendAux is Append that keeps aux beside the records in the in-memory
// tail (Options.TailBytes) for this process's followers: FollowAppended
// yields it with each record it serves from there (Entry.Aux, with the
// record's position in records as Entry.AuxPos). The collector passes the
// fields it extracted from each event while checking it, so that its
// index and detection need not parse the records again. aux is never
// written to disk, and is kept, not copied: it must not change after the
// call.
func (l *Ledger) AppendAux(ctx context.Context, aux any, records ...[]byte) (uint64, error) {
	if l.readOnly {
		return 0, ErrReadOnly
	}
	if len(records) == 0 {
		return l.Size(), nil
	}
	bytes := 0
	for _, rec := range records {
		if len(rec) > l.opts.MaxRecordSize {
			return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(rec), l.opts.MaxRecordSize)
		}
		bytes += len(rec) + frameOverhead
	}
	r := newAppendReq(records, aux, bytes)
	// Leaf hashing happens here, on the callers' goroutines, so it spreads
	// over all cores instead of loading the sequencer; two records at a
	// time (sha256x2: 1.5–1.9× the rate of one).
	sha256x2.Prefixed(r.leaves, 0, records)
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		r.release()
		return 0, ErrClosed
	}
	if err := l.err(); err != nil {
		l.closeMu.RUnlock()
		r.release()
		return 0, err
	}
	select {
	case l.in <- r:
	case <-ctx.Done():
		l.closeMu.RUnlock()
		r.release()
		return 0, ctx.Err()
	}
	l.closeMu.RUnlock()
	if n := l.inCount.Add(1); l.inBytes.Add(int64(r.bytes)) >= holdBytes || n >= l.inWant.Load() {
		select {
		case l.inNudge <- struct{}{}:
		default:
		}
	}
	err := <-r.done
	first := r.first
	r.release()
	if err != nil {
		return 0, err
	}
	return first, nil
}

// appendReqs recycles requests: with one record per Append, allocating a
// request, its channel and its leaf hashes each time was three of the
// caller's allocations per record. A request is answered exactly once,
// and whoever answers it (sequencer or syncer) never touches it after the
// send: its caller takes it back then.
var appendReqs = sync.Pool{New: func() any { return &appendReq{done: make(chan error, 1)} }}

func newAppendReq(records [][]byte, aux any, bytes int) *appendReq {
	r := appendReqs.Get().(*appendReq)
	r.recs, r.aux, r.bytes = records, aux, bytes
	if cap(r.leaves) >= len(records) {
		r.leaves = r.leaves[:len(records)]
	} else {
		r.leaves = make([]Hash, len(records))
	}
	return r
}

// release returns r to the pool (its caller, once it is answered or was
// never sent). Large leaf slices are not kept.
func (r *appendReq) release() {
	leaves := r.leaves
	if cap(leaves) > 64 {
		leaves = nil
	}
	*r = appendReq{leaves: leaves[:0], done: r.done}
	appendReqs.Put(r)
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

// closeReserve is what Close keeps, at most, of Options.CloseTimeout for
// what follows the wait for the witnesses: the wait's own end (its
// deliveries cancelled), the segments, tiles and lock closed. A witness
// that does not answer takes all the time it is given, and Close took
// the whole CloseTimeout for it and then closed the files, past the
// timeout (2.26 s against 1 s, beside busy loops at load ~25): the wait
// now ends this much before the deadline, or a quarter of CloseTimeout
// when that is less. Measured on the 2-core VM (ext4, a dead witness,
// CloseTimeout 1 s): what follows the wait took 1-3 ms quiet and up to
// 240 ms at load ~20 (busy loops and synchronous disk writes beside). The
// writer's files are closed before the wait (see Close), so that a disk
// slow to close them (6-10 ms quiet, up to 2 s at load ~20) eats into
// the witnesses' time, not past the deadline. Like server.CheckpointReserve,
// whose idea this follows: a witness cut short only misses the final
// checkpoint, which it gets with the next start's first, while a Close
// past its deadline holds up whatever waits for it (a shutdown's share).
const closeReserve = 500 * time.Millisecond

// Close makes a final checkpoint (marked "shutdown"), waits for the
// witnesses to receive it and closes the ledger. It returns within
// Options.CloseTimeout whatever the witnesses do, and whatever the disk
// does before the final checkpoint is written; a disk slow to close the
// files afterwards holds it by that much. If the final checkpoint was
// not written (disk full, I/O error, timeout) the error wraps
// ErrNoFinalCheckpoint. After a timeout the files stay open until the
// process exits. It never returns before the files are closed and the
// lock released (a reopen right after it must succeed).
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
	deadline := time.Now().Add(l.opts.CloseTimeout)
	timer := time.NewTimer(l.opts.CloseTimeout)
	defer timer.Stop()
	select {
	case <-l.pubDone:
	case <-timer.C:
		close(l.stop)
		err := fmt.Errorf("%w: %s: Close timed out after %v (the disk or file system did not answer)", ErrNoFinalCheckpoint, l.dir, l.opts.CloseTimeout)
		l.opts.Logger.Error("ledger: close", "err", err)
		l.endFollowers()
		return err
	}
	var final error
	select {
	case r := <-l.final:
		final = r.err
	default:
		final = errors.New("no shutdown checkpoint was made")
	}
	close(l.stop)
	// Everything but the reserve: the background work's stop, the
	// writer's files, the witnesses.
	by := deadline.Add(-min(closeReserve, l.opts.CloseTimeout/4))
	bgDone := make(chan struct{})
	go func() { l.bg.Wait(); close(bgDone) }()
	select {
	case <-bgDone:
	case <-time.After(time.Until(by)):
	}
	var errs []error
	if final != nil {
		errs = append(errs, fmt.Errorf("%w: %s: %w", ErrNoFinalCheckpoint, l.dir, final))
	} else if err := l.err(); err != nil {
		errs = append(errs, err)
	}
	// The writer's files before the witnesses' wait: the deliveries go on
	// meanwhile (each witness has its own goroutine), and the wait ends
	// at by whatever these took. io_destroy waits for an RCU grace period
	// (60 ms quiet, up to 2.3 s loaded), and closing and removing files
	// waits for the journal under other writers' syncs.
	filesStart := time.Now()
	if h := l.opts.closeFilesHook; h != nil {
		h()
	}
	l.stopDirect()
	pubAIO := l.closePubAIO() // the syncer and the publisher have stopped
	l.closeAIO()
	pubAIO()
	if cerr := l.w.f.Close(); cerr != nil {
		errs = append(errs, cerr)
	}
	l.w.idx.Close()
	os.Remove(filepath.Join(l.segDir, zeroAheadName))
	l.closeTrace.deadline, l.closeTrace.files = deadline, time.Since(filesStart)
	wdl := time.Now().Add(5 * time.Second)
	if by.Before(wdl) {
		wdl = by
	}
	ctx, cancel := context.WithDeadline(context.Background(), wdl)
	defer cancel()
	for _, q := range l.witnesses {
		q.close(ctx)
	}
	l.closeTrace.waited = time.Now()
	l.closeFiles()
	l.endFollowers()
	return errors.Join(errs...)
}

// endFollowers wakes Follow and Wait for good: the ledger is closed.
func (l *Ledger) endFollowers() {
	l.notifyMu.Lock()
	if l.notify != nil {
		close(l.notify)
		l.notify = nil
	}
	l.notifyMu.Unlock()
}

func (l *Ledger) closeFiles() {
	for _, s := range l.segs {
		s.closeRead()
	}
	l.tiles.close()
	if l.lock != nil {
		l.lock.Close()
	}
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

func (l *Ledger) isClosed() bool {
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	return l.closed
}
