package detect

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRunnerKeepsTheErrorOfItsStop: an alert that could not be stored
// while the runner was being stopped is an error Run returns (with the
// cancellation), not lost behind context.Canceled; the cursor stays
// before its record, so that a restart raises it again.
func TestRunnerKeepsTheErrorOfItsStop(t *testing.T) {
	dir := t.TempDir()
	l := openLedger(t, dir)
	defer l.Close()
	if _, err := l.Append(context.Background(), attackStream(400)...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errStore := errors.New("alert store closed")
	var failedAt uint64
	cursor := filepath.Join(dir, "detect.cursor")
	r := &Runner{Engine: builtinEngine(t), Source: l, CursorPath: cursor, Emit: func(a *Alert) error {
		// The stop arrives while this alert is being stored, and storing
		// it fails.
		cancel()
		failedAt = a.Evidence[len(a.Evidence)-1]
		return errStore
	}}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	if !errors.Is(err, errStore) {
		t.Fatalf("Run returned %v: the alert's failure is lost", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want it to say it was cancelled too", err)
	}
	if r.Next() > failedAt {
		t.Fatalf("cursor at %d, past the record %d whose alert failed", r.Next(), failedAt)
	}
	if _, err := os.Stat(cursor); err != nil {
		t.Fatalf("cursor not saved at the stop: %v", err)
	}
}
