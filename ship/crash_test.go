//go:build unix

package ship

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// TestCrashChild is the process TestCrash kills: it writes records as fast
// as the spool takes them, shipping to the parent's server, and prints
// "ack N" after each Write that returned nil (records up to N are durable).
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("SHIP_CRASH_DIR")
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	start, _ := strconv.Atoi(os.Getenv("SHIP_CRASH_START"))
	seed, _ := strconv.ParseUint(os.Getenv("SHIP_CRASH_SEED"), 10, 64)
	rng := rand.New(rand.NewPCG(seed, 1))
	fmt.Println("up") // the parent times a kill from here
	s, err := New(Options{URL: os.Getenv("SHIP_CRASH_URL"), Protocol: Bulk, SpoolDir: dir,
		SegmentBytes: 32 << 10, MaxSpoolBytes: 4 << 20, BatchSize: 50, FlushInterval: 5 * time.Millisecond,
		MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	out := bufio.NewWriter(os.Stdout)
	// Bounded: the parent kills us well before this ends.
	for n, stop := start, time.Now().Add(10*time.Second); time.Now().Before(stop); {
		k := 1 + rng.IntN(20)
		batch := make([][]byte, k)
		for i := range batch {
			batch[i] = rec(fmt.Sprintf("c%08d", n+i), 200+rng.IntN(400))
		}
		if err := s.Write(context.Background(), batch); err != nil {
			fmt.Fprintln(out, "error", err)
			out.Flush()
			os.Exit(1)
		}
		n += k
		fmt.Fprintln(out, "ack", n-1)
		out.Flush() // in the pipe before the next Write: the parent sees every ack
	}
	s.Close()
}

// TestCrash SIGKILLs a writing, shipping process at random moments, several
// times over one spool, then ships what is left: every record a Write
// acknowledged reaches the server at least once. Half the runs are killed
// at a random time after the process is up (in the spool's recovery, or
// at its first writes), half once it has acknowledged a random number of
// records (20 to 1,000) while it goes on writing: a loaded machine, slow to
// start a process, once had all eight killed before their first write.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	t.Parallel()
	c := newCollector(t, true)
	var reqs atomic.Int64
	c.handle = func(w http.ResponseWriter, lines [][]byte) bool {
		// Some trouble on the way: every seventh request fails.
		if reqs.Add(1)%7 == 0 {
			http.Error(w, "hiccup", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	srv := httptest.NewServer(c)
	defer srv.Close()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(testenv.Seed(t), 2))
	var acked []string
	const runs = 8
	for run := range runs {
		start := run * 10_000_000
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v=false")
		cmd.Env = append(os.Environ(), "SHIP_CRASH_DIR="+dir, "SHIP_CRASH_URL="+srv.URL+"/_bulk",
			"SHIP_CRASH_START="+strconv.Itoa(start), "SHIP_CRASH_SEED="+strconv.FormatUint(rng.Uint64(), 10))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := testenv.StartChild(t, cmd); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		kill := func() { cmd.Process.Signal(syscall.SIGKILL) }
		after := time.Duration(150+rng.IntN(400)) * time.Millisecond
		target := -1 // kill once this many are acknowledged; -1: after the time
		if run%2 == 1 {
			target = 20 + rng.IntN(981)
		}
		last := -1
		for l := range lines {
			switch {
			case l == "up" && target < 0:
				time.AfterFunc(after, kill)
			case strings.HasPrefix(l, "ack "):
				last, _ = strconv.Atoi(l[4:])
				if target > 0 && last-start+1 >= target {
					kill()
					target = 0
				}
			case strings.HasPrefix(l, "error"):
				t.Errorf("child: %s", l)
			}
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Errorf("run %d: child was not killed: %v", run, err)
		}
		for n := start; n <= last; n++ {
			acked = append(acked, fmt.Sprintf("c%08d", n))
		}
		t.Logf("run %d: %d records acknowledged before SIGKILL; %d requests so far", run, last-start+1, reqs.Load())
	}
	if len(acked) < runs*10 {
		t.Fatalf("only %d records acknowledged in %d runs", len(acked), runs)
	}
	s := open(t, Options{URL: srv.URL + "/_bulk", Protocol: Bulk, SpoolDir: dir})
	flush(t, s, 60*time.Second)

	c.mu.Lock()
	missing, dups := 0, 0
	for _, id := range acked {
		switch n := c.got[id]; {
		case n == 0:
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged record %s never arrived", id)
			}
		case n > 1:
			dups += n - 1
		}
	}
	extra := len(c.got) - (len(acked) - missing)
	c.mu.Unlock()
	if missing > 0 {
		t.Errorf("%d of %d acknowledged records lost", missing, len(acked))
	}
	// Records whose Write was cut by the kill may or may not have arrived;
	// duplicates are the batches in flight at each kill.
	t.Logf("%d acknowledged records, all delivered; %d duplicate deliveries; %d unacknowledged records also arrived",
		len(acked), dups, extra)
}
