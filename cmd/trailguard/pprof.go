//go:build pprof

package main

// Profiling for benchmarks only: a binary built with `-tags pprof` serves
// net/http/pprof on the loopback address in TRAILGUARD_PPROF (e.g.
// 127.0.0.1:6060). Release builds have no such listener.

import (
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"strconv"
)

func init() {
	addr := os.Getenv("TRAILGUARD_PPROF")
	if addr == "" {
		return
	}
	if host, _, err := net.SplitHostPort(addr); err != nil || !net.ParseIP(host).IsLoopback() {
		panic("TRAILGUARD_PPROF must be a loopback host:port")
	}
	// TRAILGUARD_PPROF_SYNC=N samples one in N mutex contentions and
	// blocking events of N ns or more (/debug/pprof/mutex, /block).
	if n, _ := strconv.Atoi(os.Getenv("TRAILGUARD_PPROF_SYNC")); n > 0 {
		runtime.SetMutexProfileFraction(n)
		runtime.SetBlockProfileRate(n)
	}
	go http.ListenAndServe(addr, nil)
}
