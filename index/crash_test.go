package index

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/ledger"
)

// TestCrashChild is the process TestCrashResume kills; it only runs when
// started by it.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("TRAILGUARD_INDEX_CRASH_DIR")
	if dir == "" {
		t.Skip("helper process for TestCrashResume")
	}
	l, err := ledger.OpenReadOnly(filepath.Join(dir, "ledger"))
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	ix, err := Open(filepath.Join(dir, "index.db"), Options{BatchSize: 300, BatchDelay: time.Millisecond})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fmt.Println("START", ix.Indexed())
	go func() {
		// Report progress (the parent kills at a random point of it) and
		// stop once everything is indexed (a read-only ledger may also
		// end Follow by itself).
		last := ix.Indexed()
		for last < l.Size() {
			if n := ix.Indexed(); n != last {
				fmt.Println("AT", n)
				last = n
			}
			time.Sleep(100 * time.Microsecond)
		}
		cancel()
	}()
	err = ix.Run(ctx, l)
	fmt.Println("DONE", ix.Indexed(), err)
	ix.Close()
}

// TestCrashResume kills (SIGKILL) a real process while it indexes a real
// ledger, several times; after every kill the index must hold exactly the
// records 0..n-1 that meta says it has, each once, and a restart must carry
// on from there until the whole ledger is indexed. Kills come at random
// points of the child's progress, so they land mid-way however fast the
// machine; should the child still finish first, the ledger grows.
func TestCrashResume(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	t.Parallel()
	dir := t.TempDir()
	const n, wantKills = 10000, 8
	l := openLedger(t, filepath.Join(dir, "ledger"))
	appendEvents(t, l.Ledger, 0, n, time.Millisecond)
	l.Close()
	total := uint64(n)
	rng := rand.New(rand.NewPCG(testenv.Seed(t), 7))
	kills, prev := 0, uint64(0)
	for gen := 0; gen < 40; gen++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "TRAILGUARD_INDEX_CRASH_DIR="+dir)
		out, err := os.Create(filepath.Join(dir, "child.out"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = out
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.StartChild(t, cmd); err != nil {
			t.Fatal(err)
		}
		// Kill past a random point between here and the end, spread so
		// that the kills still wanted fit, a random fraction of a batch
		// later: mid-batch, mid-commit, anywhere.
		var target uint64
		var delay time.Duration
		if kills < wantKills {
			target = prev + 1 + uint64(rng.IntN(int(max(1, (total-prev)/uint64(wantKills-kills+1)))))
			delay = time.Duration(rng.IntN(2000)) * time.Microsecond
		}
		killAt := make(chan struct{})
		finished := make(chan error, 1)
		go func() {
			sc := bufio.NewScanner(pipe)
			for sc.Scan() {
				fmt.Fprintln(out, sc.Text())
				var at uint64
				if _, err := fmt.Sscanf(sc.Text(), "AT %d", &at); err == nil && target > 0 && at >= target {
					close(killAt)
					target = 0
				}
			}
			finished <- cmd.Wait()
		}()
		killed := false
		select {
		case <-killAt:
			time.Sleep(delay)
			cmd.Process.Signal(syscall.SIGKILL)
			err := <-finished
			if killed = cmd.ProcessState.Sys().(syscall.WaitStatus).Signaled(); !killed && err != nil {
				b, _ := os.ReadFile(out.Name())
				t.Fatalf("child: %v\n%s", err, b)
			}
		case err := <-finished:
			if err != nil {
				b, _ := os.ReadFile(out.Name())
				t.Fatalf("child: %v\n%s", err, b)
			}
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Fatal("child neither progressed nor finished in 60 s")
		}
		if killed {
			kills++
		}
		out.Close()

		ix := openIndex(t, filepath.Join(dir, "index.db"))
		next := ix.Indexed()
		rows, lo, hi := count(t, ix)
		ix.Close()
		if uint64(rows) != next || (rows > 0 && (lo != 0 || uint64(hi) != next-1)) {
			t.Fatalf("after gen %d (killed %v): meta says %d, rows %d in [%d,%d]", gen, killed, next, rows, lo, hi)
		}
		if next < prev {
			t.Fatalf("after gen %d: indexed went back from %d to %d", gen, prev, next)
		}
		t.Logf("gen %d: killed=%v (%v past the target) indexed=%d of %d", gen, killed, delay, next, total)
		prev = next
		if next == total {
			if kills >= wantKills {
				return
			}
			// This machine indexed the rest before the kill landed:
			// give it more to index.
			l := openLedgerKey(t, filepath.Join(dir, "ledger"), l.signerKey)
			appendEvents(t, l.Ledger, int(total), n/4, time.Millisecond)
			l.Close()
			total += n / 4
		}
	}
	t.Fatalf("index did not catch up after %d kills: %d of %d", kills, prev, total)
}
