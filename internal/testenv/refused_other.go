//go:build !unix

package testenv

import (
	"net"
	"testing"
)

// newRefusedPort, without the socket calls of unix, closes a listener and
// listens on its port again in Listen: another process may take the port
// in between, which is the race the unix version has not.
func newRefusedPort(testing.TB) (*RefusedPort, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	return &RefusedPort{addr: addr, listen: func() (net.Listener, error) { return net.Listen("tcp", addr) }}, nil
}
