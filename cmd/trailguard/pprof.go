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
)

func init() {
	addr := os.Getenv("TRAILGUARD_PPROF")
	if addr == "" {
		return
	}
	if host, _, err := net.SplitHostPort(addr); err != nil || !net.ParseIP(host).IsLoopback() {
		panic("TRAILGUARD_PPROF must be a loopback host:port")
	}
	go http.ListenAndServe(addr, nil)
}
