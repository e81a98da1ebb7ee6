package ledger

import (
	"errors"
	"os"
	"path/filepath"
)

// Segments are zeroed ahead. Appending to a file changes its size, and on
// ext4 every fdatasync after a size change also writes the inode
// synchronously: measured here, an appending fdatasync took p50 176–197 µs
// and 88–113 µs of kernel CPU, one that overwrites a pre-zeroed file 98–104
// µs and 55–60 µs (fallocate does not help: its unwritten extents change on
// the first write just the same). So while a segment fills, a background
// goroutine writes the next one's zeros and syncs them, under a name
// listSegments ignores; the rotation links it into place.
//
// The segment active at Open is zeroed after its records, and the next
// segment zeroed ahead, before Open returns (zeroAtOpen).
//
// The zeros after the records are never records: they are cut from the
// segment a rotation closes, durably, before the next segment has its name
// (the syncer, rotate), and
// Close cuts them from the last one; after a crash, recovery cuts them like
// a torn tail (the last segment is the only one that can have them), and
// verify takes zeros from the last segment's last complete frame to its
// end for the end of its records (no notice); zeros followed by anything
// are a torn tail, never a corrupt frame.

// zeroAheadName is the next segment being zeroed ahead, in the segment
// directory.
const zeroAheadName = "next.zeroed"

// zeroBuf is the zeros written ahead, a chunk at a time.
var zeroBuf = make([]byte, 1<<20)

// errNoRoomAhead: too little space beyond Options.Reserve to zero a segment
// ahead; the next segment is created empty.
var errNoRoomAhead = errors.New("ledger: no room beyond the reserve to zero the next segment ahead")

// zeroAhead starts zeroing the next segment if none is on its way
// (Open, then the sequencer).
func (l *Ledger) zeroAhead() {
	if l.w.ahead != nil {
		return
	}
	done := make(chan bool, 1)
	l.w.ahead = done
	l.bg.Add(1)
	l.zeroing.Add(1)
	go func() {
		defer l.bg.Done()
		defer l.zeroing.Add(-1)

		if h := l.opts.zeroAheadHook; h != nil {
			h()
		}
		err := l.zeroFile(filepath.Join(l.segDir, zeroAheadName), l.opts.SegmentSize)

		if errors.Is(err, errPlanted) {
			l.opts.Logger.Warn("ledger: something is planted, again and again, where the next segment is zeroed ahead; the next segment is created empty", "err", err)
		}
		done <- err == nil
	}()
}

// zeroAheadMaxSync is the most bytes per fdatasync at which zeroing the
// next segment ahead pays. Writing a segment's zeros costs CPU by the
// byte (0.27 ns here: ~4.6 ms of CPU per 16 MiB, 8 % of the CPU of 64
// appenders of 64 records), and saves CPU by the sync (45–55 µs of kernel
// CPU, and ~80 µs of latency, per fdatasync that overwrites zeros rather
// than appends): it pays below ~170 KB per sync.
const zeroAheadMaxSync = 128 << 10

// zeroAheadIfWorth starts zeroing the next segment (sequencer, at a
// rotation) unless the segment just closed was synced in large pieces:
// with few, large fdatasyncs the zeros cost more CPU than they save.
func (l *Ledger) zeroAheadIfWorth(closed int64) {
	syncs := l.syncs.Load()
	n := syncs - l.w.segSyncs
	l.w.segSyncs = syncs
	if n > 0 && closed/int64(n) > zeroAheadMaxSync {
		return
	}
	l.zeroAhead()
}

// zeroAtOpen zeroes, before Open returns, the tail of the segment active
// at Open (zeroActiveTail) and, at the same time, the next segment
// (zeroAhead, waited for). Zeroed behind the first appends instead, the
// next segment's 16 MiB took the device's bandwidth from their flushes
// (the ninth session's timeline: the rate halved for ~27 ms while a
// segment was zeroed), at the start of every burst after Open. Open takes
// the time instead (+13 ms for a new ledger here: 44 against 31 ms, the
// two overlapping); later segments are zeroed ahead at each rotation as
// before. A segment zeroed ahead by a process that stopped is made again:
// nothing says it is whole.
func (l *Ledger) zeroAtOpen() {
	os.Remove(filepath.Join(l.segDir, zeroAheadName))
	l.zeroAhead()
	l.zeroActiveTail()
	ready := <-l.w.ahead
	l.w.ahead <- ready // (buffered, one: taken by the first rotation)
}

// zeroActiveTail writes zeros after the records of the segment active at
// Open up to SegmentSize and makes them durable, before Open returns, and
// opens the segment for direct writes: from the first append on, the
// writer overwrites zeros with no size change to commit, as in a segment
// zeroed ahead. Zeroed behind the writer instead (until the tenth session), the
// appends until the zeroer reached the segment's end (~56 ms for a new
// ledger's 16 MiB here) went through the page cache with an appending
// fdatasync each, at ~75k records/s against ~200k after it; Open itself
// already reads that segment to its end and syncs it. Only with room for
// the zeros and the next segment beyond Options.Reserve; a failure leaves
// the segment appended to as before (the zeros written are cut like any).
func (l *Ledger) zeroActiveTail() {
	rest := l.opts.SegmentSize - l.w.off
	if rest < 4<<10 {
		return
	}
	if free := FreeBytes(l.dir); free >= 0 && free-rest-2*l.opts.SegmentSize < l.opts.Reserve {
		return
	}
	f := l.w.f
	// Zeros may follow the records from now on: rotation and Close cut
	// them, recovery cuts them after a crash.
	l.w.zeroed = true
	for off := l.w.off; off < l.opts.SegmentSize; off += int64(len(zeroBuf)) {
		if _, err := f.WriteAt(zeroBuf[:min(int64(len(zeroBuf)), l.opts.SegmentSize-off)], off); err != nil {
			return
		}
	}
	// One fdatasync for the whole tail: nothing else is written yet.
	if err := datasync(f); err != nil {
		return
	}
	l.startDirectAt(l.w.seg.path, l.opts.SegmentSize)
}

// zeroFile writes size zero bytes to a new file at path and syncs it; on
// any failure (a full disk, a stop) the file is removed.
func (l *Ledger) zeroFile(path string, size int64) (err error) {
	if free := FreeBytes(l.dir); free >= 0 && free-2*size < l.opts.Reserve {
		return errNoRoomAhead
	}
	// Created anew, never through a link planted at the name (plant.go).
	f, err := createFresh(path, os.O_WRONLY)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	for off := int64(0); off < size; off += int64(len(zeroBuf)) {
		select {
		case <-l.stop:
			return errors.New("ledger: stopped")
		default:
		}
		if _, err := f.WriteAt(zeroBuf[:min(int64(len(zeroBuf)), size-off)], off); err != nil {
			return err
		}
		// A chunk at a time to the disk: 16 MiB of writeback at once
		// would hold up the segment's fdatasyncs queued behind it.
		if err := datasync(f); err != nil {
			return err
		}
	}
	return f.Sync()
}

// takeZeroed writes header into the segment zeroed ahead, if it is ready,
// renames it to path (the new segment's pending name, rotate) and returns
// it open for writing after the header; nil if there is none (the caller
// creates the segment). The syncer makes the header durable before it
// links the segment to its name, so that the segment is never seen under
// its name with zeros where its header goes (TestPowerLoss).
func (l *Ledger) takeZeroed(path string, header []byte) *os.File {
	if l.w.ahead == nil {
		return nil
	}
	var ready bool
	select {
	case ready = <-l.w.ahead:
		l.w.ahead = nil
	default:
		return nil // still being written
	}
	ahead := filepath.Join(l.segDir, zeroAheadName)
	if !ready {
		return nil
	}
	// Not through a link put at the name since zeroFile made the file
	// (plant.go): that fails, and the link is removed.
	f, err := os.OpenFile(ahead, os.O_WRONLY|oNoFollow, 0)
	if err != nil {
		os.Remove(ahead)
		return nil
	}
	if _, err := f.Write(header); err != nil || os.Rename(ahead, path) != nil {
		f.Close()
		os.Remove(ahead)
		return nil
	}
	return f
}

// cutZeros truncates the active segment's zeros after its records and
// makes that durable.
func (l *Ledger) cutZeros() error {
	if err := l.stopDirect(); err != nil {
		return err
	}
	if !l.w.zeroed {
		return nil
	}
	if err := l.w.f.Truncate(l.w.off); err != nil {
		return err
	}
	if err := l.w.f.Sync(); err != nil {
		return err
	}
	l.w.zeroed = false
	return nil
}

// zeroFrame reports whether b starts with an empty frame of zeros: where
// the records of a segment zeroed ahead end (a real empty record has a
// CRC, and a CRC-32C of zeros is not zero).
func zeroFrame(b []byte) bool {
	if len(b) < frameOverhead {
		return false
	}
	for _, c := range b[:frameOverhead] {
		if c != 0 {
			return false
		}
	}
	return true
}
