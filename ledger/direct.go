package ledger

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Direct writes. A segment zeroed ahead is written with O_DIRECT where the
// system has it: its blocks are allocated and written already, so a direct
// write of whole blocks goes straight to the device with no dirty pages
// and no metadata left behind, and a device flush makes it durable.
// Measured here (ext4 on virtio, 34 KiB per sync, load 5–9): buffered
// pwrite + fdatasync into a pre-zeroed file p50 104–143 µs and 51–86 µs of
// CPU; O_DIRECT|O_DSYNC p50 89–139 µs and 42–58 µs. The sequencer makes
// these writes itself and submits the flush (flushDirect); a job written
// so needs no fdatasync of its pages (syncJob.buffered is false), and the
// syncer waits for its flush and acknowledges jobs in order. Written with
// O_DSYNC instead (write and flush in one request, as until the seventh
// session), the next batch could not be written before the flush ended:
// the device flushes several requests in flight at several times the rate
// of one, and 64 callers of one record each waited for one flush after
// another.
//
// Direct writes cover whole blocks, so the block that holds the end of
// the last write is written again, with the same bytes before the new
// records (kept in the writer's buffer) and zeros after them: a torn
// write of it leaves, sector by sector, old or new bytes, and the old
// bytes before the new records are the same. That is what the page cache
// does too when it writes that page back.

// dioAlign is the alignment of direct writes: offsets, lengths and the
// buffer's address (4 KiB: the page and ext4 block size; any logical
// block size up to it is satisfied).
const dioAlign = 4096

// alignedBuf returns a zeroed buffer of n bytes (a multiple of dioAlign)
// whose address is a multiple of dioAlign.
func alignedBuf(n int) []byte {
	b := make([]byte, n+dioAlign)
	skip := dioAlign - int(uintptr(unsafe.Pointer(&b[0]))&(dioAlign-1))
	if skip == dioAlign {
		skip = 0
	}
	return b[skip : skip+n : skip+n]
}

// startDirect opens the new active segment (zeroed ahead to size bytes,
// header written: the writer's offset is the header's length) for direct
// writes, if the system allows it.
func (l *Ledger) startDirect(path string, header []byte, size int64) {
	l.openDirect(path, header, size)
}

// startDirectAt opens the active segment for direct writes from the
// writer's offset, once it is zeroed to size bytes (the segment active at
// Open, zeroed to its end by Open: zeroActiveTail): the bytes of the block
// being written are read back first.
func (l *Ledger) startDirectAt(path string, size int64) {
	a := l.w.off &^ (dioAlign - 1)
	head := make([]byte, l.w.off-a)
	f, err := os.Open(path)
	if err != nil {
		return
	}
	_, err = f.ReadAt(head, a)
	f.Close()
	if err != nil {
		return
	}
	l.openDirect(path, head, size)
}

func (l *Ledger) openDirect(path string, head []byte, size int64) {
	if l.w.dio != nil || size%dioAlign != 0 || l.w.off > size || l.opts.noDirect || l.w.noDirect {
		return
	}
	f, err := openDirect(path)
	if err != nil {
		return
	}
	if len(l.w.dbuf) < 64<<10 {
		l.w.dbuf = alignedBuf(64 << 10)
	}
	copy(l.w.dbuf, head)
	l.w.dio, l.w.dsize = f, size
}

// stopDirect ends direct writes to the active segment; the segment's own
// handle writes from the writer's offset on.
func (l *Ledger) stopDirect() error {
	if l.w.dio == nil {
		return nil
	}
	l.w.dio.Close()
	l.w.dio = nil
	_, err := l.w.f.Seek(l.w.off, 0)
	return err
}

// directMax is the largest write made directly (and only with the
// syncer idle, writer.directOK: a batch written while it syncs is synced
// with the next ones in one fdatasync, where a direct write would flush
// the device's cache for it alone). A direct, synchronous
// write keeps the sequencer until the device has it, so nothing is framed
// meanwhile; through the page cache a large batch is written in a fraction
// of that and synced while the next one is framed (with 64 callers of 64
// records, ~650 KiB per sync: p99 up to 255 ms against 44–103 written so,
// in the first segment of the benchmark, the one written directly). The
// same bound as zeroing ahead (zeroAheadMaxSync): below it the sync's
// fixed cost dominates.
const directMax = zeroAheadMaxSync

// writeSegment writes p at the writer's offset of the active segment:
// directly and synchronously if it can (durable on return: the job needs
// no fdatasync for it), else through the segment's handle (job.buffered).
func (l *Ledger) writeSegment(job *syncJob, p []byte) (int, error) {
	if l.w.dio != nil && (len(p) > directMax || !l.w.directOK) {
		// A large batch, or one written while the syncer is busy: to the
		// page cache (quickly), synced by the syncer with whatever else
		// it finds then, while the sequencer frames the next one.
		off := l.w.off
		start := time.Now()
		n, err := l.w.f.WriteAt(p, off)
		job.buffered = true
		if err != nil {
			return n, err
		}
		// Keep the block the next direct write starts in.
		end := off + int64(n)
		if na := end &^ (dioAlign - 1); na >= off {
			copy(l.w.dbuf, p[na-off:])
		} else {
			copy(l.w.dbuf[off-na:], p) // within the block kept
		}
		if l.w.directOK && syncHook.Load() == nil && l.submitFlush(job, l.w.f, start) {
			// A large batch with room in the pipeline: its fdatasync is
			// submitted now, through AIO, and overlaps the flushes of the
			// batches before it as a direct write's does, instead of
			// waiting for the syncer to finish theirs. It covers every
			// page of this segment written before it (makeDurable).
			// (With the sync hook set, tests hold the syncer's
			// fdatasync: the page-cache path stays theirs.)
			job.buffered = false
			l.syncs.Add(1)
			l.cacheFlushes.Add(1)
		}
		return n, nil
	}
	if l.w.dio != nil {
		off := l.w.off
		a := off &^ (dioAlign - 1)
		head := int(off - a)
		need := head + len(p)
		padded := (need + dioAlign - 1) &^ (dioAlign - 1)
		if a+int64(padded) <= l.w.dsize {
			if len(l.w.dbuf) < padded {
				nb := alignedBuf(max(padded, 2*len(l.w.dbuf)))
				copy(nb, l.w.dbuf[:head])
				l.w.dbuf = nb
			}
			copy(l.w.dbuf[head:], p)
			clear(l.w.dbuf[need:padded])
			start := time.Now()
			if err := l.writeDirect(l.w.dbuf[:padded], a); err != nil {
				if !unsupported(err) {
					return 0, err
				}
				// Refused before anything was written: this file system
				// takes O_DIRECT at open but not its writes. Through the
				// page cache from here on, for this segment and the next.
				l.w.noDirect = true
				l.directOff.Add(1)
				if err := l.stopDirect(); err != nil {
					return 0, err
				}
				job.buffered = true
				return l.w.f.Write(p)
			}
			if h := syncHook.Load(); h != nil {
				// (Tests: the write is this job's sync.)
				if err := (*h)(l.w.f); err != nil {
					return 0, err
				}
			}
			if err := l.flushDirect(job, start); err != nil {
				return 0, err
			}
			l.syncs.Add(1)
			l.direct.Add(1)
			// Keep the block the next write starts in.
			end := off + int64(len(p))
			na := end &^ (dioAlign - 1)
			copy(l.w.dbuf, l.w.dbuf[na-a:end-a])
			return len(p), nil
		}
		// Past the space zeroed ahead (a record larger than the rest,
		// always the first of its segment): through the page cache from
		// here on.
		l.directOut.Add(1)
		if err := l.stopDirect(); err != nil {
			return 0, err
		}
	}
	job.buffered = true
	if l.w.dio == nil && l.w.directOK && syncHook.Load() == nil {
		// A segment not zeroed ahead (with large batches, as at 64 × 64,
		// zeroing costs more than it saves): written through the page
		// cache and, with room in the pipeline, its fdatasync submitted
		// now through AIO, as a large batch's is above. Held for the
		// syncer's fdatasync instead, the next batch waited for the
		// sync under way and went with it into one large sync: ack p99
		// 11–18 ms against 12–16 with this, the most 14–26 against
		// 13–18 ms, in six alternated pairs at 64 × 64 (07:19 UTC).
		start := time.Now()
		n, err := l.w.f.Write(p)
		if err != nil {
			return n, err
		}
		if l.submitFlush(job, l.w.f, start) {
			job.buffered = false
			l.syncs.Add(1)
			l.cacheFlushes.Add(1)
		}
		return n, nil
	}
	return l.w.f.Write(p)
}

// directWriteHook, if set (tests), answers a direct write in its place.
var directWriteHook atomic.Pointer[func(p []byte, off int64) error]

func (l *Ledger) writeDirect(p []byte, off int64) error {
	if h := directWriteHook.Load(); h != nil {
		return (*h)(p, off)
	}
	if !l.w.noAIO {
		// Through AIO (aio_linux.go): the sequencer waits in the poller,
		// not in a system call.
		if l.w.aio == nil {
			if l.w.aio = newAIO(); l.w.aio == nil {
				l.w.noAIO = true
			}
		}
		if a := l.w.aio; a != nil {
			submitted, err := a.pwrite(l.w.dio, p, off)
			if submitted {
				if err == nil {
					l.aioWrites.Add(1)
				}
				return err
			}
			// Refused before anything was written: pwrite from now on.
			l.closeAIO()
			l.w.noAIO = true
		}
	}
	_, err := l.w.dio.WriteAt(p, off)
	return err
}

// flushDirect makes the direct write just completed durable: a flush
// submitted through AIO, which the syncer waits for before it
// acknowledges job (aio_linux.go), so that the sequencer writes the next
// batch meanwhile; else an fdatasync here, durable on return as the
// write with O_DSYNC was.
func (l *Ledger) flushDirect(job *syncJob, start time.Time) error {
	if l.submitFlush(job, l.w.dio, start) {
		return nil
	}
	if err := datasync(l.w.dio); err != nil {
		return err
	}
	// What the syncer's fdatasync took, for the gather (write.go).
	l.lastSyncDur.Store(int64(time.Since(start)))
	return nil
}

// submitFlush submits an fdatasync of f through AIO for job (its ticket,
// which the syncer waits for before the acknowledgement), if AIO flushes
// are available; false if not (nothing started).
func (l *Ledger) submitFlush(job *syncJob, f *os.File, start time.Time) bool {
	if l.flusher == nil && !l.w.noFlusher && !l.w.noAIO {
		if l.flusher = newFlusher("segment"); l.flusher == nil {
			l.w.noFlusher = true
		}
	}
	if l.flusher == nil {
		return false
	}
	t, ok := l.flusher.submit(f)
	if !ok {
		// Refused: fdatasync from now on.
		l.w.noFlusher = true
		return false
	}
	job.ticket, job.wrote = t, start
	l.flushes.Add(1)
	return true
}

// closeAIO releases the direct writes' AIO context, if there is one.
func (l *Ledger) closeAIO() {
	if l.w.aio != nil {
		l.w.aio.close()
		l.w.aio = nil
	}
	if l.flusher != nil {
		l.flusher.close()
		l.flusher = nil
	}
}

// closePubAIO starts releasing the publisher's and the syncer's AIO
// contexts, if there are any, once both have stopped (Close), and returns
// what waits for them: io_destroy waits for an RCU grace period, so Close releases it
// beside the writer's contexts, not one grace period after them.
func (l *Ledger) closePubAIO() (wait func()) {
	var fs []*aioFlusher
	for _, f := range []**aioFlusher{&l.pubFlusher, &l.syncFlusher} {
		if *f != nil {
			fs = append(fs, *f)
			*f = nil
		}
	}
	done := make(chan struct{}, len(fs))
	for _, f := range fs {
		go func() { f.close(); done <- struct{}{} }()
	}
	return func() {
		for range fs {
			<-done
		}
	}
}

// unsupported reports whether a direct write was refused for what it is
// rather than failed: EINVAL (alignment or O_DIRECT not honoured) and
// EOPNOTSUPP are answered before any byte is written, unlike EIO or
// ENOSPC, which stay errors of the batch.
func unsupported(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP)
}
