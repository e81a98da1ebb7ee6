// Package forward sends every record of the collector's ledger to outside
// engines — Elasticsearch, OpenSearch, VictoriaLogs (single node or
// cluster) and syslog receivers (RFC 5424 over TCP or TLS) — with nothing
// lost when either side crashes or the engine is away for a day.
//
// The ledger is the disk buffer: each output reads it from its own cursor
// (<data_dir>/forward/<name>/cursor, replaced atomically and fsynced) and
// moves the cursor only past records the engine acknowledged, so there is
// no second spool. Retention does not delete records an output still needs
// (the ledger's PruneFloor is Manager.Floor) unless the output sets
// max_retention_delay; then the records deleted before delivery are counted
// and recorded in the ledger as a forward_records_lost event.
//
// Delivery is at least once. HTTP outputs use ship.Sender: batches by
// count, bytes and time, gzip, retries of 408/429/5xx items with backoff and
// jitter (Retry-After honoured), 4xx items (mapping errors) written with the
// engine's reason to <name>/dead-letter.jsonl, so one bad document never
// holds up or drops its batch. Each document's Bulk _id is its event.id, so
// Elasticsearch answers a resent one with 409 (counted as a duplicate).
//
// What "acknowledged" means depends on the engine. Elasticsearch and
// OpenSearch answer after their translog is fsynced (the default
// index.translog.durability: request), so their answer is the
// acknowledgement. VictoriaLogs answers once the rows are in memory; an
// in-memory part is due on disk -inmemoryDataFlushInterval (5s) after it
// was made, and the flusher, ticking once per interval, writes it at its
// first tick past that, so a row may stay in memory for two intervals
// after it became searchable (/internal/force_flush only makes rows
// searchable: they stay in memory). A cluster's insert node answers 200
// even while every storage node is down, holding the rows in memory. So
// for victorialogs outputs (verify: true, the default) the cursor advances
// only when a query through verify_url (the select node) finds every
// ledger index of the range stored (trailguard.ledger.index), the first
// time verify_delay after the acknowledgement, and again at least three
// storage_flush_interval later: a record seen stored that long ago was on
// a storage node's disk, provided storage_flush_interval is not shorter
// than the storage nodes' -inmemoryDataFlushInterval (the third interval
// is the margin for the stream's index entry, the part's write and a
// loaded node; time is the bound, VictoriaLogs offering no flush to disk).
// A range found incomplete is sent again from the cursor (duplicates are
// possible: VictoriaLogs ignores _id); records still missing after three
// resends (VictoriaLogs drops rows outside its -retentionPeriod with only a
// log line) are dead-lettered with that reason, so the output cannot loop
// forever.
//
// Outputs read the ledger the way the collector's other followers do: a
// Source that has FollowAppended (*ledger.Ledger) serves the records this
// process appended recently (Options.TailBytes) from the copies Append
// kept of the bytes it hashed into their leaves, so a forwarder that keeps
// up neither decompresses nor hashes them again; older records are read
// from the segments and checked against their leaf hashes.
//
// Syslog has no acknowledgements: a record counts as delivered once written
// to the connection without error; a batch interrupted by an error is sent
// again whole on a new connection.
package forward

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/regfile"
	"github.com/trailguard/trailguard/ledger"
)

// Source is the ledger the outputs follow; *ledger.Ledger satisfies it.
type Source interface {
	Follow(ctx context.Context, from uint64) iter.Seq2[ledger.Entry, error]
	Read(i uint64) (ledger.Entry, error)
	Size() uint64
	Pruned() uint64
}

// Options configures a Manager.
type Options struct {
	// Dir holds one directory per output (<data_dir>/forward).
	Dir string
	// Origin is the ledger's origin, written as trailguard.ledger.origin.
	Origin string
	// Retain is the ledger's retention period (0: none); with an output's
	// MaxRetentionDelay it decides when retention may pass that output.
	Retain time.Duration
	// Audit records an event in the ledger (losses to retention).
	Audit func(ev *event.Event)
	// Logger receives delivery errors (rate-limited per output).
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Manager runs the outputs.
type Manager struct {
	opts   Options
	outs   []*output
	src    atomic.Pointer[sourceBox]
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type sourceBox struct{ Source }

// Open checks the outputs' configurations and loads their cursors. Floor
// works from then on; Start begins forwarding.
func Open(cfgs []Config, opts Options) (*Manager, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Manager{opts: opts}
	seen := map[string]bool{}
	for _, c := range cfgs {
		c, err := c.withDefaults()
		if err != nil {
			return nil, fmt.Errorf("forward: %w", err)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("forward: two outputs named %q", c.Name)
		}
		seen[c.Name] = true
		o, err := newOutput(m, c)
		if err != nil {
			return nil, err
		}
		m.outs = append(m.outs, o)
	}
	return m, nil
}

// Len is the number of outputs.
func (m *Manager) Len() int { return len(m.outs) }

// Start forwards from src until Close.
func (m *Manager) Start(src Source) {
	m.src.Store(&sourceBox{src})
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	for _, o := range m.outs {
		if !o.hasCursor {
			if o.cfg.Start == "newest" {
				o.setCommitted(src.Size())
			} else {
				o.setCommitted(src.Pruned())
			}
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			o.run(ctx, src)
		}()
	}
}

// Stop tells every output to stop, without waiting (Close waits): a
// shutdown tells every part that follows the ledger to stop at once.
func (m *Manager) Stop() {
	if m.cancel != nil {
		m.cancel()
	}
}

// Close stops every output and saves its cursor. Records acknowledged but
// not yet verified are sent again by the next start.
func (m *Manager) Close() error {
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	var errs []error
	for _, o := range m.outs {
		o.closeSenders()
		if err := o.saveCursor(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Floor is the lowest ledger index some output still needs: the ledger's
// Options.PruneFloor. An output past its MaxRetentionDelay (its oldest
// undelivered record expired more than that long ago) does not hold
// retention back.
func (m *Manager) Floor() uint64 {
	floor := ^uint64(0)
	now := m.opts.Now()
	for _, o := range m.outs {
		c := o.committed.Load()
		if c >= floor {
			continue
		}
		if o.cfg.MaxRetentionDelay > 0 && m.opts.Retain > 0 {
			if b := m.src.Load(); b != nil {
				e, err := b.Read(c)
				if errors.Is(err, ledger.ErrPruned) || (err == nil && now.Sub(e.Time) > m.opts.Retain+o.cfg.MaxRetentionDelay) {
					continue // the operator's limit: let retention pass
				}
			}
		}
		floor = c
	}
	return floor
}

// cursor file: {"next":N}\n, replaced by write-temp, fsync, rename, fsync-dir.
func readCursor(path string) (uint64, bool, error) {
	// A regular file of a few bytes (regfile): a FIFO planted at the name
	// would hang the collector's start, a link to /dev/zero take all its
	// memory.
	b, err := regfile.Read(path, 4<<10)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	s := string(b)
	const pre, suf = `{"next":`, "}\n"
	if len(s) < len(pre)+len(suf) || s[:len(pre)] != pre || s[len(s)-len(suf):] != suf {
		return 0, false, fmt.Errorf("cursor %s is damaged", path)
	}
	n, err := strconv.ParseUint(s[len(pre):len(s)-len(suf)], 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("cursor %s is damaged", path)
	}
	return n, true, nil
}

func writeCursor(dir string, next uint64) error {
	path := filepath.Join(dir, "cursor")
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(`{"next":` + strconv.FormatUint(next, 10) + "}\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		var d *os.File
		if d, err = os.Open(dir); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	return err
}
