package ledger

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestIntakeWritesLargeBatchesDuringSync: while the syncer is busy the
// sequencer leaves new requests in l.in, but requests adding up to
// holdBytes are still written at once (the callers nudge it), so that
// large batches are written while the previous one is being synced. Not
// parallel: it holds the package's sync hook.
func TestIntakeWritesLargeBatchesDuringSync(t *testing.T) {
	k := newKey(t, testOrigin)
	dir := t.TempDir()
	opts := testOpts(k)
	// No checkpoint timer to wake the sequencer meanwhile.
	opts.CheckpointInterval, opts.IdleInterval = time.Hour, time.Hour
	// Writes through the page cache: a direct write is its own sync,
	// made by the sequencer, which cannot take a nudge meanwhile.
	opts.noDirect = true
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(t, l, 0, 3)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	hook := syncFunc(func(f *os.File) error {
		if strings.HasPrefix(f.Name(), dir) {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
		}
		return datasync(f)
	})
	syncHook.Store(&hook)
	defer syncHook.Store(nil)
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	errs := make(chan error, 3)
	appendAsync := func(recs ...[]byte) {
		go func() {
			_, err := l.Append(context.Background(), recs...)
			errs <- err
		}()
	}
	appendAsync(record(3)) // its sync blocks
	<-entered
	appendAsync(record(4)) // held: it waits for the syncer
	time.Sleep(20 * time.Millisecond)
	big := make([][]byte, 5)
	for i := range big {
		big[i] = bytes.Repeat([]byte{'b'}, 20<<10)
	}
	appendAsync(big...) // with the small one, over holdBytes
	l.segMu.RLock()
	s := l.segs[len(l.segs)-1]
	l.segMu.RUnlock()
	deadline := time.Now().Add(30 * time.Second) // while the sync is held: only a wait for it fails
	for s.first+s.count.Load() < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("%d records written while the sync was under way, want 10: the large request waited for it", s.first+s.count.Load())
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	released = true
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if l.Size() != 10 {
		t.Fatalf("size %d, want 10", l.Size())
	}
}
