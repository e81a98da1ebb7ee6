package index

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/query"
)

// tamperFixture is a ledger of n generated events and its index file,
// closed, for a test to alter with SQL and reopen.
func tamperFixture(t *testing.T, n int) (*testLedger, string) {
	t.Helper()
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	appendEvents(t, l.Ledger, 0, n, time.Second)
	path := filepath.Join(dir, "index.db")
	ix := openIndexOn(t, path, l)
	runUntil(t, ix, l, uint64(n))
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	return l, path
}

// alter runs SQL on an index file directly, as someone with write access
// to the disk would.
func alter(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// alterBlocks rewrites the blocks of an index file, as someone with write
// access to the disk could: fn changes a block's columns (all loaded), and
// may return blocks to add.
func alterBlocks(t *testing.T, path string, fn func(b *block) []*block) {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	metas, err := blockMetas(ctx, tx, math.MinInt64, math.MaxInt64, 0)
	if err != nil {
		t.Fatal(err)
	}
	var all []*block
	for _, b := range metas {
		if err := b.load(ctx, tx, allNeeded); err != nil {
			t.Fatal(err)
		}
		all = append(append(all, b), fn(b)...)
	}
	for _, b := range all {
		b.tmin, b.tmax = math.MaxInt64, math.MinInt64
		for i := range b.n {
			if b.flags[i]&flAbsent == 0 {
				b.tmin, b.tmax = min(b.tmin, b.ts[i]), max(b.tmax, b.ts[i])
			}
		}
		if _, err := b.store(ctx, tx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// alterIDs rewrites every id run of an index file with what fn makes of
// its entries.
func alterIDs(t *testing.T, path string, fn func(es []idEntry) []idEntry) {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := runs(ctx, tx, -1)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		es, err := readRun(ctx, tx, r)
		if err != nil {
			t.Fatal(err)
		}
		es = fn(es)
		slices.SortFunc(es, cmpID)
		if err := writeRun(ctx, tx, r, es); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// termNum is the stored form (number + 1) of term v of field f.
func termNum(t *testing.T, path string, f int, v string) uint32 {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n uint32
	if err := db.QueryRow(`SELECT n FROM terms WHERE f=? AND v=?`, f, v).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n + 1
}

// TestTamperedRows alters index rows every way the file allows and checks
// that queries at worst miss or misrank an event: every event returned is
// the ledger's record, matching the query, and the altered rows are
// reported.
func TestTamperedRows(t *testing.T) {
	t.Parallel()
	l, path := tamperFixture(t, 500)
	const fUser = fUserName
	mallory, failure := termNum(t, path, fUser, "mallory"), termNum(t, path, fOutcome, "failure")
	alter(t, path,
		// Every bob is now called eve in the dictionary.
		fmt.Sprintf(`UPDATE terms SET v='eve' WHERE f=%d AND v='bob'`, fUser),
	)
	alterBlocks(t, path, func(b *block) []*block {
		if b.blk != 0 {
			return nil
		}
		// Event 0 (alice, success) now claims to be mallory's failed login.
		b.terms[fUser-fAction][0], b.terms[fOutcome-fAction][0] = mallory, failure
		// Event 10 moved in time, event 20 given the status of 30 (401s).
		b.ts[10] += int64(time.Hour)
		b.stat[20] = 401
		// An odd flag that is not so.
		b.flags[23] |= flOdd
		// A row for a record the ledger does not have, with the columns
		// of 13.
		nb := newBlock(100000)
		c := cols{ts: b.ts[13], status: 401}
		c.has[fStatus] = true
		nb.appendRow(&c, &[nFields]uint32{})
		return []*block{nb}
	})
	ix := openIndexOn(t, path, l)
	ctx := context.Background()
	records := map[uint64][]byte{}
	for e, err := range l.Entries(0) {
		if err != nil {
			t.Fatal(err)
		}
		records[e.Index] = e.Data
	}
	search := func(qs string) Result {
		t.Helper()
		q, err := query.Parse(qs)
		if err != nil {
			t.Fatal(err)
		}
		res, err := ix.Search(ctx, Request{Query: q, Limit: MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range res.Hits {
			if !bytes.Equal(h.Raw, records[h.Index]) {
				t.Fatalf("%s: hit %d is not the ledger's record: %s", qs, h.Index, h.Raw)
			}
			if !matchRecord(q, h.Raw) {
				t.Fatalf("%s: hit %d does not match: %s", qs, h.Index, h.Raw)
			}
		}
		return res
	}
	indices := func(r Result) []uint64 {
		var out []uint64
		for _, h := range r.Hits {
			out = append(out, h.Index)
		}
		slices.Sort(out)
		return out
	}

	res := search(`user.name:mallory and event.outcome:failure`)
	if slices.Contains(indices(res), 0) || !slices.Contains(res.Mismatches, 0) {
		t.Errorf("altered row 0: hits %v, mismatches %v", indices(res), res.Mismatches)
	}
	res = search(`user.name:eve`)
	if len(res.Hits) != 0 || len(res.Mismatches) != 100 {
		t.Errorf("renamed term: %d hits, %d mismatches", len(res.Hits), len(res.Mismatches))
	}
	// bob's events are missed (the term no longer says bob): a miss.
	if res := search(`user.name:bob`); len(res.Hits) != 0 {
		t.Errorf("user.name:bob found %d", len(res.Hits))
	}
	res = search(`http.response.status_code:401`)
	for _, bad := range []uint64{20, 100000} {
		if slices.Contains(indices(res), bad) || !slices.Contains(res.Mismatches, bad) {
			t.Errorf("status 401: row %d: hits %v, mismatches %v", bad, indices(res), res.Mismatches)
		}
	}
	// 23's row says it is odd: its record says otherwise, so it is left
	// out too (a miss).
	if len(res.Hits) != 49 || slices.Contains(indices(res), 23) {
		t.Errorf("status 401: %d hits, want the 49 real ones with true rows", len(res.Hits))
	}
	res = search(`event.id:*`)
	for _, bad := range []uint64{10, 23} {
		if slices.Contains(indices(res), bad) || !slices.Contains(res.Mismatches, bad) {
			t.Errorf("row %d: hits %v…, mismatches %v", bad, head(indices(res)), res.Mismatches)
		}
	}
	// Top shows no value a record does not hold: "eve" is dropped.
	top, err := ix.Top(ctx, TopRequest{Field: "user.name"})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range top.Values {
		if v.Value == "eve" {
			t.Errorf("Top shows the altered term: %+v", top.Values)
		}
	}
	if len(top.Mismatches) == 0 {
		t.Errorf("Top reported no mismatch: %+v", top)
	}
}

// TestTamperedIDs points a row at another event's id: lookups return the
// ledger's event with that id or nothing, never another.
func TestTamperedIDs(t *testing.T) {
	t.Parallel()
	l, path := tamperFixture(t, 200)
	ix := openIndexOn(t, path, l)
	salt := ix.salt
	ix.Close()
	alterIDs(t, path, func(es []idEntry) []idEntry {
		es = slices.DeleteFunc(es, func(e idEntry) bool { return e.idx == 7 || e.idx == 42 })
		if len(es) > 0 && es[0].idx/blockSize == 0 {
			es = append(es, idEntry{idKey(salt, fEventID, "ev-00000099"), 42}, idEntry{idKey(salt, fRequestID, "req-00000049"), 42})
		}
		return es
	})
	ix = openIndexOn(t, path, l)
	ctx := context.Background()
	h, err := ix.ByEventID(ctx, "ev-00000099")
	if err != nil || h.Index != 99 || !bytes.Contains(h.Raw, []byte(`"ev-00000099"`)) {
		t.Fatalf("ByEventID(99) = %d %s, %v", h.Index, h.Raw, err)
	}
	if _, err := ix.ByEventID(ctx, "ev-00000042"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ByEventID(42) = %v, want a miss", err)
	}
	if _, err := ix.ByEventID(ctx, "ev-00000007"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ByEventID(7) = %v, want a miss", err)
	}
	hits, ch, err := ix.ByRequestID(ctx, "req-00000049")
	if err != nil || len(hits) != 2 || hits[0].Index != 98 || hits[1].Index != 99 || !slices.Equal(ch.Mismatches, []uint64{42}) {
		t.Fatalf("ByRequestID(49) = %+v %+v, %v", hits, ch, err)
	}
}

// damaged is a ledger whose reads of some records fail, as reads of a
// record that does not hash to its Merkle leaf do.
type damaged struct {
	Records
	bad map[uint64]bool
}

var errDamaged = errors.New("ledger: record does not match its leaf hash")

func (d damaged) Read(i uint64) (ledger.Entry, error) {
	if d.bad[i] {
		return ledger.Entry{}, fmt.Errorf("ledger: read %d: %w", i, errDamaged)
	}
	return d.Records.Read(i)
}

func TestDamagedLedgerRecords(t *testing.T) {
	t.Parallel()
	l, path := tamperFixture(t, 100)
	var logs bytes.Buffer
	var mu sync.Mutex
	ix, err := Open(path, Options{Ledger: damaged{l, map[uint64]bool{3: true, 13: true, 42: true}},
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	ctx := context.Background()
	q, _ := query.Parse(`event.action:authn_login_fail`)
	res, err := ix.Search(ctx, Request{Query: q})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hits) != 8 || len(res.Unreadable) != 2 || res.Unreadable[0].Index != 3 || !errors.Is(res.Unreadable[0].Err, errDamaged) {
		t.Fatalf("%d hits, unreadable %+v", len(res.Hits), res.Unreadable)
	}
	mu.Lock()
	if !strings.Contains(logs.String(), "trailguard verify") || !strings.Contains(logs.String(), "ledger_index=13") {
		t.Errorf("log: %s", logs.String())
	}
	mu.Unlock()
	var re *ReadError
	if _, err := ix.ByEventID(ctx, "ev-00000042"); !errors.As(err, &re) || re.Index != 42 {
		t.Fatalf("ByEventID of a damaged record = %v", err)
	}
	// The first failed login (dave's) is damaged: the next one shows it.
	top, err := ix.Top(ctx, TopRequest{Field: "user.name", Query: q})
	if err != nil || len(top.Values) != 1 || top.Values[0] != (TopN{"dave", 10}) || top.Unreadable[0].Index != 3 {
		t.Fatalf("Top = %+v, %v", top, err)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// TestOldFormatReplaced: an index file of the previous layout (rows with
// the raw event) is replaced on Open and rebuilt from the ledger by Run.
func TestOldFormatReplaced(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	appendEvents(t, l.Ledger, 0, 50, time.Second)
	path := filepath.Join(dir, "index.db")
	alter(t, path,
		`CREATE TABLE events (idx INTEGER PRIMARY KEY, ts INTEGER NOT NULL, user_name TEXT, raw TEXT NOT NULL)`,
		`CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID`,
		`INSERT INTO events VALUES (0, 0, 'forged', '{"user":{"name":"forged"}}')`,
		`INSERT INTO meta VALUES ('next', 50)`,
	)
	ix := openIndexOn(t, path, l)
	if ix.Indexed() != 0 {
		t.Fatalf("old index kept: Indexed() = %d", ix.Indexed())
	}
	runUntil(t, ix, l, 50)
	if n, _, _ := count(t, ix); n != 50 {
		t.Fatalf("%d rows", n)
	}
}

func TestOpenLocks(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "index.db")
	ix := openIndex(t, path)
	if _, err := Open(path, Options{}); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open = %v, want ErrInUse", err)
	}
	ix.Close()
	ix2, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	ix2.Close()
	if _, err := os.Stat(path + ".lock"); err != nil {
		t.Fatal(err)
	}
}

func TestWaitIndexed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"))
	ix, err := Open(filepath.Join(dir, "i.db"), Options{Ledger: l, BatchDelay: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ix.Run(ctx, l) }()
	appendEvents(t, l.Ledger, 0, 10, time.Second)
	// Indexing waits up to the batch delay: a query right now would miss
	// events; waiting for the ledger's size does not.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := ix.WaitIndexed(wctx, l.Size()); err != nil {
		t.Fatal(err)
	}
	res, err := ix.Search(ctx, Request{})
	if err != nil || len(res.Hits) != 10 {
		t.Fatalf("after WaitIndexed: %d hits, %v", len(res.Hits), err)
	}
	short, scancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer scancel()
	if err := ix.WaitIndexed(short, 1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitIndexed beyond the ledger = %v", err)
	}
	cancel()
	<-done
	ix.Close()
	if err := ix.WaitIndexed(context.Background(), 1000); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitIndexed after Close = %v", err)
	}
}
