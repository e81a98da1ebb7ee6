//go:build unix

package testenv

import (
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
)

// newRefusedPort binds a TCP socket to 127.0.0.1:0 and does not listen:
// with no listener the kernel answers a connection with a reset. The
// socket has no SO_REUSEADDR, so no other socket can bind the port (two
// sockets share a port only if both set it), nor does the kernel hand
// the port out to another bind to port 0 or as a client's local port.
func newRefusedPort(t testing.TB) (*RefusedPort, error) {
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("bind: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		syscall.Close(fd)
		return nil, fmt.Errorf("getsockname: %T", sa)
	}
	var once sync.Once
	closeFD := func() { once.Do(func() { syscall.Close(fd) }) }
	t.Cleanup(closeFD)
	p := &RefusedPort{addr: fmt.Sprintf("127.0.0.1:%d", in4.Port)}
	p.listen = func() (net.Listener, error) {
		if err := syscall.Listen(fd, syscall.SOMAXCONN); err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		// FileListener listens on a duplicate: this descriptor closes, the
		// listener's stays.
		f := os.NewFile(uintptr(fd), "refused-port")
		defer once.Do(func() { f.Close() })
		return net.FileListener(f)
	}
	return p, nil
}
