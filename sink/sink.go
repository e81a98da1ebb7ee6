// Package sink persists encoded audit events as JSON lines.
//
// A record is one complete encoded event: a JSON document without a trailing
// newline. Sinks add the newline, so one record is always exactly one line.
// A record that contains a newline or carriage return would let a single event
// masquerade as two (CWE-117), so every sink rejects it, together with the rest
// of its batch, before anything is written.
//
// Three sinks are provided: [Writer] for any [io.Writer] (stdout, a pipe, a
// buffer), [File] for a rotated, fsynced, retention-managed directory of trail
// files, and [Multi] to fan a batch out to several sinks. [Files] and [Open]
// read a trail directory back, oldest record first, whether its files are
// compressed or not.
package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Sink persists encoded events in order.
type Sink interface {
	// Write persists records in order, returning only when they are as
	// durable as the sink promises (File: written and, unless NoSync,
	// fsynced). An error means none or only some were persisted; the caller
	// (an audit middleware that may be fail-closed) treats it as "not
	// persisted".
	Write(ctx context.Context, records [][]byte) error
	// Close flushes, fsyncs and releases the sink. Write after Close
	// returns ErrClosed.
	Close() error
}

// LineWriter is implemented by sinks that also take a batch already
// framed: lines holds n records, each followed by '\n', as Write would
// frame them. A producer that encodes its records one after the other into
// one buffer (httpaudit's writer) spares the sink the copy into its own.
// The sink checks the batch as Write checks records ([ErrInvalidRecord],
// nothing written) and is done with lines when WriteLines returns. A type
// that embeds a LineWriter to add to its Write must not be handed batches
// through the promoted WriteLines, which would bypass that Write:
// producers look for the concrete types of this package, not the
// interface, unless they know better.
type LineWriter interface {
	WriteLines(ctx context.Context, lines []byte, n int) error
}

var (
	// ErrClosed is returned by Write on a sink that has been closed.
	ErrClosed = errors.New("sink: closed")
	// ErrInvalidRecord is wrapped by the error Write returns for a batch
	// holding a record that cannot be stored as one line: an empty record,
	// or one containing '\n' or '\r'. No record of such a batch is written.
	ErrInvalidRecord = errors.New("sink: invalid record")
)

// frame appends records to dst as JSON lines. It validates the whole batch
// before returning so that a bad record can never leave half a batch on disk.
func frame(dst []byte, records [][]byte) ([]byte, error) {
	n := 0
	for i, r := range records {
		if len(r) == 0 {
			return nil, fmt.Errorf("sink: record %d of %d is empty: %w", i, len(records), ErrInvalidRecord)
		}
		// Two IndexByte scans are vectorised; IndexAny goes byte by byte.
		j := bytes.IndexByte(r, '\n')
		if k := bytes.IndexByte(r, '\r'); k >= 0 && (j < 0 || k < j) {
			j = k
		}
		if j >= 0 {
			return nil, fmt.Errorf("sink: record %d of %d has a line break at byte %d: %w", i, len(records), j, ErrInvalidRecord)
		}
		n += len(r) + 1
	}
	dst = grow(dst, n)
	for _, r := range records {
		dst = append(dst, r...)
		dst = append(dst, '\n')
	}
	return dst, nil
}

// checkLines checks a framed batch (see LineWriter) as frame checks
// records: n non-empty lines, each ended by '\n', no '\r' anywhere. It
// walks the batch once, a line at a time, with vectorised scans: the
// line's end, then '\r' in the line (still in the cache). Only a bad batch
// is split to say which record is wrong.
func checkLines(lines []byte, n int) error {
	if linesOK(lines, n) {
		return nil
	}
	if len(lines) == 0 || lines[len(lines)-1] != '\n' {
		return fmt.Errorf("sink: batch of %d framed records does not end in a newline: %w", n, ErrInvalidRecord)
	}
	records := bytes.Split(lines[:len(lines)-1], newline)
	if len(records) != n {
		return fmt.Errorf("sink: batch framed as %d records holds %d lines: %w", n, len(records), ErrInvalidRecord)
	}
	if _, err := frame(nil, records); err != nil {
		return err
	}
	return fmt.Errorf("sink: batch of %d framed records rejected: %w", n, ErrInvalidRecord) // not reached
}

// linesOK reports whether lines is exactly n non-empty lines, each ended
// by '\n', with no '\r' anywhere.
func linesOK(lines []byte, n int) bool {
	if n <= 0 || len(lines) == 0 || lines[len(lines)-1] != '\n' {
		return false
	}
	for i := 0; i < n; i++ {
		j := bytes.IndexByte(lines, '\n')
		if j <= 0 || bytes.IndexByte(lines[:j], '\r') >= 0 {
			return false // an empty line, a line break, or fewer lines than n
		}
		lines = lines[j+1:]
	}
	return len(lines) == 0 // more lines than n
}

var newline = []byte{'\n'}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		return nb
	}
	return b
}

// Writer writes JSON lines to an io.Writer. It makes one Write call per
// batch, serialised by a mutex, so that batches from concurrent callers never
// interleave even when the destination (a pipe, a terminal) would split large
// writes between writers.
type Writer struct {
	mu     sync.Mutex
	w      io.Writer
	buf    []byte
	closed bool
}

// NewWriter returns a sink that writes JSON lines to w. Durability is w's:
// Write returns once w.Write has returned.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes records as one call to the underlying writer.
func (s *Writer) Write(ctx context.Context, records [][]byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sink: write: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if len(records) == 0 {
		return nil
	}
	buf, err := frame(s.buf[:0], records)
	if err != nil {
		return err
	}
	// Keep a reasonably sized buffer for the next batch, but do not pin the
	// memory of one huge batch for the life of the sink.
	if cap(buf) <= 1<<20 {
		s.buf = buf
	} else {
		s.buf = nil
	}
	return s.writeLocked(buf, len(records))
}

// WriteLines implements LineWriter: one call to the underlying writer.
func (s *Writer) WriteLines(ctx context.Context, lines []byte, n int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sink: write: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if n == 0 && len(lines) == 0 {
		return nil
	}
	if err := checkLines(lines, n); err != nil {
		return err
	}
	return s.writeLocked(lines, n)
}

func (s *Writer) writeLocked(buf []byte, records int) error {
	n, err := s.w.Write(buf)
	if err == nil && n < len(buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("sink: write %d records (%d of %d bytes written): %w", records, n, len(buf), err)
	}
	return nil
}

// Close stops the sink. It flushes the underlying writer if it has a
// Flush() error method (a bufio.Writer) but does not close it: the caller
// owns it, and it is often os.Stdout.
func (s *Writer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.buf = nil
	if fl, ok := s.w.(interface{ Flush() error }); ok {
		if err := fl.Flush(); err != nil {
			return fmt.Errorf("sink: flush: %w", err)
		}
	}
	return nil
}

// multi is the Sink returned by Multi.
type multi []Sink

// Multi returns a sink that writes every batch to each of sinks, in order.
// A failure of one sink does not stop the others: the batch is still offered
// to every sink, and the returned error joins every failure (errors.Join), so
// errors.Is sees each cause. Close closes all sinks. Nil sinks are ignored.
func Multi(sinks ...Sink) Sink {
	m := make(multi, 0, len(sinks))
	for _, s := range sinks {
		if s != nil {
			m = append(m, s)
		}
	}
	return m
}

func (m multi) Write(ctx context.Context, records [][]byte) error {
	var errs []error
	for i, s := range m {
		if err := s.Write(ctx, records); err != nil {
			errs = append(errs, fmt.Errorf("sink: multi[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

func (m multi) Close() error {
	var errs []error
	for i, s := range m {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sink: multi[%d]: close: %w", i, err))
		}
	}
	return errors.Join(errs...)
}
