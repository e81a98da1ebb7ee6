package ledger

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// TestSyncsInPoller: the publisher's syncs (the level files', the
// checkpoint history's) and the syncer's fdatasyncs of segments written
// through the page cache are submitted through AIO contexts, so those
// goroutines wait in the poller rather than in blocking calls whose P
// Go's monitor takes back; and the records are acknowledged and read
// back, the ledger verifying.
func TestSyncsInPoller(t *testing.T) {
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.CheckpointEvery = 64
	dir := t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.flusher == nil && newFlusher("probe") == nil {
		t.Skip("no Linux AIO here")
	}
	rec := func(w, i int) []byte {
		return fmt.Appendf(nil, `{"w":%d,"i":%d,"pad":"%s"}`, w, i, bytes.Repeat([]byte{'p'}, 3000))
	}
	// Batches over directMax from several writers at once: the syncer
	// syncs some through the page cache (those written while the flush
	// pipeline is full).
	deadline := time.Now().Add(20 * time.Second)
	firsts := map[uint64][2]int{}
	var mu sync.Mutex
	for round := 0; l.syncs.Load() == 0; round++ {
		if time.Now().After(deadline) {
			t.Skip("the syncer never synced a page-cache batch itself")
		}
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				recs := make([][]byte, 64)
				for i := range recs {
					recs[i] = rec(w, round*64+i)
				}
				first, err := l.Append(context.Background(), recs...)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				firsts[first] = [2]int{w, round * 64}
				mu.Unlock()
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	tickets := func(a *aioFlusher) uint64 {
		if a == nil {
			return 0
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.next - 1
	}
	if n, syncs := tickets(l.syncFlusher), l.syncs.Load(); n < syncs {
		t.Errorf("the syncer's fdatasyncs: %d of %d through AIO", n, syncs)
	}
	// Each checkpoint: hashes/0 and hashes/1 at least, and the history.
	if n := tickets(l.pubFlusher); n < 3 {
		t.Errorf("the publisher's syncs: %d through AIO, want every level file's and the history's", n)
	}
	for first, wi := range firsts {
		for i := range 64 {
			got, err := l.Read(first + uint64(i))
			if err != nil || !bytes.Equal(got.Data, rec(wi[0], wi[1]+i)) {
				t.Fatalf("record %d: %q, %v", first+uint64(i), got.Data, err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v\n%s", err, rep)
	}
}
