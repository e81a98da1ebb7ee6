package ledger

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"time"
)

// Entries returns an iterator over the records from index from up to the
// ledger's size when each step is taken. It stops at the first error,
// yielding it (ErrPruned if from is below the retained range).
func (l *Ledger) Entries(from uint64) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		for e, err := range l.entries(from, ^uint64(0)) {
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
			for e, err := range l.entries(next, ^uint64(0)) {
				if err != nil {
					yield(Entry{}, err)
					return
				}
				if !yield(e, nil) {
					return
				}
				next = e.Index + 1
			}
			if err := l.Wait(ctx, next); err != nil {
				yield(Entry{}, err)
				return
			}
		}
	}
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

// entries reads records [from, min(to, Size)) sequentially.
func (l *Ledger) entries(from, to uint64) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		i := from
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
			n, stopped, err := l.readSegment(s, i, to, yield)
			i += n
			if err != nil {
				if errors.Is(err, errSegmentClosed) {
					err = fmt.Errorf("%w: record %d", ErrPruned, i)
					if l.isClosed() {
						err = ErrClosed
					}
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
// yielded and whether the consumer stopped.
func (l *Ledger) readSegment(s *segment, i, to uint64, yield func(Entry, error) bool) (n uint64, stopped bool, err error) {
	e, err := s.entry(i - s.first)
	if err != nil {
		return 0, false, err
	}
	end := s.first + s.count.Load()
	if end > to {
		end = to
	}
	f, err := os.Open(s.path)
	if err != nil {
		if s.rdr.Load() {
			return 0, false, errSegmentClosed
		}
		return 0, false, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(io.NewSectionReader(f, e.off, 1<<62), 256<<10)
	for ; i < end; i++ {
		hdr, err := br.Peek(frameHeader)
		if err != nil {
			return n, false, fmt.Errorf("ledger: read %d: %w", i, err)
		}
		fl, err := frameLen(hdr, maxFrameLen)
		if err != nil {
			return n, false, fmt.Errorf("ledger: read %d: %w", i, err)
		}
		buf := make([]byte, fl)
		if _, err := io.ReadFull(br, buf); err != nil {
			return n, false, fmt.Errorf("ledger: read %d: %w", i, err)
		}
		t, rec, _, err := decodeFrame(buf, maxFrameLen)
		if err != nil {
			return n, false, fmt.Errorf("ledger: read %d: %w", i, err)
		}
		if !yield(Entry{Index: i, Time: time.Unix(0, t), Data: rec}, nil) {
			return n, true, nil
		}
		n++
	}
	return n, false, nil
}
