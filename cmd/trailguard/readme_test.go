package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// readmeBlock returns the first ```sh block after the heading in README.md.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q", heading)
	}
	s = s[i:]
	start := strings.Index(s, "\n```sh\n")
	if start < 0 {
		t.Fatalf("no ```sh block after %q", heading)
	}
	s = s[start+len("\n```sh\n"):]
	end := strings.Index(s, "\n```\n")
	if end < 0 {
		t.Fatalf("unterminated block after %q", heading)
	}
	return s[:end+1]
}

// collectorBlock is the README's "Run the collector" block as the tests
// run it in dir, where it puts the binary and the examples the block
// reads, and the environment to run it with. Only two things change: the build
// line (the test built the binary already) and the port (8600 may be
// taken: addr, testenv.FreeAddr's), in the commands and via
// TRAILGUARD_LISTEN.
func collectorBlock(t *testing.T, dir, addr string) (script string, env []string) {
	t.Helper()
	block := readmeBlock(t, "## Run the collector")
	const build = "go build -o trailguard ./cmd/trailguard"
	var lines []string
	builds := 0
	for _, l := range strings.Split(block, "\n") {
		if strings.HasPrefix(l, build) {
			builds++
			continue
		}
		lines = append(lines, l)
	}
	if builds != 1 {
		t.Fatalf("the block should build the binary exactly once with %q:\n%s", build, block)
	}
	script = strings.ReplaceAll(strings.Join(lines, "\n"), "127.0.0.1:8600", addr)
	if strings.Contains(script, "8600") {
		t.Fatalf("the block names port 8600 other than as 127.0.0.1:8600:\n%s", block)
	}

	bin := buildTrailguard(t)
	for _, c := range [][2]string{{bin, "trailguard"}, {filepath.Join("..", "..", "examples", "events.ndjson"), "examples/events.ndjson"}} {
		data, err := os.ReadFile(c[0])
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(filepath.Join(dir, c[1])), 0o755)
		if err := os.WriteFile(filepath.Join(dir, c[1]), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// serve's own address comes from the environment, as the README says
	// settings may.
	env = append(os.Environ(), "TRAILGUARD_DATA=", "TRAILGUARD_DATA_DIR=", "TRAILGUARD_LISTEN="+addr)
	return script, env
}

// scriptPrelude starts every README block the tests run. Descriptor 3 is
// the read end of a pipe whose write end only the test binary holds (see
// runScript): a background reader waits on it and, when it ends (the test
// binary has exited, a kill -9 included), kills the script's process
// group, the collector the block starts in the background with it. The
// shell itself dies with the test binary (testenv.StartChild's
// parent-death signal) but its children would not: an orphaned `trailguard
// serve` kept its port, its data directory and whatever it inherited. The
// EXIT trap stops the background jobs when the script ends by itself.
const scriptPrelude = `set -euo pipefail
{ read -r _ <&3 || true; kill -KILL 0; } &
exec 3<&-
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
`

// runScript runs script with bash in dir, after scriptPrelude, within ctx,
// and returns what it printed (stdout and stderr). Nothing it starts
// outlives the test binary, or the script's end (scriptPrelude).
func runScript(t *testing.T, ctx context.Context, bash, dir string, env []string, script string) (string, error) {
	t.Helper()
	tie, hold, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	cmd := exec.CommandContext(ctx, bash, "-c", scriptPrelude+script)
	cmd.Dir, cmd.Env = dir, env
	cmd.ExtraFiles = []*os.File{tie}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = testenv.StartChild(t, cmd)
	tie.Close()
	if err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	// Whatever the script left running, the reader kills now.
	hold.Close()
	return out.String(), err
}

// TestReadmeCollectorBlock runs the README's "Run the collector" block as a
// bash script, as pasted from the repository, against a freshly built
// binary on a free port (collectorBlock), and checks what each step
// answers.
func TestReadmeCollectorBlock(t *testing.T) {
	bash := testenv.Tool(t, "bash", "apt-get install bash")
	testenv.Tool(t, "curl", "apt-get install curl")
	// Run as a script, as a block pasted whole runs: each search follows
	// the acknowledged ingest within a millisecond while the index trails
	// the ledger, and the block's own wait_for=ledger must cover that
	// (before, this test waited for the index itself before each query,
	// and the block pasted whole found nothing). When serve could not
	// listen because another process took the port after FreeAddr, the
	// block runs again in a new directory on another port.
	var dir, script, out string
	var env []string
	testenv.OnFreeAddr(t, "the README's collector block", func(addr string) error {
		dir = t.TempDir()
		script, env = collectorBlock(t, dir, addr)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		var err error
		out, err = runScript(t, ctx, bash, dir, env, script)
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) || ctx.Err() != nil {
			return fmt.Errorf("running the block: %v (timed out: %v)\n%s", err, ctx.Err() != nil, out)
		}
		if err != nil && strings.Contains(out, "cannot listen on "+addr) && testenv.PortTakenIn(out) {
			return fmt.Errorf("serve: %w\n%s", testenv.ErrPortTaken, out)
		}
		if err != nil {
			return fmt.Errorf("the README block failed: %v\n--- script\n%s\n--- output\n%s", err, script, out)
		}
		return nil
	})

	must := []string{
		`{"accepted":8,"rejected":0`,                     // the ingest answer
		`{"value":"203.0.113.66","count":3}`,             // top sources of failed logins
		"OK: trailguard-data/ledger:",                    // verify
		"trailguard collector stopped; final checkpoint", // the clean stop
	}
	for _, m := range must {
		if !strings.Contains(out, m) {
			t.Errorf("output lacks %q\n%s", m, out)
		}
	}
	// The search: failures from outside 10.0.0.0/8, newest first.
	var search struct {
		Hits []struct {
			Event struct {
				Event struct{ ID string }
			}
		}
	}
	var statsSum int64
	stats := false
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, `{"hits":`):
			if err := json.Unmarshal([]byte(line), &search); err != nil {
				t.Fatal(err, line)
			}
		case strings.Contains(line, `"buckets":`):
			var st struct{ Buckets []struct{ Count int64 } }
			if err := json.Unmarshal([]byte(line), &st); err != nil {
				t.Fatal(err, line)
			}
			stats = true
			for _, b := range st.Buckets {
				statsSum += b.Count
			}
		}
	}
	var ids []string
	for _, h := range search.Hits {
		ids = append(ids, h.Event.Event.ID)
	}
	if got := strings.Join(ids, ","); got != "ex-0006,ex-0005,ex-0003,ex-0002,ex-0001" && !sameSet(ids, "ex-0001", "ex-0002", "ex-0003", "ex-0005", "ex-0006") {
		t.Errorf("search hits %v, want the five failures from outside 10.0.0.0/8\n%s", ids, out)
	}
	if !stats || statsSum != 4 {
		t.Errorf("stats of 401s: %d (found: %v), want 4\n%s", statsSum, stats, out)
	}

	// The "Compliance reports" block, pasted in the same directory after
	// this one, with the binary built above in place of go run.
	reports := strings.ReplaceAll(readmeBlock(t, "## Compliance reports"), "go run ./cmd/trailguard ", "./trailguard ")
	rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer rcancel()
	if out, err := runScript(t, rctx, bash, dir, env, reports); err != nil || !strings.Contains(out, "OK: every figure computed again") {
		t.Errorf("the README's compliance reports block failed: %v\n--- script\n%s\n--- output\n%s", err, reports, out)
	}

	// The "Detect attacks with Sigma rules" block, in the same directory:
	// the example rules check and pass their tests, and the replay of the
	// ledger above finds the sqlmap probe of examples/events.ndjson.
	if err := os.CopyFS(filepath.Join(dir, "examples", "rules"), os.DirFS(filepath.Join("..", "..", "examples", "rules"))); err != nil {
		t.Fatal(err)
	}
	detects := strings.ReplaceAll(readmeBlock(t, "## Detect attacks with Sigma rules"), "go run ./cmd/trailguard ", "./trailguard ")
	dctx, dcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer dcancel()
	out, err := runScript(t, dctx, bash, dir, env, detects)
	for _, want := range []string{" 0 failed\n", "cases, 0 failed", `"rule_name":"trailguard_web_path_traversal"`} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("the README's detect block: %v, output lacks %q\n--- script\n%s\n--- output\n%s", err, want, detects, out)
			break
		}
	}
}

func sameSet(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	m := map[string]bool{}
	for _, g := range got {
		m[g] = true
	}
	for _, w := range want {
		if !m[w] {
			return false
		}
	}
	return true
}

// TestReadmeDataDirsDistinct: following the README from the top, the
// gateway's single node and the collector must not share a data
// directory (the gateway's events silently ended up in the collector's
// ledger, its keys signing the collector's checkpoints).
func TestReadmeDataDirsDistinct(t *testing.T) {
	dataOf := func(heading string) string {
		block := readmeBlock(t, heading)
		f := strings.Fields(block)
		for i, w := range f {
			if w == "--data" && i+1 < len(f) {
				return filepath.Clean(f[i+1])
			}
		}
		t.Fatalf("no --data in the block after %q:\n%s", heading, block)
		return ""
	}
	gw, col := dataOf("## Put the gateway in front of any API"), dataOf("## Run the collector")
	if gw == col {
		t.Errorf("the README's gateway and collector both use --data %s: give the gateway its own directory", gw)
	}
}

// TestReadmeGatewayBlock runs the README's "Put the gateway in front of
// any API" block as pasted — the built binary for go run, free ports for
// 8080 and 9000 — in front of a real upstream, sends a request through
// it, stops it with SIGTERM and verifies the trail in the data directory
// the block names. Before, only the block's --data was checked
// (TestReadmeDataDirsDistinct): a flag renamed or a default changed would
// have left the README's one gateway command wrong.
func TestReadmeGatewayBlock(t *testing.T) {
	bash := testenv.Tool(t, "bash", "apt-get install bash")
	testenv.Tool(t, "curl", "apt-get install curl")
	block := readmeBlock(t, "## Put the gateway in front of any API")
	line, _, _ := strings.Cut(strings.TrimSpace(block), " #") // the line's comment would swallow what follows
	if strings.Count(block, "\n") != 1 || !strings.HasPrefix(line, "go run ./cmd/trailguard proxy ") ||
		!strings.Contains(line, "127.0.0.1:8080") || !strings.Contains(line, "http://127.0.0.1:9000") {
		t.Fatalf("the block is no longer the one command this test knows (go run ./cmd/trailguard proxy on 127.0.0.1:8080 to http://127.0.0.1:9000):\n%s", block)
	}
	var seen atomic.Pointer[string]
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		seen.Store(&id)
		io.WriteString(w, "hello from the API\n")
	}))
	defer upstream.Close()
	bin := buildTrailguard(t)
	self, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	testenv.OnFreeAddr(t, "the README's gateway block", func(addr string) error {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "trailguard"), self, 0o755); err != nil {
			t.Fatal(err)
		}
		gw := strings.NewReplacer("go run ./cmd/trailguard ", "./trailguard ", "127.0.0.1:8080", addr, "http://127.0.0.1:9000", upstream.URL).Replace(line)
		script := gw + " & GW=$!\n" +
			"for i in $(seq 100); do curl -sf -o /dev/null http://" + addr + "/ready && break; kill -0 $GW || break; sleep 0.2; done\n" +
			"curl -sf -D - http://" + addr + "/orders/7\n" +
			"kill $GW; wait $GW\n" +
			"./trailguard verify --data ./trailguard-gateway\n"
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		out, err = runScript(t, ctx, bash, dir, append(os.Environ(), "TRAILGUARD_DATA=", "TRAILGUARD_DATA_DIR="), script)
		if err != nil && strings.Contains(out, "cannot listen on "+addr) && testenv.PortTakenIn(out) {
			return fmt.Errorf("proxy: %w\n%s", testenv.ErrPortTaken, out)
		}
		if err != nil || ctx.Err() != nil {
			return fmt.Errorf("the README's gateway block: %v (timed out: %v)\n--- script\n%s\n--- output\n%s", err, ctx.Err() != nil, script, out)
		}
		return nil
	})
	id := seen.Load()
	if id == nil || *id == "" {
		t.Fatalf("the upstream saw no request with an X-Request-ID through the gateway\n%s", out)
	}
	for _, want := range []string{"hello from the API", "X-Request-Id: " + *id, "OK: trailguard-gateway/ledger: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q\n%s", want, out)
		}
	}
}
