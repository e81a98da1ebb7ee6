//go:build !(linux && amd64)

package tick

// tsc is false: the counter is the monotonic clock.
const tsc = false

func rdtsc() int64 { panic("tick: no time-stamp counter") }
