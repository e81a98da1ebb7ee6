package server

import (
	"bufio"
	"bytes"
	"database/sql"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/internal/stalltest"
	"github.com/trailguard/trailguard/internal/testenv"
)

// Tests marked "against a real process" run the real `trailguard serve`
// binary, built once per test run (without the race detector, so that its
// memory and timing are those users get), on a loopback port.

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// trailguardBinary builds cmd/trailguard once for the whole test binary.
func trailguardBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "trailguard-server-test-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "trailguard")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/trailguard/trailguard/cmd/trailguard").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is a `trailguard serve` child process.
type proc struct {
	cmd                 *exec.Cmd
	url, dir            string
	ingest, read, admin string
	mu                  sync.Mutex
	out                 bytes.Buffer // stdout and stderr
	exited              chan struct{}
	exitCode            int
	outDone             chan struct{} // closed when all output is in out
}

// startProc creates tokens in dir and starts `trailguard serve` on it with
// the given extra flags (each "--key=value").
func startProc(t *testing.T, dir string, flags ...string) *proc {
	t.Helper()
	return startProcVia(t, dir, nil, flags...)
}

// startProcVia is startProc with the serve command run through wrap (a
// command and its arguments, e.g. prlimit's, followed by the binary).
func startProcVia(t *testing.T, dir string, wrap []string, flags ...string) *proc {
	t.Helper()
	bin := trailguardBinary(t)
	p := &proc{dir: dir, exited: make(chan struct{}), outDone: make(chan struct{})}
	store, err := access.Open(filepath.Join(dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string, role access.Role) string {
		for _, tok := range store.List() {
			if tok.Name == name && tok.Revoked == nil {
				store.Revoke(name)
			}
		}
		_, secret, err := store.Create(name, role)
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	p.ingest, p.read, p.admin = mk("shipper", access.RoleIngest), mk("analyst", access.RoleRead), mk("ops", access.RoleAdmin)
	args := append([]string{"serve", "--data", dir, "--listen", "127.0.0.1:0", "--origin", "test.example/trailguard",
		"--checkpoint-interval", "200ms"}, flags...)
	name := bin
	if len(wrap) > 0 {
		name, args = wrap[0], append(append(slices.Clone(wrap[1:]), bin), args...)
	}
	p.cmd = exec.Command(name, args...)
	p.cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := testenv.StartChild(t, p.cmd); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		defer close(p.outDone)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.out.WriteString(line + "\n")
			p.mu.Unlock()
			if a, ok := strings.CutPrefix(line, "trailguard collector on "); ok {
				select {
				case addr <- a:
				default:
				}
			}
		}
	}()
	go func() {
		err := p.cmd.Wait()
		p.exitCode = p.cmd.ProcessState.ExitCode()
		_ = err
		pw.Close()
		close(p.exited)
	}()
	select {
	case p.url = <-addr:
	case <-p.exited:
		t.Fatalf("serve exited at start (code %d):\n%s", p.exitCode, p.output())
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("serve did not start:\n%s", p.output())
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("serve output:\n%s", p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// stop sends SIGTERM and waits limit (longer when the test process
// stalled, see stopTimed) for the exit; it returns the
// exit code and how long it took.
func (p *proc) stop(t *testing.T, limit time.Duration) (int, time.Duration) {
	t.Helper()
	code, took, _ := p.stopTimed(t, limit)
	return code, took
}

// stopTimed is stop that also says how long this test process stalled
// while it waited (stalltest.Watch): a bound on how soon the process
// exits allows that much more, since a loaded machine that stops the
// test stops the server too. The wait for the exit is limit, longer when
// the test process stalled for most of it.
func (p *proc) stopTimed(t *testing.T, limit time.Duration) (code int, took, stalled time.Duration) {
	t.Helper()
	watch := stalltest.Start(t)
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if _, _, stalled, ok := stalltest.Await(p.exited, watch, limit); !ok {
		p.cmd.Process.Kill()
		<-p.exited
		t.Fatalf("serve did not exit within %v of SIGTERM (stalled %v):\n%s", limit, stalled.Round(time.Millisecond), p.output())
	}
	<-p.outDone // the last lines are read
	return p.exitCode, time.Since(start), watch.Worst()
}

// do sends one request to the process; an error ends the test.
func (p *proc) do(t testing.TB, method, path, token string, body io.Reader, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	status, h, b, err := p.try(method, path, token, body, hdr...)
	if err != nil {
		t.Fatal(err)
	}
	return status, h, b
}

// try sends one request to the process and returns the error do would end
// the test with: for goroutines other than the test's, which may not call
// t.Fatal.
func (p *proc) try(method, path, token string, body io.Reader, hdr ...string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, p.url+path, body)
	if err != nil {
		return 0, nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, nil
}

// metric reads one value from /metrics.
func (p *proc) metric(t testing.TB, name string) float64 {
	t.Helper()
	return p.metrics(t, name)[0]
}

// metrics reads the values of names from one read of /metrics (each read
// is an access event of its own).
func (p *proc) metrics(t testing.TB, names ...string) []float64 {
	t.Helper()
	status, _, body := p.do(t, "GET", "/metrics", p.read, nil)
	if status != 200 {
		t.Fatalf("/metrics: %d %s", status, body)
	}
	vals := make([]float64, len(names))
	for i, name := range names {
		found := false
		for line := range strings.SplitSeq(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("metric %s: %v", name, err)
				}
				vals[i], found = f, true
				break
			}
		}
		if !found {
			t.Fatalf("no metric %s in:\n%s", name, body)
		}
	}
	return vals
}

// settleIdle is how long settle waits for the collector to come closer to
// settled (fewer of its events not yet indexed than ever before) before it
// fails.
const settleIdle = 30 * time.Second

// settle waits until the process has written its own audit events and
// indexed everything. It fails when the collector stops coming closer:
// when the events not yet indexed (its own audit events queued, plus the
// records in the ledger not yet indexed) have not gone below their least
// so far for settleIdle, not after a fixed time: at load ~15 on two cores
// a -race collector may take longer than any fixed wait to catch up while
// advancing all the while, and what the callers test is what it stored,
// not how fast. An indexer or audit writer that stops, or records left
// out of the index for good, still fail.
func (p *proc) settle(t testing.TB) {
	t.Helper()
	names := []string{"trailguard_self_audit_queue_depth", "trailguard_index_lag_records"}
	least, closer := math.Inf(1), time.Now()
	// Each poll writes an access event of its own, which the indexer takes
	// in its next batch (up to 50 ms later): polls far closer together than
	// that keep the lag up themselves, and each adds to what the tests
	// measure. So the wait between polls grows, to at most 250 ms.
	for wait := 20 * time.Millisecond; ; wait = min(wait*3/2, 250*time.Millisecond) {
		m := p.metrics(t, names...)
		queued, lag := m[0], m[1]
		// Reading /metrics writes an access event of its own, so the lag
		// is "at most that one".
		if queued <= 1 && lag <= 2 {
			return
		}
		if queued+lag < least {
			least, closer = queued+lag, time.Now()
		} else if idle := time.Since(closer); idle > settleIdle {
			t.Fatalf("collector did not settle: %v own audit events queued, %v records not indexed; no fewer than %v in all for %v",
				queued, lag, least, idle.Round(time.Second))
		}
		time.Sleep(wait)
	}
}

// diskUsage sums the bytes of the ledger files under dir, and gives the
// size of the index's database: its pages, whether they are still in the
// write-ahead log or already in index.db (what index.db holds once
// checkpointed).
//
// The WAL file itself is not counted: it is a journal SQLite reuses from
// its start after each checkpoint (every 10000 pages), so its size is a
// high-water mark of how many commits the indexer made, which its 50 ms
// batching decides by timing, not of what was stored. The same 20 recorded
// requests grew it by 78 KB when they came together and by 556 KB when they
// came 60 ms apart, as on a loaded machine; the /metrics polls of settle,
// each an event indexed on its own, by 22 KB each.
func diskUsage(t testing.TB, dir string) (ledgerBytes, indexBytes int64) {
	t.Helper()
	indexBytes = indexPagesBytes(t, filepath.Join(dir, "index.db"))
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		switch {
		case filepath.Base(rel) == "next.zeroed":
			// The ledger zeroes its next segment ahead, a MiB at a time
			// in the background, from Open on: a fixed preallocation
			// of one segment, not growth any request caused.
		case strings.HasPrefix(rel, "ledger"+string(filepath.Separator)) && strings.HasSuffix(rel, ".seg"):
			// The open segment is zeroed after its records (from Open
			// on, like next.zeroed): only what precedes its zeros counts.
			b, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			ledgerBytes += int64(len(bytes.TrimRight(b, "\x00")))
		case strings.HasPrefix(rel, "ledger"+string(filepath.Separator)):
			ledgerBytes += fi.Size()
		}
		return nil
	})
	return
}

// indexPagesBytes is the size of the SQLite database at path as its
// latest commit has it (page_count x page_size), read over a read-only
// connection beside the collector's.
func indexPagesBytes(t testing.TB, path string) int64 {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatalf("index size: %v", err)
	}
	defer db.Close()
	var pages, pageSize int64
	if err := db.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatalf("index size: page_count: %v", err)
	}
	if err := db.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatalf("index size: page_size: %v", err)
	}
	return pages * pageSize
}

// parallel runs fn(i) for i in [0, n) on workers goroutines.
//
// Each fn(i) runs in a goroutine of its own, so that a t.Fatal in it (the
// proc helpers call it on any error) ends that call only: the test is
// marked failed and the worker goes on with the next i. Called on the
// worker itself, FailNow would end the worker, and with all of them ended
// parallel would wait for ever for a worker to take the next i.
func parallel(n, workers int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				done := make(chan struct{})
				go func() {
					defer close(done)
					fn(i)
				}()
				<-done
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
