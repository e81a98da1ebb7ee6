package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{9, 1, 8, 2, 7}, 7},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

const sample = `goos: linux
BenchmarkBaseline-2            	  960770	      1000 ns/op	    1008 B/op	       9 allocs/op
BenchmarkBaseline-2            	  960770	      3000 ns/op	    1008 B/op	       9 allocs/op
BenchmarkBaseline-2            	  960770	      2000 ns/op	    1008 B/op	       9 allocs/op
BenchmarkHTTPAudit-2           	  127857	      3000 ns/op	   59.00 backlog	      4000 cpu-ns/op	    2268 B/op	      12 allocs/op
BenchmarkHTTPLog-2             	  118152	     12000 ns/op	    3817 B/op	      35 allocs/op
BenchmarkSlogHTTP-2            	  137348	      6000 ns/op	      6000 cpu-ns/op	    2928 B/op	      23 allocs/op
BenchmarkHTTPAuditParallel     	  127857	      3000 ns/op	    2268 B/op	      17 allocs/op
BenchmarkBaselineParallel      	  127857	      1000 ns/op	    2268 B/op	      9 allocs/op
BenchmarkSlogHTTPParallel      	  127857	      9000 ns/op	    2268 B/op	      30 allocs/op
PASS
`

func TestReport(t *testing.T) {
	res, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if got := median(res["Baseline"].ns); got != 2000 {
		t.Fatalf("baseline median %v, want 2000", got)
	}
	if len(res["HTTPAuditParallel"].allocs) != 1 {
		t.Fatalf("parallel samples: %+v", res["HTTPAuditParallel"])
	}
	var out bytes.Buffer
	ok := report(&out, res)
	t.Log(out.String())
	// Serial: 3 own allocs (met), 3000 ≤ 12000/3 (met) but 3000 > 6000/3
	// (missed). Parallel: 8 own allocs (missed), HTTPLogParallel missing.
	if ok {
		t.Error("report says every goal is met")
	}
	for _, want := range []string{
		"goal own allocs ≤ 4: httpaudit 3  met",
		"1/3 of HTTPLog: httpaudit is 0.25 of it (overhead only: 0.10)  met",
		"goal cpu-ns/op ≤ 1/2 of HTTPLog: not measured  MISSED",
		"1/3 of SlogHTTP: httpaudit is 0.50 of it (overhead only: 0.25)  MISSED",
		"goal cpu-ns/op ≤ 1/2 of SlogHTTP: httpaudit is 0.67 of it  MISSED",
		"goal own allocs ≤ 4: httpaudit 8  MISSED",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^HTTPLogParallel +missing$`).MatchString(out.String()) {
		t.Error("report does not say HTTPLogParallel is missing")
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
		samples  int // of X
	}{
		{"result", "BenchmarkX-2 10 5 ns/op\n", true, 1},
		{"non-number value", "BenchmarkX-2 10 abc ns/op\n", false, 0},
		{"log line after the name", "BenchmarkX-2 \t2026/11/25 17:55:16 WARN queue full dropped_total=1\nBenchmarkX-2 10 5 ns/op\n", true, 1},
		{"failed benchmark", "BenchmarkX-2 10 5 ns/op\n--- FAIL: BenchmarkX-2\nPASS\n", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := parse(strings.NewReader(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && len(res["X"].ns) != tt.samples {
				t.Errorf("%d samples, want %d", len(res["X"].ns), tt.samples)
			}
		})
	}
}

// TestCPUGoal: the CPU goal is met at half of the peer's cpu-ns/op or less
// and missed above it, whatever ns/op says.
func TestCPUGoal(t *testing.T) {
	in := `BenchmarkBaseline-2 10 100 ns/op 100 cpu-ns/op 0 B/op 9 allocs/op
BenchmarkHTTPAudit-2 10 300 ns/op 2000 cpu-ns/op 0 B/op 10 allocs/op
BenchmarkHTTPLog-2 10 900 ns/op 4000 cpu-ns/op 0 B/op 30 allocs/op
BenchmarkSlogHTTP-2 10 900 ns/op 3999 cpu-ns/op 0 B/op 30 allocs/op
`
	res, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if report(&out, res) {
		t.Error("report says every goal is met")
	}
	for _, want := range []string{
		"goal cpu-ns/op ≤ 1/2 of HTTPLog: httpaudit is 0.50 of it  met",
		"goal cpu-ns/op ≤ 1/2 of SlogHTTP: httpaudit is 0.50 of it  MISSED",
		"goal ns/op ≤ 1/3 of SlogHTTP: httpaudit is 0.33 of it (overhead only: 0.25)  met",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestBaseRevision: run.sh's BaseHTTPAudit results (BASE set) are a row of
// their own and compared with httpaudit's, and set no goal.
func TestBaseRevision(t *testing.T) {
	in := `BenchmarkBaseline-2 10 100 ns/op 100 cpu-ns/op 0 B/op 9 allocs/op
BenchmarkHTTPAudit-2 10 300 ns/op 900 cpu-ns/op 0 B/op 10 allocs/op
BenchmarkBaseHTTPAudit-2 10 400 ns/op 1200 cpu-ns/op 0 B/op 10 allocs/op
BenchmarkHTTPLog-2 10 1200 ns/op 4000 cpu-ns/op 0 B/op 30 allocs/op
BenchmarkSlogHTTP-2 10 1200 ns/op 4000 cpu-ns/op 0 B/op 30 allocs/op
`
	res, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if !report(&out, res) {
		t.Errorf("a base revision's row made a goal fail:\n%s", out.String())
	}
	if !regexp.MustCompile(`(?m)^BaseHTTPAudit +400 +300 +1200 `).MatchString(out.String()) ||
		!strings.Contains(out.String(), "httpaudit against its base revision: ns/op 0.75, cpu-ns/op 0.75 of the base's") {
		t.Errorf("no base row or comparison:\n%s", out.String())
	}
}
