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
// The zeros after the records are never records: the rotation cuts them
// from the segment it closes, durably, before the next segment exists, and
// Close cuts them from the last one; after a crash, recovery cuts them like
// a torn tail (the last segment is the only one that can have them), and
// verify reports them as a torn tail, not as a corrupt frame.

// zeroAheadName is the next segment being zeroed ahead, in the segment
// directory.
const zeroAheadName = "next.zeroed"

// zeroBuf is the zeros written ahead, a chunk at a time.
var zeroBuf = make([]byte, 1<<20)

// errNoRoomAhead: too little space beyond Options.Reserve to zero a segment
// ahead; the next segment is created empty.
var errNoRoomAhead = errors.New("ledger: no room beyond the reserve to zero the next segment ahead")

// zeroAhead starts zeroing the next segment if none is on its way
// (sequencer only).
func (l *Ledger) zeroAhead() {
	if l.w.ahead != nil {
		return
	}
	done := make(chan bool, 1)
	l.w.ahead = done
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		done <- l.zeroFile(filepath.Join(l.segDir, zeroAheadName), l.opts.SegmentSize) == nil
	}()
}

// zeroFile writes size zero bytes to a new file at path and syncs it; on
// any failure (a full disk, a stop) the file is removed.
func (l *Ledger) zeroFile(path string, size int64) (err error) {
	if free := FreeBytes(l.dir); free >= 0 && free-2*size < l.opts.Reserve {
		return errNoRoomAhead
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
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
// links it to path and returns it open for writing after the header; nil
// if there is none (the caller creates the segment). Zeroing the one after
// is started. The header is written before the link so that the segment
// is never seen under its name with zeros where its header goes.
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
	defer l.zeroAhead()
	ahead := filepath.Join(l.segDir, zeroAheadName)
	if !ready {
		return nil
	}
	f, err := os.OpenFile(ahead, os.O_WRONLY, 0)
	if err != nil {
		os.Remove(ahead)
		return nil
	}
	// A link fails if path exists, as O_EXCL does for a new segment.
	if _, err := f.Write(header); err != nil || os.Link(ahead, path) != nil {
		f.Close()
		os.Remove(ahead)
		return nil
	}
	os.Remove(ahead)
	return f
}

// cutZeros truncates the active segment's zeros after its records and
// makes that durable.
func (l *Ledger) cutZeros() error {
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
