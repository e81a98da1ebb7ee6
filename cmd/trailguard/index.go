package main

// trailguard reindex: rebuild the SQLite index from the ledger. The logic
// lives in package index; this parses flags and prints.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
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
	fs := newFlags("reindex", `usage: trailguard reindex [--data DIR] [--ledger LEDGER] [--index FILE]

Rebuilds the search index from the ledger: DIR/ledger into DIR/index.db by
default. Stop the collector first: the index file is replaced.`, stdout, stderr)
	data := fs.dataFlag("the collector's data directory `DIR`: DIR/ledger and DIR/index.db (env TRAILGUARD_DATA)")
	dir := fs.String("ledger", "", "the ledger directory `LEDGER`, read only (default DIR/ledger)")
	file := fs.String("index", "", "the index `FILE` to replace (default DIR/index.db; refused while a collector has it open)")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "trailguard reindex: unexpected argument %q (the data directory is --data DIR)\n", pos[0])
		return 2
	}
	if *dir == "" || *file == "" {
		if err := requireDataDir(*data); err != nil {
			fmt.Fprintln(stderr, "trailguard reindex:", err)
			return 1
		}
	}
	if *dir == "" {
		*dir = filepath.Join(*data, "ledger")
		if !hasLedger(*dir) {
			fmt.Fprintf(stderr, "trailguard reindex: %s, or --ledger at a ledger directory\n", noLedgerIn(*dir))
			return 1
		}
	} else if !hasLedger(*dir) {
		fmt.Fprintf(stderr, "trailguard reindex: no ledger in %s: point --ledger at a ledger directory (one holding seg/), or --data at the data directory `trailguard serve` uses\n", *dir)
		return 1
	}
	if *file == "" {
		*file = filepath.Join(*data, "index.db")
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
	if errors.Is(err, index.ErrInUse) {
		fmt.Fprintf(stderr, "trailguard reindex: %s is open in a running collector; stop it first (or delete the file while it is stopped: the collector rebuilds a missing index by itself)\n", *file)
		return 1
	}
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
