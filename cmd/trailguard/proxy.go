package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/trailguard/trailguard/proxy"
)

func init() {
	register("proxy", "run the gateway: audit any HTTP API without code changes, and block attackers", func(args []string) int {
		return runProxy(args, os.Stdout, os.Stderr)
	})
}

const proxySynopsis = `usage: trailguard proxy --upstream URL [--listen ADDR] [--data DIR]
                        [--collector URL --token TOKEN [--bouncer-key KEY]] [--config FILE]

A reverse proxy in front of any HTTP API that records every request, login,
refused authorisation and sensitive operation as trailguard's middleware
does (scrubbed, with correlation ids), and refuses blocked or rate-limited
clients without touching the API. Single node (no --collector), it keeps a
ledger and index in DIR and detects attacks itself; with --collector it ships
its events through a durable spool in DIR and enforces the collector's
decision stream. Routes, logins, sensitive operations and rate limits are
configured in the YAML file (see docs/proxy.md); flags override it.`

func runProxy(args []string, stdout, stderr io.Writer) int {
	// SIGTERM is caught before anything else (as in serve): one during
	// Open (a single node's ledger recovery, its "started" record) or
	// just after the address is announced ends in the clean shutdown
	// (Serve, given a context already done, shuts down at once).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal kills at once
	fs := newFlags("proxy", proxySynopsis, stdout, stderr)
	fs.examples = `trailguard proxy --listen 127.0.0.1:8080 --upstream http://127.0.0.1:9000     # single node, in ./trailguard-gateway
trailguard proxy --upstream http://127.0.0.1:9000 --data /var/lib/tg-proxy --collector https://collector:8600 --token "$INGEST_TOKEN" --bouncer-key "$BOUNCER_KEY"
trailguard proxy --config proxy.yml`
	cfgPath := fs.String("config", "", "YAML configuration `FILE` (routes, logins, sensitive operations, rate limits)")
	listen := fs.String("listen", "", "address `ADDR` to serve on (default 127.0.0.1:8080)")
	upstream := fs.String("upstream", "", "upstream `URL` for every request no configured route takes, e.g. http://127.0.0.1:9000")
	data := fs.gatewayDataFlag("data directory `DIR`: the ledger and index (single node) or the spool (with --collector); not the collector's (env " + gatewayDataEnv + "; TRAILGUARD_DATA is the collector's and not read)")
	collector := fs.String("collector", "", "collector base `URL` to ship events to and read block decisions from")
	token := fs.String("token", "", "ingest `TOKEN` for the collector (env TRAILGUARD_PROXY_TOKEN)")
	bouncer := fs.String("bouncer-key", "", "bouncer `KEY` (X-Api-Key) for the collector's decision stream (env TRAILGUARD_BOUNCER_KEY)")
	tlsCert := fs.String("tls-cert", "", "certificate `FILE` (PEM) to terminate TLS with")
	tlsKey := fs.String("tls-key", "", "private key `FILE` (PEM) of --tls-cert")
	service := fs.String("service", "", "`NAME` to record as service.name of every event (default trailguard-proxy)")
	trailDir := fs.String("trail-dir", "", "also write every event as JSON lines to `DIR`/trail.jsonl (rotated), for log shippers and fail2ban")
	api := fs.String("api", "", "single node: also serve the collector API (query, tail, decisions) on `ADDR`")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "trailguard proxy: unexpected argument %q\n", pos[0])
		return 2
	}
	// A mistake is said in the terms it was made in: a flag's by the
	// flag, a file's by the file and the key. Before, both came through
	// proxy.Config.Validate as "trailguard proxy: proxy: config:
	// routes[0] (default): …", a route the user never wrote.
	if *upstream != "" {
		if err := proxy.CheckUpstream(*upstream); err != nil {
			return fs.invalid("upstream", *upstream, err.Error())
		}
	}
	if *collector != "" {
		if err := proxy.CheckCollectorURL(*collector); err != nil {
			return fs.invalid("collector", *collector, err.Error())
		}
	}
	var cfg proxy.Config
	if *cfgPath != "" {
		data, err := os.ReadFile(*cfgPath)
		if err != nil {
			var pe *iofs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is said once, here
			}
			fmt.Fprintf(stderr, "trailguard proxy: --config %s: %v\n", *cfgPath, err)
			return 2
		}
		if cfg, err = proxy.ParseConfig(data); err != nil {
			fmt.Fprintf(stderr, "trailguard proxy: %s: %v\n", *cfgPath, err)
			return 2
		}
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.Listen, *listen)
	set(&cfg.Collector.URL, *collector)
	set(&cfg.Collector.Token, os.Getenv("TRAILGUARD_PROXY_TOKEN"))
	set(&cfg.Collector.Token, *token)
	set(&cfg.Collector.BouncerKey, os.Getenv("TRAILGUARD_BOUNCER_KEY"))
	set(&cfg.Collector.BouncerKey, *bouncer)
	set(&cfg.TLSCert, *tlsCert)
	set(&cfg.TLSKey, *tlsKey)
	set(&cfg.ServiceName, *service)
	set(&cfg.API, *api)
	set(&cfg.TrailDir, *trailDir)
	// Without a --config file the collector came from --collector: its
	// token is asked for as it can be given, by the flag or the variable,
	// not by the YAML key (collector.token) the user never wrote.
	if *cfgPath == "" && cfg.Collector.URL != "" && cfg.Collector.Token == "" {
		fmt.Fprintln(stderr, "trailguard proxy: --collector needs --token TOKEN (or TRAILGUARD_PROXY_TOKEN, or collector.token in --config FILE): an ingest token of that collector (trailguard token create --role ingest --name gateway-1 there)")
		return 2
	}
	named := cfg.DataDir != "" || fs.isSet("data", "data-dir") || os.Getenv(gatewayDataEnv) != ""
	if cfg.DataDir == "" || fs.isSet("data", "data-dir") || os.Getenv(gatewayDataEnv) != "" {
		cfg.DataDir = *data
	}
	if !named {
		if err := collectorsTrail(); err != nil {
			fmt.Fprintln(stderr, "trailguard proxy:", err)
			return 2
		}
		if note := collectorsVariable(cfg.DataDir); note != "" {
			fmt.Fprintln(stderr, "trailguard proxy:", note)
		}
	}
	if *upstream != "" {
		cfg.Routes = append(cfg.Routes, proxy.Route{Name: "default", Upstream: *upstream})
	}
	if len(cfg.Routes) == 0 {
		return fs.missing("--upstream URL (or routes: in --config FILE)")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8080"
	}
	if (*tlsCert != "" || *tlsKey != "") && (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		fmt.Fprintln(stderr, "trailguard proxy: --tls-cert and --tls-key (tls_cert, tls_key) go together: give both, or neither to serve plain HTTP")
		return 2
	}
	if errs := cfg.Problems(); len(errs) > 0 {
		// What the flags set was checked above: what is left is the
		// file's, or a setting it lacks.
		where := "trailguard proxy: "
		if *cfgPath != "" {
			where += *cfgPath + ": "
		}
		for _, err := range errs {
			fmt.Fprintln(stderr, where+err.Error())
		}
		return 2
	}
	if err := checkTLSFiles(cfg.TLSCert, cfg.TLSKey); err != nil {
		fmt.Fprintln(stderr, "trailguard proxy:", err)
		return 2
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "trailguard proxy: cannot listen on %s: %v (choose another with --listen)\n", cfg.Listen, err)
		return 1
	}
	var apiLn net.Listener
	if cfg.API != "" {
		if cfg.Collector.URL != "" {
			ln.Close()
			fmt.Fprintln(stderr, "trailguard proxy: --api serves a single node's own data; with --collector query the collector")
			return 2
		}
		if apiLn, err = net.Listen("tcp", cfg.API); err != nil {
			ln.Close()
			fmt.Fprintf(stderr, "trailguard proxy: cannot listen on %s: %v\n", cfg.API, err)
			return 1
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	g, err := proxy.Open(cfg, log)
	if err != nil {
		ln.Close()
		if apiLn != nil {
			apiLn.Close()
		}
		fmt.Fprintln(stderr, "trailguard proxy:", ownPrefix("proxy", inUse(err, cfg.DataDir)))
		return 1
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	routes := "routes"
	if len(cfg.Routes) == 1 {
		routes = "route"
	}
	fmt.Fprintf(stdout, "trailguard proxy on %s://%s (%d %s)\n", scheme, ln.Addr(), len(cfg.Routes), routes)
	for _, r := range cfg.Routes {
		host := r.Host
		if host == "" {
			host = "*"
		}
		path := r.Path
		if path == "" {
			path = "/"
		}
		fmt.Fprintf(stdout, "  %s%s -> %s\n", host, path, r.Upstream)
	}
	printProxyStart(stdout, cfg, g.Collector() != nil, apiLn)
	defer exitWatchdog(ctx, g.ShutdownTimeout(), stderr, "trailguard proxy")()
	if err := g.Serve(ctx, ln, apiLn); err != nil {
		fmt.Fprintln(stderr, "trailguard proxy:", ownPrefix("proxy", err))
		return 1
	}
	fmt.Fprintln(stdout, "trailguard proxy stopped")
	return 0
}

// printProxyStart tells the operator, after the routes, where this
// gateway's data goes, where to look at it and how to stop it: before,
// the trail file (--trail-dir) went unmentioned and the data directory
// was shown as given, relative to a directory the reader may not know.
func printProxyStart(w io.Writer, cfg proxy.Config, single bool, apiLn net.Listener) {
	data := absPath(cfg.DataDir)
	if single {
		fmt.Fprintf(w, "  data:       %s (ledger, index and keys: single node)\n", data)
	} else {
		fmt.Fprintf(w, "  data:       shipped to %s, spooled in %s\n", cfg.Collector.URL, filepath.Join(data, "spool"))
	}
	if cfg.TrailDir != "" {
		fmt.Fprintf(w, "  trail file: %s (JSON lines, rotated)\n", filepath.Join(absPath(cfg.TrailDir), "trail.jsonl"))
	}
	if !single && cfg.Collector.BouncerKey == "" {
		fmt.Fprintf(w, "  blocks:     none: without --bouncer-key KEY (a bouncer token: trailguard token create --role bouncer on the collector) the collector's block decisions are not read\n")
	}
	switch {
	case !single:
		fmt.Fprintf(w, "  look:       the collector's API and web UI at %s\n", cfg.Collector.URL)
	case apiLn != nil:
		fmt.Fprintf(w, "  look:       collector API on http://%s (tokens: trailguard token create --data %s)\n", apiLn.Addr(), cfg.DataDir)
	default:
		fmt.Fprintf(w, "  look:       --api ADDR serves the collector API while it runs; offline: trailguard verify --data %s\n", cfg.DataDir)
	}
	fmt.Fprintf(w, "  stop:       Ctrl-C or SIGTERM to pid %d (drains requests; the trail is flushed, signed or spooled)\n", os.Getpid())
}

// ownPrefix is err's text without the package prefix "pkg: " that the
// command's own "trailguard pkg:" already says ("trailguard proxy: proxy:
// server: …").
func ownPrefix(pkg string, err error) string {
	return strings.TrimPrefix(err.Error(), pkg+": ")
}

// absPath is p made absolute for a start message, p itself if it cannot be.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
