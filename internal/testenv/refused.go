package testenv

import (
	"net"
	"testing"
)

// RefusedPort is a loopback TCP port the test holds without listening on
// it: a connection to it is refused, as at a port where nothing runs, yet
// no other process can take it (a port closed after net.Listen can be
// taken, and then answers as something else). Listen makes it a listener
// on the same socket, so that a server the test starts late gets the
// address its clients were given.
type RefusedPort struct {
	addr   string
	listen func() (net.Listener, error)
}

// NewRefusedPort reserves a refusing port on 127.0.0.1 until Listen or
// the test's end.
func NewRefusedPort(t testing.TB) *RefusedPort {
	t.Helper()
	p, err := newRefusedPort(t)
	if err != nil {
		t.Fatalf("reserving a loopback port: %v", err)
	}
	return p
}

// Addr is the port's address, host:port.
func (p *RefusedPort) Addr() string { return p.addr }

// URL is http:// and the port's address.
func (p *RefusedPort) URL() string { return "http://" + p.addr }

// Listen starts listening on the port; the listener is the caller's to
// close. Once only.
func (p *RefusedPort) Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := p.listen()
	if err != nil {
		t.Fatalf("listening on the reserved port %s: %v", p.addr, err)
	}
	return ln
}
