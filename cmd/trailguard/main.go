// Command trailguard records, protects and verifies security audit trails
// for HTTP APIs. Each subcommand lives in its own file and registers itself
// in commands; this file only dispatches.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
)

// command is one subcommand: run gets the arguments after its name and
// returns the process exit code.
type command struct {
	summary string
	run     func(args []string) int
}

var commands = map[string]command{}

func register(name, summary string, run func(args []string) int) {
	commands[name] = command{summary: summary, run: run}
}

// Set at build time with
// -ldflags "-X main.version=v1.2.3 -X main.commit=abc1234"; otherwise
// taken from the build information Go records.
var version, commit string

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: trailguard <command> [flags]     (trailguard <command> --help for its flags)\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	for _, n := range names {
		fmt.Fprintf(w, "  %-*s  %s\n", width, n, commands[n].summary)
	}
	fmt.Fprintln(w, "\n  --version  print the version, commit and Go version")
}

// versionLine describes this binary: version, commit and Go version.
func versionLine() string {
	v, c, dirty := version, commit, false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if c == "" {
					c = s.Value
				}
			case "vcs.modified":
				dirty = s.Value == "true" && commit == ""
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if c == "" {
		c = "unknown"
	} else if len(c) > 12 {
		c = c[:12]
	}
	if dirty {
		c += "+modified"
	}
	return fmt.Sprintf("trailguard %s (commit %s, %s %s/%s)", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	name := os.Args[1]
	switch name {
	case "-h", "-help", "--help", "help":
		if len(os.Args) > 2 { // trailguard help CMD = trailguard CMD --help
			if c, ok := commands[os.Args[2]]; ok {
				os.Exit(c.run([]string{"--help"}))
			}
		}
		usage(os.Stdout)
		return
	case "-version", "--version", "version":
		fmt.Println(versionLine())
		return
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "trailguard: unknown command %q\n\n", name)
		usage(os.Stderr)
		os.Exit(2)
	}
	os.Exit(c.run(os.Args[2:]))
}
