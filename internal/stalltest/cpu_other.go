//go:build !linux

package stalltest

import "time"

// RunCPU calls f and waits until it returns or limit has passed, as Run
// without a Watch: where a thread's CPU time is not read (not Linux) the
// wall clock stands for it, which a loaded machine makes stricter. It
// says how long f took (so far, when ok is false; f is left running).
func RunCPU(f func(), limit time.Duration) (cpu time.Duration, ok bool) {
	done := make(chan time.Duration, 1)
	start := time.Now()
	go func() { f(); done <- time.Since(start) }()
	select {
	case d := <-done:
		return d, d <= limit
	case <-time.After(limit):
		return time.Since(start), false
	}
}

var processStart = time.Now()

// ProcessCPU stands for the CPU time this process has used so far by the
// time since it started, where it is not read (not Linux): stricter on a
// loaded machine.
func ProcessCPU() time.Duration { return time.Since(processStart) }
