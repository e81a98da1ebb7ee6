//go:build linux

package ledger

import (
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

// Direct writes through Linux AIO. A direct write with O_DSYNC blocks
// until the device has it (p50 0.1–3 ms here), and a goroutine blocked in
// a system call holds its P until Go's monitor (sysmon) takes it back,
// which it notices by polling every 20 µs for as long as the call lasts
// and for some 50 polls after: at 2,000 requests a second the single
// node's ~100 direct writes a second were what kept the monitor polling
// once the gateway's own socket calls no longer woke it (48 Ps taken back
// a second; sysmon 9 µs of CPU per request). Submitted with io_submit (a
// few µs to tens: the request is queued, O_DSYNC's flush runs at its
// completion), the write's completion is signalled on an eventfd that the
// runtime's poller watches: the sequencer parks as it does on a socket,
// nothing blocks, and the write is as durable at completion as the
// pwrite's return was (the kernel completes an O_DSYNC direct write only
// after the data and the device's cache flush, or a FUA write).
//
// Where AIO is missing or refuses the file (io_setup or io_submit fails:
// ENOSYS, EAGAIN for the system's aio-max-nr, EINVAL), the write is made
// with pwrite as before, and AIO is not tried again for this ledger.

// iocb and ioEvent are the kernel's struct iocb and struct io_event
// (linux/aio_abi.h, little-endian layout).
type iocb struct {
	data    uint64
	key     uint32
	rwFlags uint32
	opcode  uint16
	reqprio int16
	fildes  uint32
	buf     uint64
	nbytes  uint64
	offset  int64
	_       uint64
	flags   uint32
	resfd   uint32
}

type ioEvent struct {
	data, obj uint64
	res, res2 int64
}

const (
	iocbCmdPwrite = 1
	iocbFlagResfd = 1 << 0
)

// aioFile is one AIO context with the eventfd its completions are
// signalled on. Used by the sequencer only, one write at a time.
type aioFile struct {
	ctx uintptr
	ev  *os.File // eventfd, non-blocking: read through the poller
	cb  iocb
	evs [1]ioEvent
}

// newAIO sets up a context for one write at a time, or returns nil.
func newAIO() *aioFile {
	efd, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		return nil
	}
	a := &aioFile{ev: os.NewFile(efd, "aio-eventfd")}
	if _, _, e := syscall.Syscall(syscall.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&a.ctx)), 0); e != 0 {
		a.ev.Close()
		return nil
	}
	return a
}

func (a *aioFile) close() {
	syscall.Syscall(syscall.SYS_IO_DESTROY, a.ctx, 0, 0)
	a.ev.Close()
}

// pwrite writes p at off of f, waiting for the completion in the poller.
// submitted is false if the kernel refused the request itself (nothing was
// written): the caller writes it another way.
func (a *aioFile) pwrite(f *os.File, p []byte, off int64) (submitted bool, err error) {
	sc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var e syscall.Errno
	cerr := sc.Control(func(fd uintptr) {
		a.cb = iocb{opcode: iocbCmdPwrite, fildes: uint32(fd), buf: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(p)))),
			nbytes: uint64(len(p)), offset: off, flags: iocbFlagResfd, resfd: uint32(a.ev.Fd())}
		cbp := &a.cb
		for {
			_, _, e = syscall.Syscall(syscall.SYS_IO_SUBMIT, a.ctx, 1, uintptr(unsafe.Pointer(&cbp)))
			if e != syscall.EINTR {
				break
			}
		}
	})
	if cerr != nil {
		return false, cerr
	}
	if e != 0 {
		return false, e
	}
	// Submitted: p stays in use until the completion, whatever happens.
	defer runtime.KeepAlive(p)
	var cnt [8]byte
	for {
		var zero syscall.Timespec
		n, _, e := syscall.RawSyscall6(syscall.SYS_IO_GETEVENTS, a.ctx, 0, 1, uintptr(unsafe.Pointer(&a.evs[0])),
			uintptr(unsafe.Pointer(&zero)), 0)
		if e == 0 && n == 1 {
			break
		}
		if e != 0 && e != syscall.EINTR {
			// Cannot happen with a valid context; p may still be
			// written: wait for it in the kernel before failing.
			syscall.Syscall6(syscall.SYS_IO_GETEVENTS, a.ctx, 1, 1, uintptr(unsafe.Pointer(&a.evs[0])), 0, 0)
			return true, &os.PathError{Op: "io_getevents", Path: f.Name(), Err: e}
		}
		if _, err := a.ev.Read(cnt[:]); err != nil {
			// The eventfd cannot fail to read; if it does, wait for the
			// completion in the kernel.
			syscall.Syscall6(syscall.SYS_IO_GETEVENTS, a.ctx, 1, 1, uintptr(unsafe.Pointer(&a.evs[0])), 0, 0)
			break
		}
	}
	res := a.evs[0].res
	switch {
	case res < 0:
		return true, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.Errno(-res)}
	case res != int64(len(p)):
		return true, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.EIO}
	}
	return true, nil
}
