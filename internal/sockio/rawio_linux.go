//go:build linux && !race

package sockio

import (
	"syscall"
	"unsafe"
)

// The socket calls (reads, writes and peeks of the gateway's client and
// upstream connections, and the collector's HTTP connections) are made
// without telling the scheduler: the sockets are non-blocking, so a call
// never waits, and a call that does not wait needs none of what entering a
// system call does for one that may (syscall.RawSyscall: "for syscalls
// that don't block"). What entering one costs here is the runtime's
// monitor (sysmon): when every P is idle it sleeps until woken, and any
// goroutine entering a system call wakes it and sets it back to polling
// every 20 µs, from which it backs off only after some 50 polls; and when
// the Ps are busy, a call that outlasts one of its polls has its P taken
// and handed to another thread, which sets it back to 20 µs just the same.
// At 2,000 requests a second the gateway is idle between requests, and
// each request entered a system call twice after an idle moment (its
// client's bytes, its upstream's answer): the monitor was woken about
// twice a request and polled ~2,700 times a second, 17–29 µs of CPU per
// request (perf stat and /proc, load 11–16). The disk's calls (the ledger,
// the index) still enter normally: they may block, and the P they hold is
// then handed to another thread. Race builds make the calls through the
// syscall package (rawio_sys.go).

// sysRead is read(2) on a non-blocking socket.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(r), e
}

// sysWrite is write(2) on a non-blocking socket.
func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(r), e
}

// sysPeek is recv(2) of one byte with MSG_PEEK|MSG_DONTWAIT.
func sysPeek(fd uintptr) (int, syscall.Errno) {
	var b [1]byte
	r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return int(r), e
}
