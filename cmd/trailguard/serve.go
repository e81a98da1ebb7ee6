package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/server"
)

func init() {
	register("serve", "run the collector: ingest, ledger, index, query API", runServe)
	register("token", "manage API tokens: token create --role read --name NAME | token revoke NAME | token list", runToken)
}

func runServe(args []string) int {
	cfg, err := server.LoadConfig(args, os.Environ())
	if err != nil {
		fmt.Fprintln(os.Stderr, "trailguard serve:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv, err := server.New(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "trailguard serve:", err)
		return 1
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		srv.Close()
		fmt.Fprintln(os.Stderr, "trailguard serve:", err)
		return 1
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	fmt.Printf("trailguard collector on %s://%s\n  data:         %s\n  signer key:   %s\n  verifier key: %s\n",
		scheme, ln.Addr(), cfg.DataDir, srv.SignerKeyPath, srv.VerifierKeyPath)
	if len(srv.Tokens().List()) == 0 {
		fmt.Printf("  no API tokens yet: trailguard token create --data %s --role admin --name ops\n", cfg.DataDir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Serve(ctx, ln); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "trailguard serve:", err)
		return 1
	}
	fmt.Println("trailguard collector stopped; final checkpoint written")
	return 0
}

func runToken(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: trailguard token create|revoke|list [--data DIR] ...")
		return 2
	}
	fs := flag.NewFlagSet("token "+args[0], flag.ContinueOnError)
	dir := fs.String("data", server.Defaults().DataDir, "collector data directory")
	role := fs.String("role", "read", "role of a new token: ingest, read or admin")
	name := fs.String("name", "", "name of a new token")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	store, err := access.Open(filepath.Join(*dir, "tokens.json"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "trailguard token:", err)
		return 1
	}
	switch args[0] {
	case "create":
		r, err := access.ParseRole(*role)
		if err != nil {
			fmt.Fprintln(os.Stderr, "trailguard token:", err)
			return 2
		}
		tok, secret, err := store.Create(*name, r)
		if err != nil {
			fmt.Fprintln(os.Stderr, "trailguard token:", err)
			return 1
		}
		fmt.Printf("%s\n# token %q (role %s, id %s): shown once, store it now\n", secret, tok.Name, tok.Role, tok.ID)
	case "revoke":
		if fs.NArg() != 1 {
			fmt.Fprintln(os.Stderr, "usage: trailguard token revoke [--data DIR] NAME")
			return 2
		}
		tok, err := store.Revoke(fs.Arg(0))
		if err != nil {
			fmt.Fprintln(os.Stderr, "trailguard token:", err)
			return 1
		}
		fmt.Printf("revoked %q (%s)\n", tok.Name, tok.ID)
	case "list":
		for _, t := range store.List() {
			state := "active"
			if t.Revoked != nil {
				state = "revoked " + t.Revoked.Format("2006-01-02")
			}
			fmt.Printf("%-10s %-24s %-7s %s  %s\n", t.ID, t.Name, t.Role, t.Created.Format("2006-01-02 15:04"), state)
		}
	default:
		fmt.Fprintf(os.Stderr, "trailguard token: unknown subcommand %q\n", args[0])
		return 2
	}
	return 0
}
