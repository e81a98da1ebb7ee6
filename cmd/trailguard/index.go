package main

// trailguard reindex: rebuild the SQLite index from the ledger. The logic
// lives in package index; this parses flags and prints.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/trailguard/trailguard/index"
	"github.com/trailguard/trailguard/ledger"
)

func init() {
	register("reindex", "rebuild the search index from the ledger", func(args []string) int {
		return runReindex(args, os.Stdout, os.Stderr)
	})
}

func runReindex(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reindex", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("ledger", "", "the ledger `DIR`ectory (read only; a collector may keep appending)")
	file := fs.String("index", "", "the index `FILE` to replace (it must not be in use)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: trailguard reindex --ledger DIR --index FILE")
		fs.PrintDefaults()
	}
	pos, err := parseMixed(fs, args)
	if err != nil {
		return 2
	}
	if *dir == "" || *file == "" || len(pos) > 0 {
		fs.Usage()
		return 2
	}
	l, err := ledger.OpenReadOnly(*dir)
	if err != nil {
		fmt.Fprintln(stderr, "trailguard reindex:", err)
		return 1
	}
	defer l.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	st, err := index.Rebuild(ctx, *file, l)
	if err != nil {
		fmt.Fprintln(stderr, "trailguard reindex:", err)
		return 1
	}
	n := st.Next - st.First
	rate := float64(n) / st.Took.Seconds()
	fmt.Fprintf(stdout, "indexed %d records (ledger indices %d..%d) into %s in %v (%.0f records/s)\n",
		n, st.First, int64(st.Next)-1, *file, st.Took.Round(time.Millisecond), rate)
	return 0
}
