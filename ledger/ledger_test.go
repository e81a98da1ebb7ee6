package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const testOrigin = "test.trailguard.example/ledger"

type testKey struct {
	signer   note.Signer
	verifier note.Verifier
	vkey     string
}

func newKey(t testing.TB, name string) testKey {
	t.Helper()
	skey, vkey, err := GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{s, v, vkey}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testOpts(k testKey) Options {
	return Options{Origin: testOrigin, Signer: k.signer, Logger: quietLogger()}
}

func record(i int) []byte {
	return fmt.Appendf(nil, `{"@timestamp":"2026-01-01T00:00:00Z","event":{"id":"ev-%d","action":"login"},"pad":"%s"}`, i, bytes.Repeat([]byte{'x'}, i%97))
}

// hashStore is an in-memory tlog.HashReader built with tlog.StoredHashes:
// the reference the tile tree is checked against.
type hashStore []tlog.Hash

func (s hashStore) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = s[x]
	}
	return out, nil
}

// TestTreeMatchesTlog checks the tile tree's root against
// golang.org/x/mod/sumdb/tlog at every size from 1 to 2100 (nine tiles,
// full and partial) and at the sizes around the level-2 tile boundary,
// and the empty tree against transparency-dev/merkle's RFC 6962 hasher
// (tlog's TreeHash(0) is the zero hash, not the RFC 6962 empty root).
func TestTreeMatchesTlog(t *testing.T) {
	if got, want := (&tree{}).root(), Hash(rfc6962.DefaultHasher.EmptyRoot()); got != want || got.String() != "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" {
		t.Fatalf("empty tree root %v, RFC 6962 says %v", got, want)
	}
	var ref hashStore
	tr := &tree{}
	var levels nodeBuf // what the level files would hold
	emit := levels.add
	checked := 0
	for i := 0; i < 70000; i++ {
		data := record(i)
		hs, err := tlog.StoredHashes(int64(i), data, ref)
		if err != nil {
			t.Fatal(err)
		}
		ref = append(ref, hs...)
		tr.append(LeafHash(data), emit)
		n := i + 1
		if n <= 2100 || n%4099 == 0 || (n >= 65530 && n <= 65542) {
			want, err := tlog.TreeHash(int64(n), ref)
			if err != nil {
				t.Fatal(err)
			}
			if got := tr.root(); got != want {
				t.Fatalf("size %d: root %v, tlog says %v", n, got, want)
			}
			checked++
		}
	}
	if checked < 2100 {
		t.Fatalf("only %d sizes compared", checked)
	}
	// Every full tile equals what tlog.ReadTileData says it must be.
	for _, tl := range []tlog.Tile{{H: 8, L: 0, N: 0, W: 256}, {H: 8, L: 0, N: 272, W: 256}, {H: 8, L: 1, N: 0, W: 256}} {
		want, err := tlog.ReadTileData(tl, ref)
		if err != nil {
			t.Fatal(err)
		}
		off := int(tl.N) * tileBytes
		if got := levels.data[tl.L][off : off+tileBytes]; !bytes.Equal(got, want) {
			t.Fatalf("tile %v differs from tlog", tl)
		}
	}
	// Every partial tile of the current size is a prefix of a level's range
	// and equals tlog's.
	size := tr.size
	for _, p := range tr.partialTiles() {
		tl := tlog.Tile{H: 8, L: p.level, N: int64(p.n), W: len(p.data) / HashSize}
		want, err := tlog.ReadTileData(tl, ref)
		if err != nil {
			t.Fatal(err)
		}
		off := int(tl.N) * tileBytes
		if got := levels.data[tl.L][off : off+len(want)]; !bytes.Equal(got, want) || !bytes.Equal(p.data, want) {
			t.Fatalf("partial tile %v differs from tlog", tl)
		}
	}
	// Reload from the level data and keep going.
	t2, err := loadTree(size, func(level int, n uint64, w int) ([]byte, error) {
		off := int(n) * tileBytes
		if off+w*HashSize > len(levels.data[level]) {
			return nil, errors.New("missing")
		}
		return levels.data[level][off : off+w*HashSize], nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if t2.root() != tr.root() {
		t.Fatal("reloaded tree root differs")
	}
}

func TestTilePathIsC2SP(t *testing.T) {
	for _, tc := range []struct {
		level int
		n     uint64
		w     int
		want  string
	}{
		{0, 0, 256, "tile/0/000"},
		{0, 1234067, 256, "tile/0/x001/x234/067"},
		{1, 5, 17, "tile/1/005.p/17"},
	} {
		if got := tilePath(tc.level, tc.n, tc.w); got != tc.want {
			t.Errorf("tilePath(%d,%d,%d) = %q, want %q", tc.level, tc.n, tc.w, got, tc.want)
		}
	}
}

func TestAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = 8 << 10 // many segments
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const writers, per = 8, 150
	var wg sync.WaitGroup
	got := make(map[uint64][]byte)
	var mu sync.Mutex
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				recs := [][]byte{record(w*1000 + i), record(w*1000 + i + 500)}
				first, err := l.Append(ctx, recs...)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got[first], got[first+1] = recs[0], recs[1]
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if l.Size() != writers*per*2 {
		t.Fatalf("size %d", l.Size())
	}
	for i, want := range got {
		e, err := l.Read(i)
		if err != nil || !bytes.Equal(e.Data, want) {
			t.Fatalf("Read(%d) = %q, %v; want %q", i, e.Data, err, want)
		}
	}
	n := uint64(0)
	for e, err := range l.Entries(0) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Index != n || !bytes.Equal(e.Data, got[n]) {
			t.Fatalf("Entries: #%d is %d %q", n, e.Index, e.Data)
		}
		n++
	}
	if n != l.Size() {
		t.Fatalf("Entries yielded %d of %d", n, l.Size())
	}
	if _, err := l.Read(l.Size()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read past end: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Size() != writers*per*2 {
		t.Fatalf("size after reopen %d", l.Size())
	}
	first, err := l.Append(ctx, []byte("after reopen"))
	if err != nil || first != writers*per*2 {
		t.Fatalf("append after reopen: %d %v", first, err)
	}
	signed, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, _, err := OpenCheckpoint(signed, note.VerifierList(k.verifier))
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != l.Size() || cp.Origin != testOrigin || cp.Time.IsZero() {
		t.Fatalf("checkpoint %+v", cp)
	}
	// The root in the checkpoint is the RFC 6962 root of the records.
	var ref hashStore
	for i := uint64(0); i < cp.Size; i++ {
		e, err := l.Read(i)
		if err != nil {
			t.Fatal(err)
		}
		hs, _ := tlog.StoredHashes(int64(i), e.Data, ref)
		ref = append(ref, hs...)
	}
	if want, _ := tlog.TreeHash(int64(cp.Size), ref); want != cp.Root {
		t.Fatalf("checkpoint root %v, tlog computes %v", cp.Root, want)
	}
}

func TestFollowWaitsForRecords(t *testing.T) {
	k := newKey(t, testOrigin)
	l, err := Open(t.TempDir(), testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan []uint64)
	go func() {
		var seen []uint64
		for e, err := range l.Follow(ctx, 0) {
			if err != nil {
				break
			}
			seen = append(seen, e.Index)
			if len(seen) == 5 {
				break
			}
		}
		done <- seen
	}()
	for i := 0; i < 5; i++ {
		time.Sleep(5 * time.Millisecond)
		if _, err := l.Append(ctx, record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if seen := <-done; len(seen) != 5 || seen[4] != 4 {
		t.Fatalf("Follow saw %v", seen)
	}
	// Close ends a waiting follower.
	go func() { time.Sleep(20 * time.Millisecond); l.Close() }()
	var last error
	for _, err := range l.Follow(ctx, 5) {
		last = err
	}
	if !errors.Is(last, ErrClosed) {
		t.Fatalf("Follow after Close ended with %v", last)
	}
}

// TestCheckpointCadence checks each of the three triggers of a
// checkpoint with the other two set to an hour, so that each part fails
// when its own trigger does not work (the idle cadence also covers
// pending records, and would hide a broken CheckpointInterval).
func TestCheckpointCadence(t *testing.T) {
	const never = time.Hour
	ctx := context.Background()
	open := func(t *testing.T, every int, interval, idle time.Duration) (*Ledger, string) {
		t.Helper()
		opts := testOpts(newKey(t, testOrigin))
		opts.CheckpointEvery, opts.CheckpointInterval, opts.IdleInterval = every, interval, idle
		dir := t.TempDir()
		l, err := Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l, dir
	}
	appendN := func(t *testing.T, l *Ledger, from, n int) {
		t.Helper()
		recs := make([][]byte, n)
		for i := range recs {
			recs[i] = record(from + i)
		}
		if _, err := l.Append(ctx, recs...); err != nil {
			t.Fatal(err)
		}
	}
	size := func(l *Ledger) uint64 { _, cp := l.LatestCheckpoint(); return cp.Size }

	t.Run("every N records", func(t *testing.T) {
		l, _ := open(t, 10, never, never)
		appendN(t, l, 0, 10)
		waitFor(t, func() bool { return size(l) == 10 })
		appendN(t, l, 10, 9) // fewer than N: no checkpoint until T
		time.Sleep(100 * time.Millisecond)
		if got := size(l); got != 10 {
			t.Fatalf("checkpoint of %d records after 9 more, want none until 10 more", got)
		}
	})
	t.Run("within T", func(t *testing.T) {
		l, _ := open(t, 1000, 20*time.Millisecond, never)
		appendN(t, l, 0, 1)
		waitFor(t, func() bool { return size(l) == 1 })
		appendN(t, l, 1, 1)
		waitFor(t, func() bool { return size(l) == 2 })
	})
	t.Run("idle sooner than T", func(t *testing.T) {
		// Pending records are signed at the idle cadence when it is the
		// sooner: they must not wait for T.
		l, _ := open(t, 1000, never, 30*time.Millisecond)
		appendN(t, l, 0, 1)
		waitFor(t, func() bool { return size(l) == 1 })
	})
	t.Run("idle", func(t *testing.T) {
		l, dir := open(t, 1000, 20*time.Millisecond, 30*time.Millisecond)
		appendN(t, l, 0, 1)
		waitFor(t, func() bool { return size(l) == 1 })
		// Idle → new checkpoints of the same size, later times: nothing
		// is pending, so neither N nor T can be what signs them.
		_, c1 := l.LatestCheckpoint()
		waitFor(t, func() bool { _, cp := l.LatestCheckpoint(); return cp.Time.After(c1.Time) && cp.Size == 1 })
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		files, _ := listCPLogs(dir)
		if len(files) != 1 {
			t.Fatalf("checkpoint history: %v", files)
		}
		ents, _, err := readFrameLog(files[0].path, maxCheckpointSize)
		if err != nil || len(ents) < 3 {
			t.Fatalf("checkpoint history: %d entries, %v", len(ents), err)
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 30 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestProofsCheckWithTlog(t *testing.T) {
	k := newKey(t, testOrigin)
	dir := t.TempDir()
	l, err := Open(dir, testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var recs [][]byte
	var old []byte
	for i := 0; i < 1000; i++ {
		recs = append(recs, record(i))
		if i == 299 {
			if _, err := l.Append(ctx, recs...); err != nil {
				t.Fatal(err)
			}
			recs = nil
			if old, err = l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := l.Append(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	signed, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	r, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	v := note.VerifierList(k.verifier)
	cp, _, err := OpenCheckpoint(signed, v)
	if err != nil {
		t.Fatal(err)
	}
	oldCP, _, _ := OpenCheckpoint(old, v)
	for _, i := range []uint64{0, 1, 255, 256, 299, 777, 999} {
		p, err := r.InclusionProof(i, cp)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, int64(cp.Size), cp.Root, int64(i), tlog.RecordHash(record(int(i)))); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if err := tlog.CheckRecord(p, int64(cp.Size), cp.Root, int64(i), tlog.RecordHash([]byte("forged"))); err == nil {
			t.Fatalf("record %d: proof accepted a different record", i)
		}
	}
	p, oldRoot, err := r.ConsistencyProof(oldCP.Size, cp)
	if err != nil {
		t.Fatal(err)
	}
	if oldRoot != oldCP.Root {
		t.Fatal("old root differs from old checkpoint")
	}
	if err := tlog.CheckTree(p, int64(cp.Size), cp.Root, int64(oldCP.Size), oldCP.Root); err != nil {
		t.Fatal(err)
	}
}
