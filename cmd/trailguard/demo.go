package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/trailguard/trailguard/demo"
)

func init() {
	register("demo", "run a sample API with simulated users and an attacker, and show its audit trail", func(args []string) int {
		return runDemo(args, os.Stdout, os.Stderr)
	})
}

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", `usage: trailguard demo [--data DIR] [--duration D]

Starts a sample shop API that records its audit trail with httpaudit and ships
it to an in-process collector, drives it with a few users and one attacker,
then prints what the attacker did and what the trail and the collector show.`, stdout, stderr)
	// Not the collector's data directory (the demo never writes into a real
	// one, so TRAILGUARD_DATA is not read): a fresh temporary one by default.
	dir := fs.String("data", "", "directory `DIR` for the demo's trail and collector (default: a new temporary directory)")
	fs.Var(aliasValue{dir}, "data-dir", "")
	fs.hidden["data-dir"] = true
	dur := fs.Duration("duration", 5*time.Second, "how long to drive traffic, a `DURATION` such as 5s")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "trailguard demo: unexpected argument %q\n", pos[0])
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fmt.Fprintln(stdout, "trailguard demo")
	sum, err := demo.Run(ctx, demo.Options{Dir: *dir, Duration: *dur, Log: stdout})
	if err != nil {
		fmt.Fprintln(stderr, "trailguard demo:", err)
		return 1
	}
	sum.Print(stdout)
	if len(sum.Leaked) > 0 {
		return 1
	}
	return 0
}
