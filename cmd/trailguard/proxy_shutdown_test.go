//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// proxyProc is a running `trailguard proxy`.
type proxyProc struct {
	cmd    *exec.Cmd
	base   string
	stderr *bytes.Buffer
	done   chan struct{}
}

func startProxy(t *testing.T, bin string, args ...string) *proxyProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"proxy"}, args...)...)
	cmd.Env = append(os.Environ(), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0") // see startServe
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proxyProc{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{w: p.stderr}
	if err := testenv.StartChild(t, cmd); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "trailguard proxy on "); ok {
				addr <- strings.Fields(rest)[0]
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill(); <-p.done })
	select {
	case p.base = <-addr:
	case <-p.done:
		t.Fatalf("proxy exited at start: %v\n%s", cmd.ProcessState, p.stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("proxy did not start in 60 s\n%s", p.stderr)
	}
	return p
}

// proxyLoad sends requests through a gateway from several clients, each
// to its own paths, and remembers the paths of those answered.
type proxyLoad struct {
	mu       sync.Mutex
	answered map[string]bool
	stopping bool // the SIGTERM was sent
	drained  int  // requests answered after it
	wg       sync.WaitGroup
}

// stop notes that the gateway is told to stop.
func (l *proxyLoad) stop() {
	l.mu.Lock()
	l.stopping = true
	l.mu.Unlock()
}

func (l *proxyLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.answered)
}

// run starts n clients on base until the gateway stops answering them;
// kind is a path segment the upstream may treat differently ("slow").
func (l *proxyLoad) run(base, kind string, n int) {
	for w := range n {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				path := fmt.Sprintf("/api/%s/%d-%d", kind, w, i)
				resp, err := http.Get(base + path)
				if err != nil {
					return // the gateway is gone
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(body) != `{"ok":true}` {
					continue // not answered: its event may or may not exist
				}
				l.mu.Lock()
				l.answered[path] = true
				if l.stopping {
					l.drained++
				}
				l.mu.Unlock()
			}
		})
	}
}

func (l *proxyLoad) waitAnswered(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for l.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d requests answered in 60 s", l.count(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gatewayRequests lists the http_request events of service at the
// collector: how many events each url.path has.
func gatewayRequests(c *crashClient, service string) map[string]int {
	c.t.Helper()
	seen := map[string]int{}
	eachEvent(c, "service.name:"+service+" and event.action:http_request", func(ev struct {
		URL struct{ Path string } `json:"url"`
	}) {
		seen[ev.URL.Path]++
	})
	return seen
}

// missing is the answered paths the collector has no event of.
func (l *proxyLoad) missing(seen map[string]int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for p := range l.answered {
		if seen[p] == 0 {
			out = append(out, p)
		}
	}
	return out
}

// TestProxyCollectorShutdown sends SIGTERM to a `trailguard proxy` that
// ships to a real collector (`trailguard serve`), under load, and checks
// what timeouts.shutdown promises a gateway in collector mode: it exits
// within the timeout with status 0; the requests in flight are answered
// (drained: some clients' requests take the upstream 400 ms); and no
// answered request's event is lost: the spool ships it
// before the exit when the collector is reachable, or keeps it and the
// next start ships it when the collector does not answer (here: stopped
// with SIGSTOP during the shutdown, resumed after). Each answered request
// has exactly one event at the collector. (Before the gateway bounded the
// spool's drain by timeouts.shutdown, the frozen collector made the flush
// outlast its share: exit 1, "abandoned at shutdown".)
func TestProxyCollectorShutdown(t *testing.T) {
	testenv.Long(t)
	t.Parallel()
	for _, frozen := range []bool{false, true} {
		t.Run(fmt.Sprintf("collector_frozen=%v", frozen), func(t *testing.T) {
			t.Parallel()
			testProxyCollectorShutdown(t, frozen)
		})
	}
}

func testProxyCollectorShutdown(t *testing.T, frozen bool) {
	const budget = 4 * time.Second
	s := newShutdownServe(t, 10*time.Second)
	col := startServe(t, s.bin, s.cfgPath)
	s.c.base = col.url
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/slow/") {
			time.Sleep(400 * time.Millisecond) // in flight when the SIGTERM comes
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	defer upstream.Close()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "proxy.yaml")
	// A short flush interval: the spool ships while the load runs.
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("timeouts: {shutdown: %v}\ncollector: {flush_interval: 50ms}\n", budget)), 0o600); err != nil {
		t.Fatal(err)
	}
	const service = "stop-gateway"
	args := []string{"--config", cfgPath, "--upstream", upstream.URL, "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data"),
		"--collector", col.url, "--token", s.c.ingest, "--service", service}
	p := startProxy(t, s.bin, args...)

	load := &proxyLoad{answered: map[string]bool{}}
	load.run(p.base, "orders", 4)
	load.run(p.base, "slow", 2)
	load.waitAnswered(t, 1500)
	if frozen {
		// The collector stops answering (its connections stay open): the
		// shipper's request hangs, and the drain at shutdown cannot ship.
		col.cmd.Process.Signal(syscall.SIGSTOP)
		defer col.cmd.Process.Signal(syscall.SIGCONT)
		time.Sleep(200 * time.Millisecond) // requests answered meanwhile are spooled only
	}
	load.stop()
	took, stalled, code := sigterm(t, p.cmd, p.done, p.stderr)
	load.wg.Wait()
	t.Logf("gateway SIGTERM under load (collector frozen: %v): exit %d after %v, stalled %v (timeouts.shutdown %v); %d requests answered, %d of them after the SIGTERM",
		frozen, code, took.Round(time.Millisecond), stalled.Round(time.Millisecond), budget, load.count(), load.drained)
	if took > budget+stalled || code != 0 {
		t.Errorf("exit %d after %v (stalled %v); want 0 within timeouts.shutdown %v\n%s", code, took, stalled, budget, p.stderr)
	}
	if load.drained == 0 {
		t.Errorf("no request in flight at the SIGTERM was answered\n%s", p.stderr)
	}

	if frozen {
		col.cmd.Process.Signal(syscall.SIGCONT)
	} else {
		// The collector was there: the spool shipped every event before
		// the gateway exited.
		waitIndexed(t, s.c)
		if miss := load.missing(gatewayRequests(s.c, service)); len(miss) > 0 {
			t.Errorf("%d of %d answered requests have no event at the collector after the gateway's exit (first: %s)\n%s",
				len(miss), load.count(), miss[0], p.stderr)
		}
	}

	// The next start ships what the spool kept.
	p = startProxy(t, s.bin, args...)
	deadline := time.Now().Add(60 * time.Second)
	var seen map[string]int
	for {
		waitIndexed(t, s.c)
		seen = gatewayRequests(s.c, service)
		miss := load.missing(seen)
		if len(miss) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d answered requests have no event at the collector 60 s after the gateway's restart (first: %s)\ngateway's first run:\n%s",
				len(miss), load.count(), miss[0], p.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for path, n := range seen {
		if n != 1 {
			t.Errorf("%s: %d events at the collector, want 1", path, n)
		}
	}
	if took, stalled, code := sigterm(t, p.cmd, p.done, p.stderr); took > budget+stalled || code != 0 {
		t.Errorf("idle gateway: exit %d after %v (stalled %v); want 0 within %v\n%s", code, took, stalled, budget, p.stderr)
	}
	col.stop(t)
}

// waitIndexed waits until the collector's index has caught up with its
// ledger.
func waitIndexed(t *testing.T, c *crashClient) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		size := c.metric("trailguard_ledger_records")
		if c.metric("trailguard_index_records") >= size {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the index did not catch up with the ledger's %d records in 30 s", size)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
