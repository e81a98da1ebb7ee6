package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"time"

	"github.com/trailguard/trailguard/ledger"
)

// RebuildStats reports what Rebuild did.
type RebuildStats struct {
	// First is the first ledger index indexed (above 0 if retention pruned
	// the records before it), Next one past the last.
	First, Next uint64
	// Took is how long the rebuild took.
	Took time.Duration
}

// Rebuild builds a new index at path from every record of src: into a new
// file beside it, loaded in bulk (no journal), synced, then renamed over path. A crash leaves the old index
// (and a temporary file Rebuild removes the next time). Rebuild holds the
// index's lock throughout, so it fails with ErrInUse while an Index (a
// running collector) has the file open, and no collector opens it
// meanwhile.
func Rebuild(ctx context.Context, path string, src Snapshot) (RebuildStats, error) {
	start := time.Now()
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return RebuildStats{}, fmt.Errorf("index: rebuild %s: %w", path, err)
	}
	defer lock.Close()
	var from uint64
	if p, ok := src.(pruner); ok {
		from = p.Pruned()
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".rebuild")
	for _, f := range []string{tmp, tmp + "-journal", tmp + "-wal", tmp + "-shm"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return RebuildStats{}, fmt.Errorf("index: rebuild %s: %w", path, err)
		}
	}
	next, err := build(ctx, tmp, from, src.Entries(from))
	if err != nil {
		os.Remove(tmp)
		return RebuildStats{}, fmt.Errorf("index: rebuild %s: %w", path, err)
	}
	// The old file's WAL must go with it, or SQLite would apply it to the
	// new file. Checkpointing it first keeps the old index whole should we
	// crash before the rename.
	if _, err := os.Stat(path); err == nil {
		if db, err := sql.Open("sqlite", dsn(path, "journal_mode(DELETE)")); err == nil {
			db.PingContext(ctx)
			db.Close()
		}
	}
	for _, f := range []string{path + "-wal", path + "-shm"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			os.Remove(tmp)
			return RebuildStats{}, fmt.Errorf("index: rebuild %s: %w", path, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return RebuildStats{}, fmt.Errorf("index: rebuild %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return RebuildStats{First: from, Next: next, Took: time.Since(start)}, nil
}

// build loads entries (which must start at from and be consecutive) into
// a new file at path in bulk and returns one past the last index loaded.
func build(ctx context.Context, path string, from uint64, entries iter.Seq2[ledger.Entry, error]) (uint64, error) {
	ix, err := open(path, Options{}, true)
	if err != nil {
		return 0, err
	}
	defer ix.Close()
	const batchSize = 50000
	// Decoding runs on its own goroutine, in parallel with the inserts.
	recs := make(chan rec, 4096)
	errc := make(chan error, 1)
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(recs)
		for e, err := range entries {
			if err != nil {
				errc <- fmt.Errorf("read ledger: %w", err)
				return
			}
			select {
			case recs <- decode(e):
			case <-dctx.Done():
				return
			}
		}
	}()
	batch := make([]rec, 0, batchSize)
	want := from
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := ix.add(ctx, want, batch); err != nil {
			return err
		}
		want = batch[len(batch)-1].idx + 1
		clear(batch)
		batch = batch[:0]
		return ctx.Err()
	}
	for r := range recs {
		batch = append(batch, r)
		if len(batch) == batchSize {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	select {
	case err := <-errc:
		return 0, err
	default:
	}
	if err := flush(); err != nil {
		return 0, err
	}
	if want == from {
		// Record the (empty) position all the same.
		if _, err := ix.w.ExecContext(ctx, `INSERT OR REPLACE INTO meta(k,v) VALUES('next',?)`, int64(from)); err != nil {
			return 0, err
		}
	}
	for _, s := range []string{`PRAGMA journal_mode=WAL`} {
		if _, err := ix.w.ExecContext(ctx, s); err != nil {
			return 0, fmt.Errorf("%s: %w", s, err)
		}
	}
	if err := ix.Close(); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return want, nil
}
