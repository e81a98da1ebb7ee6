package stalltest

import (
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// RunCPU calls f on a goroutine locked to an OS thread of its own and
// waits until f returns or that thread has used limit of CPU time, for
// bounding work that is the caller's alone (a match, a scan) on a machine
// that may be loaded: a process given a fraction of a core takes longer
// by the wall clock without stalling once (at load 14 on two cores, a
// 0.1 s match took 1-5 s, no stall over 0.3 s), but the CPU time f uses
// does not grow with the load, and work that is too slow uses too much
// of it whatever the load. It says how much CPU time f used (so far,
// when ok is false: f had not returned within limit; it is left running).
// Work f hands to other goroutines is not counted: bound it by
// ProcessCPU.
func RunCPU(f func(), limit time.Duration) (cpu time.Duration, ok bool) {
	type result struct {
		cpu time.Duration
		err error
	}
	tidc, done := make(chan int, 1), make(chan result, 1)
	go func() {
		// Never unlocked: the thread ends with the goroutine, so no
		// other goroutine is charged to it.
		runtime.LockOSThread()
		tidc <- syscall.Gettid()
		start, err := clockNow(clockThreadCPU)
		f()
		end, err2 := clockNow(clockThreadCPU)
		done <- result{end - start, firstErr(err, err2)}
	}()
	tid := <-tidc
	clock := threadClock(tid)
	start, err := clockNow(clock)
	if err != nil {
		// The thread may have ended already (f was quick).
		r := <-done
		checkClock(r.err)
		return r.cpu, r.cpu <= limit
	}
	for {
		select {
		case r := <-done:
			checkClock(r.err)
			return r.cpu, r.cpu <= limit
		case <-time.After(Tick):
		}
		now, err := clockNow(clock)
		if err != nil {
			continue // ended: done is about to be sent
		}
		if used := now - start; used > limit {
			return used, false
		}
	}
}

// ProcessCPU is the CPU time this process has used so far, all its
// threads, user and system: for bounding work spread over goroutines
// (a server's, a client's) by what it cost rather than by how long a
// loaded machine took to run it. Only meaningful when nothing else runs
// in the process meanwhile (a test that is not parallel).
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic("stalltest: getrusage: " + err.Error())
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockThreadCPU is CLOCK_THREAD_CPUTIME_ID, the calling thread's clock.
const clockThreadCPU = 3

// threadClock is the CPU-time clock of thread tid of this process, as
// glibc's pthread_getcpuclockid makes it (MAKE_THREAD_CPUCLOCK(tid,
// CPUCLOCK_SCHED) in the kernel's posix-timers.h).
func threadClock(tid int) int32 {
	return int32(^uint32(tid)<<3) | 6
}

func clockNow(clock int32) (time.Duration, error) {
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, uintptr(clock), uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0, e
	}
	return time.Duration(ts.Nano()), nil
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func checkClock(err error) {
	if err != nil {
		panic("stalltest: clock_gettime(CLOCK_THREAD_CPUTIME_ID): " + err.Error())
	}
}
