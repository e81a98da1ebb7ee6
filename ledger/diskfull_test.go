//go:build linux

package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/stalltest"
	"github.com/trailguard/trailguard/internal/testenv"
)

// Disk full, for real: each test mounts a small tmpfs (we run as root;
// elsewhere the tests skip, under CI they fail), fills it with a file, and
// frees it again by deleting the file. Nothing is killed or restarted.

func TestDiskFullAppendsFailCleanlyAndRecover(t *testing.T) {
	disk := testenv.SmallDisk(t, "6m")
	k := newKey(t, testOrigin)
	dir := filepath.Join(disk, "ledger")
	opts := testOpts(k)
	opts.SegmentSize = 256 << 10
	opts.CheckpointInterval = 20 * time.Millisecond
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var mu sync.Mutex
	acked := map[uint64][]byte{}
	noSpace := 0
	appendSome := func(tag string, n int) {
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					recs := [][]byte{
						fmt.Appendf(nil, `{"event":{"id":"%s-%d-%d-a"},"pad":"%s"}`, tag, w, i, bytes.Repeat([]byte("p"), 300)),
						fmt.Appendf(nil, `{"event":{"id":"%s-%d-%d-b"}}`, tag, w, i),
					}
					first, err := l.Append(ctx, recs...)
					mu.Lock()
					switch {
					case err == nil:
						acked[first], acked[first+1] = recs[0], recs[1]
					case errors.Is(err, ErrNoSpace):
						noSpace++
					default:
						t.Errorf("append: %v (only ErrNoSpace is allowed on a full disk)", err)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	appendSome("before", 50)
	if noSpace != 0 {
		t.Fatalf("%d appends refused before the disk was full", noSpace)
	}
	filler := testenv.Fill(t, disk, 0)
	size := l.Size()
	appendSome("full", 50)
	if noSpace == 0 {
		t.Fatal("no append failed on a full disk")
	}
	t.Logf("full disk: %d of 200 appends refused with ErrNoSpace", noSpace)
	// Refused appends left nothing behind: the segment and its .idx end
	// where the acknowledged records end.
	if got := l.Size(); got != size+uint64(2*(200-noSpace)) {
		t.Fatalf("size %d after %d refused appends, was %d", got, noSpace, size)
	}
	segs, _ := listSegments(filepath.Join(dir, "seg"))
	last := segs[len(segs)-1]
	res, err := scanSegment(last.path, last.first, maxFrameLen)
	st, _ := os.Stat(idxPath(last.path))
	if err != nil || res.err != nil || res.end != res.size || last.first+uint64(len(res.entries)) != l.Size() || st.Size() != int64(len(res.entries))*idxEntrySize {
		t.Fatalf("after refused appends %s holds %d records, %d bytes past them (%v), .idx %d bytes; ledger size %d",
			last.path, len(res.entries), res.size-res.end, res.err, st.Size(), l.Size())
	}
	// Space returns: appends work again, without reopening.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	before := noSpace
	appendSome("after", 50)
	if noSpace != before {
		t.Fatalf("%d appends still refused after space returned", noSpace-before)
	}
	// Rotations rolled back on the full disk are not left counted as
	// closed segments waiting for the compactor.
	waitCompressed(t, l, 20*time.Second)
	if err := l.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	checkAcked(t, dir, k, acked)
}

// checkAcked reopens the ledger, finds every acknowledged record byte for
// byte and verifies it.
func checkAcked(t *testing.T, dir string, k testKey, acked map[uint64][]byte) {
	t.Helper()
	r, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i, want := range acked {
		e, err := r.Read(i)
		if err != nil || !bytes.Equal(e.Data, want) {
			t.Fatalf("acknowledged record %d: %q, %v; want %q", i, e.Data, err, want)
		}
	}
	if rep := verifyDir(t, dir, k, ""); !rep.OK() || hasKind(rep.Notices, NoticeUnsigned) {
		t.Fatalf("verify after disk full:\n%s", rep)
	}
}

// With a reserve, appends are refused before the disk is full, so the
// final checkpoint still has room.
func TestDiskReserveKeepsRoomForFinalCheckpoint(t *testing.T) {
	disk := testenv.SmallDisk(t, "4m")
	k := newKey(t, testOrigin)
	dir := filepath.Join(disk, "ledger")
	opts := testOpts(k)
	opts.Reserve = 512 << 10
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	acked := map[uint64][]byte{}
	appendN := func(n int) (refused int) {
		for i := range n {
			rec := fmt.Appendf(nil, `{"event":{"id":"r-%d-%d"}}`, l.Size(), i)
			first, err := l.Append(ctx, rec)
			switch {
			case err == nil:
				acked[first] = rec
			case errors.Is(err, ErrNoSpace):
				refused++
			default:
				t.Fatal(err)
			}
		}
		return refused
	}
	if r := appendN(20); r != 0 {
		t.Fatalf("%d refused with room left", r)
	}
	filler := testenv.Fill(t, disk, 256<<10) // free space now below the reserve
	time.Sleep(2 * spaceCheckEvery)          // someone else took it: seen at the next check
	if r := appendN(20); r != 20 {
		t.Fatalf("%d of 20 appends refused below the reserve", r)
	}
	os.Remove(filler)
	time.Sleep(2 * spaceCheckEvery)
	if r := appendN(20); r != 0 {
		t.Fatalf("%d refused after space returned", r)
	}
	testenv.Fill(t, disk, 256<<10)
	appendN(5)
	if err := l.Close(); err != nil {
		t.Fatalf("the final checkpoint must fit in the reserve: %v", err)
	}
	checkAcked(t, dir, k, acked)
}

// Without a reserve, a completely full disk can leave no room for the
// final checkpoint: Close says so (within its timeout) instead of claiming
// success, and the next Open signs what is left.
func TestDiskFullCloseReportsNoFinalCheckpoint(t *testing.T) {
	disk := testenv.SmallDisk(t, "4m")
	k := newKey(t, testOrigin)
	dir := filepath.Join(disk, "ledger")
	opts := testOpts(k)
	opts.CheckpointInterval = time.Hour // no checkpoint but the final one
	opts.IdleInterval = time.Hour
	opts.CloseTimeout = 3 * time.Second
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	acked := map[uint64][]byte{}
	for i := range 300 {
		rec := fmt.Appendf(nil, `{"event":{"id":"c-%d"}}`, i)
		first, err := l.Append(context.Background(), rec)
		if err != nil {
			t.Fatal(err)
		}
		acked[first] = rec
	}
	// The hashes are already in the level files; the final checkpoint
	// needs room in the checkpoint history. Bring the history's end close
	// to a page boundary, so that its next frame needs a new page (tmpfs
	// allocates whole pages) and the full disk has none.
	hist := filepath.Join(dir, cpDir, fmt.Sprintf("%020d.log", 0))
	for i := 0; ; i++ {
		st, err := os.Stat(hist)
		if err != nil {
			t.Fatal(err)
		}
		if 4096-st.Size()%4096 < 200 {
			break
		}
		if i > 500 {
			t.Fatalf("the checkpoint history never ended near a page boundary (size %d)", st.Size())
		}
		if _, err := l.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	filler := testenv.Fill(t, disk, 0)
	// The bound allows the longest stall of this process seen during
	// Close: a loaded machine delays Close's own deadline alike.
	watch := stalltest.Start(t)
	watch.Reset()
	start := time.Now()
	err = l.Close()
	d, stalled := time.Since(start), watch.Worst()
	if !errors.Is(err, ErrNoFinalCheckpoint) || !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Close on a full disk: %v", err)
	}
	if d > opts.CloseTimeout+time.Second+stalled {
		t.Fatalf("Close took %v (stalled %v) with CloseTimeout %v", d.Round(time.Millisecond), stalled.Round(time.Millisecond), opts.CloseTimeout)
	}
	os.Remove(filler)
	l, err = Open(dir, opts)
	if err != nil {
		t.Fatalf("reopen after the disk full close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkAcked(t, dir, k, acked)
}

// A failed fdatasync (an I/O error) cannot be undone: the records may or
// may not be on disk. The error says so, and the ledger stays failed.
func TestSyncFailureIsUnknownOutcome(t *testing.T) {
	k := newKey(t, testOrigin)
	l, err := Open(t.TempDir(), testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(t, l, 0, 3)
	eio := syncFunc(func(*os.File) error { return syscall.EIO })
	syncHook.Store(&eio)
	defer syncHook.Store(nil)
	_, err = l.Append(context.Background(), record(3))
	if !errors.Is(err, ErrUnknownOutcome) || !errors.Is(err, syscall.EIO) || errors.Is(err, ErrNoSpace) {
		t.Fatalf("append whose sync failed: %v", err)
	}
	syncHook.Store(nil)
	_, err = l.Append(context.Background(), record(4))
	if !errors.Is(err, ErrFailed) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("append after a failed sync: %v", err)
	}
}

// TestDiskFullAtRotationLinkRecovers: the disk fills between a rotation's
// new segment being written (under its pending name) and its link to its
// name, the syncer's step that cannot be rolled back. The ledger waits
// for space, neither failing nor acknowledging the records behind the
// link, and goes on once space returns, without a reopen; every
// acknowledged record is there. (A tmpfs with few inodes: a hard link
// takes one of its inode slots.)
func TestDiskFullAtRotationLinkRecovers(t *testing.T) {
	disk := testenv.SmallDisk(t, "32m,nr_inodes=4000")
	k := newKey(t, testOrigin)
	dir := filepath.Join(disk, "ledger")
	opts := testOpts(k)
	opts.SegmentSize = 64 << 10
	var logs lockedLog
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	fill := filepath.Join(disk, "fill")
	if err := os.Mkdir(fill, 0o755); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	filled := make(chan int, 1)
	hook := func() {
		once.Do(func() {
			n := 0
			for ; ; n++ {
				f, err := os.Create(filepath.Join(fill, strconv.Itoa(n)))
				if err != nil {
					break
				}
				f.Close()
			}
			filled <- n
		})
	}
	linkHook.Store(&hook)
	defer linkHook.Store(nil)
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var mu sync.Mutex
	acked := map[uint64][]byte{}
	var failed []error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				rec := fmt.Appendf(nil, `{"event":{"id":"w%d-%d"},"pad":"%s"}`, w, i, bytes.Repeat([]byte("p"), 200))
				first, err := l.Append(ctx, rec)
				mu.Lock()
				switch {
				case err == nil:
					acked[first] = rec
				case errors.Is(err, ErrNoSpace): // not stored: a write or a new segment found no room
				default:
					failed = append(failed, err)
				}
				mu.Unlock()
			}
		})
	}
	var n int
	select {
	case n = <-filled:
	case <-time.After(60 * time.Second):
		t.Fatal("no rotation in 60 s")
	}
	t.Logf("disk full at a rotation's link: %d files filled the inodes", n)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "disk full at a rotation") {
		if err := l.err(); err != nil {
			t.Fatalf("the ledger failed at the link: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the link's failure was not logged as waiting for space; ledger error %v\n%s", l.err(), logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := l.err(); err != nil {
		t.Fatalf("the ledger failed at the link: %v", err)
	}
	// Space returns: the appends held behind the link are acknowledged
	// and new ones go on, without a reopen.
	if err := os.RemoveAll(fill); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	base := len(acked)
	mu.Unlock()
	for {
		mu.Lock()
		more := len(acked) - base
		mu.Unlock()
		if more >= 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d appends acknowledged in 20 s after space returned; ledger error %v", more, l.err())
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d appends failed, the first: %v", len(failed), failed[0])
	}
	if err := l.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	checkAcked(t, dir, k, acked)
}

// lockedLog is a log's text, written from several goroutines.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
