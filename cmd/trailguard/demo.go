package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/trailguard/trailguard/demo"
)

func init() {
	register("demo", "run a sample API with simulated users and an attacker, and show its audit trail", runDemo)
}

func runDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("data", "", "directory for the trail (default: a new temporary directory)")
	dur := fs.Duration("duration", 5*time.Second, "how long to drive traffic")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fmt.Println("trailguard demo")
	sum, err := demo.Run(ctx, demo.Options{Dir: *dir, Duration: *dur, Log: os.Stdout})
	if err != nil {
		fmt.Fprintln(os.Stderr, "trailguard:", err)
		return 1
	}
	sum.Print(os.Stdout)
	if len(sum.Leaked) > 0 {
		return 1
	}
	return 0
}
