//go:build unix

package testenv

import (
	"syscall"
	"time"
)

// CPUTime is the CPU time the process has used so far, on every thread
// (the garbage collector's included): on a shared machine, work per
// CPU-second is the figure that does not depend on the neighbours.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
