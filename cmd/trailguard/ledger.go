package main

// The ledger's offline tools: keygen, verify and prove. The logic lives in
// package ledger; these functions parse flags and print.

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/ledger"
)

func init() {
	register("keygen", "create an Ed25519 signer key and verifier key for a ledger", func(args []string) int {
		return runKeygen(args, os.Stdout, os.Stderr)
	})
	register("verify", "check a ledger offline: records, tree, checkpoints, witnesses", func(args []string) int {
		return runVerify(args, os.Stdout, os.Stderr)
	})
	register("prove", "print an inclusion or consistency proof against a signed checkpoint", func(args []string) int {
		return runProve(args, os.Stdout, os.Stderr)
	})
}

// keyList is a repeatable --key flag.
type keyList []string

func (k *keyList) String() string     { return strings.Join(*k, ",") }
func (k *keyList) Set(v string) error { *k = append(*k, v); return nil }

// parseMixed parses flags that may come before or after positional
// arguments ("verify DIR --key FILE"), returning the positionals.
func parseMixed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func runKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "key name, by convention the ledger's origin (e.g. audit.example.com/trailguard)")
	out := fs.String("out", "ledger", "write the signer key to `PREFIX`.key (mode 0600) and the verifier key to PREFIX.pub")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: trailguard keygen --name NAME [--out PREFIX]")
		fs.PrintDefaults()
	}
	if _, err := parseMixed(fs, args); err != nil {
		return 2
	}
	if *name == "" {
		fs.Usage()
		return 2
	}
	skey, vkey, err := ledger.GenerateKey(*name)
	if err != nil {
		fmt.Fprintln(stderr, "trailguard keygen:", err)
		return 1
	}
	for _, f := range []struct {
		path string
		data string
		mode os.FileMode
	}{{*out + ".key", skey, 0o600}, {*out + ".pub", vkey, 0o644}} {
		fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			fmt.Fprintln(stderr, "trailguard keygen:", err, "(keys are never overwritten)")
			return 1
		}
		_, werr := fmt.Fprintln(fh, f.data)
		if cerr := fh.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			fmt.Fprintln(stderr, "trailguard keygen:", werr)
			return 1
		}
	}
	fmt.Fprintf(stdout, "signer key:   %s.key (keep secret)\nverifier key: %s.pub\n%s\n", *out, *out, vkey)
	return 0
}

func runVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var keys keyList
	fs.Var(&keys, "key", "verifier key `FILE` (repeat, or several lines per file, for rotated keys)")
	witness := fs.String("witness", "", "`DIR` of checkpoints exported to a witness; the ledger must contain each")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: trailguard verify DIR --key FILE [--key FILE...] [--witness DIR] [--json]\n\nexit status: 0 verified, 1 findings, 2 could not verify")
		fs.PrintDefaults()
	}
	pos, err := parseMixed(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 || len(keys) == 0 {
		fs.Usage()
		return 2
	}
	vs, err := ledger.LoadVerifiers(keys...)
	if err != nil {
		fmt.Fprintln(stderr, "trailguard verify:", err)
		return 2
	}
	rep, err := ledger.Verify(pos[0], ledger.VerifyOptions{Verifiers: vs, WitnessDir: *witness})
	if err != nil {
		fmt.Fprintln(stderr, "trailguard verify:", err)
		return 2
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		fmt.Fprint(stdout, rep)
	}
	if !rep.OK() {
		return 1
	}
	return 0
}

func runProve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("prove", flag.ContinueOnError)
	fs.SetOutput(stderr)
	index := fs.Int64("index", -1, "prove that record `N` is in the log")
	eventID := fs.String("event-id", "", "prove that the record with this event.id is in the log")
	from := fs.Uint64("from", 0, "prove that the tree of `SIZE` is a prefix of the signed tree (consistency)")
	to := fs.Uint64("to", 0, "prove against the signed checkpoint of this `SIZE` (default: the newest)")
	var keys keyList
	fs.Var(&keys, "key", "verifier key `FILE`: check the checkpoint's signature first")
	asJSON := fs.Bool("json", false, "print the proof as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: trailguard prove DIR (--index N | --event-id ID | --from SIZE) [--to SIZE] [--key FILE] [--json]")
		fs.PrintDefaults()
	}
	pos, err := parseMixed(fs, args)
	if err != nil {
		return 2
	}
	modes := 0
	for _, set := range []bool{*index >= 0, *eventID != "", *from > 0} {
		if set {
			modes++
		}
	}
	if len(pos) != 1 || modes != 1 {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "trailguard prove:", err)
		return 1
	}
	l, err := ledger.OpenReadOnly(pos[0])
	if err != nil {
		return fail(err)
	}
	defer l.Close()
	signed, _, err := l.SignedCheckpoint(*to)
	if err != nil {
		return fail(err)
	}
	if len(keys) > 0 {
		vs, err := ledger.LoadVerifiers(keys...)
		if err != nil {
			return fail(err)
		}
		if _, _, err := ledger.OpenCheckpoint(signed, note.VerifierList(vs...)); err != nil {
			return fail(err)
		}
	}
	var out any
	var text strings.Builder
	if *from > 0 {
		b, err := l.ProveConsistency(*from, signed)
		if err != nil {
			return fail(err)
		}
		out = b
		fmt.Fprintf(&text, "consistency %d -> %d\nold root %s\nnew root %s\n", b.OldSize, b.TreeSize, b.OldRoot, b.RootHash)
		writeHashes(&text, b.Proof)
		fmt.Fprintf(&text, "\n%s", b.Checkpoint)
	} else {
		i := uint64(*index)
		if *eventID != "" {
			if i, err = l.FindEventID(*eventID); err != nil {
				return fail(err)
			}
		}
		b, err := l.ProveInclusion(i, signed)
		if err != nil {
			return fail(err)
		}
		out = b
		fmt.Fprintf(&text, "inclusion of record %d in tree %d\nleaf %s\nroot %s\n", b.Index, b.TreeSize, b.LeafHash, b.RootHash)
		writeHashes(&text, b.Proof)
		fmt.Fprintf(&text, "\n%s", b.Checkpoint)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return fail(err)
		}
		return 0
	}
	fmt.Fprint(stdout, text.String())
	return 0
}

func writeHashes(w io.Writer, hs []ledger.Hash) {
	fmt.Fprintf(w, "proof %d\n", len(hs))
	for _, h := range hs {
		fmt.Fprintln(w, base64.StdEncoding.EncodeToString(h[:]))
	}
}
