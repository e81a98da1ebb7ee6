//go:build linux

package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestRotationLinkedOnlyAfterHandOver: a rotation's new segment gets its
// name (makeDurable, linkSegment) only once the job holding it was handed
// to the syncer and the segment before it is whole on disk. A job whose
// write after the rotation fails for lack of space is rolled back: its new
// segment is never linked, under its name or pending, and the ledger goes
// on. At every link the newest linked segment has no zeros after its
// records (its seal, the cut and fsync, came first). A rotation made
// durable earlier than the syncer does it (docs/ledger.md, sixteenth
// session: from the job's hand-over, on its own goroutine) must keep
// passing it: started at the rotation itself, the rolled-back segment was
// linked. Not parallel: directWriteHook and linkHook are the package's.
func TestRotationLinkedOnlyAfterHandOver(t *testing.T) {
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = 16 << 10
	opts.DisableCompression = true
	dir := t.TempDir()
	segDir := filepath.Join(dir, "seg")
	var (
		links   atomic.Int32
		mu      sync.Mutex
		badLink []string
	)
	lhook := func() {
		links.Add(1)
		segs, err := listSegments(segDir)
		if err != nil || len(segs) == 0 {
			mu.Lock()
			badLink = append(badLink, fmt.Sprintf("segments at a link: %d, %v", len(segs), err))
			mu.Unlock()
			return
		}
		last := segs[len(segs)-1]
		res, err := scanSegment(last.path, last.first, maxFrameLen)
		if err != nil || res.err != nil || res.end != res.size {
			mu.Lock()
			badLink = append(badLink, fmt.Sprintf("%s not whole at the next segment's link: records end at %d of %d bytes (%v, %v)",
				filepath.Base(last.path), res.end, res.size, err, res.err))
			mu.Unlock()
		}
	}
	linkHook.Store(&lhook)
	defer linkHook.Store(nil)
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := map[uint64][]byte{}
	rec := func(i int) []byte {
		return fmt.Appendf(nil, "r%d-%s", i, bytes.Repeat([]byte{byte('a' + i%26)}, 300))
	}
	add := func(i int) {
		t.Helper()
		r := rec(i)
		first, err := l.Append(ctx, r)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		want[first] = r
	}
	i := appendUntilDirect(t, l, func(i int) error { add(i); return nil })
	// A direct write to a new segment's first block (the rest of a batch
	// after its rotation) fails for lack of space: the job is rolled back
	// after its rotation, before it is handed over.
	var armed atomic.Bool
	var refused atomic.Int32
	whook := func(p []byte, off int64) error {
		if armed.Load() && off == 0 {
			refused.Add(1)
			return &os.PathError{Op: "write", Path: "segment", Err: syscall.ENOSPC}
		}
		return nil
	}
	// (The hook answers for the write: the real one follows it.)
	realWrite := func(p []byte, off int64) error {
		if err := whook(p, off); err != nil {
			return err
		}
		_, err := l.w.dio.WriteAt(p, off)
		return err
	}
	directWriteHook.Store(&realWrite)
	defer directWriteHook.Store(nil)
	for attempt := 0; refused.Load() == 0; attempt++ {
		if attempt == 200 {
			t.Fatal("no batch was written directly into a new segment in 200 rotations")
		}
		// Fill the segment to just before its end with single records,
		// then one request that crosses into the next.
		for n := 0; n < 40; n++ {
			add(i)
			i++
			time.Sleep(200 * time.Microsecond)
		}
		links0 := links.Load()
		segs0 := mustSegments(t, segDir)
		armed.Store(true)
		recs := make([][]byte, 24)
		for j := range recs {
			recs[j] = rec(i + j)
		}
		first, err := l.Append(ctx, recs...)
		armed.Store(false)
		if refused.Load() == 0 {
			if err != nil {
				t.Fatalf("append of %d records: %v", len(recs), err)
			}
			for j, r := range recs {
				want[first+uint64(j)] = r
			}
			i += len(recs)
			continue
		}
		if !errors.Is(err, ErrNoSpace) {
			t.Fatalf("append whose write after a rotation failed for lack of space: %v, want ErrNoSpace", err)
		}
		// Give a link started too early (at the rotation) time to be made.
		time.Sleep(50 * time.Millisecond)
		if n := links.Load() - links0; n != 0 {
			t.Fatalf("%d segments linked for a job that was rolled back", n)
		}
		segs := mustSegments(t, segDir)
		if len(segs) != len(segs0) {
			t.Fatalf("%d segments after the rollback, %d before", len(segs), len(segs0))
		}
		ents, err := os.ReadDir(segDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".new") && !strings.HasPrefix(e.Name(), "next") {
				t.Fatalf("%s left after the rollback", e.Name())
			}
		}
		if l.Size() != uint64(len(want)) {
			t.Fatalf("size %d after the rollback, %d records acknowledged", l.Size(), len(want))
		}
	}
	// The ledger goes on: more rotations, each linked after its seal.
	links0 := links.Load()
	for end := i + 150; i < end; i++ {
		add(i)
	}
	if links.Load()-links0 < 2 {
		t.Fatalf("%d links after the rollback: the test needs rotations", links.Load()-links0)
	}
	checkReadBack(t, "", l, want, len(want), true)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(badLink) > 0 {
		t.Fatalf("%d links before the segment before them was whole, the first: %s", len(badLink), badLink[0])
	}
	mu.Unlock()
	if rep := verifyDir(t, dir, k, ""); !rep.OK() || rep.Records != uint64(len(want)) {
		t.Fatalf("verify: %d records, want %d\n%s", rep.Records, len(want), rep)
	}
}
