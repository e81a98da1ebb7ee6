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
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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
	register("tiles", "export the Merkle tree of a signed checkpoint as C2SP tlog-tiles files", func(args []string) int {
		return runTiles(args, os.Stdout, os.Stderr)
	})
}

func runTiles(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("tiles", `usage: trailguard tiles [LEDGER_DIR] [--data DIR] --out DIR [--size SIZE]

Writes the ledger's Merkle tree as of a signed checkpoint (the newest, or the
one of --size SIZE) in the C2SP tlog-tiles layout: OUT/checkpoint and the hash
tiles OUT/tile/<L>/<N>[.p/<W>], for tlog-tiles clients and tools working
offline. The ledger keeps its hashes in one file per tile level; a running
collector serves the same tiles at /v1/ledger/tile/... (read role). Full
tiles already in OUT are kept, so exporting again after the log grew writes
only the new ones.`, stdout, stderr)
	data := fs.dataFlag("the collector's data directory `DIR`: export from DIR/ledger (env TRAILGUARD_DATA)")
	out := fs.String("out", "", "write the tiles under `DIR`")
	size := fs.Uint64("size", 0, "export the tree of the signed checkpoint of this `SIZE` (default: the newest)")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if *out == "" {
		return fs.missing("--out DIR (where to write the tiles)")
	}
	dir, _, err := ledgerDirs(pos, *data)
	if err != nil {
		fmt.Fprintln(stderr, "trailguard tiles:", err)
		return 2
	}
	cp, n, err := ledger.ExportTiles(dir, *out, *size)
	if err != nil {
		fmt.Fprintln(stderr, "trailguard tiles:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: checkpoint of size %d (%s), %d file(s) written\n", *out, cp.Size, cp.Root, n)
	return 0
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
	fs := newFlags("keygen", `usage: trailguard keygen --name NAME [--data DIR | --out PREFIX]

Creates an Ed25519 checkpoint signer key and its verifier key, by default in
DIR/keys/signer.key and signer.pub, where trailguard serve --data DIR looks.
Keys are never overwritten.`, stdout, stderr)
	name := fs.String("name", "", "key `NAME`, by convention the ledger's origin (e.g. audit.example.com/trailguard)")
	data := fs.dataFlag("write the keys into `DIR`/keys, the collector's data directory (env TRAILGUARD_DATA)")
	out := fs.String("out", "", "write the signer key to `PREFIX`.key (mode 0600) and the verifier key to PREFIX.pub instead")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if *name == "" {
		return fs.missing("--name NAME (the key's name, by convention the ledger's origin)")
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "trailguard keygen: unexpected argument %q\n", pos[0])
		return 2
	}
	if *out == "" {
		*out = filepath.Join(*data, "keys", "signer")
		if err := os.MkdirAll(filepath.Dir(*out), 0o700); err != nil {
			fmt.Fprintln(stderr, "trailguard keygen:", err)
			return 1
		}
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
	fs := newFlags("verify", `usage: trailguard verify [LEDGER_DIR] [--data DIR] [--key FILE...] [--witness DIR] [--since FILE] [--json]

Checks a ledger offline: every record, the Merkle tree, every signed
checkpoint and, with --witness, the checkpoints exported to a witness. The
ledger is LEDGER_DIR, or DIR/ledger of --data (default ./trailguard-data or
TRAILGUARD_DATA); the key defaults to DIR/keys/signer.pub. An auditor should
pass a copy of the verifier key kept away from the collector's disk.

With --since FILE (a signed checkpoint verified before, e.g. a copy of
LEDGER_DIR/checkpoint kept after the last audit), only what was appended
since is checked: FILE's signature, that the ledger's checkpoint history
still holds it and its tree (the hash tiles at its size give its root), then
the records after it and the checkpoints signed since, each of which must
extend that tree.

exit status: 0 verified, 1 findings, 2 could not verify`, stdout, stderr)
	fs.examples = `trailguard verify --data /var/lib/trailguard
trailguard verify /copy/of/ledger --key collector-1.pub --witness /witness/collector-1
trailguard verify /copy/of/ledger --key collector-1.pub --since last-audit.checkpoint --json`
	data := fs.dataFlag("the collector's data directory `DIR`: verify DIR/ledger with DIR/keys/signer.pub (env TRAILGUARD_DATA)")
	var keys keyList
	fs.Var(&keys, "key", "verifier key `FILE` (repeat, or several lines per file, for rotated keys)")
	witness := fs.String("witness", "", "`DIR` of checkpoints exported to a witness; the ledger must contain each")
	asJSON := fs.Bool("json", false, "print the report as JSON (with --since, what it covered in \"since\")")
	since := fs.String("since", "", "signed checkpoint `FILE` verified before: check only what was appended since")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	dir, dataDir, err := ledgerDirs(pos, *data)
	if err != nil {
		fmt.Fprintln(stderr, "trailguard verify:", err)
		return 2
	}
	if len(keys) == 0 {
		k := dataVerifierKey(dataDir)
		if k == "" {
			return fs.missing(fmt.Sprintf("--key FILE: the verifier key of ledger %s (a collector keeps it in DIR/keys/signer.pub)", dir))
		}
		keys = append(keys, k)
		fmt.Fprintf(stderr, "verifier key: %s (from the data directory; an auditor should use a copy kept elsewhere)\n", k)
	}
	vs, err := loadVerifierKeys(keys)
	if err != nil {
		fmt.Fprintln(stderr, "trailguard verify:", err)
		return 2
	}
	opts := ledger.VerifyOptions{Verifiers: vs, WitnessDir: *witness}
	if *since != "" {
		b, err := os.ReadFile(*since)
		if err != nil {
			fmt.Fprintln(stderr, "trailguard verify: --since:", err)
			return 2
		}
		c, _, err := ledger.OpenCheckpoint(b, note.VerifierList(vs...))
		if err != nil {
			fmt.Fprintf(stderr, "trailguard verify: --since %s: %v (a signed checkpoint of this ledger, verified with the same --key, is needed)\n", *since, err)
			return 2
		}
		opts.Since = &c
	}
	rep, err := ledger.Verify(dir, opts)
	if err != nil {
		fmt.Fprintln(stderr, "trailguard verify:", err)
		return 2
	}
	if *asJSON {
		out := verifyJSON{Report: rep}
		if c := opts.Since; c != nil {
			out.Since = &verifySince{File: *since, TreeSize: c.Size, Signed: c.Time.UTC(), RecordsChecked: recordsSince(rep, c)}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	} else {
		fmt.Fprint(stdout, rep)
		if c := opts.Since; c != nil && rep.OK() {
			fmt.Fprintf(stdout, "  since the checkpoint of tree size %d signed %s (%s): the tree at that size is the one verified before, and the %d records after it were read and checked\n",
				c.Size, c.Time.UTC().Format(time.RFC3339), *since, recordsSince(rep, c))
		}
		if c := rep.Latest; c != nil {
			// What an auditor writes down: the newest checkpoint that
			// verified, which the next audit's --witness checks again.
			fmt.Fprintf(stdout, "  newest checkpoint: %s, tree size %d, root %s, signed %s\n", c.Origin, c.Size,
				base64.StdEncoding.EncodeToString(c.Root[:]), c.Time.UTC().Format(time.RFC3339))
		}
		wrongKey(stderr, rep, vs)
		truncatedCopy(stderr, rep)
	}
	if !rep.OK() {
		return 1
	}
	return 0
}

// verifyJSON is verify --json's output: the ledger's report, and with
// --since what the audit covered (the text output's "since the
// checkpoint of tree size …" line), so that a script recording audits
// learns the same as a reader of the text.
type verifyJSON struct {
	*ledger.Report
	Since *verifySince `json:"since,omitempty"`
}

// verifySince is the checkpoint verify --since started from, and how many
// records after it were read and checked. The report's findings say
// whether the ledger still holds that checkpoint's tree and extends it.
type verifySince struct {
	File           string    `json:"file"`
	TreeSize       uint64    `json:"tree_size"`
	Signed         time.Time `json:"signed"`
	RecordsChecked uint64    `json:"records_checked"`
}

// recordsSince is how many records verify --since read: those after the
// checkpoint c that retention has not pruned.
func recordsSince(rep *ledger.Report, c *ledger.Checkpoint) uint64 {
	if rep.Records <= c.Size {
		return 0
	}
	return rep.Records - max(c.Size, rep.Pruned)
}

// truncatedCopy adds a hint to a tail-truncated finding: a copy of a
// running collector's ledger whose segments were copied before a
// checkpoint signed a moment later looks exactly like records cut from the
// tail, which an auditor should rule out before suspecting deletion.
func truncatedCopy(w io.Writer, rep *ledger.Report) {
	for _, f := range rep.Findings {
		if f.Kind == ledger.KindTailTruncated {
			fmt.Fprintln(w, "trailguard verify: tail-truncated: if this is a copy of a running collector's ledger, check that it copied checkpoint and checkpoints/ before seg/ (rsync -a does; cp -r and tar may not) and, with --witness, that it is not older than the witness's checkpoints, before concluding records were cut")
			return
		}
	}
}

// wrongKey adds a hint when no checkpoint is signed by any key given and
// nothing else was found: the likeliest cause is a --key for another
// ledger, which an auditor should rule out before suspecting forgery.
func wrongKey(w io.Writer, rep *ledger.Report, vs []note.Verifier) {
	unknown := 0
	for _, f := range rep.Findings {
		switch f.Kind {
		case ledger.KindCheckpointUnknownKey:
			unknown++
		case ledger.KindCheckpointsMissing:
		default:
			return
		}
	}
	if unknown == 0 {
		return
	}
	if rep.Checkpoints > 0 {
		// Some checkpoints verified with these keys: they are this
		// ledger's. What the others are (a witness copy of another
		// ledger, a key rotated without --key for it) the findings say.
		fmt.Fprintf(w, "trailguard verify: %d checkpoint(s) verified with the key(s) given, %d signed only by other keys: if the key rotated, give its other verifier key with another --key; a witness copy signed by another key is not this ledger's\n", rep.Checkpoints, unknown)
		return
	}
	var names []string
	for _, v := range vs {
		names = append(names, fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash()))
	}
	fmt.Fprintf(w, "trailguard verify: no checkpoint is signed by the key(s) given (%s): check that --key is this ledger's verifier key (the collector's signer.pub; its name is the ledger's origin) before concluding the checkpoints were forged\n", strings.Join(names, ", "))
}

func runProve(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("prove", `usage: trailguard prove [LEDGER_DIR] [--data DIR] (--index N | --event-id ID | --from SIZE) [--to SIZE] [--key FILE] [--json]

Prints an inclusion proof of one record, or a consistency proof between two
tree sizes, against a signed checkpoint. The ledger is LEDGER_DIR or
DIR/ledger of --data; the checkpoint's signature is checked first with --key,
by default DIR/keys/signer.pub when it exists.`, stdout, stderr)
	fs.examples = `trailguard prove --index 1234 --key collector-1.pub
trailguard prove /copy/of/ledger --event-id 01937c2e-5a4b-7000-8000-000000000001 --key collector-1.pub --json
trailguard prove --from 1000     # consistency of the first 1000 records with the newest signed tree`
	data := fs.dataFlag("the collector's data directory `DIR`: prove from DIR/ledger (env TRAILGUARD_DATA)")
	index := fs.Int64("index", -1, "prove that record `N` is in the log")
	eventID := fs.String("event-id", "", "prove that the record whose event.id is `ID` is in the log")
	from := fs.Uint64("from", 0, "prove that the tree of `SIZE` is a prefix of the signed tree (consistency)")
	to := fs.Uint64("to", 0, "prove against the signed checkpoint of this `SIZE` (default: the newest)")
	var keys keyList
	fs.Var(&keys, "key", "verifier key `FILE`: check the checkpoint's signature first")
	asJSON := fs.Bool("json", false, "print the proof as JSON")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	modes := 0
	for _, set := range []bool{*index >= 0, *eventID != "", *from > 0} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		return fs.missing("exactly one of --index N, --event-id ID or --from SIZE (what to prove)")
	}
	dir, dataDir, err := ledgerDirs(pos, *data)
	if err != nil {
		fmt.Fprintln(stderr, "trailguard prove:", err)
		return 2
	}
	if k := dataVerifierKey(dataDir); len(keys) == 0 && k != "" {
		keys = append(keys, k)
		// As verify says it: whoever can write the data directory can
		// replace this key along with the ledger and its checkpoints, so
		// a proof checked with it alone proves nothing to an auditor.
		fmt.Fprintf(stderr, "verifier key: %s (from the data directory; an auditor should use a copy kept elsewhere)\n", k)
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "trailguard prove:", err)
		return 1
	}
	l, err := ledger.OpenReadOnly(dir)
	if err != nil {
		return fail(err)
	}
	defer l.Close()
	signed, _, err := l.SignedCheckpoint(*to)
	if err != nil {
		return fail(err)
	}
	if len(keys) > 0 {
		vs, err := loadVerifierKeys(keys)
		if err != nil {
			return fail(err)
		}
		if _, _, err := ledger.OpenCheckpoint(signed, note.VerifierList(vs...)); err != nil {
			return fail(err)
		}
	} else {
		// A proof against a checkpoint nobody checked proves nothing
		// by itself: whoever wrote the directory could have made both.
		fmt.Fprintln(stderr, "trailguard prove: no --key: the checkpoint's signature was not checked; check it with the collector's verifier key before relying on this proof")
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
		fmt.Fprintf(&text, "inclusion of record %d in tree %d\n", b.Index, b.TreeSize)
		writeRecord(&text, b.Record)
		fmt.Fprintf(&text, "leaf %s\nroot %s\n", b.LeafHash, b.RootHash)
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

// writeRecord prints the proven record: what an auditor asked about, and
// what the leaf hash is the hash of. A record with bytes a terminal would
// act on (a control character, invalid UTF-8: never one the collector
// stored, but a ledger is any bytes its writer chose) is printed quoted.
func writeRecord(w io.Writer, rec []byte) {
	if rec == nil {
		fmt.Fprintln(w, "record pruned by retention (its leaf hash remains)")
		return
	}
	plain := utf8.Valid(rec)
	for _, r := range string(rec) {
		if !plain || !unicode.IsGraphic(r) && r != ' ' {
			plain = false
			break
		}
	}
	if plain {
		fmt.Fprintf(w, "record %s\n", rec)
		return
	}
	fmt.Fprintf(w, "record (quoted) %s\n", strconv.QuoteToGraphic(string(rec)))
}

func writeHashes(w io.Writer, hs []ledger.Hash) {
	fmt.Fprintf(w, "proof %d\n", len(hs))
	for _, h := range hs {
		fmt.Fprintln(w, base64.StdEncoding.EncodeToString(h[:]))
	}
}
