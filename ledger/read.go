package ledger

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"sync"
	"time"
)

// Entries returns an iterator over the records from index from up to the
// ledger's size when each step is taken. It stops at the first error,
// yielding it (ErrPruned if from is below the retained range).
func (l *Ledger) Entries(from uint64) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		for e, err := range l.entries(from, ^uint64(0), true) {
			if !yield(e, err) || err != nil {
				return
			}
		}
	}
}

// Follow is like Entries but, at the end, waits for new records instead of
// stopping: it is how the index and shippers tail the ledger. It ends when
// ctx is done (yielding ctx.Err()) or the ledger is closed (yielding
// ErrClosed).
func (l *Ledger) Follow(ctx context.Context, from uint64) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		next := from
		for {
			var ok bool
			if next, ok = l.drain(next, ^uint64(0), yield); !ok {
				return
			}
			if err := l.Wait(ctx, next); err != nil {
				yield(Entry{}, err)
				return
			}
		}
	}
}

// drain yields the checked records from next up to (not including) to, or
// the first error reading them. It returns the index after the last record
// yielded, and false when yield stopped or an error was yielded.
func (l *Ledger) drain(next, to uint64, yield func(Entry, error) bool) (uint64, bool) {
	for e, err := range l.entries(next, to, true) {
		if err != nil {
			yield(Entry{}, err)
			return next, false
		}
		if !yield(e, nil) {
			return next, false
		}
		next = e.Index + 1
	}
	return next, true
}

// Wait blocks until the ledger holds more than n records, ctx is done or
// the ledger is closed.
func (l *Ledger) Wait(ctx context.Context, n uint64) error {
	for {
		l.notifyMu.Lock()
		ch := l.notify
		l.notifyMu.Unlock()
		if l.Size() > n {
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

// Read returns record i, checked against its leaf hash in the tree.
func (l *Ledger) Read(i uint64) (Entry, error) {
	if i >= l.Size() {
		return Entry{}, fmt.Errorf("%w: record %d (size %d)", ErrNotFound, i, l.Size())
	}
	s, err := l.segmentFor(i)
	if err != nil {
		return Entry{}, err
	}
	for attempt := 0; ; attempt++ {
		e, err := s.read(i-s.first, maxFrameLen, l.zcache, l.fds)
		if errors.Is(err, os.ErrNotExist) && s.refresh() {
			e, err = s.read(i-s.first, maxFrameLen, l.zcache, l.fds) // compressed meanwhile
		}
		if errors.Is(err, errSegmentClosed) {
			if l.isClosed() {
				return Entry{}, ErrClosed
			}
			return Entry{}, fmt.Errorf("%w: record %d", ErrPruned, i)
		}
		if err == nil {
			var ok bool
			if ok, err = l.check(i, e.Data); err != nil {
				return Entry{}, err
			}
			if ok {
				return e, nil
			}
			err = fmt.Errorf("%w: record %d", ErrCorrupt, i)
		}
		if _, z := s.source(); attempt > 0 || z != nil {
			// (A compressed segment has no .idx to distrust.)
			return Entry{}, fmt.Errorf("ledger: read %d: %w; run trailguard verify", i, err)
		}
		// The .idx (derived data) may point at the wrong frame: find the
		// record in the segment itself and try again.
		if err := l.rescan(s, err); err != nil {
			return Entry{}, fmt.Errorf("ledger: read %d: %w", i, err)
		}
	}
}

// check reports whether rec is record i of the tree (true if no leaf hash
// is known: see leafAuth.hashes).
func (l *Ledger) check(i uint64, rec []byte) (bool, error) {
	hs, known, err := l.auth.hashes(i, i+1)
	if err != nil {
		return false, fmt.Errorf("%w: record %d cannot be authenticated: %w; run trailguard verify", ErrCorrupt, i, err)
	}
	return !known || LeafHash(rec) == hs[0], nil
}

func (l *Ledger) rescan(s *segment, why error) error {
	first, err := s.rescan()
	if err != nil {
		return err
	}
	if first {
		l.opts.Logger.Warn("ledger: segment index does not match the segment; reading positions from the segment itself (delete the .idx file to have it rebuilt on the next open; trailguard verify reports it)",
			"segment", s.path, "err", why)
	}
	return nil
}

// errIndexSuspect means the first record read through the .idx was not
// the one expected: the .idx may point at the wrong frame.
var errIndexSuspect = errors.New("segment index points at the wrong record")

// entries reads records [from, min(to, Size)) sequentially. With check,
// every record is compared with its leaf hash (recovery replays records
// without: it rebuilds the tree from them and checks the root).
func (l *Ledger) entries(from, to uint64, check bool) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		i := from
		retried := false
		for {
			if size := l.Size(); to > size {
				to = size
			}
			if i >= to {
				return
			}
			s, err := l.segmentFor(i)
			if err != nil {
				yield(Entry{}, err)
				return
			}
			n, stopped, err := l.readSegment(s, i, to, check, yield)
			i += n
			if n > 0 {
				retried = false
			}
			if err != nil && n == 0 && !retried && !errors.Is(err, errSegmentClosed) {
				// The first record read through the .idx was wrong or
				// unreadable: find it in the segment itself, once.
				retried = true
				if rerr := l.rescan(s, err); rerr == nil {
					continue
				}
			}
			if err != nil {
				if errors.Is(err, errSegmentClosed) {
					err = fmt.Errorf("%w: record %d", ErrPruned, i)
					if l.isClosed() {
						err = ErrClosed
					}
				} else if errors.Is(err, errIndexSuspect) {
					err = fmt.Errorf("ledger: read %d: %w; run trailguard verify", i, ErrCorrupt)
				}
				yield(Entry{}, err)
				return
			}
			if stopped {
				return
			}
			if n == 0 {
				yield(Entry{}, fmt.Errorf("ledger: read %d: segment %s ends early", i, s.path))
				return
			}
		}
	}
}

// readSegment yields records [i, to) that lie in s, returning how many it
// yielded and whether the consumer stopped. Only the first record's
// position comes from the index; the others follow frame by frame (or, in
// a compressed segment, block by block).
func (l *Ledger) readSegment(s *segment, i, to uint64, check bool, yield func(Entry, error) bool) (n uint64, stopped bool, err error) {
	var path string
	var z *zIndex
	var e idxEntry
	var h *readFile
	for try := 0; try < 2; try++ {
		s.swap.RLock()
		path, z, err = s.path, s.z, nil
		if z == nil {
			e, err = s.entry(i-s.first, l.fds)
		}
		if err == nil {
			// Held after s.swap is let go: a compaction meanwhile
			// leaves it open until released (readfiles.go).
			h, err = s.handle(l.fds, false)
		}
		s.swap.RUnlock()
		if !errors.Is(err, os.ErrNotExist) || !s.refresh() {
			break // (else compressed by the writer meanwhile: again)
		}
	}
	if err != nil {
		if s.rdr.Load() {
			return 0, false, errSegmentClosed
		}
		return 0, false, err
	}
	defer h.release()
	f := h.f
	end := s.first + s.count.Load()
	if end > to {
		end = to
	}
	lc := leafChecker{l: l, end: end, on: check}
	if z != nil {
		for bi := z.block(i - s.first); bi < len(z.blocks) && i < end; bi++ {
			b := z.blocks[bi]
			var recs []zRec
			if n == 0 {
				// The block a reader starts in goes through the cache:
				// tailing readers (index, outputs, detection) stop and
				// start again mid-block all the time.
				s.swap.RLock()
				recs, err = s.zrecs(bi, l.zcache, l.fds)
				s.swap.RUnlock()
				if errors.Is(err, errSegmentClosed) {
					return 0, false, err
				}
				if err != nil {
					return n, false, fmt.Errorf("ledger: read %d: %w; run trailguard verify", i, err)
				}
			} else if recs = l.zcache.get(blockKey{s.first, bi}); recs == nil {
				// (Cached if the leaf hashes of a tile were derived from
				// it: derived.go.)
				comp := make([]byte, b.clen)
				if _, err := f.ReadAt(comp, b.off); err != nil {
					return n, false, fmt.Errorf("ledger: read %d: segment %s block %d: %w", i, path, bi, err)
				}
				if recs, _, err = decodeBlock(comp, b.count, nil); err != nil {
					return n, false, fmt.Errorf("ledger: read %d: %w: segment %s block %d: %w; run trailguard verify", i, ErrCorrupt, path, bi, err)
				}
				if check {
					// The tile of its records is derived from it next.
					l.zcache.put(blockKey{s.first, bi}, recs)
				}
			}
			for k := i - s.first - b.first; k < uint64(len(recs)) && i < end; k++ {
				r := recs[k]
				if err := lc.check(i, r.data); err != nil {
					return n, false, err
				}
				if !yield(Entry{Index: i, Time: time.Unix(0, r.time), Data: r.data}, nil) {
					return n, true, nil
				}
				n++
				i++
			}
		}
		return n, false, nil
	}
	br := frameReaders.Get().(*bufio.Reader)
	br.Reset(io.NewSectionReader(f, e.off, 1<<62))
	defer func() {
		br.Reset(nil)
		frameReaders.Put(br)
	}()
	for ; i < end; i++ {
		rec, t, err := readFrame(br)
		if err != nil {
			if n == 0 {
				err = fmt.Errorf("%w: %w", errIndexSuspect, err)
			}
			return n, false, fmt.Errorf("ledger: read %d: %w", i, err)
		}
		if err := lc.check(i, rec); err != nil {
			if n == 0 && errors.Is(err, errLeafMismatch) {
				return 0, false, fmt.Errorf("ledger: read %d: %w", i, errIndexSuspect)
			}
			return n, false, err
		}
		if !yield(Entry{Index: i, Time: time.Unix(0, t), Data: rec}, nil) {
			return n, true, nil
		}
		n++
	}
	return n, false, nil
}

// frameReaders are readSegment's buffered readers. A follower (the index,
// detection) reads a few records at each wake-up of a busy ledger; a new
// 256 KiB buffer for each was most of the garbage a single-node gateway
// made (27 MB/s at 6k requests/s).
var frameReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 256<<10) }}

// leafChecker compares records read in order with their leaf hashes,
// fetching them a tile at a time.
type leafChecker struct {
	l     *Ledger
	end   uint64
	on    bool
	hs    []Hash
	lo    uint64
	known bool
	// derived, if the tile of hs was derived just now, holds the records
	// hashed for it (derivedRecs): a record read from the same memory is
	// compared by the hash computed then, not hashed again.
	derived *derivedRecs
}

func (c *leafChecker) check(i uint64, rec []byte) error {
	if !c.on {
		return nil
	}
	if c.hs == nil || i < c.lo || i >= c.lo+uint64(len(c.hs)) {
		tileEnd := (i/tileWidth + 1) * tileWidth
		c.lo = i
		var err error
		if c.hs, c.known, err = c.l.auth.hashes(i, min(c.end, tileEnd)); err != nil {
			return fmt.Errorf("%w: record %d cannot be authenticated: %w; run trailguard verify", ErrCorrupt, i, err)
		}
		if !c.known {
			c.hs = make([]Hash, min(c.end, tileEnd)-i)
		}
		c.derived = c.l.tiles.deriver.lastTile(i / tileWidth)
	}
	if !c.known {
		return nil
	}
	h, ok := c.derived.hashed(i, rec)
	if !ok {
		h = LeafHash(rec)
	}
	if h != c.hs[i-c.lo] {
		return fmt.Errorf("ledger: read %d: %w", i, errLeafMismatch)
	}
	return nil
}

// errLeafMismatch: a record read does not hash to its leaf.
var errLeafMismatch = fmt.Errorf("%w", ErrCorrupt)

// readFrame reads and checks the next frame.
func readFrame(br *bufio.Reader) ([]byte, int64, error) {
	hdr, err := br.Peek(frameHeader)
	if err != nil {
		return nil, 0, err
	}
	fl, err := frameLen(hdr, maxFrameLen)
	if err != nil {
		return nil, 0, err
	}
	buf := make([]byte, fl)
	if _, err := io.ReadFull(br, buf); err != nil {
		return nil, 0, err
	}
	t, rec, _, err := decodeFrame(buf, maxFrameLen)
	return rec, t, err
}
