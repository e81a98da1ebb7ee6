// Package ledgertest writes real ledgers on disk for the tests of what reads
// them (the collector's verification, the verify and report commands), so
// that each of those tests starts from the same ledger rather than from its
// own copy of the steps that build it. Only tests import it
// (TestImportedOnlyByTests): it calls t.Fatal and keeps keys on disk in the
// clear.
package ledgertest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/retention"
)

// PCIDSS is what WritePCIDSS wrote.
type PCIDSS struct {
	// Size is the number of records the ledger's tree holds, those
	// retention removed included.
	Size uint64
	// Pruned are the signed retention records of the prune, oldest first;
	// none when the ledger was not pruned.
	Pruned []ledger.PruneRecord
	// End is where the removed records end: records [0, End) were
	// removed (0 when none were).
	End uint64
	// Day is the UTC date (YYYY-MM-DD) of the first retention record, ""
	// when none were written.
	Day string
}

// WritePCIDSS writes, under dir, a signer key pair named origin
// (keys/signer.key, keys/signer.pub, as keygen writes them) and a ledger
// (dir/ledger) kept under retention policy pci-dss: 300 events signed 400
// days ago, 50 a minute ago, then, when prune, a real prune, which removes
// the old segments (8 KiB each) and signs its retention records, then 10
// events now; a signed checkpoint ends each batch. The ledger is closed
// when it returns, ready for a collector or a command to open.
func WritePCIDSS(t testing.TB, dir, origin string, prune bool) PCIDSS {
	t.Helper()
	sk, vk, err := ledger.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keys, "signer.key"), []byte(sk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keys, "signer.pub"), []byte(vk+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(sk)
	if err != nil {
		t.Fatal(err)
	}
	// The ledger's clock, moved by hand: records signed 400 days ago are
	// past pci-dss's year, those of a minute ago are not.
	var now atomic.Int64
	now.Store(time.Now().Add(-400 * retention.Day).UnixNano())
	l, err := ledger.Open(filepath.Join(dir, "ledger"), ledger.Options{Origin: origin, Signer: signer, SegmentSize: 8 << 10,
		Retention: retention.PCIDSS, PruneInterval: time.Hour, CheckpointInterval: time.Hour, Logger: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return time.Unix(0, now.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	var w PCIDSS
	add := func(n int) {
		t.Helper()
		for range n {
			e := event.Event{Timestamp: time.Unix(0, now.Load()).UTC(), Kind: "event", Action: event.ActionHTTPRequest, Outcome: "success",
				UserName: "bob", ClientIP: "198.51.100.1", Path: "/x", ServiceName: "api", ID: event.NewID()}
			if _, err := l.Append(context.Background(), e.AppendJSON(nil)); err != nil {
				t.Fatal(err)
			}
			w.Size++
		}
		if _, err := l.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	add(300)
	now.Store(time.Now().Add(-time.Minute).UnixNano())
	add(50)
	if prune {
		w.Pruned, err = l.Prune()
		if err != nil || len(w.Pruned) == 0 {
			t.Fatalf("prune: %d retention records, %v", len(w.Pruned), err)
		}
		w.End = w.Pruned[len(w.Pruned)-1].End
		w.Day = w.Pruned[0].At.UTC().Format(time.DateOnly)
	}
	now.Store(time.Now().UnixNano())
	add(10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return w
}
