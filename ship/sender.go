package ship

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// core is what the delivery loop needs from its owner: options, the
// directory of the dead-letter file, a context that stops it, and counters.
// A Shipper and a Sender each have one.
type core struct {
	opts Options
	dir  string
	ctx  context.Context // cancelled to stop delivery
	stop context.CancelFunc
	mu   sync.Mutex // guards st (and, in a Shipper, the spool state)
	st   Stats
}

// Sender delivers batches of records to one endpoint by the same rules as a
// Shipper's background sender (retries with backoff and jitter, honouring
// Retry-After; per-item verdicts of Bulk and NDJSON answers; halving of
// rejected batches; dead letters, fsynced, in Options.SpoolDir), but without
// a spool: it is for callers that keep the records durable themselves and
// advance their own cursor once Deliver has returned, such as the collector
// forwarding from its ledger.
//
// Options.SpoolDir is the directory of the dead-letter file; the spool and
// batching options (MaxSpoolBytes, SegmentBytes, BatchSize, FlushInterval,
// DrainTimeout) are not used: the caller batches.
type Sender struct {
	c     core
	d     *sender
	batch batch
	// one Deliver at a time: the sender's buffers are reused.
	dmu sync.Mutex
}

// NewSender checks opts, creates the dead-letter directory and returns a
// Sender.
func NewSender(opts Options) (*Sender, error) {
	if opts.SpoolDir == "" {
		return nil, errors.New("ship: Options.SpoolDir (the dead-letter directory) is required")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	dir := filepath.Clean(opts.SpoolDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ship: dead-letter dir: %w", err)
	}
	s := &Sender{c: core{opts: opts, dir: dir}}
	s.c.ctx, s.c.stop = context.WithCancel(context.Background())
	s.d = &sender{s: &s.c}
	return s, nil
}

// Deliver sends records, as one request when they fit Options.BatchBytes
// twice over, until every one is accepted by the far end or written to the
// dead-letter file. It waits through any outage of the far end; it returns
// an error only when Close was called meanwhile, and then some records may
// or may not have been delivered: send them again.
func (s *Sender) Deliver(records [][]byte) error {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if err := s.c.ctx.Err(); err != nil {
		return fmt.Errorf("ship: deliver: %w", err)
	}
	b := &s.batch
	b.reset()
	for _, r := range records {
		b.items = append(b.items, item{rec: r})
		b.bytes += len(r)
	}
	err := s.d.deliver(b)
	clear(b.items)
	return err
}

// Close stops a Deliver in progress (which returns an error) and any later
// one.
func (s *Sender) Close() { s.c.stop() }

// Stats returns the delivery counters: Shipped, Duplicates, Retried,
// DeadLettered, LastError and LastErrorAt (the spool fields stay zero).
func (s *Sender) Stats() Stats {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.c.st
}
