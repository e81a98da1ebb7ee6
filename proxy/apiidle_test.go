package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/stalltest"
)

// TestSingleNodeAPIClosesIdleConnections: the single node's API listener
// (--api: the collector's UI and read API) closes a kept-alive connection
// that sends nothing after its request within timeouts.idle, as the
// gateway's own listener and serve do (review, MEDIUM, network: it had no
// idle timeout, so anyone able to reach it, without a token, kept one
// file descriptor per connection for ever with one refused request each;
// the descriptors are the process's, which also opens the ledger's
// segments and the upstream connections).
func TestSingleNodeAPIClosesIdleConnections(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	cfg := Config{DataDir: t.TempDir(), Routes: []Route{{Upstream: up.URL}}}
	cfg.Timeouts.Idle = 300 * time.Millisecond
	g, err := Open(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	api, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(ctx, ln, api) }()
	defer func() { cancel(); <-errc }()

	watch := stalltest.Start(t)
	c, err := net.Dial("tcp", api.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	// The server's close, or our deadline. A stall of this process (one
	// of 3 s here fails a fixed bound) makes the close as late.
	rest, took, stalled, err := stalltest.ReadCut(c, br, watch, 5*time.Second)
	if err != nil || rest != "" || took > time.Second+cfg.Timeouts.Idle+stalled {
		t.Errorf("an idle API connection stayed open %v (stalled up to %v), got %q, %v; want it closed after about %v",
			took.Round(time.Millisecond), stalled.Round(time.Millisecond), rest, err, cfg.Timeouts.Idle)
	}
}

// TestSingleNodeAPIReachableWhenGatewayFull: a client that fills the
// gateway's connection cap (max_connections) with idle connections does
// not lock the operators out of the single node's API listener (the UI,
// reads, token administration): it has slots of its own (review, MEDIUM,
// network: the two listeners shared one cap, so a connection flood on the
// public port made the API wait too).
func TestSingleNodeAPIReachableWhenGatewayFull(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	cfg := Config{DataDir: t.TempDir(), Routes: []Route{{Upstream: up.URL}}, MaxConnections: 16}
	g, err := Open(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	api, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(ctx, ln, api) }()
	defer func() { cancel(); <-errc }()
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := range 2 * cfg.MaxConnections {
		// From four addresses: one holds at most max_connections_per_address.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%4))}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, c)
	}
	// The gateway's own listener is full: a request there, from another
	// address, waits (it is not closed: that address holds nothing).
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 7)}}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("the gateway answered past its cap of %d connections", cfg.MaxConnections)
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("a connection past the cap: %v, want it waiting", err)
	}
	// Several operators, a connection each.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 4 {
		resp, err := client.Get("http://" + api.Addr().String() + "/healthz")
		if err != nil {
			t.Fatalf("API connection %d, with the gateway's full: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("API /healthz: %d", resp.StatusCode)
		}
	}
}
