package forward

import (
	"bufio"
	"bytes"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/ledger"
)

// lineServer is a loopback jsonline receiver that keeps every line.
type lineServer struct {
	mu    sync.Mutex
	lines [][]byte
}

func (s *lineServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var got [][]byte
	for sc.Scan() {
		got = append(got, bytes.Clone(sc.Bytes()))
	}
	s.mu.Lock()
	s.lines = append(s.lines, got...)
	s.mu.Unlock()
}

func (s *lineServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}

// TestDispatchExactRecords forwards a backlog (read in chunks, records cut
// from shared arenas, batches that straddle chunks) and then a live tail
// appended one record at a time, and checks that every record arrives
// byte for byte as the ledger holds it plus the ledger fields, in order,
// and that a lone new record is not held back waiting for a chunk to fill.
func TestDispatchExactRecords(t *testing.T) {
	t.Parallel()
	srv := &lineServer{}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"), nil)
	defer l.Close()
	ts := time.Now()
	const backlog = 3000 // > readChunk, several arenas of ~330-byte records
	appendEvents(t, l, 0, backlog, ts)
	off := false
	cfg := Config{Name: "exact", Type: TypeVictoriaLogs, URL: hs.URL, Verify: &off, Gzip: &off,
		BatchEvents: 300, BatchBytes: 16 << 20, Workers: 1, FlushInterval: 10 * time.Millisecond}
	m, err := Open([]Config{cfg}, Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(l)
	defer m.Close()
	waitFor(t, 20*time.Second, "the backlog", func() bool { return srv.count() >= backlog })
	total := backlog
	for range 5 {
		appendEvents(t, l, total, 1, ts)
		total++
		waitFor(t, 30*time.Second, "a record appended alone", func() bool { return srv.count() >= total })
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.lines) != total {
		t.Fatalf("received %d lines, want %d", len(srv.lines), total)
	}
	for i, got := range srv.lines {
		want := appendLedgerFields(nil, testEvent(i, ts), testOrigin, uint64(i))
		if !bytes.Equal(got, want) {
			t.Fatalf("line %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// TestForwardsAppendedTail: records this process appended are forwarded
// from the ledger's copies of the bytes it hashed (FollowAppended), not
// read back from disk and hashed again. Proved by damaging a record in the
// segment file before forwarding starts: read back, it fails its leaf
// hash and is never sent; from the tail, it goes out as appended.
func TestForwardsAppendedTail(t *testing.T) {
	t.Parallel()
	srv := &lineServer{}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"), func(o *ledger.Options) { o.TailBytes = 1 << 20 })
	defer l.Close()
	ts := time.Now()
	const n = 100
	appendEvents(t, l, 0, n, ts)
	damaged := false
	filepath.WalkDir(filepath.Join(dir, "ledger"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if k := bytes.Index(b, []byte(`"ev-00000042"`)); k >= 0 {
			b[k+11] = 'X'
			damaged = os.WriteFile(p, b, 0o600) == nil
		}
		return nil
	})
	if !damaged {
		t.Fatal("record 42 not found in a segment file to damage")
	}
	if _, err := l.Read(42); err == nil {
		t.Fatal("the damaged record reads back without error: the damage did not take")
	}
	off := false
	cfg := Config{Name: "tail", Type: TypeVictoriaLogs, URL: hs.URL, Verify: &off, Gzip: &off,
		BatchEvents: 1000, BatchBytes: 16 << 20, Workers: 1, FlushInterval: 10 * time.Millisecond}
	m, err := Open([]Config{cfg}, Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(l)
	defer m.Close()
	waitFor(t, 30*time.Second, "every record", func() bool { return srv.count() >= n })
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for i, got := range srv.lines {
		if want := appendLedgerFields(nil, testEvent(i, ts), testOrigin, uint64(i)); !bytes.Equal(got, want) {
			t.Fatalf("line %d:\n got %s\nwant %s", i, got, want)
		}
	}
}
