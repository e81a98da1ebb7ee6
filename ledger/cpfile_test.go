package ledger

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// TestCheckpointFileDuringBursts: checkpoints made because CheckpointEvery
// records arrived leave the checkpoint file alone for up to one
// CheckpointInterval after it was replaced (each replacement is a file
// creation, an fsync and a rename), while every checkpoint goes to the
// history; the file stays a checkpoint of the history, so verify finds
// nothing, and every checkpoint that marks something — the first of a
// process, a handover, one not made by the count (a burst's end, a manual
// one), Close's — replaces it at once.
func TestCheckpointFileDuringBursts(t *testing.T) {
	ctx := context.Background()
	a, b := newKey(t, testOrigin), newKey(t, testOrigin)
	dir := t.TempDir()
	file := func() Checkpoint {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := OpenCheckpoint(raw, note.VerifierList(a.verifier, b.verifier))
		if err != nil {
			t.Fatalf("checkpoint file: %v", err)
		}
		return c
	}
	latest := func(l *Ledger) Checkpoint { _, c := l.LatestCheckpoint(); return c }
	verify := func() {
		t.Helper()
		rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{a.verifier, b.verifier}})
		if err != nil || !rep.OK() {
			t.Fatalf("verify: %v\n%s", err, rep)
		}
	}
	const every = 8
	open := func(k testKey, handover note.Signer) *Ledger {
		t.Helper()
		opts := testOpts(k)
		opts.CheckpointEvery, opts.CheckpointInterval, opts.IdleInterval = every, time.Hour, time.Hour
		opts.HandoverSigner = handover
		l, err := Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	burst := func(l *Ledger, from int) {
		t.Helper()
		for i := from; i < from+10*every; i += every {
			appendN(t, l, i, every)
			waitFor(t, func() bool { return latest(l).Size == uint64(i+every) })
		}
	}

	l := open(a, nil)
	atOpen := latest(l)
	if got := file(); got.Size != atOpen.Size || !got.Time.Equal(atOpen.Time) {
		t.Fatalf("checkpoint file after Open: size %d at %v, want Open's (%d at %v)", got.Size, got.Time, atOpen.Size, atOpen.Time)
	}
	burst(l, 0)
	if got := file(); got.Size != atOpen.Size {
		t.Fatalf("checkpoint file replaced during a burst: size %d, want %d (Open's) until an interval passed", got.Size, atOpen.Size)
	}
	if l.cpFile.skipped == 0 {
		t.Fatal("no checkpoint left the file as it was")
	}
	hist := 0
	files, _ := listCPLogs(dir)
	for _, f := range files {
		ents, _, _ := readFrameLog(f.path, maxCheckpointSize)
		hist += len(ents)
	}
	if hist < 11 {
		t.Fatalf("checkpoint history holds %d checkpoints, want every one of the burst's 10 and Open's", hist)
	}
	verify() // a file behind the history is one of its checkpoints
	appendN(t, l, 10*every, 3)
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if got := file(); got.Size != 10*every+3 {
		t.Fatalf("checkpoint file after a checkpoint not made by the count: size %d, want %d", got.Size, 10*every+3)
	}
	burst(l, 10*every+3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := file(); got.Size != 20*every+3 || !hasExt(got, shutdownExt) {
		t.Fatalf("checkpoint file after Close: size %d %q, want Close's (%d, shutdown)", got.Size, got.Extra, 20*every+3)
	}
	verify()

	// A handover: the new key's first checkpoint is in the file at once
	// (the collector checks its signer against the file's keys).
	l = open(b, a.signer)
	defer l.Close()
	raw, _ := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if _, _, err := OpenCheckpoint(raw, note.VerifierList(b.verifier)); err != nil {
		t.Fatalf("checkpoint file after a handover is not signed by the new key: %v", err)
	}
	burst(l, 20*every+3)
	verify()
}

func hasExt(c Checkpoint, ext string) bool {
	for _, e := range c.Extra {
		if e == ext {
			return true
		}
	}
	return false
}
