//go:build linux

package ledger

import (
	"os"
	"runtime"
	"sync"
	"syscall"
	"unsafe"
)

// Direct writes through Linux AIO. A direct write blocks until the
// device has it (with O_DSYNC, flushed: p50 0.1–3 ms here; without, in the
// device's cache: ~45–65 µs), and a goroutine blocked in
// a system call holds its P until Go's monitor (sysmon) takes it back,
// which it notices by polling every 20 µs for as long as the call lasts
// and for some 50 polls after: at 2,000 requests a second the single
// node's ~100 direct writes a second were what kept the monitor polling
// once the gateway's own socket calls no longer woke it (48 Ps taken back
// a second; sysmon 9 µs of CPU per request). Submitted with io_submit (a
// few µs to tens: the request is queued), the write's completion is
// signalled on an eventfd that the runtime's poller watches: the
// sequencer parks as it does on a socket, nothing blocks, and the write
// has reached the device at completion as at the pwrite's return. Its
// flush goes the same way (aioFlusher below).
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

// Device flushes through AIO (IOCB_CMD_FDSYNC), several in flight. A
// direct write without O_DSYNC completes once the device has the data in
// its (volatile) cache; a flush submitted after that completion makes it
// durable. Flushes need not wait for each other: this device served 4
// O_DSYNC writes in flight at 4–7× the rate of one (8,000 against
// 1,100–1,900 a second, load 10), the host overlapping or merging them.
// So the sequencer submits a flush after each direct write and goes on
// writing the next batch (each write still waits for the previous one's
// completion: the block at their boundary is written by both, and the
// later write must reach the device after the earlier), and the syncer
// waits for the flushes in order, acknowledging each batch once every
// flush up to its own has completed.
const iocbCmdFdsync = 3

// aioFlusher is the flushes' AIO context: the sequencer submits, the
// syncer reaps (the kernel allows both at once on one context).
type aioFlusher struct {
	ctx  uintptr
	ev   *os.File // eventfd, non-blocking: read through the poller
	what string   // the files it flushes, for errors
	mu   sync.Mutex
	// cbs: the iocbs in flight, by ticket (kept reachable until reaped);
	// next: the next ticket; done: the tickets below it all completed
	// (syncer); early: completed above done; errs: their failures.
	cbs   map[uint64]*iocb
	next  uint64
	done  uint64
	early map[uint64]bool
	err   error
	evs   [flushDepthMax]ioEvent
}

// flushDepthMax bounds the flushes in flight (the context's size).
const flushDepthMax = 8

func newFlusher(what string) *aioFlusher {
	efd, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		return nil
	}
	a := &aioFlusher{ev: os.NewFile(efd, "aio-flush-eventfd"), what: what, cbs: map[uint64]*iocb{}, early: map[uint64]bool{}, next: 1, done: 1}
	if _, _, e := syscall.Syscall(syscall.SYS_IO_SETUP, flushDepthMax, uintptr(unsafe.Pointer(&a.ctx)), 0); e != 0 {
		a.ev.Close()
		return nil
	}
	return a
}

// close waits for the flushes in flight (io_destroy does) and releases
// the context.
func (a *aioFlusher) close() {
	syscall.Syscall(syscall.SYS_IO_DESTROY, a.ctx, 0, 0)
	a.ev.Close()
}

// submit starts a flush of f's data (fdatasync) and returns its ticket;
// ok is false if the kernel refused it (nothing started).
func (a *aioFlusher) submit(f *os.File) (ticket uint64, ok bool) {
	sc, err := f.SyscallConn()
	if err != nil {
		return 0, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.next
	cb := &iocb{data: t, opcode: iocbCmdFdsync, flags: iocbFlagResfd, resfd: uint32(a.ev.Fd())}
	var e syscall.Errno
	cerr := sc.Control(func(fd uintptr) {
		cb.fildes = uint32(fd)
		for {
			_, _, e = syscall.Syscall(syscall.SYS_IO_SUBMIT, a.ctx, 1, uintptr(unsafe.Pointer(&cb)))
			if e != syscall.EINTR {
				break
			}
		}
	})
	if cerr != nil || e != 0 {
		return 0, false
	}
	a.cbs[t] = cb
	a.next++
	return t, true
}

// wait returns once every flush up to ticket has completed (syncer only),
// with the first failure among them.
func (a *aioFlusher) wait(ticket uint64) error {
	var cnt [8]byte
	if h := flushWaitHook.Load(); h != nil {
		(*h)(ticket)
	}
	for {
		a.mu.Lock()
		for a.early[a.done] {
			delete(a.early, a.done)
			a.done++
		}
		done, err := a.done, a.err
		a.mu.Unlock()
		if done > ticket {
			return err
		}
		n, _, e := syscall.RawSyscall6(syscall.SYS_IO_GETEVENTS, a.ctx, 0, flushDepthMax, uintptr(unsafe.Pointer(&a.evs[0])), uintptr(unsafe.Pointer(&syscall.Timespec{})), 0)
		if e != 0 && e != syscall.EINTR {
			return &os.PathError{Op: "io_getevents", Path: "flush", Err: e}
		}
		if e == 0 && n > 0 {
			a.mu.Lock()
			for _, ev := range a.evs[:n] {
				delete(a.cbs, ev.data)
				a.early[ev.data] = true
				if ev.res < 0 && a.err == nil {
					a.err = &os.PathError{Op: "fdatasync", Path: a.what, Err: syscall.Errno(-ev.res)}
				}
			}
			a.mu.Unlock()
			continue
		}
		if _, err := a.ev.Read(cnt[:]); err != nil {
			return err
		}
	}
}
