package server

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/ledger"
)

// TestGatedSourceHoldsBack: once free space falls below twice the
// reserve, the indexer's source yields at most gateEvery more records
// (it looks at the space every gateEvery records, not at each), then
// holds back until space returns, and resumes by itself.
func TestGatedSourceHoldsBack(t *testing.T) {
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
	const n, lowAt = 400, 100
	recs := make([][]byte, n)
	for i := range recs {
		recs[i] = []byte(`{"@timestamp":"2026-11-30T10:00:00Z","event":{"action":"x"}}`)
	}
	if _, err := l.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	// The monitor's reading, set by the test: kept (at in the future)
	// instead of asking the file system.
	space := &spaceMonitor{dir: dir, reserve: 1 << 20}
	setFree := func(free int64) {
		space.mu.Lock()
		space.free, space.at = free, time.Now().Add(time.Hour)
		space.mu.Unlock()
	}
	setFree(1 << 40)
	var got, atPause atomic.Int64
	atPause.Store(-1)
	go func() {
		for !space.indexPaused.Load() {
			time.Sleep(time.Millisecond)
		}
		atPause.Store(got.Load())
		setFree(1 << 40)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for e, err := range (gatedSource{l, space}).Follow(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Index != uint64(got.Load()) {
			t.Fatalf("record %d, want %d", e.Index, got.Load())
		}
		if got.Add(1) == lowAt {
			setFree(1 << 20) // below twice the reserve
		}
		if got.Load() == n {
			break
		}
	}
	p := atPause.Load()
	if p < lowAt || p > lowAt+gateEvery {
		t.Fatalf("held back after %d records; space ran low after %d (at most %d more may pass)", p, lowAt, gateEvery)
	}
	if space.indexPaused.Load() {
		t.Error("still paused after space returned")
	}
}
