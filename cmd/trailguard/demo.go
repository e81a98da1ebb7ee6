package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/trailguard/trailguard/demo"
)

func init() {
	register("demo", "a sample API, gateway and collector in one process: attackers blocked, trail verified, PCI DSS report", func(args []string) int {
		return runDemo(args, os.Stdout, os.Stderr)
	})
}

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", `usage: trailguard demo [--data DIR] [--duration DURATION] [--keep-running]

Starts, in this process on free loopback ports, a collector, a gateway and a
sample shop API behind it (which records its own audit trail with httpaudit);
drives four users and three attackers (a brute force, a credential-stuffing
run and an injection probe) through the gateway; shows the alerts and the
blocks as they happen; then tells what each attacker did from the trail,
verifies the ledger and writes a PCI DSS report (PDF and signed JSON).`, stdout, stderr)
	// Not the collector's data directory (the demo never writes into a real
	// one, so TRAILGUARD_DATA is not read): a fresh temporary one by default.
	dir := fs.String("data", "", "new or empty directory `DIR` for the demo's trail, collector and report (default: a new temporary directory)")
	fs.Var(aliasValue{dir}, "data-dir", "")
	fs.hidden["data-dir"] = true
	dur := fs.Duration("duration", 3*time.Second, "how long the users' traffic goes on, a `DURATION` such as 5s (attackers go on until blocked)")
	keep := fs.Bool("keep-running", false, "keep the collector (web UI and API) up after the report, until Ctrl-C; the gateway and the shop stop with their traffic")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "trailguard demo: unexpected argument %q\n", pos[0])
		return 2
	}
	// A --data the demo cannot use is said alone: it was said after the
	// banner, from within the run.
	if *dir != "" {
		if err := demo.CheckDir(*dir); err != nil {
			fmt.Fprintln(stderr, "trailguard demo:", strings.TrimPrefix(err.Error(), "demo: "))
			return 1
		}
	}
	// SIGTERM too (kill, a terminal closing, a supervisor): without it the
	// demo died at once, its ledger not closed nor verified.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintln(stdout, "trailguard demo")
	opts := demo.Options{Dir: *dir, Duration: *dur, Log: stdout}
	if *keep {
		opts.KeepRunning = func(sum *demo.Summary, ui, token string) {
			sum.Print(stdout)
			fmt.Fprintf(stdout, "\nweb UI:    %s\n  sign in with this admin token: %s\n  the API:  curl -H 'Authorization: Bearer %s' %s/v1/alerts\n"+
				"  the collector keeps running until Ctrl-C (then its ledger is verified); the gateway and the shop stopped with their traffic\n",
				ui, token, token, strings.TrimSuffix(ui, "/ui/"))
			<-ctx.Done()
			fmt.Fprintln(stdout, "\nstopping")
		}
	}
	sum, err := demo.Run(context.WithoutCancel(ctx), opts)
	if err != nil {
		fmt.Fprintln(stderr, "trailguard demo:", strings.TrimPrefix(err.Error(), "demo: "))
		return 1
	}
	if !*keep {
		sum.Print(stdout)
	}
	sum.PrintLedger(stdout)
	if !*keep {
		fmt.Fprintln(stdout, "explore it in the web UI: go run ./cmd/trailguard demo --keep-running   (prints its address and a token to sign in with)")
	}
	if len(sum.Leaked) > 0 || sum.Verified == nil || !sum.Verified.OK() {
		return 1
	}
	return 0
}
