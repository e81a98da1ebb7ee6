package main

// trailguard detect: check rules, test them, and run them over stored
// events. The engine lives in package detect; this parses flags, reads
// files and prints.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/trailguard/trailguard/detect"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
)

func init() {
	register("detect", "check, test or replay detection rules (Sigma) over stored events", func(args []string) int {
		return runDetect(args, os.Stdout, os.Stderr)
	})
}

func runDetect(args []string, stdout, stderr io.Writer) int {
	return runDetectIO(args, os.Stdin, stdout, stderr)
}

func runDetectIO(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("detect", `usage: trailguard detect [--rules DIR]... [--no-builtin] [--data DIR] --check | --list | --test DIR | --replay PATH

Loads the built-in Sigma rules, the collector's own (DIR/rules, when it
exists) and every --rules directory, reports each rule that cannot be used
(file:line:col and reason) and then:
  --check    exits 1 if any rule failed to load
  --list     lists the loaded rules
  --test     runs rule tests (NAME.test.yml next to NAME.yml)
  --replay   runs the rules over stored events and prints one alert per line
             (NDJSON, ECS event.kind alert); PATH is an NDJSON file (.gz, or -
             for standard input), a ledger directory or a data directory`, stdout, stderr)
	fs.examples = `trailguard detect --check --rules ./rules
trailguard detect --test builtin
trailguard detect --replay /var/lib/trailguard --rules ./rules
zcat events.ndjson.gz | trailguard detect --replay - --no-builtin --rules ./rules`
	var dirs keyList
	fs.Var(&dirs, "rules", "load Sigma rules from `DIR` (every .yml/.yaml file below it)")
	data := fs.dataFlag("the collector's data directory `DIR`, whose rules/ subdirectory is loaded when present (env TRAILGUARD_DATA)")
	noBuiltin := fs.Bool("no-builtin", false, "leave out the built-in rules")
	check := fs.Bool("check", false, "only parse and compile the rules; exit 1 if any fails")
	replay := fs.String("replay", "", "run the rules over `PATH`: an NDJSON file (.gz accepted, - for standard input), a ledger directory or a data directory")
	test := fs.String("test", "", "run the rule tests (*.test.yml) in `DIR` (\"builtin\" for the built-in rules' tests)")
	list := fs.Bool("list", false, "list the loaded rules")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "trailguard detect: unexpected argument %q\n\n", pos[0])
		fs.usage(stderr)
		return 2
	}
	modes := 0
	for _, b := range []bool{*check, *replay != "", *test != "", *list} {
		if b {
			modes++
		}
	}
	if modes != 1 {
		return fs.missing("exactly one of --check, --list, --test DIR and --replay PATH")
	}
	if own := filepath.Join(*data, "rules"); !*noBuiltin || fs.isSet("data", "data-dir") {
		if st, err := os.Stat(own); err == nil && st.IsDir() {
			dirs = append([]string{own}, dirs...)
		}
	}

	rs := &detect.RuleSet{}
	if !*noBuiltin {
		rs = detect.Builtin()
	}
	for _, d := range dirs {
		st, err := os.Stat(d)
		if err != nil || !st.IsDir() {
			fmt.Fprintf(stderr, "trailguard detect: --rules %s: not a directory\n", d)
			return 2
		}
		rs = rs.Merge(detect.LoadDir(d))
	}
	eng, cerrs := detect.NewEngine(rs, detect.Options{})
	loadErrs := append(append([]*detect.LoadError(nil), rs.Errors...), cerrs...)
	for _, e := range loadErrs {
		fmt.Fprintln(stderr, e)
	}
	switch {
	case *check:
		fmt.Fprintf(stdout, "%d rules loaded, %d failed\n", len(eng.Rules()), len(loadErrs))
		if len(loadErrs) > 0 {
			return 1
		}
		return 0
	case *list:
		for _, r := range eng.Rules() {
			kind := "detection"
			if r.Correlation != nil {
				kind = r.Correlation.Type
			}
			fmt.Fprintf(stdout, "%-40s %-16s %-13s %s (%s)\n", r.Ref(), kind, r.Level, r.Title, r.Source)
		}
		return 0
	case *test != "":
		return detectTests(rs, *test, dirs, stdout, stderr)
	}
	return detectReplay(eng, *replay, stdin, stdout, stderr)
}

func detectTests(rs *detect.RuleSet, dir string, dirs []string, stdout, stderr io.Writer) int {
	var results []detect.TestResult
	var err error
	if dir == "builtin" {
		results, err = detect.RunTests(rs, detect.BuiltinFS(), "builtin:rules")
	} else {
		// Said as --rules says it: RunTests over a directory that is not
		// there failed with "stat .: no such file or directory".
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			fmt.Fprintf(stderr, "trailguard detect: --test %s: not a directory (the one holding your *%s files, or builtin)\n", dir, detect.TestSuffix)
			return 2
		}
		results, err = detect.RunTests(rs, os.DirFS(dir), filepath.Clean(dir)) // (DIR/ would print DIR//x.test.yml)
	}
	if err != nil {
		fmt.Fprintln(stderr, "trailguard detect:", err)
		return 1
	}
	failed := 0
	for _, r := range results {
		if len(r.Failures) == 0 {
			fmt.Fprintf(stdout, "ok    %s:%d  %s (%d events)\n", r.File, r.Line, r.Case, r.Events)
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL  %s:%d  %s\n", r.File, r.Line, r.Case)
		for _, f := range r.Failures {
			fmt.Fprintf(stdout, "        %s\n", f)
		}
	}
	if len(results) == 0 {
		fmt.Fprintf(stderr, "trailguard detect: no test files (*%s) in %s\n", detect.TestSuffix, dir)
		return 1
	}
	fmt.Fprintf(stdout, "%d cases, %d failed\n", len(results), failed)
	if failed > 0 {
		return 1
	}
	return 0
}

// maxLine is the longest NDJSON line replayed (the ledger's record limit).
const maxLine = 1 << 20

func detectReplay(eng *detect.Engine, path string, stdin io.Reader, stdout, stderr io.Writer) int {
	out := bufio.NewWriterSize(stdout, 64<<10)
	defer out.Flush()
	if st, err := os.Stat(filepath.Join(path, "ledger")); err == nil && st.IsDir() {
		path = filepath.Join(path, "ledger") // a collector's data directory
	}
	var werr error
	var resolve func(uint64) string
	emit := func(a *detect.Alert) {
		if resolve != nil {
			for _, i := range a.Evidence {
				a.EvidenceIDs = append(a.EvidenceIDs, resolve(i))
			}
		}
		b := a.AppendJSON(nil)
		if _, err := out.Write(append(b, '\n')); err != nil && werr == nil {
			werr = err
		}
	}
	start := time.Now()
	var n, untimed uint64
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		if !hasLedger(path) {
			fmt.Fprintf(stderr, "trailguard detect: no ledger in %s: --replay takes an NDJSON file (- for standard input), a ledger directory (one holding seg/) or a data directory holding ledger/\n", path)
			return 1
		}
		l, err := ledger.OpenReadOnly(path)
		if err != nil {
			fmt.Fprintln(stderr, "trailguard detect:", err)
			return 1
		}
		defer l.Close()
		resolve = func(i uint64) string {
			e, err := l.Read(i)
			if err != nil {
				return ""
			}
			id, _ := event.PeekID(e.Data)
			return id
		}
		for e, err := range l.Entries(l.Pruned()) {
			if err != nil {
				fmt.Fprintln(stderr, "trailguard detect:", err)
				return 1
			}
			eng.Process(detect.Record{Index: e.Index, Time: e.Time, Data: e.Data}, emit)
			n++
			if werr != nil {
				break
			}
		}
	} else {
		var r io.Reader
		var f *os.File
		if path == "-" {
			r = stdin
		} else {
			if f, err = os.Open(path); err != nil {
				fmt.Fprintln(stderr, "trailguard detect:", err)
				return 1
			}
			defer f.Close()
			r = f
			if strings.HasSuffix(path, ".gz") {
				zr, err := gzip.NewReader(f)
				if err != nil {
					fmt.Fprintln(stderr, "trailguard detect:", err)
					return 1
				}
				r = zr
			}
		}
		// Evidence is named by line number; event.ids are looked up by
		// the line offsets of plain files.
		var offsets []int64
		if f != nil && !strings.HasSuffix(path, ".gz") {
			resolve = func(line uint64) string {
				if line == 0 || line > uint64(len(offsets)) {
					return ""
				}
				buf := make([]byte, 0, 4096)
				sr := bufio.NewReaderSize(io.NewSectionReader(f, offsets[line-1], maxLine+1), 4096)
				for {
					b, err := sr.ReadSlice('\n')
					buf = append(buf, b...)
					if !errors.Is(err, bufio.ErrBufferFull) || len(buf) > maxLine {
						break
					}
				}
				id, _ := event.PeekID(buf)
				return id
			}
		}
		br := bufio.NewReaderSize(r, 64<<10)
		var off int64
		line := uint64(0)
		var long []byte
		for {
			b, err := br.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				if len(long) <= maxLine {
					long = append(long, b...)
				}
				continue
			}
			if len(long) > 0 {
				b = append(long, b...)
				long = long[:0]
			}
			if len(b) > 0 {
				line++
				offsets = append(offsets, off)
				off += int64(len(b))
				if len(b) > maxLine {
					fmt.Fprintf(stderr, "trailguard detect: %s:%d: line longer than %d bytes skipped\n", path, line, maxLine)
				} else if t := trimLine(b); len(t) > 0 {
					rec := detect.Record{Index: line, Data: t}
					if !bytes.Contains(t, []byte(`"@timestamp"`)) {
						// No time of its own: when the collector stored
						// it (event.ingested), else the replay's start —
						// not 1970, which no analyst would look at.
						rec.Time = ingestedTime(t)
						if rec.Time.IsZero() {
							rec.Time = start
							untimed++
						}
					}
					eng.Process(rec, emit)
					n++
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				fmt.Fprintln(stderr, "trailguard detect:", err)
				return 1
			}
			if werr != nil {
				break
			}
		}
	}
	eng.Flush(emit)
	if werr == nil {
		werr = out.Flush()
	}
	if werr != nil {
		fmt.Fprintln(stderr, "trailguard detect: write:", werr)
		return 1
	}
	if untimed > 0 {
		fmt.Fprintf(stderr, "trailguard detect: warning: %d events have neither @timestamp nor event.ingested: they and their alerts are dated at the replay's start (%s), in file order; add @timestamp to replay their own times\n",
			untimed, start.UTC().Format(time.RFC3339))
	}
	st := eng.Stats()
	took := time.Since(start)
	fmt.Fprintf(stderr, "%d records in %v (%.0f/s): %d events, %d not JSON objects, %d stored alerts skipped; %d alerts (every firing: a collector folds repeats within detection.suppress into one stored alert, so it may show fewer)\n",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), st.Events, st.Malformed, st.Skipped, st.Alerts)
	return 0
}

// ingestedTime is an NDJSON event's event.ingested, or zero.
func ingestedTime(line []byte) time.Time {
	var ev struct {
		Event struct {
			Ingested time.Time `json:"ingested"`
		} `json:"event"`
	}
	if json.Unmarshal(line, &ev) != nil {
		return time.Time{}
	}
	return ev.Event.Ingested
}

func trimLine(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
