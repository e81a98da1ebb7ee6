//go:build (linux && race) || darwin || freebsd || netbsd || openbsd || dragonfly

package sockio

import "syscall"

// The socket calls through the syscall package, which tells the scheduler
// (see rawio_linux.go): elsewhere than Linux, and in race builds, whose
// detector takes a write to a socket and a read of it as synchronisation
// only through these calls' annotations (a test that sets a field and then
// sends a request through the gateway would be a race without them).

func sysRead(fd uintptr, p []byte) (int, syscall.Errno) { return errnoOf(syscall.Read(int(fd), p)) }

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) { return errnoOf(syscall.Write(int(fd), p)) }

func sysPeek(fd uintptr) (int, syscall.Errno) {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return errnoOf(n, err)
}

func errnoOf(n int, err error) (int, syscall.Errno) {
	if e, ok := err.(syscall.Errno); ok {
		return n, e
	}
	if err != nil {
		return n, syscall.EIO
	}
	return n, 0
}
