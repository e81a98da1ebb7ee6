package ledger

import (
	"context"
	"testing"
	"time"
)

// TestHistoryFrom: the history from a time yields the newest checkpoint
// at or before it and everything after, reading only the first checkpoint
// of the history files before it.
func TestHistoryFrom(t *testing.T) {
	old := cpLogMax
	cpLogMax = 2048 // a few checkpoints a file
	defer func() { cpLogMax = old }()
	dir := t.TempDir()
	signer := newKey(t, "test").signer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	l, err := Open(dir, Options{Origin: "test", Signer: signer, Now: clock, Logger: quietLogger(), CheckpointInterval: time.Hour, IdleInterval: time.Hour, CheckpointEvery: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 60 {
		now = now.Add(time.Minute)
		if _, err := l.Append(context.Background(), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := listCPLogs(dir)
	if len(files) < 5 {
		t.Fatalf("%d history files: the test needs several", len(files))
	}
	var all []HistoryEntry
	for h, err := range l.History() {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, h)
	}
	since := all[40].Time.Add(30 * time.Second)
	var from []HistoryEntry
	for h, err := range l.HistoryFrom(since) {
		if err != nil {
			t.Fatal(err)
		}
		from = append(from, h)
	}
	if len(from) >= len(all) || len(from) == 0 {
		t.Fatalf("HistoryFrom gave %d of %d checkpoints", len(from), len(all))
	}
	if !from[0].Time.Before(since) || from[len(from)-1].Size != all[len(all)-1].Size {
		t.Fatalf("HistoryFrom starts at %v (since %v), ends at size %d", from[0].Time, since, from[len(from)-1].Size)
	}
	// It includes the newest checkpoint at or before since.
	found := false
	for _, h := range from {
		if h.Time.Equal(all[40].Time) {
			found = true
		}
	}
	if !found {
		t.Fatal("the checkpoint at or before since is missing")
	}
}
