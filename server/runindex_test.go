package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/index"
	"github.com/trailguard/trailguard/ledger"
)

// countingSource passes a ledger's records to the indexer and counts
// those it handed over.
type countingSource struct {
	l    *ledger.Ledger
	sent atomic.Int64
}

func (c *countingSource) Follow(ctx context.Context, from uint64) iter.Seq2[ledger.Entry, error] {
	return func(yield func(ledger.Entry, error) bool) {
		for e, err := range c.l.Follow(ctx, from) {
			if !yield(e, err) {
				return
			}
			c.sent.Add(1)
		}
	}
}

// TestIndexStopFailureReported: a stop leaves the records the indexer
// read and had not committed to the next start, but a commit under way
// when the stop comes is finished, and when that commit fails (here a
// trigger another process put on the index refuses it, after a slow scan
// that keeps the commit under way, as a lock held past busy_timeout
// would), the indexer's end reports the failure. Before, runIndex saw its
// context done and returned context.Canceled, which the shutdown takes
// for a clean stop: the collector exited 0 over a failed index.
func TestIndexStopFailureReported(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	skey, _, err := ledger.GenerateKey("test.example/trailguard")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(filepath.Join(dir, "ledger"), ledger.Options{Origin: "test.example/trailguard", Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const n = 20
	for range n {
		if _, err := l.Append(context.Background(), []byte(`{"@timestamp":"2026-11-30T10:00:00Z","event":{"action":"x"}}`)); err != nil {
			t.Fatal(err)
		}
	}
	dbPath := filepath.Join(dir, "index.db")
	// A batch of exactly the ledger's records: the commit starts as soon
	// as the last is read.
	ix, err := index.Open(dbPath, index.Options{Ledger: l, BatchSize: n, BatchDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	other, err := sql.Open("sqlite", "file:"+dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	if _, err := other.Exec(`CREATE TABLE slow(x)`); err != nil {
		t.Fatal(err)
	}
	// 1,024 rows: the trigger's count over their square (1M pairs) keeps
	// the commit under way for tens of milliseconds even without -race,
	// well above the poll below (with 512 rows a build without -race
	// finished it between two polls now and then: the commit failed,
	// the indexer restarted and read the records again).
	if _, err := other.Exec(`INSERT INTO slow VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := other.Exec(`INSERT INTO slow SELECT x FROM slow`); err != nil {
			t.Fatal(err)
		}
	}
	for _, tbl := range []string{"blocks", "meta"} {
		if _, err := other.Exec(`CREATE TRIGGER refuse_` + tbl + ` BEFORE INSERT ON ` + tbl +
			` BEGIN SELECT RAISE(ABORT, 'refused by the test') WHERE (SELECT count(*) FROM slow a, slow b) >= 0; END`); err != nil {
			t.Fatal(err)
		}
	}

	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	src := &countingSource{l: l}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.followIndex(ctx, func(ctx context.Context) error { return ix.Run(ctx, src) })
	}()
	// The stop comes while the commit holds the write lock: another
	// connection cannot begin a write.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("no commit under way in 30 s (%d of %d records read)", src.sent.Load(), n)
		}
		if src.sent.Load() == n {
			if _, err := other.Exec(`PRAGMA busy_timeout=0`); err != nil {
				t.Fatal(err)
			}
			if _, err := other.Exec(`BEGIN IMMEDIATE`); err != nil {
				break // locked: the commit is under way
			}
			other.Exec(`ROLLBACK`)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the indexer did not stop 30 s after its context ended")
	}
	if err == nil || errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "refused by the test") {
		t.Fatalf("the indexer's stop returned %v, want the failure of the commit under way", err)
	}
	if got := ix.Indexed(); got != 0 {
		t.Errorf("Indexed() = %d after a refused commit", got)
	}
}

// TestIndexStopLedgerClosed: the followers stop in parallel with the
// ledger's close, so a stopped indexer may find the ledger closed; that is
// a clean stop (Run committed what it had read), not a failure to report.
func TestIndexStopLedgerClosed(t *testing.T) {
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.followIndex(ctx, func(context.Context) error {
		return fmt.Errorf("index: follow ledger: %w", ledger.ErrClosed)
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("followIndex = %v, want context.Canceled", err)
	}
}
