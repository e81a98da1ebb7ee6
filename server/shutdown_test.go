package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestCloseWithinNamesTheSlowStep: when shutdown_timeout passes during
// Close, the error names the step that was running, and claims the final
// checkpoint missing only if the ledger had not written it yet. A step
// after the ledger's close (the UI follower, the index's close) used to be
// reported as "final checkpoint not written" although the checkpoint
// covering every record was on disk.
func TestCloseWithinNamesTheSlowStep(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		slow      string
		wantFinal bool // the final checkpoint was written before the timeout
	}{
		{"stopping the indexer", false},
		{"stopping detection", false},
		{"stopping the UI follower", true},
		{"closing the index", true},
	} {
		t.Run(tc.slow, func(t *testing.T) {
			t.Parallel()
			cfg := Defaults()
			cfg.DataDir = t.TempDir()
			cfg.Origin = "test.example/trailguard"
			cfg.CheckpointInterval = 100 * time.Millisecond
			cfg.Detection.Disabled = true
			srv, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 50 {
				if _, err := srv.ledger.Append(context.Background(), []byte(`{"n":`+strings.Repeat("1", i%5+1)+`}`)); err != nil {
					t.Fatal(err)
				}
			}
			release := make(chan struct{})
			srv.closeHook = func(step string) {
				if step == tc.slow {
					<-release
				}
			}
			err = srv.closeWithin(300 * time.Millisecond)
			close(release)
			if err == nil {
				t.Fatal("closeWithin returned no error while a step was held past the budget")
			}
			if got := errors.Is(err, ErrFinalCheckpoint); got == tc.wantFinal {
				t.Errorf("errors.Is(err, ErrFinalCheckpoint) = %v, want %v: %v", got, !tc.wantFinal, err)
			}
			if !strings.Contains(err.Error(), "while "+tc.slow) {
				t.Errorf("error does not name the step %q: %v", tc.slow, err)
			}
			// Close goes on after the timeout; a second call waits for it.
			if cerr := srv.Close(); cerr != nil {
				t.Fatalf("Close: %v", cerr)
			}
			_, cp := srv.ledger.LatestCheckpoint()
			if size := srv.ledger.Size(); cp.Size != size || size < 50 {
				t.Errorf("final checkpoint covers %d of %d records", cp.Size, size)
			}
		})
	}
}
