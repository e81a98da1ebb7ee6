// Command trailproxy runs the gateway's own code (proxy.New, the same
// handler and http.Server as `trailguard proxy`) with its events going only
// to a JSON-lines trail file (package sink, fsync per batch), or discarded:
// the configuration that does what nginx with a JSON access log does, for
// bench/proxy.sh to compare like with like beside the full single node
// (ledger, index, detection).
//
//	go run ./cmd/trailproxy -listen 127.0.0.1:8080 -upstream http://127.0.0.1:9000 -trail DIR
//	go run ./cmd/trailproxy ... -discard          # events encoded, then dropped
//
// -pprof ADDR serves net/http/pprof there, for profiling under load.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"github.com/trailguard/trailguard/proxy"
	"github.com/trailguard/trailguard/sink"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	upstream := flag.String("upstream", "", "upstream URL")
	trail := flag.String("trail", "", "directory of the JSON-lines trail (DIR/trail.jsonl)")
	discard := flag.Bool("discard", false, "encode the events and drop them (no trail)")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address")
	http1 := flag.String("http1", proxy.HTTP1Lean, "server of the listener: lean (the gateway's front end) or net/http")
	flag.Parse()
	if *upstream == "" || (*trail == "") == !*discard {
		fmt.Fprintln(os.Stderr, "usage: trailproxy -upstream URL (-trail DIR | -discard) [-listen ADDR] [-pprof ADDR]")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var s sink.Sink = sink.NewWriter(io.Discard)
	if *trail != "" {
		f, err := sink.OpenFile(sink.FileOptions{Dir: *trail})
		if err != nil {
			fail(err)
		}
		s = f
	}
	cfg := proxy.Config{Listen: *listen, HTTP1: *http1, Routes: []proxy.Route{{Name: "default", Upstream: *upstream}}, Sink: s}
	p, err := proxy.New(cfg, log)
	if err != nil {
		fail(err)
	}
	if *pprofAddr != "" {
		go http.ListenAndServe(*pprofAddr, nil)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fail(err)
	}
	srv := proxy.NewPlainServer(p, cfg, log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fail(err)
	}
	if err := p.Close(); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "trailproxy:", err)
	os.Exit(1)
}
