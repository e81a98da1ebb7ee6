package main

// Flag handling shared by the subcommands: help on -h/--help (to stdout,
// exit 0), flags listed with their type and default, hidden older names,
// and the data directory, named the same way on every command.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/trailguard/trailguard/index"
	"github.com/trailguard/trailguard/internal/flock"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/server"
	"github.com/trailguard/trailguard/ship"
	"golang.org/x/mod/sumdb/note"
)

// cmdFlags is a subcommand's flag set with its synopsis.
type cmdFlags struct {
	*flag.FlagSet
	synopsis string // "usage: …" and a few lines about the command
	examples string // command lines, one a line, shown after the flags
	hidden   map[string]bool
	stdout   io.Writer
	stderr   io.Writer
}

func newFlags(name, synopsis string, stdout, stderr io.Writer) *cmdFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse reports errors itself, in the help's terms
	c := &cmdFlags{FlagSet: fs, synopsis: synopsis, hidden: map[string]bool{}, stdout: stdout, stderr: stderr}
	fs.Usage = func() {} // parse prints usage itself, to the right stream
	return c
}

// parse parses args, flags and positionals mixed ("verify DIR --key F").
// ok is false when the command should stop with code: 0 after --help, 2
// after a flag error (already reported, with the usage).
func (c *cmdFlags) parse(args []string) (pos []string, code int, ok bool) {
	pos, err := parseMixed(c.FlagSet, args)
	if errors.Is(err, flag.ErrHelp) {
		c.usage(c.stdout)
		return nil, 0, false
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "trailguard %s: %s\n\n", c.Name(), c.flagError(err))
		c.usage(c.stderr)
		return nil, 2, false
	}
	return pos, 0, true
}

// The flag package's errors, which name flags with one dash.
var (
	errUnknownFlag = regexp.MustCompile(`^flag provided but not defined: -+(.+)$`)
	errNoValue     = regexp.MustCompile(`^flag needs an argument: -+(.+)$`)
	errBadValue    = regexp.MustCompile(`^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-+([^:]+): (.*)$`)
)

// flagError says what was wrong with the command line as the help says
// it: flags with two dashes, and for a value that does not parse, what
// the flag takes. The flag package's own words ("invalid value "5" for
// flag -duration: parse error") named neither.
func (c *cmdFlags) flagError(err error) string {
	msg := err.Error()
	if m := errUnknownFlag.FindStringSubmatch(msg); m != nil {
		return "unknown flag --" + m[1] + " (the flags are below)"
	}
	if m := errNoValue.FindStringSubmatch(msg); m != nil {
		want := "--" + m[1]
		if f := c.Lookup(m[1]); f != nil {
			if arg, _ := flag.UnquoteUsage(f); arg != "" {
				want += " " + arg
			}
		}
		return "--" + m[1] + " needs a value: " + want
	}
	if m := errBadValue.FindStringSubmatch(msg); m != nil {
		want := m[3]
		if f := c.Lookup(m[2]); f != nil {
			switch typeOf(f) {
			case "bool":
				want = "want true or false (or the flag alone)"
			case "int":
				want = "want a whole number"
			case "duration":
				want = "want a duration such as 500ms, 30s, 5m or 2h"
			}
		}
		return "--" + m[2] + " " + m[1] + ": " + want
	}
	return msg
}

// usage writes the synopsis and every visible flag with its type and
// default.
func (c *cmdFlags) usage(w io.Writer) {
	fmt.Fprintln(w, strings.TrimRight(c.synopsis, "\n"))
	first := true
	c.VisitAll(func(f *flag.Flag) {
		if c.hidden[f.Name] {
			return
		}
		if first {
			fmt.Fprintln(w, "\nflags:")
			first = false
		}
		arg, help := flag.UnquoteUsage(f)
		typ := typeOf(f)
		head := "  --" + f.Name
		if arg != "" && typ != "bool" {
			head += " " + arg
		}
		def := f.DefValue
		switch {
		// An int's 0 or -1 is "not given": its help says what that means.
		case typ == "bool" && def == "false", def == "" || def == "[]" || (typ == "int" && (def == "-1" || def == "0")):
			head += " (" + typ + ")"
		default:
			head += " (" + typ + ", default " + def + ")"
		}
		fmt.Fprintf(w, "%s\n      %s\n", head, help)
	})
	if c.examples != "" {
		fmt.Fprintln(w, "\nexamples:")
		for _, l := range strings.Split(strings.Trim(c.examples, "\n"), "\n") {
			fmt.Fprintln(w, "  "+l)
		}
	}
}

// typeOf names the kind of value a flag takes.
func typeOf(f *flag.Flag) string {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return "bool"
	}
	switch fmt.Sprintf("%T", f.Value) {
	case "*flag.intValue", "*flag.int64Value", "*flag.uintValue", "*flag.uint64Value":
		return "int"
	case "*flag.durationValue":
		return "duration"
	case "*main.keyList":
		return "string, repeatable"
	}
	return "string"
}

// missing reports a missing argument by name, then the usage, and returns
// the exit code for a usage error.
func (c *cmdFlags) missing(what string) int {
	fmt.Fprintf(c.stderr, "trailguard %s: missing %s\n\n", c.Name(), what)
	c.usage(c.stderr)
	return 2
}

// invalid reports a flag value the command cannot use as parse reports
// one that does not parse (the command, the flag with two dashes, the
// value and what the flag takes), then the usage, and returns the exit
// code for a usage error. A value checked after parse (report's
// --standard) was refused with exit 1 after other output, unlike a
// value the flag package refused.
func (c *cmdFlags) invalid(flagName, value, want string) int {
	fmt.Fprintf(c.stderr, "trailguard %s: --%s %q: %s\n\n", c.Name(), flagName, value, want)
	c.usage(c.stderr)
	return 2
}

// aliasValue is a hidden older name of a string flag.
type aliasValue struct{ p *string }

func (a aliasValue) String() string {
	if a.p == nil {
		return ""
	}
	return *a.p
}
func (a aliasValue) Set(s string) error { *a.p = s; return nil }

// dataFlag registers --data (and the hidden --data-dir) with its default
// from TRAILGUARD_DATA (or TRAILGUARD_DATA_DIR), else ./trailguard-data:
// the same directory `trailguard serve` uses.
func (c *cmdFlags) dataFlag(help string) *string {
	p := c.String("data", defaultDataDir(), help)
	c.Var(aliasValue{p}, "data-dir", "")
	c.hidden["data-dir"] = true
	return p
}

// defaultDataDir is the data directory when --data is not given.
func defaultDataDir() string {
	if d := envDataDir(); d != "" {
		return d
	}
	return server.Defaults().DataDir
}

// envDataDir is the data directory TRAILGUARD_DATA (or the older
// TRAILGUARD_DATA_DIR) names, "" if neither does.
func envDataDir() string {
	for _, v := range []string{"TRAILGUARD_DATA", "TRAILGUARD_DATA_DIR"} {
		if d := os.Getenv(v); d != "" {
			return d
		}
	}
	return ""
}

// gatewayDataEnv is the variable naming trailguard proxy's data
// directory. The gateway does not read TRAILGUARD_DATA: that names the
// collector's, and on a machine running both, one exported for serve made
// the gateway open the collector's ledger (or fail on its lock).
const gatewayDataEnv = "TRAILGUARD_GATEWAY_DATA"

// gatewayDataFlag registers trailguard proxy's --data (and the hidden
// --data-dir), its default from TRAILGUARD_GATEWAY_DATA, else
// ./trailguard-gateway.
func (c *cmdFlags) gatewayDataFlag(help string) *string {
	def := gatewayDataDir
	if d := os.Getenv(gatewayDataEnv); d != "" {
		def = d
	}
	p := c.String("data", def, help)
	c.Var(aliasValue{p}, "data-dir", "")
	c.hidden["data-dir"] = true
	return p
}

// collectorsVariable is the note a gateway prints when TRAILGUARD_DATA is
// set and nothing named the gateway's own directory: it says the variable
// was not read, so an operator who meant it for the gateway sees where
// the gateway's trail went instead of finding a second one later. "" when
// the variable is unset.
func collectorsVariable(used string) string {
	d := envDataDir()
	if d == "" {
		return ""
	}
	return fmt.Sprintf("note: TRAILGUARD_DATA (%s) names the collector's data directory and is not read by the gateway; its own is %s (choose it with --data DIR or %s)", d, used, gatewayDataEnv)
}

// gatewayDataDir is trailguard proxy's data directory when nothing names
// one: its own, never the collector's ./trailguard-data, whose ledger a
// gateway started there wrote its events into, signed with the
// collector's key.
const gatewayDataDir = "./trailguard-gateway"

// collectorsTrail refuses the gateway's default data directory when it
// does not exist yet and the collector's default one holds a trail: that
// is trailguard serve's, or a gateway's from a version whose default it
// was, and which one only the operator knows.
func collectorsTrail() error {
	if _, err := os.Stat(gatewayDataDir); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	col := server.Defaults().DataDir
	for _, sub := range []string{"ledger", "spool"} {
		if _, err := os.Stat(filepath.Join(col, sub)); err == nil {
			return fmt.Errorf("no --data, and %s holds a trail (%s): trailguard serve's default data directory, or a gateway's from before %s was the gateway's default. Say which directory is this gateway's: --data %s to start its own (never the collector's), or --data %s if that trail is this gateway's",
				col, sub+"/", gatewayDataDir, gatewayDataDir, col)
		}
	}
	return nil
}

// isSet reports whether the flag name (or its hidden alias) was given.
func (c *cmdFlags) isSet(names ...string) bool {
	set := false
	c.Visit(func(f *flag.Flag) {
		for _, n := range names {
			if f.Name == n {
				set = true
			}
		}
	})
	return set
}

// requireDataDir refuses a data directory that does not exist, naming the
// ways out, rather than silently creating one next to the user that the
// running collector never reads.
func requireDataDir(dir string) error {
	st, err := os.Stat(dir)
	if err == nil && st.IsDir() {
		return nil
	}
	if err == nil {
		return fmt.Errorf("%s is not a directory", dir)
	}
	abs, _ := filepath.Abs(dir)
	return fmt.Errorf("no data directory at %s: point --data (or TRAILGUARD_DATA) at the one `trailguard serve` uses, or start serve first", abs)
}

// ledgerDirs resolves the ledger an offline tool works on: an explicit
// argument, which may be a ledger directory or a collector's data
// directory (holding ledger/), or else DIR/ledger of --data. dataDir is
// the data directory the ledger belongs to, "" when it is not in one.
func ledgerDirs(pos []string, data string) (ledgerDir, dataDir string, err error) {
	if len(pos) > 1 {
		return "", "", fmt.Errorf("one ledger at a time, got %q", pos)
	}
	if len(pos) == 1 {
		p := pos[0]
		// Said first: without it, verify asked for a --key for a
		// directory that was never there (a mistyped path).
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return "", "", fmt.Errorf("no ledger at %s: name a ledger directory or a data directory holding ledger/ (or give --data DIR instead)", p)
		}
		ledgerDir, dataDir = p, ""
		if st, err := os.Stat(filepath.Join(p, "ledger")); err == nil && st.IsDir() {
			ledgerDir, dataDir = filepath.Join(p, "ledger"), p
		} else if filepath.Base(filepath.Clean(p)) == "ledger" {
			dataDir = filepath.Dir(filepath.Clean(p))
		}
		if !hasLedger(ledgerDir) {
			return "", "", fmt.Errorf("no ledger in %s: name a ledger directory (one holding seg/) or a data directory holding ledger/ (or give --data DIR instead)", ledgerDir)
		}
		return ledgerDir, dataDir, nil
	}
	if err := requireDataDir(data); err != nil {
		return "", "", fmt.Errorf("%w, or name the ledger directory as an argument", err)
	}
	ledgerDir = filepath.Join(data, "ledger")
	if !hasLedger(ledgerDir) {
		return "", "", fmt.Errorf("%s, or name the ledger directory as an argument", noLedgerIn(ledgerDir))
	}
	return ledgerDir, data, nil
}

// hasLedger reports whether dir may hold a ledger: it has seg/, which
// every ledger has from its first open. When not, the offline commands
// say so plainly: opening it said "ledger: open DIR: stat DIR/seg: no such
// file or directory". An error other than absence (a permission) is left
// for the command's own open to report.
func hasLedger(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "seg"))
	return !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR)
}

// noLedgerIn is what is said of a data directory's ledger/ (dir) that
// holds no ledger: the data directory is not a collector's.
func noLedgerIn(dir string) string {
	abs, _ := filepath.Abs(dir)
	return fmt.Sprintf("no ledger in %s: point --data (or TRAILGUARD_DATA) at the data directory `trailguard serve` uses", abs)
}

// dataVerifierKey is the verifier key a collector keeps in its data
// directory (DIR/keys/signer.pub), or "" when there is none.
func dataVerifierKey(dataDir string) string {
	if dataDir == "" {
		return ""
	}
	p := filepath.Join(dataDir, "keys", "signer.pub")
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		return p
	}
	return ""
}

// inUse adds what to do to an error saying that another process holds
// the data directory's ledger, index or spool: another trailguard serve
// or proxy runs on it (--data defaults to the same directory for both).
func inUse(err error, dataDir string) error {
	if errors.Is(err, flock.ErrBusy) || errors.Is(err, index.ErrInUse) || errors.Is(err, ship.ErrLocked) {
		return fmt.Errorf("%w\n  another trailguard serve or proxy is running on the data directory %s: stop it, or give this one a directory of its own with --data DIR", err, dataDir)
	}
	return err
}

// loadVerifierKeys reads the --key files. A file that is not there says
// what --key wants: "open missing.pub: no such file or directory" left
// an auditor guessing which key, and where a collector keeps it.
func loadVerifierKeys(keys []string) ([]note.Verifier, error) {
	vs, err := ledger.LoadVerifiers(keys...)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: --key FILE is the collector's public verifier key: the auditor's own copy of its DATA_DIR/keys/signer.pub (trailguard serve prints the path on start)", err)
	}
	return vs, err
}
