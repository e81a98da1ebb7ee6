package testenv

import (
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// ThreadCPU runs f on one OS thread and returns the CPU time that thread
// used meanwhile: f's own work (and any garbage-collection assist it was
// charged), not the background collector's nor other goroutines' as
// CPUTime counts them. On a machine shared with other work it is the
// steadiest per-call figure. 0 where the clock is missing.
func ThreadCPU(f func()) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0 := threadClock()
	f()
	return threadClock() - t0
}

func threadClock() time.Duration {
	const clockThreadCPUTimeID = 3
	var ts syscall.Timespec
	if _, _, e := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}
