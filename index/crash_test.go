package index

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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
		// Stop once everything is indexed (a read-only ledger may also
		// end Follow by itself).
		for ix.Indexed() < l.Size() {
			time.Sleep(time.Millisecond)
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
// on from there until the whole ledger is indexed.
func TestCrashResume(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	dir := t.TempDir()
	const n = 20000
	l := openLedger(t, filepath.Join(dir, "ledger"))
	appendEvents(t, l.Ledger, 0, n, time.Millisecond)
	l.Close()
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
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
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		started := make(chan struct{})
		finished := make(chan error, 1)
		go func() {
			sc := bufio.NewScanner(pipe)
			for sc.Scan() {
				fmt.Fprintln(out, sc.Text())
				if strings.HasPrefix(sc.Text(), "START") {
					close(started)
				}
			}
			finished <- cmd.Wait()
		}()
		killed := false
		if kills < 8 {
			select {
			case <-started:
			case <-time.After(30 * time.Second):
				t.Fatal("child did not start")
			}
			// Kill while it indexes: mid-batch, mid-commit, anywhere.
			select {
			case <-time.After(time.Duration(20+rng.IntN(200)) * time.Millisecond):
				cmd.Process.Signal(syscall.SIGKILL)
				<-finished
				killed = true
				kills++
			case err := <-finished:
				if err != nil {
					b, _ := os.ReadFile(out.Name())
					t.Fatalf("child: %v\n%s", err, b)
				}
			}
		} else if err := <-finished; err != nil {
			b, _ := os.ReadFile(out.Name())
			t.Fatalf("child: %v\n%s", err, b)
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
		t.Logf("gen %d: killed=%v indexed=%d", gen, killed, next)
		prev = next
		if !killed && next == n {
			if kills < 8 {
				t.Fatalf("finished after only %d kills; the test did not kill mid-way", kills)
			}
			return
		}
	}
	t.Fatalf("index did not catch up: %d of %d", prev, n)
}
