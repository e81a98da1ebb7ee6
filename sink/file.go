package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/trailguard/trailguard/retention"
)

// Defaults for FileOptions.
const (
	DefaultName          = "trail"
	DefaultMaxSize       = 64 << 20
	DefaultMaxAge        = 24 * time.Hour
	DefaultCheckInterval = time.Minute
)

// ErrTornTail is wrapped by the error reported to FileOptions.OnError when
// OpenFile finds the active file ending in a partial line, left by a crash
// in the middle of a write (or by a failed write whose undo failed).
var ErrTornTail = errors.New("sink: torn last line")

// ErrLocked is returned by OpenFile when another sink, in this process or
// another one, already has the trail open: two writers appending to and
// rotating the same file would interleave and lose records.
var ErrLocked = errors.New("sink: trail is in use")

// FileOptions configures a File sink. The zero value of every field but Dir
// is a sensible default.
type FileOptions struct {
	// Dir holds the trail. It is created with mode 0700 if missing; files
	// are created 0600, because they hold audit data.
	Dir string
	// Name is the file name prefix, default "trail". Several trails may
	// share a directory under different names.
	Name string
	// MaxSize: the active file is rotated when the next batch would make
	// it exceed this many bytes; default 64 MiB. A batch is never split,
	// so a batch larger than MaxSize (typically a single huge record) gets a
	// file of its own, the only case in which a file exceeds MaxSize.
	MaxSize int64
	// MaxAge: the active file is rotated once its oldest record is older
	// than this; default 24h. The check runs before every write and, while
	// the sink is idle, every CheckInterval.
	MaxAge time.Duration
	// Compress gzips rotated files in the background once they leave the
	// hot period (see Retention). Compression writes <file>.gz.tmp, fsyncs
	// it, renames it to <file>.gz and only then removes the plain file, so a
	// crash never loses data; OpenFile finishes whatever a crash left.
	Compress bool
	// Retention deletes rotated files once their rotation time (taken
	// from the file name, not the modification time, which a copy or an
	// attacker can change) is more than Retention.Retain ago. A zero Retain
	// keeps files forever.
	//
	// Retention.Hot is, for the file sink, how long a rotated file stays
	// plain text, so that grep, tail and log shippers can read it without
	// decompressing (PCI DSS 10.5.1: the last three months immediately
	// available). With Compress set, files are gzipped once they are older
	// than Hot; a zero Hot (soc2, hipaa, custom) means they are gzipped right
	// after rotation. Read by the sink directly rather than through
	// Profile.HotUntil, whose "zero Hot means the whole Retain period" would
	// leave a HIPAA trail uncompressed for its six years: a gzipped trail
	// file is still immediately available through Open.
	Retention retention.Profile
	// LegalHold stops the sink from removing any file: no expired file is
	// deleted, no plain file is replaced by its compressed copy, no
	// leftover of an interrupted compression is cleaned up. All of it
	// resumes when the sink is opened without the hold.
	LegalHold bool
	// NoSync skips the fsync after each Write: faster, but a machine
	// crash (not a process crash) can lose acknowledged records. Rotation
	// and Close still fsync.
	NoSync bool
	// Now is the clock, for tests; default time.Now.
	Now func() time.Time
	// CheckInterval is how often the sink, idle or not, checks the active
	// file's age and runs retention and compression. Default one minute, or
	// MaxAge/2 if that is shorter.
	CheckInterval time.Duration
	// OnError receives failures of background work (rotation by the idle
	// timer, compression, deletion) and recoveries at open (ErrTornTail),
	// which no Write call could return. It is called from the sink's own
	// goroutines and must not call back into the sink. Default: log with
	// slog.Default at level Error.
	OnError func(error)
}

// File is a Sink that appends JSON lines to <Dir>/<Name>.jsonl, rotating it
// to <Name>-<UTC rotation time>.jsonl by size, by age or on demand, and
// compressing and deleting rotated files according to FileOptions. It holds
// an exclusive lock (flock on <Dir>/<Name>.lock) while open, so a second sink
// on the same trail fails with ErrLocked instead of corrupting it.
//
// Concurrent Writes are committed as a group: whichever caller gets to the
// file first writes every batch queued so far, in arrival order, with one
// write and one fsync, so throughput grows with the number of writers
// instead of being bounded by one fsync per batch.
type File struct {
	opts   FileOptions
	dir    string
	name   string
	active string
	lock   *os.File

	// qmu guards the queue of batches waiting to be committed.
	qmu    sync.Mutex
	queue  []*request
	closed bool

	// ioMu guards the active file; whoever holds it commits the queue.
	ioMu     sync.Mutex
	fh       *os.File
	size     int64
	start    time.Time // when the oldest record of the active file was written
	lastRot  time.Time // newest rotation time used, to keep names unique and ordered
	torn     bool      // a failed write left bytes that truncation could not remove
	ioClosed bool
	buf      []byte

	// maintMu serialises retention and compression runs.
	maintMu sync.Mutex
	kick    chan struct{}
	bgCtx   context.Context // canceled by Close
	stop    context.CancelFunc
	wg      sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

var framePool = sync.Pool{New: func() any { return new([]byte) }}

type request struct {
	data []byte
	err  error
	done bool // set under ioMu
}

// OpenFile opens the trail in opts.Dir, continuing to append to an existing
// active file. If the active file ends in a partial line (a crash during a
// write), the partial line is moved aside to <Name>-<time>.torn, so that the
// trail keeps only whole lines and the fragment is kept as evidence, and
// ErrTornTail is reported to OnError. Expired files are deleted before
// OpenFile returns; compression catches up in the background.
func OpenFile(opts FileOptions) (*File, error) {
	if opts.Dir == "" {
		return nil, errors.New("sink: FileOptions.Dir is empty")
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if err := validName(opts.Name); err != nil {
		return nil, err
	}
	switch {
	case opts.MaxSize < 0:
		return nil, fmt.Errorf("sink: negative MaxSize %d", opts.MaxSize)
	case opts.MaxAge < 0:
		return nil, fmt.Errorf("sink: negative MaxAge %v", opts.MaxAge)
	case opts.CheckInterval < 0:
		return nil, fmt.Errorf("sink: negative CheckInterval %v", opts.CheckInterval)
	case opts.Retention.Retain < 0 || opts.Retention.Hot < 0:
		return nil, fmt.Errorf("sink: negative retention in profile %v", opts.Retention)
	}
	if opts.MaxSize == 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.MaxAge == 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.CheckInterval == 0 {
		opts.CheckInterval = min(DefaultCheckInterval, max(opts.MaxAge/2, time.Millisecond))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OnError == nil {
		opts.OnError = func(err error) { slog.Default().Error("audit trail sink", "err", err) }
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("sink: create %s: %w", opts.Dir, err)
	}
	f := &File{
		opts:   opts,
		dir:    opts.Dir,
		name:   opts.Name,
		active: filepath.Join(opts.Dir, opts.Name+extActive),
		kick:   make(chan struct{}, 1),
	}
	lock, err := lockFile(filepath.Join(f.dir, f.name+extLock))
	if err != nil {
		return nil, err
	}
	f.lock = lock
	if err := f.open(); err != nil {
		lock.Close()
		return nil, err
	}
	// Deletion is cheap and an operator expects an expired file to be gone
	// once the sink is up; compression can take minutes and must not delay
	// the application's start, so it goes to the background.
	if err := f.maintain(context.Background(), false); err != nil {
		f.opts.OnError(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.bgCtx, f.stop = ctx, cancel
	f.wg.Add(1)
	go f.background(ctx)
	f.signal()
	return f, nil
}

func (f *File) open() error {
	if err := f.recoverTail(); err != nil {
		return err
	}
	segs, err := scan(f.dir, f.name)
	if err != nil {
		return err
	}
	var newestRotated time.Time
	for _, s := range segs {
		if s.t.After(f.lastRot) {
			f.lastRot = s.t
		}
		if s.has(kindPlain) || s.has(kindGzip) || s.has(kindGzipTmp) {
			newestRotated = s.t
		}
	}
	if err := f.openActive(); err != nil {
		return err
	}
	if f.size > 0 {
		// The file's creation time is not kept by the file system in a
		// portable way. The active file was created at the last rotation,
		// so that is when its oldest record can have been written at the
		// earliest; without a rotated file, the modification time is the
		// best bound there is.
		f.start = newestRotated
		if f.start.IsZero() {
			st, err := f.fh.Stat()
			if err != nil {
				return fmt.Errorf("sink: stat %s: %w", f.active, err)
			}
			f.start = st.ModTime()
			if now := f.opts.Now(); now.Before(f.start) {
				f.start = now
			}
		}
	}
	return nil
}

// openActive opens (creating if need be) the active file for appending.
func (f *File) openActive() error {
	fh, err := os.OpenFile(f.active, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sink: open %s: %w", f.active, err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return fmt.Errorf("sink: stat %s: %w", f.active, err)
	}
	if st.Size() == 0 {
		// A new file's directory entry must be durable before we report
		// records in it as durable.
		if err := syncDir(f.dir); err != nil {
			fh.Close()
			return err
		}
	}
	f.fh, f.size = fh, st.Size()
	return nil
}

// recoverTail moves a partial last line of the active file aside. Keeping
// the fragment in the trail with a newline appended would hand every reader
// an invalid JSON line; truncating it would destroy what may be the last
// trace of an attack that crashed the process. A separate file keeps both
// the trail clean and the evidence.
func (f *File) recoverTail() error {
	fh, err := os.OpenFile(f.active, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sink: open %s: %w", f.active, err)
	}
	defer fh.Close()
	keep, size, err := lastLineEnd(fh)
	if err != nil {
		return fmt.Errorf("sink: read %s: %w", f.active, err)
	}
	if keep == size {
		return nil
	}
	frag := f.freeName(f.opts.Now(), extTorn)
	if err := writeFileSync(frag, io.NewSectionReader(fh, keep, size-keep)); err != nil {
		return fmt.Errorf("sink: save torn line of %s: %w", f.active, err)
	}
	if err := syncDir(f.dir); err != nil {
		return err
	}
	if err := fh.Truncate(keep); err != nil {
		return fmt.Errorf("sink: truncate torn line of %s: %w", f.active, err)
	}
	if err := fh.Sync(); err != nil {
		return fmt.Errorf("sink: fsync %s: %w", f.active, err)
	}
	f.opts.OnError(fmt.Errorf("sink: %s ended in a partial line of %d bytes; moved it to %s: %w",
		f.active, size-keep, frag, ErrTornTail))
	return nil
}

// lastLineEnd returns the offset just past the last '\n' of fh, and its size.
func lastLineEnd(fh *os.File) (keep, size int64, err error) {
	st, err := fh.Stat()
	if err != nil {
		return 0, 0, err
	}
	size = st.Size()
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		b := buf[:end-start]
		if _, err := fh.ReadAt(b, start); err != nil {
			return 0, 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return start + int64(i) + 1, size, nil
		}
		end = start
	}
	return 0, size, nil
}

// writeFileSync creates path through a .tmp file so that path, once it
// exists, is complete and durable.
func writeFileSync(path string, r io.Reader) error {
	tmp := path + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// freeName returns a path <name>-<stamp><ext> with a stamp no earlier than
// t that no file of any kind uses yet. Stamps only move forward, even when
// the clock does not, so the names of a trail sort in the order written.
func (f *File) freeName(t time.Time, ext string) string {
	t = t.UTC().Round(0)
	if !t.After(f.lastRot) {
		t = f.lastRot.Add(time.Nanosecond)
	}
	for ; ; t = t.Add(time.Nanosecond) {
		base := filepath.Join(f.dir, f.name+"-"+stamp(t))
		taken := false
		for _, e := range []string{extActive, extGzip, extGzipTmp, extTorn, extTornTmp} {
			if _, err := os.Lstat(base + e); !errors.Is(err, fs.ErrNotExist) {
				taken = true
				break
			}
		}
		if !taken {
			f.lastRot = t
			return base + ext
		}
	}
}

// Path returns the active file's path.
func (f *File) Path() string { return f.active }

// Write appends records to the active file as one batch, rotating first if
// the batch would make the file exceed MaxSize or the file is older than
// MaxAge, and fsyncs unless NoSync. The context is checked before the batch
// is queued; once queued a batch is written whole or not at all, because
// abandoning it half-way would tear a line.
func (f *File) Write(ctx context.Context, records [][]byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sink: write: %w", err)
	}
	pb := framePool.Get().(*[]byte)
	data, err := frame((*pb)[:0], records)
	if err != nil {
		framePool.Put(pb)
		return err
	}
	defer func() {
		// Once Write returns nothing refers to data any more; recycle
		// modest buffers so a steady stream of batches allocates nothing.
		if cap(data) <= 1<<20 {
			*pb = data
			framePool.Put(pb)
		}
	}()
	return f.writeFramed(data)
}

// WriteLines implements LineWriter: Write of a batch already framed.
func (f *File) WriteLines(ctx context.Context, lines []byte, n int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sink: write: %w", err)
	}
	if n == 0 && len(lines) == 0 {
		return f.writeFramed(nil)
	}
	if err := checkLines(lines, n); err != nil {
		return err
	}
	return f.writeFramed(lines)
}

// writeFramed queues data, a framed batch, and returns once it is
// committed: nothing refers to data after that.
func (f *File) writeFramed(data []byte) error {
	req := &request{data: data}
	f.qmu.Lock()
	if f.closed {
		f.qmu.Unlock()
		return ErrClosed
	}
	if len(data) == 0 {
		f.qmu.Unlock()
		return nil
	}
	f.queue = append(f.queue, req)
	f.qmu.Unlock()

	f.ioMu.Lock()
	if !req.done {
		f.commitQueued()
	}
	f.ioMu.Unlock()
	return req.err
}

// commitQueued writes every queued batch. ioMu must be held.
func (f *File) commitQueued() {
	f.qmu.Lock()
	reqs := f.queue
	f.queue = nil
	f.qmu.Unlock()
	if len(reqs) > 0 {
		f.commit(reqs)
	}
}

func (f *File) commit(reqs []*request) {
	defer func() {
		for _, r := range reqs {
			r.done = true
		}
	}()
	fail := func(rs []*request, err error) {
		for _, r := range rs {
			if r.err == nil {
				r.err = err
			}
		}
	}
	if err := f.ready(); err != nil {
		fail(reqs, err)
		return
	}
	now := f.opts.Now()
	first, pending := 0, int64(0) // reqs[first:i] are to be written together
	for i, r := range reqs {
		n := int64(len(r.data))
		if f.size+pending > 0 && (f.size+pending+n > f.opts.MaxSize || f.tooOld(now)) {
			if err := f.writeGroup(reqs[first:i], now); err != nil {
				fail(reqs[first:], err)
				return
			}
			first, pending = i, 0
			if err := f.rotate(now); err != nil {
				fail(reqs[i:], err)
				return
			}
		}
		pending += n
	}
	if err := f.writeGroup(reqs[first:], now); err != nil {
		fail(reqs[first:], err)
	}
}

func (f *File) tooOld(now time.Time) bool {
	return f.size > 0 && now.Sub(f.start) >= f.opts.MaxAge
}

// ready makes the active file writable after an earlier failure. ioMu must
// be held.
func (f *File) ready() error {
	if f.ioClosed {
		return ErrClosed
	}
	if f.fh == nil {
		if err := f.openActive(); err != nil {
			return err
		}
	}
	if f.torn {
		if err := f.fh.Truncate(f.size); err != nil {
			return fmt.Errorf("sink: %s holds a partial line that cannot be removed: %w", f.active, err)
		}
		f.torn = false
	}
	return nil
}

// writeGroup writes the batches of rs with one write call and one fsync.
func (f *File) writeGroup(rs []*request, now time.Time) error {
	var data []byte
	switch len(rs) {
	case 0:
		return nil
	case 1:
		data = rs[0].data
	default:
		data = f.buf[:0]
		for _, r := range rs {
			data = append(data, r.data...)
		}
		if cap(data) <= 4<<20 {
			f.buf = data
		} else {
			f.buf = nil
		}
	}
	if f.size == 0 {
		f.start = now
	}
	n, err := f.fh.Write(data)
	if err != nil {
		if n > 0 {
			// O_APPEND writes land at the end whatever the offset, so
			// cutting the partial batch off is enough to keep the next
			// batch from being glued to it.
			if terr := f.fh.Truncate(f.size); terr != nil {
				f.torn = true
				err = errors.Join(err, terr)
			}
		}
		return fmt.Errorf("sink: write %s: %w", f.active, err)
	}
	f.size += int64(n)
	if !f.opts.NoSync {
		if err := f.fh.Sync(); err != nil {
			return fmt.Errorf("sink: fsync %s: %w", f.active, err)
		}
	}
	return nil
}

// rotate renames the active file to its rotated name and starts a new one.
// ioMu must be held and the active file open.
func (f *File) rotate(now time.Time) error {
	if err := f.fh.Sync(); err != nil {
		return fmt.Errorf("sink: rotate: fsync %s: %w", f.active, err)
	}
	target := f.freeName(now, extActive)
	err := f.fh.Close()
	f.fh = nil
	if err != nil {
		return fmt.Errorf("sink: rotate: close %s: %w", f.active, err)
	}
	if err := os.Rename(f.active, target); err != nil {
		return fmt.Errorf("sink: rotate %s: %w", f.active, err)
	}
	f.size = 0
	if err := f.openActive(); err != nil { // also fsyncs the directory
		return fmt.Errorf("sink: rotate: %w", err)
	}
	f.signal()
	return nil
}

// Rotate rotates the active file now, for operators (SIGHUP) and for
// tools that want the records so far in a closed file. An empty active file
// is not rotated: it is already a fresh file.
func (f *File) Rotate() error {
	f.ioMu.Lock()
	defer f.ioMu.Unlock()
	if err := f.ready(); err != nil {
		return err
	}
	// Batches queued before the call belong before the rotation.
	f.commitQueued()
	if f.fh == nil {
		if err := f.ready(); err != nil {
			return err
		}
	}
	if f.size == 0 {
		return nil
	}
	return f.rotate(f.opts.Now())
}

// Maintain runs retention and, if enabled, compression now and returns
// when they are done, joining every failure. The sink does this by itself
// at open, after each rotation and every CheckInterval; Maintain is for
// tools and tests that need it to have happened.
func (f *File) Maintain(ctx context.Context) error {
	f.qmu.Lock()
	if f.closed {
		f.qmu.Unlock()
		return ErrClosed
	}
	// Counted with the background goroutine, so that Close waits for it
	// and cancels its compression like the sink's own.
	f.wg.Add(1)
	f.qmu.Unlock()
	defer f.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(f.bgCtx, cancel)()
	return f.maintain(ctx, f.opts.Compress)
}

func (f *File) signal() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (f *File) background(ctx context.Context) {
	defer f.wg.Done()
	t := time.NewTicker(f.opts.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.rotateIdle()
		case <-f.kick:
		}
		if err := f.maintain(ctx, f.opts.Compress); err != nil && ctx.Err() == nil {
			f.opts.OnError(err)
		}
	}
}

// rotateIdle rotates an active file that has grown too old while no Write
// came along to notice.
func (f *File) rotateIdle() {
	f.ioMu.Lock()
	defer f.ioMu.Unlock()
	if f.ioClosed || f.fh == nil || f.torn {
		return
	}
	now := f.opts.Now()
	if f.tooOld(now) {
		if err := f.rotate(now); err != nil {
			f.opts.OnError(fmt.Errorf("sink: rotation by age: %w", err))
		}
	}
}

// Close commits batches already queued, fsyncs and closes the active file,
// abandons a compression in progress (its .tmp file is removed; the plain
// file stays and is compressed after the next open) and waits for the
// background goroutine. It is safe to call more than once; later calls
// return the first call's result.
func (f *File) Close() error {
	f.closeOnce.Do(func() { f.closeErr = f.close() })
	return f.closeErr
}

func (f *File) close() error {
	f.qmu.Lock()
	f.closed = true
	f.qmu.Unlock()
	f.stop()

	var errs []error
	f.ioMu.Lock()
	// Writers that queued before closed was set are waiting for ioMu and
	// were promised a result; commit for them.
	f.commitQueued()
	if f.fh != nil {
		if err := f.fh.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("sink: close: fsync %s: %w", f.active, err))
		}
		if err := f.fh.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sink: close %s: %w", f.active, err))
		}
		f.fh = nil
	}
	f.ioClosed = true
	f.buf = nil
	f.ioMu.Unlock()

	f.wg.Wait()
	if err := f.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("sink: close lock: %w", err))
	}
	return errors.Join(errs...)
}

// syncDir makes renames, creations and deletions in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sink: fsync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sink: fsync dir %s: %w", dir, err)
	}
	return nil
}
