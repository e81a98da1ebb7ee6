package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/internal/hugeheap"
	"github.com/trailguard/trailguard/server"
)

func init() {
	register("serve", "run the collector: ingest, ledger, index, query API", func(args []string) int {
		return runServe(args, os.Stdout, os.Stderr)
	})
	register("token", "manage API tokens: token create --role ingest|read|admin|bouncer --name NAME | token list | token revoke NAME", func(args []string) int {
		return runToken(args, os.Stdout, os.Stderr)
	})
}

// serveHugeHeap is how much of the collector's heap growth is advised for
// transparent huge pages (internal/hugeheap): about the heap's goal under
// load (~260 MB: the followers' 64 MiB tail and the spans it keeps, twice
// over at GOGC 100). Measured under bench/cmd/ingestload (1M events): page
// faults 9.6k–13k per run instead of 72k–76k, CPU per event ~0.9×
// (docs/performance.md, ingest, twenty-first session).
const serveHugeHeap = 256 << 20

// serveProcs is the collector's GOMAXPROCS: one more than Go's default
// (the CPUs it may use), unless GOMAXPROCS is set (ok false: leave it).
//
// Why: every durable ack waits for the ledger's syncer, which spends most
// of its time in fdatasync, and the sequencer, in write(2). Back from the
// system call with every P busy preparing events, indexing or compressing
// segments, such a goroutine waits in the global run queue until a P
// looks there (up to the 10 ms preemption slice): in an execution trace of
// ingest on 2 cores the syncer waited for a P 7.6 ms at p90 after its
// syncs, the sequencer 5.2 ms, and at times all eight requests in flight
// waited on the ack while cores sat idle. With one P more, the kernel,
// which wakes a thread back from I/O at once, runs them: 2.2 and 0.7 ms.
func serveProcs(env string, def int) (int, bool) {
	if env != "" {
		return 0, false
	}
	return def + 1, true
}

func runServe(args []string, stdout, stderr io.Writer) int {
	// SIGTERM and SIGINT are caught before anything else: one that arrives
	// while the ledger is opened and recovered, the index caught up,
	// "collector started" recorded, or the banner printed must end in the
	// clean stop (Serve, given a context already done, shuts down at
	// once), not kill the process mid-append (a torn tail, records left
	// without a checkpoint, no stop message).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal kills at once
	if n, ok := serveProcs(os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0)); ok {
		runtime.GOMAXPROCS(n)
	}
	hugeheap.Advise(serveHugeHeap)
	cfg, err := server.LoadConfig(args, os.Environ())
	if errors.Is(err, flag.ErrHelp) {
		server.Usage(stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "trailguard serve:", err)
		return 2
	}
	if err := checkTLSFiles(cfg.TLSCert, cfg.TLSKey); err != nil {
		fmt.Fprintln(stderr, "trailguard serve:", err)
		return 2
	}
	for _, w := range server.MistypedEnv(os.Environ()) {
		fmt.Fprintln(stderr, "trailguard serve: warning:", w)
	}
	// Listen first: a port in use must not leave behind a data directory
	// and keys that the user never meant to create there.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "trailguard serve: cannot listen on %s: %v (choose another with --listen)\n", cfg.Listen, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	srv, err := server.New(cfg, log)
	if err != nil {
		ln.Close()
		fmt.Fprintln(stderr, "trailguard serve:", inUse(err, cfg.DataDir))
		return 1
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	fmt.Fprintf(stdout, "trailguard collector on %s://%s\n  data:         %s\n  signer key:   %s\n  verifier key: %s\n  web UI:       %s://%s/ui/ (sign in with a token of role read or admin)\n",
		scheme, ln.Addr(), absPath(cfg.DataDir), absPath(srv.SignerKeyPath), absPath(srv.VerifierKeyPath), scheme, ln.Addr())
	if len(srv.Tokens().List()) == 0 {
		fmt.Fprintf(stdout, "  no API tokens yet: trailguard token create --data %s --role ingest --name shipper-1\n", cfg.DataDir)
	}
	fmt.Fprintf(stdout, "  stop:         Ctrl-C or SIGTERM to pid %d (writes a final signed checkpoint)\n", os.Getpid())
	defer exitWatchdog(ctx, cfg.ShutdownTimeout, stderr, "trailguard serve")()
	// Serve returns within shutdown_timeout of the signal (by 90 % of it),
	// whatever state the disk is in or a follower is in; the final
	// checkpoint is claimed only when written.
	err = srv.Serve(ctx, ln)
	switch {
	case ctx.Err() == nil:
		fmt.Fprintln(stderr, "trailguard serve:", err)
		return 1
	case errors.Is(err, server.ErrFinalCheckpoint):
		fmt.Fprintln(stderr, "trailguard collector stopped; final checkpoint NOT written (the next start signs the records left uncovered):", err)
		return 1
	case err != nil:
		fmt.Fprintln(stderr, "trailguard collector stopped with errors; final checkpoint written:", err)
		return 1
	}
	fmt.Fprintln(stdout, "trailguard collector stopped; final checkpoint written")
	return 0
}

// checkTLSFiles loads the certificate and key the listener will serve
// with, so that a missing, unreadable or mismatched file is reported, with
// the settings to change, before anything starts or is created (the
// listener would only find out after the start banner).
func checkTLSFiles(cert, key string) error {
	if cert == "" && key == "" {
		return nil
	}
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		return fmt.Errorf("--tls-cert %s, --tls-key %s (tls_cert, tls_key): %v: give a readable PEM certificate and its private key, or neither to serve plain HTTP", cert, key, err)
	}
	return nil
}

// exitWatchdog ends the process shutdown_timeout after ctx ends (the stop
// signal), should the shutdown, which plans to be over by 90 % of it, still
// not be: shutdown_timeout is a promise to the service manager, which
// would kill the process later and less cleanly. The next start recovers
// as after a crash. The returned function disarms it.
func exitWatchdog(ctx context.Context, budget time.Duration, stderr io.Writer, what string) (disarm func()) {
	return watchdog(ctx, budget, stderr, what, os.Exit)
}

func watchdog(ctx context.Context, budget time.Duration, stderr io.Writer, what string, exit func(int)) (disarm func()) {
	var mu sync.Mutex
	var timer *time.Timer
	disarmed := false
	stopAfter := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if disarmed {
			return
		}
		timer = time.AfterFunc(budget, func() {
			fmt.Fprintf(stderr, "%s: shutdown_timeout %v passed since the stop signal; exiting now (the next start recovers as after a crash)\n", what, budget)
			exit(1)
		})
	})
	return func() {
		stopAfter()
		mu.Lock()
		defer mu.Unlock()
		disarmed = true
		if timer != nil {
			timer.Stop()
		}
	}
}

const tokenSynopsis = `usage: trailguard token create --role ingest|read|admin|bouncer --name NAME [--data DIR] [--quiet] [--init]
       trailguard token list [--data DIR]
       trailguard token revoke NAME [--data DIR]

Manages the collector's API tokens, stored hashed in DIR/tokens.json; a
running collector picks up changes within a second. create prints the new
token alone on standard output (so INGEST=$(trailguard token create …)
captures it) and a note on standard error; the token is shown only once.
Roles: ingest may only submit events, read may query, admin may do both
and manage tokens, bouncer may only read block decisions (X-Api-Key).`

func runToken(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		w, code := stderr, 2
		if len(args) > 0 {
			w, code = stdout, 0
		}
		fmt.Fprintln(w, tokenSynopsis)
		return code
	}
	sub := args[0]
	fs := newFlags("token "+sub, tokenSynopsis, stdout, stderr)
	dir := fs.dataFlag("the collector's data directory `DIR`, as given to trailguard serve (env TRAILGUARD_DATA)")
	var role, name *string
	var quiet, initDir *bool
	switch sub {
	case "create":
		fs.synopsis = "usage: trailguard token create --role ingest|read|admin|bouncer --name NAME [--data DIR] [--quiet] [--init]\n\nCreates a token and prints it once, alone on standard output; a note follows on standard error."
		role = fs.String("role", "", "`ROLE`: ingest (submit events), read (query), admin (everything) or bouncer (read block decisions)")
		name = fs.String("name", "", "a unique `NAME` saying who or what uses the token, e.g. shipper-1")
		quiet = fs.Bool("quiet", false, "print only the token, without the note on standard error")
		initDir = fs.Bool("init", false, "create the data directory if it does not exist yet (before the first serve)")
	case "list":
		fs.synopsis = "usage: trailguard token list [--data DIR]\n\nLists tokens: id, name, role, creation time, state."
	case "revoke":
		fs.synopsis = "usage: trailguard token revoke NAME [--data DIR]\n\nRevokes the token with this name or id; it stops working at once."
	default:
		fmt.Fprintf(stderr, "trailguard token: unknown subcommand %q\n\n%s\n", sub, tokenSynopsis)
		return 2
	}
	pos, code, ok := fs.parse(args[1:])
	if !ok {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "trailguard token:", err)
		return 1
	}
	if sub == "create" {
		switch {
		case *role == "":
			return fs.missing("--role (ingest for a shipper, read for an analyst, admin, bouncer for a gateway reading block decisions)")
		case *name == "":
			return fs.missing("--name NAME (who or what will use the token, e.g. shipper-1)")
		case len(pos) > 0:
			fmt.Fprintf(stderr, "trailguard token create: unexpected argument %q\n", pos[0])
			return 2
		}
		if _, err := access.ParseRole(*role); err != nil {
			fmt.Fprintln(stderr, "trailguard token:", err)
			return 2
		}
		if *initDir {
			if err := os.MkdirAll(*dir, 0o700); err != nil {
				return fail(err)
			}
		}
	}
	if err := requireDataDir(*dir); err != nil {
		if sub == "create" {
			return fail(fmt.Errorf("%w, or pass --init to create it", err))
		}
		return fail(err)
	}
	store, err := access.Open(filepath.Join(*dir, "tokens.json"))
	if err != nil {
		return fail(err)
	}
	switch sub {
	case "create":
		r, _ := access.ParseRole(*role)
		tok, secret, err := store.Create(*name, r)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintln(stdout, secret)
		if !*quiet {
			fmt.Fprintf(stderr, "# token %q (role %s, id %s) for the collector in %s: shown once, store it now.\n"+
				"# Send it as Authorization: Bearer <token> (shippers: ApiKey, or Basic with the token as password).\n",
				tok.Name, tok.Role, tok.ID, *dir)
		}
	case "revoke":
		if len(pos) != 1 {
			return fs.missing("the NAME (or id) of the token to revoke")
		}
		tok, err := store.Revoke(pos[0])
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "revoked %q (%s)\n", tok.Name, tok.ID)
	case "list":
		if len(pos) > 0 {
			fmt.Fprintf(stderr, "trailguard token list: unexpected argument %q\n", pos[0])
			return 2
		}
		tokens := store.List()
		if len(tokens) == 0 {
			// Said aside, so that a script reading the list gets none.
			fmt.Fprintf(stderr, "trailguard token list: no tokens in %s yet: trailguard token create --data %s --role ingest|read|admin|bouncer --name NAME\n",
				filepath.Join(*dir, "tokens.json"), *dir)
		}
		for _, t := range tokens {
			state := "active"
			if t.Revoked != nil {
				state = "revoked " + t.Revoked.Format("2006-01-02")
			}
			fmt.Fprintf(stdout, "%-10s %-24s %-7s %s  %s\n", t.ID, t.Name, t.Role, t.Created.Format("2006-01-02 15:04"), state)
		}
	}
	return 0
}
