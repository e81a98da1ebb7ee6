package ledger

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// filesUnder counts the process's descriptors open on files under dir
// (the package's other tests run in parallel: only this ledger's count).
func filesUnder(t testing.TB, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, e := range ents {
		if p, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(p, dir+string(filepath.Separator)) {
			n++
		}
	}
	return n
}

// manySegments writes records into segments of 2 KiB until there are at
// least segs of them, and returns the ledger, still open, and how many
// records it holds.
func manySegments(t *testing.T, dir string, k testKey, segs int, extra func(*Options)) (*Ledger, int) {
	t.Helper()
	opts := testOpts(k)
	opts.SegmentSize = 2 << 10
	if extra != nil {
		extra(&opts)
	}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		l.segMu.RLock()
		have := len(l.segs)
		l.segMu.RUnlock()
		if have >= segs {
			return l, n
		}
		batch := make([][]byte, 4)
		for j := range batch {
			batch[j] = record(n + j)
		}
		if _, err := l.Append(context.Background(), batch...); err != nil {
			t.Fatal(err)
		}
		n += len(batch)
	}
}

// TestReadFilesBounded: reading every segment of a ledger of 300 (a year
// of retention, in small segments), by record and from start to end, by
// the writer and by a read-only open beside it, leaves at most
// maxReadFiles read handles open, not one or two per segment read; Close
// closes them all. Compressed and not.
func TestReadFilesBounded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		compressed bool
	}{
		{"uncompressed", false},
		{"compressed", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			k := newKey(t, testOrigin)
			l, n := manySegments(t, dir, k, 300, func(o *Options) { o.DisableCompression = !tc.compressed })
			defer l.Close()
			if tc.compressed {
				waitCompressed(t, l, 2*time.Minute)
			}
			// The writer's own segment files (active segment, its .idx,
			// the segment zeroed ahead) are there before any read.
			segDir := filepath.Join(dir, "seg")
			writer := filesUnder(t, segDir)
			l.segMu.RLock()
			segs := append([]*segment(nil), l.segs...)
			l.segMu.RUnlock()
			ro, err := OpenReadOnly(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer ro.Close()
			for _, r := range []*Ledger{l, ro} {
				for _, s := range segs {
					i := s.first + s.count.Load()/2
					e, err := r.Read(i)
					if err != nil || !bytes.Equal(e.Data, record(int(i))) {
						t.Fatalf("record %d: %q, %v", i, e.Data, err)
					}
				}
				got := 0
				for e, err := range r.Entries(0) {
					if err != nil || !bytes.Equal(e.Data, record(int(e.Index))) {
						t.Fatalf("record %d: %q, %v", e.Index, e.Data, err)
					}
					got++
				}
				if got != n {
					t.Fatalf("read %d records of %d", got, n)
				}
				if c := r.fds.count(); c > maxReadFiles {
					t.Errorf("%d read handles in the set, want at most %d", c, maxReadFiles)
				}
			}
			if open := filesUnder(t, segDir) - writer; open > 2*maxReadFiles || open < 2 {
				t.Fatalf("%d files open for reading after reading %d segments twice (2 ledgers), want 2 to %d", open, len(segs), 2*maxReadFiles)
			}
			if err := ro.Close(); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if open := filesUnder(t, dir); open != 0 {
				t.Fatalf("%d files still open in the ledger after Close", open)
			}
		})
	}
}

// TestReadFilesConcurrent: readers by record and by range, across a
// hundred segments, while the set of four read handles evicts all the
// time and the compactor replaces segments under them: every record reads
// back as appended (-race), and the set ends within its bound.
func TestReadFilesConcurrent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k := newKey(t, testOrigin)
	const max = 4
	l, n := manySegments(t, dir, k, 100, func(o *Options) { o.readFiles = max })
	defer l.Close()
	segDir := filepath.Join(dir, "seg")
	writer := filesUnder(t, segDir)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for it := range 300 {
				from := uint64(rng.IntN(n))
				to := min(from+1, uint64(n))
				if it%10 == 0 { // a range over several segments
					to = min(from+60, uint64(n))
				}
				next := from
				for e, err := range l.entries(from, to, true) {
					if err == nil && !bytes.Equal(e.Data, record(int(e.Index))) {
						err = errors.New("wrong data")
					}
					if err != nil || e.Index != next {
						errs <- errors.Join(err, errors.New("range read"))
						return
					}
					next++
				}
				e, err := l.Read(from)
				if err != nil || !bytes.Equal(e.Data, record(int(from))) {
					errs <- errors.Join(err, errors.New("read"))
					return
				}
				if next != to {
					errs <- errors.New("range read ended early")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitCompressed(t, l, 2*time.Minute)
	if c := l.fds.count(); c > max {
		t.Fatalf("%d read handles in the set, want at most %d", c, max)
	}
	// The compactor's own files are closed once it is done, and what the
	// writer had open may have changed with rotations: read handles are
	// what is left beyond the set.
	if open := filesUnder(t, segDir); open > writer+max {
		t.Fatalf("%d files open in the ledger, want at most %d (writer) + %d", open, writer, max)
	}
}

// TestReadFileNotClosedUnderReader: a handle in use survives its
// eviction and its segment's closing; it is closed when given back.
func TestReadFileNotClosedUnderReader(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	paths := make([]string, 3)
	for i := range paths {
		paths[i] = filepath.Join(dir, string(rune('a'+i)))
		if err := os.WriteFile(paths[i], []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := newReadFiles(1)
	slots := make([]*readFile, len(paths))
	open := func() bool { return false }
	readable := func(h *readFile, want byte) error {
		var b [1]byte
		if _, err := h.f.ReadAt(b[:], 0); err != nil {
			return err
		}
		if b[0] != want {
			return errors.New("wrong file")
		}
		return nil
	}
	a, err := c.acquire(&slots[0], paths[0], open)
	if err != nil {
		t.Fatal(err)
	}
	// b is opened while a is in use: two in the set, a may not go.
	b, err := c.acquire(&slots[1], paths[1], open)
	if err != nil {
		t.Fatal(err)
	}
	b.release() // b is the least recently used idle one: evicted
	if err := readable(a, 0); err != nil {
		t.Fatalf("in-use handle after an eviction: %v", err)
	}
	if err := readable(b, 1); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("evicted idle handle: %v, want it closed", err)
	}
	if c.count() != 1 || slots[1] != nil {
		t.Fatalf("%d in the set, slot b %v", c.count(), slots[1])
	}
	// The segment of a is closed (pruned) while a reader uses it.
	c.forget(&slots[0])
	if err := readable(a, 0); err != nil {
		t.Fatalf("in-use handle after its segment was closed: %v", err)
	}
	a2, err := c.acquire(&slots[2], paths[2], open)
	if err != nil {
		t.Fatal(err)
	}
	a.release()
	if err := readable(a, 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("handle given back after its segment was closed: %v, want it closed", err)
	}
	if err := readable(a2, 2); err != nil {
		t.Fatal(err)
	}
	a2.release()
	// A segment closed for reading while its handle was being opened.
	if _, err := c.acquire(&slots[0], paths[0], func() bool { return true }); !errors.Is(err, errSegmentClosed) {
		t.Fatalf("acquire on a closed segment: %v", err)
	}
	if c.count() != 1 || slots[0] != nil {
		t.Fatalf("%d in the set, slot a %v", c.count(), slots[0])
	}
}

// TestVerifyFilesBounded: verify of a ledger of 300 segments holds a
// handful of its files open at any time, not one per segment.
func TestVerifyFilesBounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k := newKey(t, testOrigin)
	l, _ := manySegments(t, dir, k, 300, nil)
	waitCompressed(t, l, 2*time.Minute)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if open := filesUnder(t, dir); open != 0 {
		t.Fatalf("%d files open after Close", open)
	}
	done := make(chan struct{})
	peak := make(chan int)
	go func() {
		most := 0
		for {
			most = max(most, filesUnder(t, dir))
			select {
			case <-done:
				peak <- most
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	rep := verifyDir(t, dir, k, "")
	close(done)
	most := <-peak
	if len(rep.Findings) > 0 {
		t.Fatalf("verify: %+v", rep.Findings)
	}
	if most > 8 {
		t.Fatalf("verify held up to %d files of the ledger open, want at most 8", most)
	}
	t.Logf("verify of %d records: at most %d files open", rep.Records, most)
}
