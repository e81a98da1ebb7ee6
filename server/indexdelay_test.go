package server

import (
	"context"
	"testing"
	"time"
)

// TestIndexBatchDelayReachesTheIndex: an embedder's IndexBatchDelay is how
// long the index gathers records before writing them (the gateway's single
// node sets it): a record appended now is not indexed before it has
// passed, and is once it has.
func TestIndexBatchDelayReachesTheIndex(t *testing.T) {
	t.Parallel()
	const delay = 700 * time.Millisecond
	ts := startServer(t, t.TempDir(), func(c *Config) { c.IndexBatchDelay = delay })
	deadline := time.Now().Add(30 * time.Second)
	// The collector's own records (its startup) are indexed first.
	for ts.index.Indexed() < ts.ledger.Size() {
		if time.Now().After(deadline) {
			t.Fatalf("index at %d, ledger at %d", ts.index.Indexed(), ts.ledger.Size())
		}
		time.Sleep(10 * time.Millisecond)
	}
	first, err := ts.ledger.Append(context.Background(), []byte(`{"@timestamp":"2026-11-30T09:00:00Z","event":{"kind":"event","action":"x","id":"a"}}`))
	if err != nil {
		t.Fatal(err)
	}
	appended := time.Now()
	for ts.index.Indexed() <= first {
		if time.Now().After(deadline) {
			t.Fatalf("record %d never indexed", first)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Only an early commit fails the test: a slow machine makes this later, never sooner.
	if took := time.Since(appended); took < delay-100*time.Millisecond {
		t.Errorf("record indexed %v after it was appended, before the batch delay of %v", took, delay)
	}
}
