//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
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
	"github.com/trailguard/trailguard/ledger"
)

// TestServeCrash kills (SIGKILL) a real `trailguard serve` process under
// ingest load at random moments (starting up and catching up its index,
// checkpointing every 50 ms, rotating 64 KiB ledger segments, answering
// batches), restarts it, and after every restart checks what a shipper and
// an auditor rely on: every acknowledged event.id is retrievable through the
// API, with an inclusion proof; the index catches up and lists each event
// once; batches whose answer was lost, sent again, are not stored twice;
// and between runs the ledger verifies offline. The random choices come
// from a logged seed (TRAILGUARD_SEED replays them); TRAILGUARD_SERVE_CRASH_KILLS
// sets the number of kills (default 5; .ci/run runs a longer variant).
func TestServeCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("kills real processes")
	}
	t.Parallel()
	kills := testenv.Count(t, "TRAILGUARD_SERVE_CRASH_KILLS", 5)
	rng := rand.New(rand.NewPCG(testenv.Seed(t), 9))
	bin := buildTrailguard(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfgPath := filepath.Join(dir, "serve.yaml")
	cfg := fmt.Sprintf("data_dir: %s\nlisten: 127.0.0.1:0\ncheckpoint_interval: 50ms\nledger_segment_bytes: 65536\nshutdown_timeout: 10s\n", data)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	token := func(role string) string {
		out, err := exec.Command(bin, "token", "create", "--data", data, "--init", "--quiet", "--role", role, "--name", "crash-"+role).Output()
		if err != nil {
			t.Fatalf("token create %s: %v", role, err)
		}
		return strings.TrimSpace(string(out))
	}
	c := &crashClient{t: t, ingest: token("ingest"), read: token("read"), acked: map[string]bool{}, sent: map[string]bool{}}
	verify := func(when string) {
		out, err := exec.Command(bin, "verify", "--data", data).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: the ledger does not verify: %v\n%s", when, err, out)
		}
	}

	// Between runs the ledger is verified offline: in full after the first
	// kill, then incrementally from the last verified checkpoint, and by
	// the CLI after the clean stop at the end.
	var verified *ledger.Checkpoint
	verifyFrom := func(when string) {
		vs, err := ledger.LoadVerifiers(filepath.Join(data, "keys", "signer.pub"))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := ledger.Verify(filepath.Join(data, "ledger"), ledger.VerifyOptions{Verifiers: vs, Since: verified})
		if err != nil || !rep.OK() {
			t.Fatalf("%s: the ledger does not verify: %v\n%v", when, err, rep)
		}
		verified = rep.Latest
	}

	start := time.Now()
	for round := 0; ; round++ {
		srv := startServe(t, bin, cfgPath)
		c.base = srv.url
		// The batches whose answer the last kill cut off are sent again,
		// as an at-least-once shipper does.
		c.resend()
		c.check(fmt.Sprintf("round %d", round), rng, round == kills)
		if round == kills {
			srv.stop(t)
			verify("after the clean stop")
			break
		}
		// Kill during start-up and index catch-up one time in four,
		// otherwise under load: mid-batch, mid-checkpoint, mid-rotation.
		delay := time.Duration(rng.IntN(100)) * time.Millisecond
		if rng.IntN(4) != 0 {
			delay = 100*time.Millisecond + time.Duration(rng.IntN(400))*time.Millisecond
		}
		loadCtx, stopLoad := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range 2 {
			seed := rng.Uint64()
			prefix := fmt.Sprintf("r%02dw%d", round, w)
			c.prefixes = append(c.prefixes, prefix)
			wg.Go(func() { c.load(loadCtx, prefix, seed) })
		}
		time.Sleep(delay) // the kill moment itself is what is random
		srv.kill(t)
		stopLoad()
		wg.Wait()
		t.Logf("round %d: killed %v after start; %d events acknowledged, %d batches in doubt", round, delay, len(c.acked), len(c.doubt))
		verifyFrom(fmt.Sprintf("after kill %d", round+1))
	}
	if c.dups > 0 {
		t.Errorf("%d resent events stored twice: the window of recent event.ids did not survive a crash", c.dups)
	}
	t.Logf("%d kills in %v: %d events acknowledged, each retrievable", kills, time.Since(start).Round(time.Millisecond), len(c.acked))
}

// serveProc is a running `trailguard serve`.
type serveProc struct {
	cmd    *exec.Cmd
	url    string
	stderr *bytes.Buffer
	done   chan struct{}
}

func startServe(t *testing.T, bin, cfgPath string) *serveProc {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	// The race detector sleeps 1 s at exit by default; stop times are
	// measured (shutdown_test.go) without it.
	cmd.Env = append(os.Environ(), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{w: p.stderr}
	if err := testenv.StartChild(t, cmd); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "trailguard collector on "); ok {
				addr <- u
			}
		}
		cmd.Wait()
	}()
	select {
	case p.url = <-addr:
	case <-p.done:
		t.Fatalf("serve exited at start: %v\n%s", cmd.ProcessState, p.stderr)
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("serve did not start in 60 s\n%s", p.stderr)
	}
	t.Cleanup(func() { cmd.Process.Kill(); <-p.done })
	return p
}

func (p *serveProc) kill(t *testing.T) {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("serve ended by itself before the kill: %v\n%s", p.cmd.ProcessState, p.stderr)
	}
}

func (p *serveProc) stop(t *testing.T) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop on SIGTERM in 30 s\n%s", p.stderr)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM\n%s", code, p.stderr)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// crashClient is the shipper and the auditor of TestServeCrash.
type crashClient struct {
	t            *testing.T
	base         string
	ingest, read string

	mu    sync.Mutex
	acked map[string]bool // event.ids the collector acknowledged
	sent  map[string]bool // every event.id ever sent
	doubt [][]string      // batches sent without an answer

	prefixes []string // event.id prefixes of the loaders, one per run and loader
	checked  int      // prefixes[:checked] were listed and found complete
	dups     int      // resent events stored twice
}

// crashService names the loader's events; crashQuery finds them (and not
// an alert the detection engine might raise about them).
const (
	crashService = "crash-loader"
	crashQuery   = "service.name:" + crashService + " and event.kind:event"
)

// crashBody is a batch of ordinary events; user.name is the loader's
// prefix, an indexed field, so that a loader's events are listed quickly.
func crashBody(ids []string) []byte {
	var b bytes.Buffer
	for _, id := range ids {
		user, _, _ := strings.Cut(id, "-")
		fmt.Fprintf(&b, `{"event":{"id":%q,"action":"http_request","outcome":"success","category":["web"]},"service":{"name":%q},"user":{"name":%q},"http":{"response":{"status_code":200}},"source":{"ip":"198.51.100.7"},"message":"%s"}`+"\n",
			id, crashService, user, strings.Repeat("x", 300))
	}
	return b.Bytes()
}

// post sends one batch: nil if the collector acknowledged every event.
func (c *crashClient) post(ctx context.Context, ids []string) error {
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/v1/events", bytes.NewReader(crashBody(ids)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.ingest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct{ Accepted, Rejected, Duplicates int }
	if resp.StatusCode != 200 || json.Unmarshal(body, &r) != nil || r.Accepted+r.Duplicates != len(ids) || r.Rejected != 0 {
		return fmt.Errorf("%d %s", resp.StatusCode, body)
	}
	return nil
}

// load sends batches of new events until ctx ends (the kill): each batch is
// acknowledged or in doubt.
func (c *crashClient) load(ctx context.Context, prefix string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for n := 0; ctx.Err() == nil; {
		ids := make([]string, 1+rng.IntN(150))
		for i := range ids {
			ids[i] = fmt.Sprintf("%s-%06d", prefix, n)
			n++
		}
		c.mu.Lock()
		for _, id := range ids {
			c.sent[id] = true
		}
		c.mu.Unlock()
		err := c.post(context.Background(), ids) // not ctx: the kill, not the test, cuts it
		c.mu.Lock()
		if err == nil {
			for _, id := range ids {
				c.acked[id] = true
			}
		} else {
			c.doubt = append(c.doubt, ids)
		}
		c.mu.Unlock()
		if err != nil {
			return // the collector is gone
		}
	}
}

// resend delivers every batch in doubt to the restarted collector.
func (c *crashClient) resend() {
	c.mu.Lock()
	doubt := c.doubt
	c.doubt = nil
	c.mu.Unlock()
	for _, ids := range doubt {
		if err := c.post(context.Background(), ids); err != nil {
			c.t.Fatalf("resending %d events to the restarted collector: %v", len(ids), err)
		}
		c.mu.Lock()
		for _, id := range ids {
			c.acked[id] = true
		}
		c.mu.Unlock()
	}
}

func (c *crashClient) get(path string, out any) {
	c.t.Helper()
	req, _ := http.NewRequest("GET", c.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+c.read)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		c.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if s, ok := out.(*string); ok {
		*s = string(body)
		return
	}
	if err := json.Unmarshal(body, out); err != nil {
		c.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

func (c *crashClient) metric(name string) uint64 {
	var text string
	c.get("/metrics", &text)
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				c.t.Fatalf("metric %s: %q", name, line)
			}
			return uint64(n)
		}
	}
	c.t.Fatalf("no metric %s", name)
	return 0
}

// eachEvent pages through GET /v1/events for q (KQL, the last 24 h, oldest
// first) with the cursor of each answer, and calls fn with each hit's event
// decoded as an E (a struct of the fields the caller reads).
func eachEvent[E any](c *crashClient, q string, fn func(E)) {
	c.t.Helper()
	v := url.Values{"q": {q}, "limit": {"10000"}, "sort": {"asc"}, "from": {"24h"}}
	for {
		var res struct {
			Hits []struct {
				Event E `json:"event"`
			} `json:"hits"`
			Next string `json:"next"`
		}
		c.get("/v1/events?"+v.Encode(), &res)
		for _, h := range res.Hits {
			fn(h.Event)
		}
		if res.Next == "" {
			return
		}
		v.Set("cursor", res.Next)
	}
}

// search lists the loader events matching q (KQL), counting each event.id.
func (c *crashClient) search(q string) map[string]int {
	c.t.Helper()
	seen := map[string]int{}
	eachEvent(c, q, func(ev struct {
		Event struct{ ID string } `json:"event"`
	}) {
		seen[ev.Event.ID]++
	})
	return seen
}

// check waits for the index to catch up with the ledger, then lists the
// events of every loader not checked yet (they are final: their batches in
// doubt were just sent again), or of all loaders at the end: each
// acknowledged event.id is there, nothing that was never sent is, and
// duplicates are counted. Events checked in earlier rounds are sampled by
// id; the incremental verification between runs proves the ledger kept
// them.
func (c *crashClient) check(when string, rng *rand.Rand, all bool) {
	c.t.Helper()
	ledgerSize := c.metric("trailguard_ledger_records")
	deadline := time.Now().Add(60 * time.Second)
	for c.metric("trailguard_index_records") < ledgerSize {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: the index did not catch up with the ledger's %d records in 60 s", when, ledgerSize)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if all {
		c.checked, c.dups = 0, 0
	}
	for _, p := range c.prefixes[c.checked:] {
		seen := c.search("user.name:" + p + " and " + crashQuery)
		for id, n := range seen {
			if !c.sent[id] || !strings.HasPrefix(id, p+"-") {
				c.t.Fatalf("%s: event %s was never sent", when, id)
			}
			c.dups += n - 1
		}
		for id := range c.acked {
			if strings.HasPrefix(id, p+"-") && seen[id] == 0 {
				c.t.Fatalf("%s: acknowledged event %s is not found (%d events found of loader %s)", when, id, len(seen), p)
			}
		}
	}
	c.checked = len(c.prefixes)
	var acked []string
	for id := range c.acked {
		acked = append(acked, id)
	}
	for range min(10, len(acked)) {
		id := acked[rng.IntN(len(acked))]
		var one struct {
			Event struct {
				Event struct{ ID string } `json:"event"`
			} `json:"event"`
		}
		c.get("/v1/events/"+url.PathEscape(id), &one)
		if one.Event.Event.ID != id {
			c.t.Fatalf("%s: GET /v1/events/%s returned %+v", when, id, one)
		}
	}
}
