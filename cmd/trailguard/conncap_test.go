//go:build linux

package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// TestProxyIdleConnectionsCannotStarveTheLedger: a single node whose file
// descriptors are limited (prlimit) is sent more idle connections than it
// has descriptors, by a client with nothing but network access. A client
// connected before keeps being served, the ledger keeps signing
// checkpoints (each opens its log), and after the attack the gateway
// stops cleanly with a ledger that verifies. Without a cap on connections
// the gateway accepted until none were left; the next checkpoint could
// not open its file and the ledger failed until restarted: every request
// after it refused (no event can be recorded), by anyone who can connect.
func TestProxyIdleConnectionsCannotStarveTheLedger(t *testing.T) {
	t.Parallel()
	const limit = 160
	bin := buildTrailguard(t)
	wrapped := filepath.Join(t.TempDir(), "trailguard-limited")
	prlimit := testenv.Tool(t, "prlimit", "apt-get install util-linux")
	script := fmt.Sprintf("#!/bin/sh\nexec '%s' --nofile=%d:%d -- '%s' \"$@\"\n", prlimit, limit, limit, bin)
	if err := os.WriteFile(wrapped, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ok":true}`)
	}))
	defer upstream.Close()
	data := filepath.Join(t.TempDir(), "data")
	p := startProxy(t, wrapped, "--upstream", upstream.URL, "--listen", "127.0.0.1:0", "--data", data)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	// (stderr is read once the process is gone.)
	fail := func(format string, args ...any) {
		t.Helper()
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf(format+"\n%s", append(args, p.stderr)...)
	}
	get := func(what string) {
		t.Helper()
		resp, err := client.Get(p.base + "/api/" + what)
		if err != nil {
			fail("%s: %v", what, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			fail("%s: %d %s", what, resp.StatusCode, body)
		}
	}
	get("before")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 2 * limit {
		// From eight addresses: one holds at most max_connections_per_address.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}, Timeout: time.Second}
		c, err := d.Dial("tcp", strings.TrimPrefix(p.base, "http://"))
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	// Checkpoints are signed every second while records arrive.
	for i := range 12 {
		get(fmt.Sprintf("during-%d", i))
		time.Sleep(200 * time.Millisecond)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	get("after")
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		fail("no exit 30 s after SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit status %d\n%s", code, p.stderr)
	}
	if out, err := exec.Command(bin, "verify", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("the ledger does not verify: %v\n%s", err, out)
	}
	if !strings.Contains(p.stderr.String(), "connection limit reached") {
		t.Errorf("no warning that the connection limit was reached:\n%s", p.stderr)
	}
}

// TestProxyH2StreamsCannotStarveTheLedger: one HTTP/2 (h2c) connection
// carries hundreds of requests at once, each of which the gateway
// forwarded on an upstream connection of its own: a client with nothing
// but network access and a slow page took every file descriptor of a
// single node (limited here with prlimit) with a handful of client
// connections, under the client connection cap, and the ledger failed
// as above. Upstream connections now count against the same budget:
// requests beyond wait (at most timeouts.dial) for one to free, then get
// 502; the ledger keeps working.
func TestProxyH2StreamsCannotStarveTheLedger(t *testing.T) {
	t.Parallel()
	const limit = 160
	bin := buildTrailguard(t)
	wrapped := filepath.Join(t.TempDir(), "trailguard-limited")
	prlimit := testenv.Tool(t, "prlimit", "apt-get install util-linux")
	script := fmt.Sprintf("#!/bin/sh\nexec '%s' --nofile=%d:%d -- '%s' \"$@\"\n", prlimit, limit, limit, bin)
	if err := os.WriteFile(wrapped, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(1500 * time.Millisecond)
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	defer upstream.Close()
	data := filepath.Join(t.TempDir(), "data")
	p := startProxy(t, wrapped, "--upstream", upstream.URL, "--listen", "127.0.0.1:0", "--data", data)
	fail := func(format string, args ...any) {
		t.Helper()
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf(format+"\n%s", append(args, p.stderr)...)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{Protocols: &protos}}
	defer h2.CloseIdleConnections()
	var wg sync.WaitGroup
	var answered, refused atomic.Int64
	for range 300 {
		wg.Go(func() {
			resp, err := h2.Get(p.base + "/slow")
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				answered.Add(1)
			} else {
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	h2.CloseIdleConnections()
	// A checkpoint a second: the ledger must still write them.
	time.Sleep(1200 * time.Millisecond)
	resp, err := http.Get(p.base + "/after")
	if err != nil {
		fail("after: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		fail("after: %d", resp.StatusCode)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		fail("no exit 30 s after SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit status %d (%d answered, %d refused)\n%s", code, answered.Load(), refused.Load(), p.stderr)
	}
	if out, err := exec.Command(bin, "verify", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("the ledger does not verify: %v\n%s", err, out)
	}
	if strings.Contains(p.stderr.String(), "too many open files") {
		t.Errorf("the gateway ran out of file descriptors (%d answered, %d refused):\n%s", answered.Load(), refused.Load(), p.stderr)
	}
	t.Logf("%d answered, %d refused", answered.Load(), refused.Load())
}
