package connlimit

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/stalltest"
)

// TestListenerCaps: a third connection is not accepted while two are
// open, is once one closes (a second Close frees nothing more), and
// Accept waiting for a slot returns when its listener is closed. The
// accepted connection still gives its raw socket (the gateway's lean
// front end reads it directly).
func TestListenerCaps(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := New(2, nil, "client connections")
	ln := lim.Listener(inner)
	accepted := make(chan net.Conn, 8)
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	first, second := <-accepted, <-accepted
	if _, ok := first.(syscall.Conn); !ok {
		t.Fatal("an accepted connection hides its raw socket")
	}
	if rc, err := first.(syscall.Conn).SyscallConn(); err != nil || rc == nil {
		t.Fatalf("SyscallConn: %v", err)
	}
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted with two open (cap 2)")
	case <-time.After(100 * time.Millisecond):
	}
	if lim.Open() != 2 || lim.Waits() == 0 {
		t.Fatalf("open %d, waits %d: want 2 open and a wait", lim.Open(), lim.Waits())
	}
	first.Close()
	first.Close() // frees nothing more
	third := <-accepted
	select {
	case <-accepted:
		t.Fatal("more accepted than closed")
	case <-time.After(50 * time.Millisecond):
	}
	if lim.Open() != 2 {
		t.Fatalf("open %d after a double close, want 2", lim.Open())
	}
	// A fourth waits for a slot; closing the listener ends the wait.
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond)
	ln.Close()
	select {
	case err := <-acceptErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Accept still waits for a slot after its listener was closed")
	}
	second.Close()
	third.Close()
	if lim.Open() != 0 {
		t.Fatalf("open %d after every close", lim.Open())
	}
}

// TestFit: the cap is lowered to fit the open-file limit with an eighth
// (at least 64) kept, perConn descriptors a connection.
func TestFit(t *testing.T) {
	limit := fileLimit()
	if limit == 0 {
		t.Skip("no open-file limit known here")
	}
	keep := max(limit/8, 64)
	for _, tc := range []struct{ want, perConn int }{{1 << 30, 1}, {1 << 30, 2}, {10, 1}} {
		n, got := Fit(tc.want, tc.perConn)
		if got != limit {
			t.Fatalf("limit %d, want %d", got, limit)
		}
		if uint64(n*tc.perConn)+keep > limit && n > 1 {
			t.Errorf("Fit(%d, %d) = %d: over the limit %d less %d kept", tc.want, tc.perConn, n, limit, keep)
		}
		if n > tc.want || (tc.want == 10 && n != 10 && limit > 200) {
			t.Errorf("Fit(%d, %d) = %d", tc.want, tc.perConn, n)
		}
	}
}

// TestDial: dials count against the cap with accepted connections; one
// past it calls full once and waits, and gets a slot when a connection
// closes, or ErrFull after its wait, or its context's error.
func TestDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	var d net.Dialer
	lim := New(1, nil, "upstream connections")
	fulls := 0
	full := func() { fulls++ }
	dial := func(ctx context.Context, wait time.Duration) (net.Conn, error) {
		return lim.Dial(ctx, wait, full, d.DialContext, "tcp", ln.Addr().String())
	}
	c1, err := dial(context.Background(), time.Second)
	if err != nil || fulls != 0 || lim.Crowded() {
		t.Fatalf("first dial: %v, full called %d times, crowded %v", err, fulls, lim.Crowded())
	}
	if _, err := dial(context.Background(), 50*time.Millisecond); !errors.Is(err, ErrFull) || fulls != 1 {
		t.Fatalf("dial past the cap: %v (full called %d times), want ErrFull after the wait", err, fulls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := dial(ctx, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("dial past the cap, cancelled: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		// Waits until c1 closes below: long, so that a stalled process
		// (a loaded machine stops it for seconds) does not end it first.
		c, err := dial(context.Background(), time.Minute)
		if err == nil {
			c.Close()
		}
		got <- err
	}()
	for !lim.Crowded() {
		time.Sleep(time.Millisecond)
	}
	// As many wait as the cap (1): the next fails at once, not after its
	// wait (10 s); the bound allows the longest stall of this process
	// seen meanwhile.
	watch := stalltest.Start(t)
	took, stalled, ok := stalltest.Run(func() { _, err = dial(context.Background(), 10*time.Second) }, watch, 5*time.Second)
	if !ok {
		t.Fatalf("dial with the cap's worth waiting: not done after %v (stalled up to %v), want ErrFull at once", took, stalled)
	}
	if !errors.Is(err, ErrFull) || took > 5*time.Second+stalled {
		t.Fatalf("dial with the cap's worth waiting: %v after %v (stalled up to %v), want ErrFull at once", err, took, stalled)
	}
	c1.Close()
	if err := <-got; err != nil {
		t.Fatalf("dial waiting when a connection closed: %v", err)
	}
	if lim.Open() != 0 || lim.Crowded() {
		t.Fatalf("open %d, crowded %v after every close", lim.Open(), lim.Crowded())
	}
}
