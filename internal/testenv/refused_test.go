package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// TestRefusedPort: until Listen the port refuses connections and cannot
// be bound by anyone else (net.Listen sets SO_REUSEADDR, as most servers
// do); after it, it accepts them.
func TestRefusedPort(t *testing.T) {
	t.Parallel()
	p := NewRefusedPort(t)
	for range 3 {
		c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("a connection to %s was accepted before Listen", p.Addr())
		}
		if runtime.GOOS != "windows" && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("a connection to %s before Listen: %v, want refused", p.Addr(), err)
		}
	}
	if runtime.GOOS == "linux" {
		if ln, err := net.Listen("tcp", p.Addr()); err == nil {
			ln.Close()
			t.Fatalf("another listener got the reserved port %s", p.Addr())
		}
	}
	ln := p.Listen(t)
	defer ln.Close()
	if ln.Addr().String() != p.Addr() {
		t.Fatalf("listening on %s, reserved %s", ln.Addr(), p.Addr())
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprint(c, "hello")
			c.Close()
		}
	}()
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("after Listen: %v", err)
	}
	defer c.Close()
	if b, err := io.ReadAll(c); err != nil || string(b) != "hello" {
		t.Fatalf("after Listen: %q, %v", b, err)
	}
}

// TestPortRelay: a Port relays to one server, refuses while stopped,
// relays to the next one at another address, and cuts the connections of
// a stopped relay.
func TestPortRelay(t *testing.T) {
	t.Parallel()
	p := NewPort(t)
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	get := func() (string, error) {
		resp, err := c.Get("http://" + p.Addr() + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	serve := func(name string) (addr string, stop func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, name) })}
		go srv.Serve(ln)
		return ln.Addr().String(), func() { srv.Close() }
	}
	for _, name := range []string{"first", "second"} {
		addr, stopServer := serve(name)
		stop := p.Relay(addr)
		for range 3 { // kept alive: one relayed connection
			if got, err := get(); err != nil || got != name {
				t.Fatalf("%s: %q, %v", name, got, err)
			}
		}
		stop()
		if got, err := get(); err == nil {
			t.Fatalf("%s: %q after the relay stopped", name, got)
		}
		stopServer()
	}
}
