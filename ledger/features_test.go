package ledger

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailguard/trailguard/retention"
)

func appendN(t *testing.T, l *Ledger, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if _, err := l.Append(context.Background(), record(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKeyRotation(t *testing.T) {
	a, b := newKey(t, testOrigin), newKey(t, testOrigin)
	dir := t.TempDir()
	l, err := Open(dir, testOpts(a))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 50)
	l.Close()
	// Rotate: B signs from now on; A co-signs the first checkpoint.
	opts := testOpts(b)
	opts.HandoverSigner = a.signer
	l, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 50, 50)
	l.Close()

	rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{a.verifier, b.verifier}})
	if err != nil {
		t.Fatal(err)
	}
	rotated := false
	for _, n := range rep.Notices {
		rotated = rotated || n.Kind == NoticeKeyRotated
	}
	if !rep.OK() || !rotated {
		t.Fatalf("rotated ledger with both keys:\n%s", rep)
	}
	// Without the old key, the old checkpoints cannot be checked.
	rep, _ = Verify(dir, VerifyOptions{Verifiers: []note.Verifier{b.verifier}})
	if rep.OK() || rep.Findings[0].Kind != KindCheckpointUnknownKey {
		t.Fatalf("new key only:\n%s", rep)
	}
	// A leaked old key cannot sign new history after the handover.
	rewriteCheckpointLog(t, dir, func(ns [][]byte) [][]byte {
		c, _ := parseUnverified(ns[len(ns)-1])
		c.Size, c.Time = c.Size+1, c.Time.Add(time.Second)
		s, err := SignCheckpoint(c, a.signer)
		if err != nil {
			t.Fatal(err)
		}
		return append(ns, s)
	})
	rep, _ = Verify(dir, VerifyOptions{Verifiers: []note.Verifier{a.verifier, b.verifier}})
	if rep.OK() || rep.Findings[0].Kind != KindCheckpointRetiredKey {
		t.Fatalf("checkpoint by retired key:\n%s", rep)
	}
}

func TestWitnesses(t *testing.T) {
	k := newKey(t, testOrigin)
	var mu sync.Mutex
	var posted [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posted = append(posted, b)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	wdir := t.TempDir()
	opts := testOpts(k)
	opts.Witnesses = []Witness{HTTPWitness(srv.URL, srv.Client()), DirWitness(wdir)}
	dir := t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 20)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posted) < 2 {
		t.Fatalf("HTTP witness got %d checkpoints", len(posted))
	}
	c, _, err := OpenCheckpoint(posted[len(posted)-1], note.VerifierList(k.verifier))
	if err != nil || c.Size != 20 {
		t.Fatalf("last posted checkpoint: %+v %v", c, err)
	}
	files, _ := filepath.Glob(filepath.Join(wdir, "*.checkpoint"))
	if len(files) < 2 {
		t.Fatalf("dir witness holds %d checkpoints", len(files))
	}
	if rep, _ := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}, WitnessDir: wdir}); !rep.OK() {
		t.Fatalf("verify with witness:\n%s", rep)
	}
}

func TestRetention(t *testing.T) {
	k := newKey(t, testOrigin)
	var now atomic.Int64
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now.Store(start.UnixNano())
	opts := testOpts(k)
	opts.SegmentSize = 8 << 10
	opts.Retention = retention.PCIDSS
	opts.PruneInterval = time.Hour
	opts.Now = func() time.Time { return time.Unix(0, now.Load()) }
	dir := t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Each phase ends with a checkpoint at its (fake) time, as the
	// cadence makes within a second: retention goes by signed times.
	appendN(t, l, 0, 300) // old records
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	now.Store(start.Add(200 * retention.Day).UnixNano())
	appendN(t, l, 300, 300) // younger than a year at the prune below
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	now.Store(start.Add(400 * retention.Day).UnixNano())
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	early, _, _ := l.SignedCheckpoint(0)

	// A legal hold stops pruning.
	l.SetLegalHold(true)
	if got, err := l.Prune(); err != nil || len(got) != 0 {
		t.Fatalf("prune under legal hold: %v %v", got, err)
	}
	l.SetLegalHold(false)
	got, err := l.Prune()
	if err != nil || len(got) == 0 {
		t.Fatalf("prune: %v %v", got, err)
	}
	cut := got[len(got)-1].End
	if cut > 300 || cut < 200 || got[0].Policy != "pci-dss" {
		t.Fatalf("pruned %+v", got)
	}
	if _, err := l.Read(0); !errors.Is(err, ErrPruned) {
		t.Fatalf("Read(0) after prune: %v", err)
	}
	if e, err := l.Read(cut); err != nil || string(e.Data) != string(record(int(cut))) {
		t.Fatalf("Read(%d): %v", cut, err)
	}
	// Proofs still work for pruned and kept records, against old and new checkpoints.
	signed, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range [][]byte{early, signed} {
		cp, _ := parseUnverified(s)
		for _, i := range []uint64{0, cut - 1, cut, 599} {
			b, err := l.ProveInclusion(i, s)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckRecord(b.Proof, int64(cp.Size), cp.Root, int64(i), tlog.RecordHash(record(int(i)))); err != nil {
				t.Fatalf("proof for %d after pruning: %v", i, err)
			}
		}
	}
	appendN(t, l, 600, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
	if err != nil {
		t.Fatal(err)
	}
	var pruned *Finding
	for i, n := range rep.Notices {
		if n.Kind == NoticePruned {
			pruned = &rep.Notices[i]
		}
	}
	if !rep.OK() || pruned == nil || rep.Pruned != cut {
		t.Fatalf("verify after pruning:\n%s", rep)
	}
	t.Log(pruned)
	// Reopen with pruned segments, even if the tiles must be rebuilt:
	// only the leaf hashes of the pruned records are left.
	if err := os.Truncate(filepath.Join(dir, hashDir, "0"), int64(cut)*HashSize); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, hashDir, "1")); err != nil {
		t.Fatal(err)
	}
	l, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if l.Size() != 610 || l.Pruned() != cut {
		t.Fatalf("reopened: size %d pruned %d", l.Size(), l.Pruned())
	}
	l.Close()
	if rep, _ := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}}); !rep.OK() {
		t.Fatalf("verify after rebuilding tiles:\n%s", rep)
	}
	// Deleting a segment without a signed retention record is tampering.
	segs, _ := listSegments(filepath.Join(dir, "seg"))
	os.Remove(segs[0].path)
	if rep, _ := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}}); rep.OK() || rep.Findings[0].Kind != KindRecordDeleted {
		t.Fatalf("segment deleted outside retention:\n%s", rep)
	}
}

// TestSecondTileLevel crosses 2^16 records with frequent checkpoints, so
// level-1 tiles fill and partial tiles come and go at two levels.
func TestSecondTileLevel(t *testing.T) {
	k := newKey(t, testOrigin)
	dir := t.TempDir()
	l, err := Open(dir, testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	batch := make([][]byte, 999)
	for n := 0; n < 70000; n += len(batch) {
		for i := range batch {
			batch[i] = record(n + i)
		}
		if _, err := l.Append(ctx, batch...); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	signed, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := parseUnverified(signed)
	for _, i := range []uint64{0, 65535, 65536, cp.Size - 1} {
		b, err := l.ProveInclusion(i, signed)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(b.Proof, int64(cp.Size), cp.Root, int64(i), tlog.RecordHash(record(int(i)))); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, hashDir, "1")); err != nil || st.Size() < tileBytes {
		t.Fatalf("level-1 tile 0 is not complete: %v", err)
	}
	if rep, _ := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}}); !rep.OK() {
		t.Fatalf("verify:\n%s", rep)
	}
	l, err = Open(dir, testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

func TestVerifyReportsCheckpointGaps(t *testing.T) {
	k := newKey(t, testOrigin)
	var now atomic.Int64
	now.Store(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	opts := testOpts(k)
	opts.Now = func() time.Time { return time.Unix(0, now.Load()) }
	dir := t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 5)
	l.Close() // clean shutdown, then 3 hours of nothing
	now.Add(int64(3 * time.Hour))
	l, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 5, 5)
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	now.Add(int64(time.Hour)) // silence while running
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.Close()
	rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
	if err != nil || !rep.OK() {
		t.Fatalf("%v\n%s", err, rep)
	}
	var gaps []string
	for _, n := range rep.Notices {
		if n.Kind == NoticeCheckpoints {
			gaps = append(gaps, n.Message)
		}
	}
	if len(gaps) != 2 || !strings.Contains(gaps[0], "clean shutdown") || !strings.Contains(gaps[1], "down, stalled or silenced") {
		t.Fatalf("gap notices: %q", gaps)
	}
}

func TestCheckpointHistoryRotates(t *testing.T) {
	defer func(old int64) { cpLogMax = old }(cpLogMax)
	cpLogMax = 2 << 10
	k := newKey(t, testOrigin)
	dir := t.TempDir()
	l, err := Open(dir, testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var sizes []uint64
	for i := 0; i < 30; i++ {
		appendN(t, l, i, 1)
		s, err := l.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := parseUnverified(s)
		sizes = append(sizes, c.Size)
	}
	l.Close()
	files, _ := listCPLogs(dir)
	if len(files) < 3 {
		t.Fatalf("history not rotated: %d files", len(files))
	}
	l, err = Open(dir, testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	if _, cp := l.LatestCheckpoint(); cp.Size != 30 {
		t.Fatalf("latest after reopen: %d", cp.Size)
	}
	if _, c, err := l.SignedCheckpoint(sizes[2]); err != nil || c.Size != sizes[2] {
		t.Fatalf("old checkpoint: %v", err)
	}
	l.Close()
	v := []note.Verifier{k.verifier}
	if rep, _ := Verify(dir, VerifyOptions{Verifiers: v}); !rep.OK() || rep.Checkpoints < 32 {
		t.Fatalf("verify rotated history:\n%s", rep)
	}
	os.Remove(files[1].path)
	if rep, _ := Verify(dir, VerifyOptions{Verifiers: v}); rep.OK() || rep.Findings[0].Kind != KindCheckpointsMissing {
		t.Fatalf("history file deleted:\n%s", rep)
	}
}
