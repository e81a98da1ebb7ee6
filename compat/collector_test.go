package compat

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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

// collector is a real `trailguard serve` process on a loopback port.
type collector struct {
	url, bin, data string
	cmd            *exec.Cmd
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// trailguardBin builds the collector from the repository this module sits
// in, once per test binary.
func trailguardBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "trailguard-compat-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "trailguard")
		cmd := exec.Command("go", "build", "-o", builtBin, "./cmd/trailguard")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// startCollector runs `trailguard serve --data DIR --listen 127.0.0.1:0`
// and waits for the address it prints. It is stopped with SIGTERM (a clean
// stop) when the test ends.
func startCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{bin: trailguardBin(t), data: filepath.Join(t.TempDir(), "data")}
	c.cmd = exec.Command(c.bin, "serve", "--data", c.data, "--listen", "127.0.0.1:0")
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stderr = os.Stderr
	if err := testenv.StartChild(t, c.cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- c.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("collector exit: %v", err)
			}
		case <-time.After(20 * time.Second):
			c.cmd.Process.Kill()
			t.Error("collector did not stop within 20 s of SIGTERM")
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "trailguard collector on "); ok {
				found <- u
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case c.url = <-found:
	case <-time.After(30 * time.Second):
		t.Fatal("collector did not print its address within 30 s")
	}
	return c
}

// token creates an API token with the command line, as a user would.
func (c *collector) token(t *testing.T, role, name string) string {
	t.Helper()
	out, err := exec.Command(c.bin, "token", "create", "--data", c.data, "--role", role, "--name", name, "--quiet").Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// count asks the query API how many events of service.name svc the
// collector holds, waiting up to a deadline for the index to reach want
// (it trails the ledger by a batch delay). Only shipped events count
// (event.kind:event): the collector's detection may add alerts and block
// decisions about the same service.
func (c *collector) count(t *testing.T, readToken, svc string, want int64) int64 {
	t.Helper()
	q := url.Values{"top": {"service.name"}, "n": {"5"}, "from": {"1h"}, "q": {"service.name:" + svc + " and event.kind:event"}}
	var got int64
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequest("GET", c.url+"/v1/stats?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+readToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Top []struct {
				Value string
				Count int64
			}
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("stats: %d %s", resp.StatusCode, body)
		}
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err, string(body))
		}
		got = 0
		for _, e := range out.Top {
			if e.Value == svc {
				got = e.Count
			}
		}
		if got >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ecsEvent is one small ECS event of service svc with a unique event.id.
func ecsEvent(svc string, i int) []byte {
	return fmt.Appendf(nil, `{"@timestamp":%q,"event":{"id":"%s-%06d","kind":"event","category":["authentication"],"type":["start"],"action":"authn_login_fail","outcome":"failure","reason":"bad password"},"source":{"ip":"203.0.113.%d"},"user":{"name":"user%04d"},"http":{"response":{"status_code":401}},"url":{"path":"/api/login"},"service":{"name":%q}}`,
		time.Now().UTC().Format(time.RFC3339Nano), svc, i, i%250+1, i%1000, svc)
}
