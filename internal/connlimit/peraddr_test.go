package connlimit

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

// dialFrom connects to addr from the loopback address src (all of
// 127.0.0.0/8 is loopback on Linux: several client addresses on one host).
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	// The kernel completes the handshake before Accept, so a dial ends at
	// once; the bound only has to outlast a goroutine descheduled on a
	// loaded machine (1 s timed out at load 20).
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closed c: a read returns
// EOF or a reset, where an open connection's read times out.
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// TestPerAddressCap: one address opening idle connections holds at most
// its unvouched cap of a Limiter's slots; its further connections are
// closed at once (counted in Refused) and another address is still
// accepted. Vouch moves a connection to the higher cap; closing frees
// the address's count; an exempt address is not capped. Without the cap
// the first address took all 8 slots and the other waited.
func TestPerAddressCap(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := New(8, nil, "client connections").PerAddress(3, 2, []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")})
	if total, unv := lim.PerAddressCaps(); total != 3 || unv != 2 {
		t.Fatalf("caps %d, %d; want 3, 2", total, unv)
	}
	ln := lim.Listener(inner)
	defer ln.Close()
	accepted := make(chan net.Conn, 32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	addr := inner.Addr().String()
	next := func(what string) net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: not accepted", what)
			return nil
		}
	}
	// 127.0.0.2: two without a token, the third closed at once.
	a1, a2 := dialFrom(t, "127.0.0.2", addr), dialFrom(t, "127.0.0.2", addr)
	s1, _ := next("first of 127.0.0.2"), next("second of 127.0.0.2")
	a3 := dialFrom(t, "127.0.0.2", addr)
	if !closedByServer(a3) {
		t.Fatal("a third connection without a token from one address was kept")
	}
	if lim.Refused() != 1 {
		t.Fatalf("Refused %d, want 1", lim.Refused())
	}
	for _, c := range []net.Conn{a1, a2} {
		if closedByServer(c) {
			t.Fatal("an admitted connection was closed")
		}
	}
	// Another address is accepted.
	dialFrom(t, "127.0.0.3", addr)
	next("127.0.0.3")
	// Vouched for, s1 no longer counts as without a token: one more fits
	// (three in all), then the total cap holds even once vouched.
	Vouch(ConnContext(context.Background(), s1))
	dialFrom(t, "127.0.0.2", addr)
	s3 := next("third of 127.0.0.2, one vouched for")
	Vouch(ConnContext(context.Background(), s3))
	if c := dialFrom(t, "127.0.0.2", addr); !closedByServer(c) {
		t.Fatal("a fourth connection from one address was kept")
	}
	// Closing frees the address's count.
	s1.Close()
	s1.Close() // a second Close frees nothing more
	dialFrom(t, "127.0.0.2", addr)
	next("after a close")
	// Exempt: not capped (four more fill the 8 slots).
	for i := range 4 {
		dialFrom(t, "127.0.0.9", addr)
		next("exempt " + string(rune('0'+i)))
	}
	if got := lim.Open(); got != 8 {
		t.Errorf("Open %d, want 8", got)
	}
}

// TestAddrKey: IPv4 and IPv4-mapped count as one address, IPv6 by /64.
func TestAddrKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1:80", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::"},
		{"[2001:db8:1:2:ffff::1%eth0]:443", "2001:db8:1:2::"},
	} {
		ap := netip.MustParseAddrPort(tc.in)
		got, ok := addrKey(net.TCPAddrFromAddrPort(ap))
		if !ok || got.String() != tc.want {
			t.Errorf("addrKey(%s) = %v, %v; want %s", tc.in, got, ok, tc.want)
		}
	}
	if l := New(10, nil, "x").PerAddress(1000, 125, nil); l.perAddr != 5 || l.unvouched != 5 {
		t.Errorf("caps over half of Max: %d, %d; want 5, 5", l.perAddr, l.unvouched)
	}
}
