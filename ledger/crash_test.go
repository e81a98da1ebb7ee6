package ledger

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
	"golang.org/x/mod/sumdb/note"
)

// crashRecord is the content the crash child writes for (generation,
// writer, sequence, item); the parent recomputes it to check the bytes.
func crashRecord(gen, w, seq, j int) []byte {
	return fmt.Appendf(nil, `{"event":{"id":"g%d-w%d-s%d-j%d"},"pad":"%s"}`, gen, w, seq, j, strings.Repeat("p", (gen+w+seq+j)%300))
}

// TestCrashChild is the process the crash test kills; it only runs when
// started by startCrashChild (TestCrashRecovery, TestHistoryDamageKept).
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("TRAILGUARD_CRASH_DIR")
	if dir == "" {
		t.Skip("helper process for TestCrashRecovery")
	}
	gen, _ := strconv.Atoi(os.Getenv("TRAILGUARD_CRASH_GEN"))
	signer, err := note.NewSigner(os.Getenv("TRAILGUARD_CRASH_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(dir, Options{
		Origin: testOrigin, Signer: signer, Logger: quietLogger(),
		SegmentSize: 16 << 10, CheckpointEvery: 200, CheckpointInterval: 25 * time.Millisecond,
	})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				n := 1 + (seq+w)%4
				recs := make([][]byte, n)
				for j := range recs {
					recs[j] = crashRecord(gen, w, seq, j)
				}
				first, err := l.Append(context.Background(), recs...)
				if err != nil {
					fmt.Println("ERR", err)
					os.Exit(3)
				}
				mu.Lock()
				// One write per line: a kill leaves at most one partial line.
				os.Stdout.WriteString(fmt.Sprintf("A %d %d %d %d %d\n", first, n, gen, w, seq))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// startCrashChild starts TestCrashChild in a new process of this test
// binary, appending to the ledger in dir as generation gen and signing with
// skeyText, and returns it with the pipe of its "A …" acknowledgement lines.
func startCrashChild(t *testing.T, dir string, gen int, skeyText string) (*exec.Cmd, io.ReadCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TRAILGUARD_CRASH_DIR="+dir, "TRAILGUARD_CRASH_GEN="+strconv.Itoa(gen), "TRAILGUARD_CRASH_KEY="+skeyText)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.StartChild(t, cmd); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// TestCrashRecovery kills (SIGKILL) a real process that is appending, at
// random moments, over and over; after every kill the ledger is reopened and
// every acknowledged record must be there, byte for byte, and the ledger
// must verify. TRAILGUARD_LEDGER_CRASH_KILLS sets the number of kills
// (default 30 in the test suite; .ci/run runs a longer variant).
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("kills real processes")
	}
	t.Parallel()
	kills := testenv.Count(t, "TRAILGUARD_LEDGER_CRASH_KILLS", 30)
	dir := t.TempDir()
	// The child needs the signer key text.
	skeyText, vkey, err := GenerateKey(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skeyText)
	verifier, _ := note.NewVerifier(vkey)
	k := testKey{signer, verifier, vkey}
	rng := rand.New(rand.NewPCG(1, testenv.Seed(t)))
	acked := map[uint64][]byte{}
	var st crashCheck
	for gen := 0; gen < kills; gen++ {
		cmd, out := startCrashChild(t, dir, gen, skeyText)
		lines := make(chan string, 1<<16)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		var got []string
		if gen%10 == 3 {
			// Sometimes kill early: during start-up or recovery.
			time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
		} else {
			// Otherwise after the first acknowledgement, while appending.
			select {
			case ln, ok := <-lines:
				if ok {
					got = append(got, ln)
				}
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("gen %d: child never acknowledged anything", gen)
			}
			time.Sleep(time.Duration(rng.IntN(25)) * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		for ln := range lines {
			got = append(got, ln)
		}
		cmd.Wait()
		for _, ln := range got {
			var first uint64
			var n, g, w, seq int
			if strings.HasPrefix(ln, "ERR") {
				t.Fatalf("gen %d: child: %s", gen, ln)
			}
			if _, err := fmt.Sscanf(ln, "A %d %d %d %d %d", &first, &n, &g, &w, &seq); err != nil {
				continue // a line cut by the kill, or test framework output
			}
			for j := 0; j < n; j++ {
				acked[first+uint64(j)] = crashRecord(g, w, seq, j)
			}
		}
		full := gen%10 == 9 || gen == kills-1
		st.check(t, dir, k, acked, gen, full)
	}
	// The children compress closed segments as they go (16 KiB segments:
	// more than the compactor lets wait), so kills also land during
	// compactions; what survived must include compressed segments.
	zsegs, _ := filepath.Glob(filepath.Join(dir, "seg", "*.zseg"))
	if len(zsegs) == 0 {
		t.Fatal("no compressed segment after the kills: compaction was not exercised")
	}
	t.Logf("%d kills, %d acknowledged records survived, %d compressed segments", kills, len(acked), len(zsegs))
}

// crashCheck carries what earlier rounds proved: the checkpoint verify
// checked last (the next verify starts there) and the size below which
// every acknowledged record was found intact.
type crashCheck struct {
	since   *Checkpoint
	checked uint64
}

// check verifies the ledger as the kill left it (torn tail included),
// recovers it, checks the acknowledged records byte for byte and verifies
// again. Rounds are incremental (verify from the last verified checkpoint,
// which proves the prefix unchanged; records from the last checked size);
// full rounds check everything from the start.
func (st *crashCheck) check(t *testing.T, dir string, k testKey, acked map[uint64][]byte, gen int, full bool) {
	t.Helper()
	opts := VerifyOptions{Verifiers: []note.Verifier{k.verifier}, Since: st.since}
	from := st.checked
	if full {
		opts.Since, from = nil, 0
	}
	rep, err := Verify(dir, opts)
	if err != nil || !rep.OK() {
		t.Fatalf("gen %d: verify before recovery (full %v): %v\n%s", gen, full, err, rep)
	}
	l, err := Open(dir, Options{Origin: testOrigin, Signer: k.signer, Logger: quietLogger(), SegmentSize: 16 << 10})
	if err != nil {
		t.Fatalf("gen %d: reopen: %v", gen, err)
	}
	seen := 0
	for e, err := range l.Entries(from) {
		if err != nil {
			t.Fatalf("gen %d: %v", gen, err)
		}
		if want, ok := acked[e.Index]; ok {
			if !bytes.Equal(e.Data, want) {
				t.Fatalf("gen %d: record %d is %q, acknowledged %q", gen, e.Index, e.Data, want)
			}
			seen++
		}
	}
	want := 0
	for i := range acked {
		if i >= from {
			want++
		}
	}
	if seen != want {
		t.Fatalf("gen %d: %d of %d acknowledged records from %d present (size %d)", gen, seen, want, from, l.Size())
	}
	size := l.Size()
	if err := l.Close(); err != nil {
		t.Fatalf("gen %d: close: %v", gen, err)
	}
	rep, err = Verify(dir, opts)
	unsigned := false
	for _, n := range rep.Notices {
		unsigned = unsigned || n.Kind == NoticeUnsigned || n.Kind == NoticeTornTail || n.Kind == NoticeIndexStale
	}
	if err != nil || !rep.OK() || unsigned || rep.Latest == nil || rep.Latest.Size != size {
		t.Fatalf("gen %d: verify after recovery (full %v): %v\n%s", gen, full, err, rep)
	}
	st.since, st.checked = rep.Latest, size
}
