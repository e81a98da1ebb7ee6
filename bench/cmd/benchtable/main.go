// Command benchtable reads `go test -bench -benchmem` output on standard
// input and prints, for each group of the middleware benchmarks (serial and
// parallel), the median ns/op and allocs/op of every middleware, its
// overhead over the bare handler, and how each peer compares with httpaudit.
//
// Usage:
//
//	go test -run '^$' -bench . -benchmem -count 5 ./... | go run ./cmd/benchtable
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// The middlewares in the order they are printed; the first is the floor,
// the second the one the peers are compared with.
var (
	baseline = "Baseline"
	subject  = "HTTPAudit"
	peers    = []string{"HTTPLog", "SlogHTTP"}
	groups   = []string{"", "Parallel"}
	// before is httpaudit at another revision (run.sh with BASE set): a
	// row of the table, compared with the current one, with no goal.
	before = "Base" + subject
)

// Goals of the issues: httpaudit at most a third of each peer's time and
// half of its CPU time per request (issue 15 item 5), and at most this many
// allocations of its own (over the bare handler).
const (
	maxTimeShare = 1.0 / 3
	maxCPUShare  = 1.0 / 2
	maxOwnAllocs = 4
)

// samples are the measurements of one benchmark across -count runs. cpu
// is the process's CPU time per request (the benchmarks' cpu-ns/op): it
// includes work done on other cores, such as httpaudit's background
// encoder.
type samples struct{ ns, cpu, bytes, allocs []float64 }

func main() {
	res, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	if ok := report(os.Stdout, res); !ok {
		os.Exit(2)
	}
}

// parse collects the samples of every benchmark line, keyed by name without
// the "Benchmark" prefix and the -GOMAXPROCS suffix.
func parse(r io.Reader) (map[string]*samples, error) {
	res := map[string]*samples{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		// go test can print a failed benchmark and still say PASS.
		if strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "FAIL") {
			return nil, fmt.Errorf("the benchmarks failed: %s", line)
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		// A result line has the iteration count next; anything else (a log
		// line the benchmark printed after its name) is not a result.
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		s := res[name]
		if s == nil {
			s = &samples{}
			res[name] = s
		}
		// After the iteration count come value-unit pairs.
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: bad value %q", f[0], f[i])
			}
			switch f[i+1] {
			case "ns/op":
				s.ns = append(s.ns, v)
			case "cpu-ns/op":
				s.cpu = append(s.cpu, v)
			case "B/op":
				s.bytes = append(s.bytes, v)
			case "allocs/op":
				s.allocs = append(s.allocs, v)
			}
		}
	}
	return res, sc.Err()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// report prints one table per group and says whether httpaudit met both
// goals in every group that was measured.
func report(w io.Writer, res map[string]*samples) bool {
	allOK := true
	printed := false
	for _, g := range groups {
		sub, base := res[subject+g], res[baseline+g]
		if sub == nil || base == nil || len(sub.ns) == 0 {
			continue
		}
		printed = true
		mode := "serial"
		if g != "" {
			mode = "parallel"
		}
		bns, bal := median(base.ns), median(base.allocs)
		sns, sal := median(sub.ns), median(sub.allocs)
		fmt.Fprintf(w, "\n%s: medians of %d runs; overhead and own allocs are over %s; X÷h.a. is the peer's figure over httpaudit's\n",
			mode, len(sub.ns), baseline+g)
		scpu := median(sub.cpu)
		fmt.Fprintf(w, "%-20s %8s %9s %9s %6s %7s %6s %8s %8s %8s\n",
			"benchmark", "ns/op", "overhead", "cpu-ns/op", "B/op", "allocs", "own", "ns÷h.a.", "cpu÷h.a.", "allocs÷")
		names := []string{baseline, subject}
		if res[before+g] != nil {
			names = append(names, before)
		}
		for _, name := range append(names, peers...) {
			s := res[name+g]
			if s == nil || len(s.ns) == 0 {
				fmt.Fprintf(w, "%-20s %8s\n", name+g, "missing")
				continue
			}
			ns, cpu, al := median(s.ns), median(s.cpu), median(s.allocs)
			ratioNS, ratioCPU, ratioAl := "", "", ""
			if name != baseline {
				ratioNS = fmt.Sprintf("%.2f", ns/sns)
				ratioAl = fmt.Sprintf("%.2f", al/sal)
				if cpu > 0 && scpu > 0 {
					ratioCPU = fmt.Sprintf("%.2f", cpu/scpu)
				}
			}
			fmt.Fprintf(w, "%-20s %8.0f %9.0f %9.0f %6.0f %7.0f %6.0f %8s %8s %8s\n",
				name+g, ns, ns-bns, cpu, median(s.bytes), al, al-bal, ratioNS, ratioCPU, ratioAl)
		}
		if b := res[before+g]; b != nil && len(b.ns) > 0 {
			fmt.Fprintf(w, "httpaudit against its base revision: ns/op %s, cpu-ns/op %s of the base's\n",
				share(sns, median(b.ns)), share(scpu, median(b.cpu)))
		}
		own := sal - bal
		ok := own <= maxOwnAllocs
		fmt.Fprintf(w, "goal own allocs ≤ %d: httpaudit %.0f  %s\n", maxOwnAllocs, own, verdict(ok))
		for _, p := range peers {
			s := res[p+g]
			if s == nil || len(s.ns) == 0 {
				continue
			}
			pns := median(s.ns)
			met := sns <= pns*maxTimeShare
			ok = ok && met
			fmt.Fprintf(w, "goal ns/op ≤ 1/3 of %s: httpaudit is %.2f of it (overhead only: %.2f)  %s\n",
				p+g, sns/pns, (sns-bns)/(pns-bns), verdict(met))
			pcpu := median(s.cpu)
			if scpu <= 0 || pcpu <= 0 {
				fmt.Fprintf(w, "goal cpu-ns/op ≤ 1/2 of %s: not measured  MISSED\n", p+g)
				ok = false
				continue
			}
			met = scpu <= pcpu*maxCPUShare
			ok = ok && met
			fmt.Fprintf(w, "goal cpu-ns/op ≤ 1/2 of %s: httpaudit is %.2f of it  %s\n", p+g, scpu/pcpu, verdict(met))
		}
		allOK = allOK && ok
	}
	if !printed {
		fmt.Fprintln(w, "benchtable: no Baseline and HTTPAudit results in the input")
		return false
	}
	return allOK
}

// share formats a/b, or "n/a" when either is unknown.
func share(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
