package ledger

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// The write path: one sequencer goroutine frames and writes records, a
// syncer makes them durable and acknowledges them, a publisher writes hash
// tiles and signs checkpoints.
//
// Two rules shape it. The unsigned bound: the sequencer never has more
// than l.bound records on disk beyond the newest checkpoint durably in the
// history (l.signed); before going further it cuts the batch, has the
// records so far signed and waits, so a crash can never leave a longer
// unsigned tail, and every checkpoint states the bound. Disk full: a write
// that fails for lack of space is cut back to the last good offset (segment,
// .idx, tree) and its appends fail with ErrNoSpace, leaving the ledger
// usable; any other write or sync error makes it fail until reopened.

// sequence is the single writer: it assigns indices, frames records into
// the segment, extends the tree and hands each batch to the syncer.
//
// Requests that arrive while the syncer is busy are held, not written: they
// cannot be made durable before the sync under way ends, and writing each
// one as it came cost two write(2)s per request (segment and .idx), most of
// the CPU time of an append when many callers append one record each. They
// are written together when the syncer is idle (it leaves a token in
// syncIdle), or at once when they add up to holdBytes, so that large
// batches are written while the previous one is being synced.
//
// Callers acknowledged by one fdatasync usually append again at once. If
// the next batch went to the syncer with the first of them, its sync would
// cover one record and the rest would wait for the one after: with many
// callers of one record each, every other sync would be nearly empty. So
// with the syncer idle, the sequencer waits, for at most half the last
// sync's duration (and 500µs), until it holds as many requests as the last
// sync acknowledged; a lone caller never waits.
//
// Neither while the syncer is busy nor while it gathers does the sequencer
// take each request as it arrives: they wait in l.in, where a send wakes
// nobody, and callers nudge it (inNudge) only when holdBytes wait there or,
// while it gathers, as many requests as it waits for (inWant). Woken by
// every request, it took 0.39 wake-ups per record with 64 callers of one
// record each (execution trace); now about two per sync (0.05 per record).
func (l *Ledger) sequence() {
	defer close(l.syncCh)
	timer := time.NewTimer(l.cpDelay())
	defer timer.Stop()
	gather := time.NewTimer(time.Hour)
	gather.Stop()
	var (
		held      []*appendReq
		heldBytes int
		idle      bool // holding the syncer's token
		waiting   bool // gather is running
	)
	// The syncer leaves a token only after a job, so the token is given
	// up only when a job is handed over: a batch whose requests all
	// failed sends nothing, and the token is kept.
	send := func(job *syncJob) {
		l.toSyncer(job)
		idle = false
	}
	// slot: another batch may be written, and its flush submitted, while
	// the syncer waits for the flushes of earlier ones (see flushDirect;
	// a batch through the page cache gets its fdatasync through AIO the
	// same way, see writeSegment). Only behind jobs whose flush was
	// submitted: one written while the syncer fdatasyncs a batch itself
	// (or makes a rotation durable) waits and is synced with it, as
	// before.
	slot := func() bool {
		if l.flusher == nil {
			return false
		}
		v := l.pipe.Load()
		n := v >> pipeFlight
		return n < flushDepth && v&pipeJobs == n
	}
	flush := func() {
		if waiting {
			// Since Go 1.23 a stopped timer delivers nothing more.
			gather.Stop()
			waiting = false
		}
		if len(held) == 0 {
			return
		}
		sent := l.w.sent
		l.w.directOK = idle || slot()
		job := l.write(held)
		clear(held)
		held, heldBytes = held[:0], 0
		if l.w.sent != sent {
			idle = false // write handed part of the batch over
		}
		if l.cpDue() {
			job = l.cpJob(job, nil)
		}
		if job != nil {
			send(job)
		}
		l.resetTimer(timer)
	}
	// ready flushes if the batch is worth a sync and free (the syncer is
	// idle or a slot is free, as the caller found it).
	ready := func(free bool) {
		if heldBytes >= holdBytes {
			flush()
			return
		}
		if !free || len(held) == 0 {
			return
		}
		if int64(len(held)) >= l.lastSyncReqs.Load() {
			flush()
			return
		}
		if !waiting {
			wait := min(time.Duration(l.lastSyncDur.Load())/2, 500*time.Microsecond)
			if wait <= 0 {
				flush()
				return
			}
			gather.Reset(wait)
			waiting = true
		}
	}
	for {
		if h := seqLoopHook.Load(); h != nil {
			(*h)(len(held))
		}
		// One look decides both whether what is held is written now and
		// what the wait below listens for: looked at twice, a slot freed
		// between the looks (the syncer acknowledging a batch) was missed
		// by both, and the held requests waited for the next arrival or
		// the checkpoint timer (TestHeldWakeUp).
		free := idle || slot()
		if free && len(held) > 0 && !waiting {
			ready(true) // writes them or starts the gather
			continue
		}
		var idleCh, slotCh <-chan struct{}
		in := l.in
		want := int64(math.MaxInt64) // callers nudge at this many waiting in l.in
		switch {
		case !free && len(held) > 0:
			// Whatever arrives now waits for the syncer anyway: it stays
			// in l.in, where the callers' sends wake nobody, and is taken
			// when the syncer is idle or acknowledges a flush — or at
			// once when a caller nudges that holdBytes wait there.
			idleCh, slotCh, in = l.syncIdle, l.slotFree, nil
		case waiting:
			// Gathering: woken when enough have arrived, or at the
			// gather timer, not by each caller.
			in, want = nil, max(l.lastSyncReqs.Load()-int64(len(held)), 1)
		}
		l.inWant.Store(want)
		if in == nil && l.inCount.Load() >= want {
			// (Arrived before the callers could see want.)
			l.takeIn(&held, &heldBytes)
			ready(idle || slot())
			continue
		}
		var gatherC <-chan time.Time
		if waiting {
			gatherC = gather.C
		}
		var job *syncJob
		select {
		case r, ok := <-in:
			if !ok {
				// Close: what is held, then a final checkpoint, always.
				flush()
				if err := l.cutZeros(); err != nil {
					// The next Open cuts them.
					l.opts.Logger.Warn("ledger: zeros after the last record not cut", "dir", l.dir, "err", err)
				}
				j := l.cpJob(nil, l.final)
				j.cp.Extra = append(j.cp.Extra, shutdownExt)
				l.toSyncer(j)
				return
			}
			held = append(held, r)
			heldBytes += l.reqBytes(r)
		drain:
			for heldBytes < 8<<20 {
				select {
				case r2, ok := <-l.in:
					if !ok {
						// Process what we have; the closed channel is seen next round.
						break drain
					}
					held = append(held, r2)
					heldBytes += l.reqBytes(r2)
				default:
					break drain
				}
			}
			ready(idle || slot())
			continue
		case <-idleCh:
			idle = true
			l.takeIn(&held, &heldBytes)
			ready(idle || slot())
			continue
		case <-slotCh:
			l.takeIn(&held, &heldBytes)
			ready(idle || slot())
			continue
		case <-l.inNudge:
			l.takeIn(&held, &heldBytes)
			ready(idle || slot())
			continue
		case <-gatherC:
			waiting = false
			l.takeIn(&held, &heldBytes)
			flush()
			continue
		case reply := <-l.cpReq:
			flush()
			send(l.cpJob(nil, reply))
			l.resetTimer(timer)
			continue
		case <-timer.C:
			flush()
		}
		if l.cpDue() {
			job = l.cpJob(job, nil)
		}
		if job != nil {
			send(job)
		}
		l.resetTimer(timer)
	}
}

// seqLoopHook, when set (by tests), runs at the top of the sequencer's
// loop with the number of requests it holds (TestHeldWakeUp).
var seqLoopHook atomic.Pointer[func(held int)]

// takeIn moves the requests waiting in l.in to held (up to 8 MiB); a
// closed l.in is seen by the next receive.
func (l *Ledger) takeIn(held *[]*appendReq, heldBytes *int) {
	for *heldBytes < 8<<20 {
		select {
		case r, ok := <-l.in:
			if !ok {
				return
			}
			*held = append(*held, r)
			*heldBytes += l.reqBytes(r)
		default:
			return
		}
	}
}

// toSyncer hands a job to the syncer. A token the syncer left is taken
// first: the job makes it busy, and it leaves a new one once it is idle
// again. (Taken after the send, the token could be one the syncer left
// after finishing this very job, and both would wait for each other.)
func (l *Ledger) toSyncer(job *syncJob) {
	l.w.sent++
	d := int64(1)
	if job.ticket != 0 {
		d += 1 << pipeFlight
	}
	l.pipe.Add(d)
	select {
	case <-l.syncIdle:
	default:
	}
	l.syncCh <- job
}

// The fields of Ledger.pipe.
const (
	pipeFlight = 32
	pipeJobs   = 1<<pipeFlight - 1
)

// holdBytes is how much the sequencer holds while the syncer is busy
// before it writes anyway.
const holdBytes = 64 << 10

// flushDepth is how many jobs with direct writes may wait for their
// flushes at once (see flushDirect).
var flushDepth = int64(2)

func (l *Ledger) reqBytes(r *appendReq) int {
	l.inBytes.Add(-int64(r.bytes))
	l.inCount.Add(-1)
	return r.bytes
}

// reqSpace estimates the disk space a request takes: frames, .idx entries
// and leaf hashes in the tiles (upper tiles add under 1 %).
func reqSpace(r *appendReq) int64 {
	n := int64(0)
	for _, rec := range r.recs {
		n += int64(len(rec) + frameOverhead + idxEntrySize + HashSize + 1)
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
	if l.w.next > l.w.cpSize || l.cpFailed.Load() {
		// cpDue signs at the idle cadence too: pending records wait for
		// the sooner of the two (an IdleInterval below T is allowed).
		d = min(l.opts.CheckpointInterval, l.opts.IdleInterval)
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
		((pending > 0 || l.cpFailed.Load()) && since >= l.opts.CheckpointInterval) ||
		since >= l.opts.IdleInterval
}

// shutdownExt marks the checkpoint made by Close: a gap after it is a
// planned stop, not a crash or a silenced logger, and no record may follow
// it before the next Open's checkpoint.
const shutdownExt = "shutdown"

// cadence is what this writer states in its checkpoints.
func (l *Ledger) cadence() cadence {
	return cadence{every: uint64(l.opts.CheckpointEvery), interval: l.opts.CheckpointInterval, unsignedMax: l.bound}
}

// cpJob attaches a checkpoint of the current tree to job (or a new job).
func (l *Ledger) cpJob(job *syncJob, reply chan cpResult) *syncJob {
	if job == nil {
		job = &syncJob{upTo: l.w.next, active: l.w.f}
	}
	extra := append([]string{l.cadence().ext()}, l.w.openExtra...)
	l.w.openExtra = nil
	job.cp = &Checkpoint{Origin: l.opts.Origin, Size: l.w.tree.size, Root: l.w.tree.root(), Time: l.opts.Now(), Extra: extra}
	if reply != nil {
		job.replies = append(job.replies, reply)
	}
	l.w.cpSize = l.w.tree.size
	l.w.cpMono = time.Now()
	return job
}

// batchState is the sequencer's progress through one batch: the job being
// filled, bytes framed but not yet written, and where to roll back to.
type batchState struct {
	job       *syncJob
	buf, ibuf []byte
	leaves    []Hash // leaf hashes of the records in buf
	now       int64
	mark      mark
	created   []*segment   // segments started since the mark
	cur       *appendReq   // the request being written, if any
	emit      emitFunc     // collects the tree's new hashes into job
	partialOf func() error // error for a request cut by a failed wait
}

// mark is the writer's state at the start of a job: a failed write for
// lack of space goes back to it.
type mark struct {
	seg    *segment
	f, idx *os.File
	off    int64
	next   uint64
	tree   *tree
}

func (l *Ledger) startJob(b *batchState) {
	b.job = &syncJob{}
	b.mark = mark{seg: l.w.seg, f: l.w.f, idx: l.w.idx, off: l.w.off, next: l.w.next, tree: l.w.tree.clone()}
	b.created = nil
}

// sendJob hands the current job to the syncer.
func (l *Ledger) sendJob(b *batchState) {
	b.job.upTo, b.job.active = l.w.next, l.w.f
	l.toSyncer(b.job)
}

// write frames and writes one batch and returns the last job for the
// syncer (earlier parts of the batch may have been sent already, each
// with a checkpoint). Requests that fail are answered here.
func (l *Ledger) write(batch []*appendReq) *syncJob {
	if err := l.err(); err != nil {
		for _, r := range batch {
			r.done <- err
		}
		return nil
	}
	// The write stall: no more while too many closed segments wait for
	// the compactor.
	l.waitCompaction()
	l.lastWrite.Store(time.Now().UnixNano())
	b := &batchState{now: l.opts.Now().UnixNano(), buf: l.w.buf[:0], ibuf: l.w.ibuf[:0], leaves: l.w.leaves[:0]}
	sizeBufs(b, batch)
	b.emit = func(level int, k uint64, h Hash) { b.job.nodes.add(level, k, h) }
	l.startJob(b)
	// Request groups: the bytes after which the next group is cut, 0 for
	// none (see groupBytes).
	per := l.groupBytes(batch)
	framed, cutAt := 0, per
	for ri, r := range batch {
		if !l.space.allow(reqSpace(r)) {
			r.done <- fmt.Errorf("%w: %s: free space is below the reserve of %d bytes kept for checkpoints", ErrNoSpace, l.dir, l.opts.Reserve)
			continue
		}
		// The unsigned bound: make room before a request that would cross
		// it rather than inside it, so that it stays in one job.
		if need := l.w.next + uint64(len(r.recs)); l.w.next > l.signed.Load() && need > l.signed.Load()+l.bound {
			if err := l.flush(b); err != nil {
				return l.writeFailed(b, batch[ri:], err)
			}
			if err := l.makeRoom(b, need); err != nil {
				l.waitFailed(b, batch[ri:], err)
				return nil
			}
		}
		r.first, r.at = l.w.next, b.now
		b.cur = r
		for i, rec := range r.recs {
			if l.w.next >= l.signed.Load()+l.bound {
				// A request larger than the bound: signed in parts.
				if err := l.flush(b); err != nil {
					return l.writeFailed(b, batch[ri:], err)
				}
				if err := l.makeRoom(b, l.w.next+1); err != nil {
					l.waitFailed(b, batch[ri:], err)
					return nil
				}
			}
			fl := int64(len(rec) + frameOverhead)
			if l.w.off+int64(len(b.buf))+fl > l.opts.SegmentSize && l.w.off+int64(len(b.buf)) > int64(segHeaderSize) {
				err := l.flush(b)
				if err == nil {
					err = l.rotate(b)
				}
				if err != nil {
					return l.writeFailed(b, batch[ri:], err)
				}
			}
			b.ibuf = appendIdx(b.ibuf, l.w.off+int64(len(b.buf)), b.now)
			b.buf = appendFrame(b.buf, b.now, rec)
			b.leaves = append(b.leaves, r.leaves[i])
			l.w.tree.append(r.leaves[i], b.emit)
			l.w.next++
		}
		b.job.reqs = append(b.job.reqs, r)
		b.cur = nil
		framed += r.bytes
		if ri == len(batch)-1 {
			break
		}
		cp := l.w.next-l.w.cpSize >= uint64(l.opts.CheckpointEvery)
		group := per > 0 && framed >= cutAt
		if cp || group {
			// A checkpoint is due inside a large batch: sign what is
			// written so far without waiting for it. Or a group ends:
			// written, its flush submitted (writeSegment) and handed
			// over before the next group is framed.
			if err := l.flush(b); err != nil {
				return l.writeFailed(b, batch[ri+1:], err)
			}
			if cp {
				l.cpJob(b.job, nil)
			}
			l.sendJob(b)
			l.startJob(b)
			for per > 0 && cutAt <= framed {
				cutAt += per
			}
		}
	}
	if err := l.flush(b); err != nil {
		return l.writeFailed(b, nil, err)
	}
	if bufBytes(cap(b.buf), cap(b.ibuf), cap(b.leaves)) <= frameBufKeep {
		l.w.buf, l.w.ibuf, l.w.leaves = b.buf[:0], b.ibuf[:0], b.leaves[:0]
	}
	b.job.upTo, b.job.active = l.w.next, l.w.f
	return b.job
}

// batchGroups is how many jobs a large batch written with room in the
// pipeline is cut into (groupBytes), and groupMin the smallest batch cut.
//
// Why: with 64 callers of 64 records each, a batch of all 64 requests
// (2.2 MB, at each burst's start and after a convoy) went with one flush,
// and its first caller was acknowledged only when the whole batch was
// durable. Cut into groups at request boundaries, each group written and
// its flush submitted (through AIO, writeSegment) before the next is
// framed, the first group is acknowledged once its share of the bytes is
// flushed, while the device has the next groups' flushes in flight. The
// syncer acknowledges each group after every flush up to its own, in
// order (syncLoop ends a merged group at the first job with a flush);
// each group is a job with its own rollback mark, as a batch cut for a
// checkpoint is. (docs/ledger.md, fifteenth and nineteenth sessions.)
var batchGroups = 3

const groupMin = 512 << 10

// groupBytes returns the framed bytes per group if batch is to be cut into
// request groups: it is at least groupMin, has more than one request, may
// have its flushes submitted through AIO (l.w.directOK: the syncer is idle
// or a slot is free; AIO flushes not refused), else 0.
func (l *Ledger) groupBytes(batch []*appendReq) int {
	if batchGroups < 2 || len(batch) < 2 || !l.w.directOK || l.w.noFlusher || l.w.noAIO || syncHook.Load() != nil {
		return 0
	}
	total := 0
	for _, r := range batch {
		total += r.bytes
	}
	if total < groupMin {
		return 0
	}
	return total / batchGroups
}

// frameBufKeep bounds the memory the sequencer keeps for framing between
// batches (frames, their .idx entries and leaf hashes together): buffers
// a batch grew beyond it are left to the garbage collector, and the next
// batch starts with the ones kept before it.
//
// Why keep them at all, and size them once: on this VM each page of
// memory touched for the first time costs a fault of 17–41 µs (the host
// backs guest memory on demand), and the first burst of 64 callers' 64
// records after Open (a 2.1 MB batch) grew its frame buffer by doubling,
// ~4 MB touched, and spent 50–180 ms in write (docs/ledger.md,
// seventeenth session). A batch's framed size is known before it is
// framed (appendReq.bytes), so the buffers are allocated once to it and
// reused by every batch after it.
const frameBufKeep = 16 << 20

// bufBytes is the memory taken by framing buffers of the given capacities:
// frame bytes, .idx bytes and leaf hashes.
func bufBytes(frames, idx, leaves int) int {
	return frames + idx + leaves*HashSize
}

// sizeBufs gives b's buffers room for the whole batch, in one allocation
// each, if they lack it and it fits within frameBufKeep (a larger batch
// grows them by appending, as before, and they are not kept).
func sizeBufs(b *batchState, batch []*appendReq) {
	frames, recs := 0, 0
	for _, r := range batch {
		frames += r.bytes
		recs += len(r.recs)
	}
	if bufBytes(frames, recs*idxEntrySize, recs) > frameBufKeep {
		return
	}
	if cap(b.buf) < frames {
		b.buf = make([]byte, 0, frames)
	}
	if cap(b.ibuf) < recs*idxEntrySize {
		b.ibuf = make([]byte, 0, recs*idxEntrySize)
	}
	if cap(b.leaves) < recs {
		b.leaves = make([]Hash, 0, recs)
	}
}

// makeRoom waits until records up to need (exclusive) fit within the
// unsigned bound. If the checkpoint already on its way will make room, what
// is written is handed to the syncer (acknowledged meanwhile) and the
// sequencer waits for that checkpoint; otherwise it cuts the batch with a
// new checkpoint and waits for it.
func (l *Ledger) makeRoom(b *batchState, need uint64) error {
	l.boundWaits.Add(1)
	if cp := l.w.cpSize; cp > l.signed.Load() && cp+l.bound >= need && !l.cpFailed.Load() {
		l.sendJob(b)
		l.startJob(b)
		return l.waitSigned(cp)
	}
	return l.cutAndWait(b)
}

// waitSigned waits until the newest durable checkpoint covers size, or a
// checkpoint could not be written.
func (l *Ledger) waitSigned(size uint64) error {
	for {
		l.cpMu.Lock()
		wake := l.signedWake
		l.cpMu.Unlock()
		if l.signed.Load() >= size {
			return nil
		}
		if err := l.err(); err != nil {
			return err
		}
		<-wake
		if l.signed.Load() < size && l.cpFailed.Load() {
			return fmt.Errorf("%w: %s: a checkpoint could not be written", ErrNoSpace, l.dir)
		}
	}
}

// cutAndWait sends the current job with a checkpoint and waits until that
// checkpoint is signed and durable: the unsigned bound is reached.
func (l *Ledger) cutAndWait(b *batchState) error {
	wait := make(chan cpResult, 1)
	l.cpJob(b.job, wait)
	l.sendJob(b)
	res := <-wait
	l.startJob(b)
	return res.err
}

// waitFailed answers the requests of a batch whose required checkpoint
// could not be made (disk full, or the ledger failed): nothing more is
// written. Records already written were sent and are acknowledged.
func (l *Ledger) waitFailed(b *batchState, rest []*appendReq, err error) {
	var notStored error
	if errors.Is(err, ErrNoSpace) {
		notStored = fmt.Errorf("%w: %s: the checkpoint required before more records could not be written: %v", ErrNoSpace, l.dir, err)
	} else if notStored = l.err(); notStored == nil {
		notStored = fmt.Errorf("%w: %s: checkpoint failed: %w", ErrFailed, l.dir, err)
	}
	for _, r := range rest {
		if r == b.cur {
			r.done <- fmt.Errorf("%w: %s: records [%d, %d) of this append were stored, the rest were not: %v", ErrUnknownOutcome, l.dir, r.first, l.w.next, notStored)
			continue
		}
		r.done <- notStored
	}
}

// writeFailed handles a failed write or rotation: lack of space is rolled
// back and reported as ErrNoSpace; anything else fails the ledger.
// Requests in the current job, and rest (not written or being written), are
// answered; it returns nil (nothing left to sync).
func (l *Ledger) writeFailed(b *batchState, rest []*appendReq, err error) *syncJob {
	reqs := append(slices.Clone(b.job.reqs), rest...)
	if isNoSpace(err) {
		rerr := l.rollback(b)
		if rerr == nil {
			l.opts.Logger.Warn("ledger: disk full, appends refused until space returns", "dir", l.dir, "err", err)
			notStored := fmt.Errorf("%w: %s: %w", ErrNoSpace, l.dir, err)
			for _, r := range reqs {
				switch {
				case r.first < b.mark.next && (r == b.cur || slices.Contains(b.job.reqs, r)):
					// Cut by the unsigned bound: its first part is stored.
					r.done <- fmt.Errorf("%w: %s: records [%d, %d) of this append were stored, the rest were not: %w", ErrUnknownOutcome, l.dir, r.first, b.mark.next, notStored)
				default:
					r.done <- notStored
				}
			}
			return nil
		}
		err = fmt.Errorf("%w; rolling back failed: %w", err, rerr)
	}
	l.setFatal(err)
	unknown := fmt.Errorf("%w: %s: write failed: %w", ErrUnknownOutcome, l.dir, err)
	for _, r := range reqs {
		if r == b.cur || slices.Contains(b.job.reqs, r) {
			r.done <- unknown
		} else {
			r.done <- l.err()
		}
	}
	return nil
}

// rollback undoes everything written since the mark: new segments are
// removed, the segment and its .idx are truncated to the mark, the tree
// and the readers' leaf hashes go back.
func (l *Ledger) rollback(b *batchState) error {
	m := b.mark
	if l.w.dio != nil {
		l.w.dio.Close() // (the segment's handle is sought below)
		l.w.dio = nil
	}
	if len(b.created) > 0 {
		l.segMu.Lock()
		l.segs = slices.DeleteFunc(l.segs, func(s *segment) bool { return slices.Contains(b.created, s) })
		l.segMu.Unlock()
	}
	for _, s := range b.job.seal {
		l.uncountClosed(s.seg)
		if s.f != m.f {
			s.f.Close()
			s.idx.Close()
		}
	}
	if l.w.f != m.f {
		l.w.f.Close()
		l.w.idx.Close()
	}
	for _, s := range b.created {
		// Never linked: the job that would have was not sent.
		s.closeRead()
		os.Remove(pendingPath(s.path))
		os.Remove(pendingPath(idxPath(s.path)))
	}
	b.job.seal, b.job.link, b.job.newSeg, b.job.nodes = nil, nil, false, nodeBuf{}
	b.buf, b.ibuf, b.leaves = b.buf[:0], b.ibuf[:0], b.leaves[:0]
	l.w.seg, l.w.f, l.w.idx, l.w.off, l.w.next, l.w.tree = m.seg, m.f, m.idx, m.off, m.next, m.tree
	// Truncated below: zeros written ahead are gone, records append.
	l.w.zeroed = false
	m.seg.count.Store(m.next - m.seg.first)
	m.seg.trimMem(m.next - m.seg.first)
	l.auth.trimRecent(m.next)
	b.mark.tree = m.tree.clone()
	if err := m.f.Truncate(m.off); err != nil {
		return err
	}
	if _, err := m.f.Seek(m.off, io.SeekStart); err != nil {
		return err
	}
	if err := m.idx.Truncate(int64(m.next-m.seg.first) * idxEntrySize); err != nil {
		return err
	}
	// Durably, before the callers are told their records are not stored:
	// what was written may be on the disk already (a direct write is
	// durable when it returns; the page cache may have written back), and
	// until the file system commits the truncation and the removals a
	// power failure brings those records back — to be stored twice when
	// the callers retry. (TestPowerLossAfterRollback.)
	if err := m.f.Sync(); err != nil {
		return err
	}
	if err := m.idx.Sync(); err != nil {
		return err
	}
	if len(b.created) > 0 {
		return syncFile(l.segDir)
	}
	return nil
}

// flush writes the framed records and their .idx entries.
func (l *Ledger) flush(b *batchState) error {
	if len(b.buf) == 0 {
		return nil
	}
	n, err := l.writeSegment(b.job, b.buf)
	l.w.off += int64(n)
	if err != nil {
		return err
	}
	if _, err := l.w.idx.Write(b.ibuf); err != nil {
		return err
	}
	l.auth.addRecent(b.leaves)
	b.buf, b.ibuf, b.leaves = b.buf[:0], b.ibuf[:0], b.leaves[:0]
	l.w.seg.count.Store(l.w.next - l.w.seg.first)
	return nil
}

// rotate closes the active segment and starts a new one at the next index.
//
// It makes nothing durable itself (a sync here held up every append behind
// it: p50 14 ms, up to 119 ms, while a compaction ran). The new segment is
// written under its pending name, and the syncer, in order (makeDurable),
// cuts the closing segment's zeros, makes it and its .idx durable, makes
// the new segment's header durable and only then links the new segment to
// its name: after a power failure a segment followed by another is whole
// (else Open refuses it and verify reports its .idx damaged), has no zeros
// after its records (they may be only in the last one), and no segment is
// seen under its name with zeros where its header goes. Nothing written to
// the new segment is acknowledged before it has its name, durably.
func (l *Ledger) rotate(b *batchState) error {
	start := time.Now()
	defer func() {
		d := int64(time.Since(start))
		l.rotations.Add(1)
		l.rotateNs.Add(d)
		if d > l.rotateMax.Load() {
			l.rotateMax.Store(d)
		}
	}()
	job := b.job
	s := &segment{first: l.w.next, path: filepath.Join(l.segDir, segName(l.w.next))}
	if l.w.dio != nil {
		l.w.dio.Close()
		l.w.dio = nil
	}
	cut := int64(-1)
	if l.w.zeroed {
		cut = l.w.off
	}
	pending := pendingPath(s.path)
	h := segHeader(s.first)
	zeroed := true
	f := l.takeZeroed(pending, h)
	l.zeroAheadIfWorth(l.w.off)
	if f == nil {
		zeroed = false
		var err error
		if f, err = os.OpenFile(pending, os.O_WRONLY|os.O_CREATE|os.O_EXCL|oNoFollow, 0o644); err != nil {
			return err
		}
	}
	b.created = append(b.created, s)
	idx, err := createFresh(pendingPath(idxPath(s.path)), os.O_WRONLY|os.O_APPEND)
	if err != nil {
		f.Close()
		os.Remove(pending)
		b.created = b.created[:len(b.created)-1]
		return err
	}
	job.seal = append(job.seal, sealed{l.w.f, l.w.idx, l.w.seg, cut})
	job.link = append(job.link, linked{f, s})
	l.countClosed(l.w.seg)
	l.w.seg, l.w.f, l.w.idx, l.w.off, l.w.zeroed = s, f, idx, 0, zeroed
	l.segMu.Lock()
	l.segs = append(l.segs, s)
	l.segMu.Unlock()
	job.newSeg = true
	if zeroed {
		l.w.off = int64(len(h)) // written before it was renamed
		l.startDirect(pending, h, l.opts.SegmentSize)
		if l.w.dio == nil {
			job.buffered = true // the header
		}
		return nil
	}
	job.buffered = true
	n, err := f.Write(h)
	l.w.off = int64(n)
	return err
}

// linkSegment gives a new segment, written under its pending name, its
// name, then its .idx (syncer, see rotate). A link fails where a segment
// is, as O_EXCL did; an .idx is derived data, replaced if one is there.
// Between the two a crash leaves the last segment without its .idx,
// which Open rebuilds.
//
// The link is the one step that can fail for lack of space (a directory
// entry; on tmpfs an inode slot): it is tried again as space returns
// (untilSpace); the records behind it are written and synced under the
// pending name, and wait for their acknowledgement meanwhile.
func (l *Ledger) linkSegment(path string) error {
	if err := l.untilSpace("link "+filepath.Base(path), func() error { return os.Link(pendingPath(path), path) }); err != nil {
		return err
	}
	if err := os.Remove(pendingPath(path)); err != nil {
		return err
	}
	return os.Rename(pendingPath(idxPath(path)), idxPath(path))
}

// syncLoop makes batches durable, acknowledges them, then has tiles and
// checkpoints written. Jobs that queue up while it syncs are merged (group
// commit). When it has nothing to do it leaves a token in syncIdle, on
// which the sequencer writes what it holds (see sequence).
func (l *Ledger) syncLoop() {
	defer close(l.syncDone)
	defer close(l.pubCh)
	for {
		if len(l.syncCh) == 0 {
			select {
			case l.syncIdle <- struct{}{}:
			default:
			}
		}
		job, ok := <-l.syncCh
		if !ok {
			return
		}
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
		// Merged up to the first job with a direct write's flush: the
		// flushes complete one after the other, and a job's callers
		// should not wait for a later job's flush as well.
		for len(jobs) > 0 {
			n := len(jobs)
			for i, j := range jobs {
				if j.ticket != 0 {
					n = i + 1
					break
				}
			}
			group := jobs[:n]
			jobs = jobs[n:]
			reqs, buffered := 0, false
			for _, j := range group {
				reqs += len(j.reqs)
				buffered = buffered || j.buffered
			}
			start := time.Now()
			l.syncJobs(group)
			if reqs > 0 {
				l.lastSyncReqs.Store(int64(reqs))
				if buffered {
					// (A direct write's time is stored by makeDurable.)
					l.lastSyncDur.Store(int64(time.Since(start)))
				}
			}
		}
	}
}

func (l *Ledger) syncJobs(jobs []*syncJob) {
	err := l.err()
	if err == nil {
		if derr := l.makeDurable(jobs); derr != nil {
			// After a failed fdatasync the kernel may have dropped the
			// dirty pages: nobody can say what is on disk.
			l.setFatal(derr)
			err = l.err()
		}
	}
	ack := err
	if err == nil {
		if l.tail != nil {
			// Kept before followers are woken: a follower that found
			// them missing would read them back from disk and check them.
			for _, j := range jobs {
				for _, r := range j.reqs {
					l.tail.add(r.first, r.at, r.recs, r.aux)
				}
			}
		}
		l.durable.Store(jobs[len(jobs)-1].upTo)
		l.notifyMu.Lock()
		if l.notify != nil {
			close(l.notify)
			l.notify = make(chan struct{})
		}
		l.notifyMu.Unlock()
	} else {
		ack = fmt.Errorf("%w: %s: written but not made durable: %w", ErrUnknownOutcome, l.dir, err)
	}
	d := int64(0)
	for _, j := range jobs {
		for _, r := range j.reqs {
			r.done <- ack
		}
		d++
		if j.ticket != 0 {
			d += 1 << pipeFlight
		}
	}
	if l.pipe.Add(-d)&pipeJobs > 0 {
		// The sequencer may write the next batch (see slot in sequence).
		select {
		case l.slotFree <- struct{}{}:
		default:
		}
	}
	// Tiles and checkpoints follow the acknowledgement, on their own
	// goroutine so that file creation never delays the next sync: they
	// are derived from durable records and rebuilt by recovery if lost.
	//
	// The hashes wait here, though, until a checkpoint is to be signed
	// (which writes them first) or pubBatchBytes of them are held: written
	// after every sync, they cost the publisher a wake-up and a pwrite per
	// level per sync, about 0.3 µs per record with many callers of one
	// record each, and they are needed no sooner. Readers take the hashes
	// of records past the newest checkpoint from the writer's memory
	// (leafAuth.recent), tile clients only see checkpointed tiles, and
	// recovery rebuilds what a crash lost, as before.
	pj := pubJob{err: err}
	for _, j := range jobs {
		if n := j.nodes.bytes(); n > 0 {
			l.pubHeld = append(l.pubHeld, j.nodes)
			l.pubHeldBytes += n
		}
		if j.cp != nil {
			pj.cp = j.cp
		}
		pj.replies = append(pj.replies, j.replies...)
	}
	if pj.cp != nil || len(pj.replies) > 0 || err != nil || l.pubHeldBytes >= pubBatchBytes {
		pj.nodes, l.pubHeld, l.pubHeldBytes = l.pubHeld, nil, 0
		l.pubCh <- pj
	}
}

// pubBatchBytes is how many bytes of hashes the syncer holds at most
// before it hands them to the publisher without a checkpoint (2,048
// records' leaf hashes).
const pubBatchBytes = 64 << 10

// pubJob is work for the publisher: hashes for the level files, then maybe
// a checkpoint.
type pubJob struct {
	err     error
	nodes   []nodeBuf
	cp      *Checkpoint
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
			l.pending = append(l.pending, pj.nodes...)
			err = l.writePending()
		}
		if pj.cp == nil && len(pj.replies) == 0 {
			continue
		}
		var signed []byte
		if err == nil && pj.cp != nil {
			signed, err = l.publish(pj.cp)
			if err != nil && isNoSpace(err) {
				err = fmt.Errorf("%w: %s: checkpoint of size %d not written: %w", ErrNoSpace, l.dir, pj.cp.Size, err)
			} else if err != nil {
				l.setFatal(err)
				err = l.err()
			}
		}
		if errors.Is(err, ErrNoSpace) {
			l.cpFailed.Store(true)
			l.opts.Logger.Error("ledger: disk full: checkpoint not signed", "dir", l.dir, "err", err)
		} else if err == nil {
			l.cpFailed.Store(false)
		}
		for _, r := range pj.replies {
			r <- cpResult{signed, err}
		}
		if pj.cp != nil || err != nil {
			// Wake a sequencer waiting for room under the unsigned bound.
			l.cpMu.Lock()
			close(l.signedWake)
			l.signedWake = make(chan struct{})
			l.cpMu.Unlock()
		}
	}
}

// writePending appends the hashes waiting in l.pending to the level
// files, in order. Lack of space keeps the rest for the next round
// (ErrNoSpace); other errors fail the ledger.
func (l *Ledger) writePending() error {
	// One pwrite per level for all of them, not one per batch.
	if len(l.pending) > 1 {
		all := l.pending[0]
		for _, nb := range l.pending[1:] {
			all.merge(nb)
		}
		l.pending = append(l.pending[:0], all)
	}
	for i := range l.pending {
		if werr := l.pending[i].writeTo(l.tiles); werr != nil {
			if isNoSpace(werr) {
				l.pending = l.pending[i:]
				return fmt.Errorf("%w: %s: hash tiles not written: %w", ErrNoSpace, l.dir, werr)
			}
			l.setFatal(werr)
			return l.err()
		}
	}
	l.pending = nil
	return nil
}

func (l *Ledger) makeDurable(jobs []*syncJob) error {
	newSeg := false
	var closed []*segment
	var done []*os.File
	// Closed segments first, then the names of the segments after them
	// (rotate): a segment's name is durable only with every segment
	// before it whole, and its header durable.
	var syncs []func() error
	var linked *os.File // the newest segment linked here: its pages are synced below
	for _, j := range jobs {
		for _, s := range j.seal {
			syncs = append(syncs, func() error {
				if s.cut >= 0 {
					// Its zeros after the records (zeroahead.go).
					if err := s.f.Truncate(s.cut); err != nil {
						return err
					}
				}
				return s.f.Sync()
			}, s.idx.Sync)
			done = append(done, s.f, s.idx)
			closed = append(closed, s.seg)
		}
		for _, k := range j.link {
			// Its header (and what was written after it) before its name.
			syncs = append(syncs, func() error { return datasync(k.f) })
			linked = k.f
		}
		newSeg = newSeg || j.newSeg
	}
	// A rotation's syncs run at once, each on its own goroutine, and
	// beside the wait for the flushes of the direct writes: each is a
	// device flush (1–3 ms here), and one after the other, with the
	// directory's sync after the link, they held every acknowledgement
	// behind a rotation for 5–11 ms at 64 × 64. None of them depends on
	// another (the closing segment's zeros are cut by the same goroutine
	// that syncs it), and the link below waits for all of them and for
	// the flushes, so the order on the disk is as before: the closed
	// segment whole and the new one's header durable before its name.
	// (Tried once before without the flushes' overlap and measured under
	// load 7–12: collector ingest was slower in 5 of 6 rounds; see
	// docs/ledger.md for the measurements on this VM.)
	var sealed chan error
	if len(syncs) > 0 {
		sealed = make(chan error, len(syncs))
		for _, f := range syncs {
			go func() { sealed <- f() }()
		}
	}
	// waitSealed waits for every one of them (also on an error: the
	// files must not be closed under them) and returns the first error.
	waitSealed := func() error {
		var first error
		for range syncs {
			if err := <-sealed; err != nil && first == nil {
				first = err
			}
		}
		syncs = syncs[:0]
		return first
	}
	// The flushes of the direct writes, in order (flushDirect).
	var ticket uint64
	var wrote time.Time
	for _, j := range jobs {
		if j.ticket > ticket {
			ticket, wrote = j.ticket, j.wrote
		}
	}
	if ticket > 0 {
		if err := l.flusher.wait(ticket); err != nil {
			waitSealed()
			return err
		}
		// What the write and its flush took, for the gather.
		l.lastSyncDur.Store(int64(time.Since(wrote)))
	}
	// (The rotation's time beyond the flushes, for the benchmark.)
	start, rotated := time.Now(), len(syncs) > 0
	if err := waitSealed(); err != nil {
		return err
	}
	for _, j := range jobs {
		for _, k := range j.link {
			if h := linkHook.Load(); h != nil {
				(*h)()
			}
			if err := l.linkSegment(k.seg.path); err != nil {
				return err
			}
			if h := rotateHook.Load(); h != nil {
				(*h)()
			}
		}
	}
	for _, f := range done {
		f.Close()
	}
	if newSeg {
		if err := l.untilSpace("sync the segment directory", func() error { return syncFile(l.segDir) }); err != nil {
			return err
		}
	}
	if rotated {
		l.sealNs.Add(int64(time.Since(start)))
	}
	l.queueCompaction(closed)
	// The last flush submitted covers every page written before it:
	// jobs whose flush was submitted (ticket) need no fdatasync, nor do
	// page-cache writes in jobs before them. (The group ends at the first
	// job with a ticket; its own buffered flag is set only by pages it
	// wrote after its flush. A segment closed in between is synced
	// above.)
	buffered := false
	if ticket == 0 {
		for _, j := range jobs {
			buffered = buffered || j.buffered
		}
	} else {
		buffered = jobs[len(jobs)-1].buffered
	}
	// Records written directly are durable already (direct.go). The
	// pages of a segment linked here were synced before its link, after
	// every job of the group was written (the jobs before the rotation
	// wrote to the closing segment, synced whole above).
	if last := jobs[len(jobs)-1]; buffered && (last.upTo > l.durable.Load() || newSeg) && (linked == nil || last.active != linked) {
		l.syncs.Add(1)
		if h := syncHook.Load(); h != nil {
			return (*h)(last.active)
		}
		return l.syncerDatasync(last.active)
	}
	return nil
}

// syncerDatasync is the syncer's fdatasync of a segment written through
// the page cache, submitted through its own AIO context when there is one
// (aio_linux.go): the syncer waits in the poller rather than in the call,
// whose P Go's monitor would take back (at full collector ingest these
// were the largest share of the ledger's blocking calls). Durable on
// return either way.
func (l *Ledger) syncerDatasync(f *os.File) error {
	return flusherFor(&l.syncFlusher, &l.noSyncFlusher, "segment").datasync(f)
}

// flusherFor returns *fl, set up on first use; nil where AIO is
// unavailable, which *none remembers so that it is not tried again.
func flusherFor(fl **aioFlusher, none *bool, what string) *aioFlusher {
	if *fl == nil && !*none {
		if *fl = newFlusher(what); *fl == nil {
			*none = true
		}
	}
	return *fl
}

// datasync makes f's data durable through a (the caller waits in the
// poller), or with a blocking fdatasync where a is nil or refuses it.
func (a *aioFlusher) datasync(f *os.File) error {
	if a != nil {
		if t, ok := a.submit(f); ok {
			return a.wait(t)
		}
	}
	return datasync(f)
}

// flushWaitHook, when set (by tests), runs as the syncer starts waiting
// for the flushes of direct writes (TestDirectWritesPipelined).
var flushWaitHook atomic.Pointer[func(ticket uint64)]

// untilSpace runs step, the syncer's link of a new segment or sync of the
// segment directory at a rotation, until it succeeds, fails for another
// reason than lack of space, or the ledger is stopped. Such a step cannot
// be rolled back as an append's write is (the sequencer has written on
// in the new segment), and failing the ledger for it needed a reopen once
// space returned; so the syncer waits for space, as a slow disk makes it
// wait, and the appends behind it are held (the sequencer holds
// holdBytes, then Append waits to enter the queue, bounded by its ctx).
// An append that finds the disk full is still refused at once with
// ErrNoSpace.
func (l *Ledger) untilSpace(what string, step func() error) error {
	err := step()
	if err == nil || !isNoSpace(err) {
		return err
	}
	l.opts.Logger.Warn("ledger: disk full at a rotation: its records wait until space returns", "dir", l.dir, "step", what, "err", err)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		select {
		case <-l.stop:
			return err
		case <-time.After(wait):
		}
		if err = step(); err == nil || !isNoSpace(err) {
			if err == nil {
				l.opts.Logger.Info("ledger: space returned, rotation completed", "dir", l.dir, "step", what)
			}
			return err
		}
	}
}

// linkHook, when set (by tests), runs before a new segment is linked to
// its name (TestDiskFullAtRotationLinkRecovers fills the disk then).
var linkHook atomic.Pointer[func()]

// rotateHook, when set (by tests), runs once a new segment is linked to
// its name (TestPowerLossAtRotation).
var rotateHook atomic.Pointer[func()]

// syncHook, when set (by tests), replaces the fdatasync of the active
// segment: a real fdatasync cannot be made to fail on demand.
var syncHook atomic.Pointer[syncFunc]

type syncFunc func(*os.File) error

// publish makes the hashes of a checkpoint's tree durable (its tiles,
// full and partial, are byte ranges of the level files), signs it, appends
// it to the checkpoint history (durably), replaces the checkpoint file and
// queues it for the witnesses.
func (l *Ledger) publish(cp *Checkpoint) ([]byte, error) {
	// Every signed checkpoint's tiles survive a power failure, so tile
	// clients and recovery find them.
	if err := l.tiles.syncWith(flusherFor(&l.pubFlusher, &l.noPubFlusher, "hash tiles")); err != nil {
		return nil, err
	}
	signers := []note.Signer{l.opts.Signer}
	if l.w.handover != nil {
		signers = append(signers, l.w.handover)
	}
	signed, err := SignCheckpoint(*cp, signers...)
	if err != nil {
		return nil, err
	}
	if err := l.cpl.append(cp.Time.UnixNano(), signed, l.pubFlusher); err != nil {
		return nil, err
	}
	l.signed.Store(cp.Size)
	handover := l.w.handover != nil
	l.w.handover = nil
	if l.cpFile.due(cp, handover, uint64(l.opts.CheckpointEvery), l.opts.CheckpointInterval) {
		l.refreshCheckpointFile(signed)
	} else {
		l.cpFile.skipped++
	}
	l.cpMu.Lock()
	l.latest, l.latestCP = signed, *cp
	l.cpMu.Unlock()
	l.auth.setAnchor(cp.Size, cp.Root)
	for _, q := range l.witnesses {
		q.enqueue(signed)
	}
	return signed, nil
}

// cpFileState is what the publisher knows of the checkpoint file.
type cpFileState struct {
	at      time.Time // when it was last replaced (0: not by this process)
	last    uint64    // the size of the previous checkpoint signed
	skipped uint64    // checkpoints that left it as it was (tests)
}

// due reports whether cp, about to be signed, replaces the checkpoint
// file. The file is a copy for tlog clients and auditors reading the
// directory (the history is the record, and it is synced first), and
// replacing it costs a file creation, an fsync and a rename: at full
// ingest 12 a second, a quarter of the ledger's syncs. So a checkpoint
// made because CheckpointEvery records arrived (records arrive faster
// than that per interval) leaves it alone if the file was replaced less
// than an interval ago: it never falls more than one interval behind
// while records arrive, and the checkpoint that ends a burst (made by
// the interval, with fewer records) replaces it. Every checkpoint that
// marks something replaces it at once: the first of a process (its
// restart), Close's (shutdown), an adoption, and a handover (the
// collector checks its signer against the file's keys at start).
func (s *cpFileState) due(cp *Checkpoint, handover bool, every uint64, interval time.Duration) bool {
	last := s.last
	s.last = cp.Size
	if s.at.IsZero() || handover || cp.Size < last+every || time.Since(s.at) >= interval {
		return true
	}
	for _, e := range cp.Extra {
		if !strings.HasPrefix(e, cadenceExt) {
			return true
		}
	}
	return false
}

// refreshCheckpointFile replaces the checkpoint file with signed. The
// history is the record, so failing to do so is logged, not fatal.
func (l *Ledger) refreshCheckpointFile(signed []byte) {
	tmp := filepath.Join(l.dir, "checkpoint.tmp")
	// Synced before the rename: a rename committed before the data leaves
	// an empty or partial file after a power failure, which verify reports
	// as a forged checkpoint (TestPowerLoss).
	if err := writeFileSync(tmp, signed); err != nil {
		os.Remove(tmp)
		l.opts.Logger.Error("ledger: checkpoint file not refreshed", "dir", l.dir, "err", err)
	} else if err := os.Rename(tmp, filepath.Join(l.dir, "checkpoint")); err != nil {
		l.opts.Logger.Error("ledger: checkpoint file not refreshed", "dir", l.dir, "err", err)
	} else {
		l.cpFile.at = time.Now()
	}
}

// writeFileSync writes data to a new file at path and syncs it.
func writeFileSync(path string, data []byte) error {
	return writeFresh(path, data, true) // (never through a link planted there: plant.go)
}

// spaceGuard keeps Options.Reserve free (sequencer only).
//
// statfs is a syscall on the sequencer's path, so the figure is refreshed
// only when it may have gone stale in a way that matters: after
// spaceCheckEvery, after the writer took spaceCheckBytes since the last
// look (at most a sixteenth of the reserve, so others' writes plus the
// estimate's error between two looks cannot eat the reserve unseen), and
// on every batch (at most every spaceCheckNear) once free space is within
// one reserve of the limit. Between looks the writer counts what it takes.
type spaceGuard struct {
	dir     string
	reserve int64
	free    int64 // last statfs, minus what was allowed since
	known   bool
	checked time.Time
	taken   int64 // allowed since the last statfs

	// now and statfs are time.Now and FreeBytes outside tests.
	now    func() time.Time
	statfs func(dir string) int64
}

const (
	// spaceCheckEvery is how stale the free-space figure may be while
	// free space is well above the reserve (an execution trace of the
	// single-node gateway at 2,000 requests/s showed a statfs per write
	// batch on the sequencer's path, ~80/s, each a system call at which
	// the sequencer's goroutine can lose its P).
	spaceCheckEvery = 100 * time.Millisecond
	// spaceCheckNear is the staleness allowed within one reserve of the
	// limit: about once per batch, as close to the edge as it is cheap.
	spaceCheckNear = time.Millisecond
	// spaceCheckBytes caps what the writer takes between two looks (and
	// a sixteenth of the reserve caps it further).
	spaceCheckBytes = 4 << 20
)

// stale reports whether the free-space figure must be refreshed before
// allowing need more bytes.
func (g *spaceGuard) stale(now time.Time, need int64) bool {
	if !g.known && g.checked.IsZero() {
		return true
	}
	age := now.Sub(g.checked)
	if age >= spaceCheckEvery || g.taken+need > min(spaceCheckBytes, g.reserve/16) {
		return true
	}
	// Near the edge (or unknown last time, or a disk that lost space):
	// look as often as before.
	return (!g.known || g.free-need < 2*g.reserve) && age >= spaceCheckNear
}

// allow reports whether need more bytes may be written.
func (g *spaceGuard) allow(need int64) bool {
	if g.reserve <= 0 {
		return true
	}
	nowf, statfs := g.now, g.statfs
	if nowf == nil {
		nowf = time.Now
	}
	if statfs == nil {
		statfs = FreeBytes
	}
	if now := nowf(); g.stale(now, need) {
		f := statfs(g.dir)
		g.free, g.known, g.checked, g.taken = f, f >= 0, now, 0
	}
	if !g.known {
		return true // no statfs here: a full disk still ends in ErrNoSpace
	}
	if g.free-need < g.reserve {
		return false
	}
	g.free -= need // between checks, count what this writer takes
	g.taken += need
	return true
}
