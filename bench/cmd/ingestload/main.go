// Command ingestload measures the collector's ingest rate the way a fleet
// of shippers would load it: a separate process posting NDJSON batches of
// ~560-byte events over loopback to POST /v1/events, several connections
// at once, each request answered only once its events are durable.
//
//	go run ./cmd/ingestload -bin /tmp/trailguard -events 2000000
//
// It starts `trailguard serve` (the binary given by -bin) on a fresh data
// directory, creates an ingest token with `trailguard token create`, runs
// for a fixed number of events, and prints events/s, request-time
// percentiles and the server process's CPU time per event, then stops the
// collector with SIGTERM.
//
// With -vl instead of -bin it starts a VictoriaLogs single node (the binary
// given, on a fresh data directory) and posts the same bodies to its
// /insert/jsonline, for the peer figure:
//
//	go run ./cmd/ingestload -vl ~/.cache/trailguard-ci/bin/victoria-logs -events 1000000
//
// With both -bin and -vl it compares them (issue 15 item 3): -runs runs of
// each, alternated (trailguard, VictoriaLogs, and -base if given, the
// order rotating from round to round), each on a fresh data directory; it prints every run, the medians, the ratios and
// whether each goal is met (throughput ≥ 0.8× VictoriaLogs', the stretch
// 1.0×; p99 request time no worse than VictoriaLogs'), and exits 2 when the
// main goal is missed. -rate offers events at a fixed rate instead of as
// fast as answered, for the index lag at that rate (issue 15 item 6). On a
// machine shared with other work, read the ratios
// and the CPU time per event (which load moves far less) rather than the
// absolute rates.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

func main() {
	run()
	os.Exit(exitCode)
}

// lagTrace is -lagtrace.
var lagTrace *string

// exitCode is set instead of calling os.Exit, so that deferred stops of
// the servers always run.
var exitCode int

// result is one load run.
type result struct {
	events        int
	elapsed       time.Duration
	rate          float64 // events/s
	mbps          float64
	p50, p99, max time.Duration
	failed        int64
	cpuPerEvent   time.Duration // the server process's CPU (user+system) per event; 0 if unknown
	cores         float64       // its CPU time over the elapsed time
	// The collector only: records not yet indexed when the last answer
	// came, how long the index took to catch up, and the CPU per event
	// until it had (what the events cost in all).
	lagAtEnd   int64
	catchUp    time.Duration
	cpuIndexed time.Duration
	// The index lag in time, sampled every lagEvery from the start of the
	// load until the index caught up: how long ago the ledger first held
	// the oldest record not yet indexed (issue 15 item 6).
	lagP50, lagP99, lagMax time.Duration
}

// lagEvery is how often the collector's /metrics is read for the index lag.
const lagEvery = 100 * time.Millisecond

// target is a server to load.
type target struct {
	name     string
	base     string
	path     string // ingest path and query
	token    string
	wantBody string // a substring every answer must hold
	pid      int    // server process for CPU accounting (0: unknown)
	readTok  string // the collector: a read token for /metrics (index lag)
}

type options struct {
	events, batch, conns int
	rate                 float64 // events/s to offer at most (0: as fast as answered)
}

func run() {
	bin := flag.String("bin", "", "trailguard binary (go build -o /tmp/trailguard ./cmd/trailguard)")
	events := flag.Int("events", 1_000_000, "events to send per run")
	batch := flag.Int("batch", 1000, "events per request")
	conns := flag.Int("conns", 8, "concurrent connections")
	url := flag.String("url", "", "an already running collector's base URL (then -token is needed, -bin not)")
	token := flag.String("token", "", "ingest token for -url")
	vl := flag.String("vl", "", "victoria-logs binary: load VictoriaLogs (with -bin too: compare the two)")
	base := flag.String("base", "", "with -bin and -vl: another trailguard build (e.g. main's) run in the same rounds, alternated with the two, and compared with -bin")
	runs := flag.Int("runs", 3, "runs of each server when comparing (-bin and -vl)")
	lagTrace = flag.String("lagtrace", "", "append the collector's index lag samples to this file (ms since start, ledger records, index records, lag ms)")
	rate := flag.Float64("rate", 0, "offer at most this many events/s (requests start on a fixed schedule; 0: each connection sends as soon as it was answered): the index lag at a given ingest rate")
	flag.Parse()
	opt := options{*events, *batch, *conns, *rate}

	one := func(start func() (target, func(), error)) (result, bool) {
		t, stop, err := start()
		if err != nil {
			fmt.Fprintln(os.Stderr, "ingestload:", err)
			exitCode = 1
			return result{}, false
		}
		defer stop()
		return load(t, opt), true
	}
	collector := func() (target, func(), error) { return startCollector(*bin, opt.batch) }
	victoria := func() (target, func(), error) { return startVictoriaLogs(*vl) }

	switch {
	case *url != "":
		print(load(target{name: "collector", base: *url, path: "/v1/events", token: *token,
			wantBody: fmt.Sprintf(`"accepted":%d`, opt.batch)}, opt))
	case *bin != "" && *vl != "":
		var baseline func() (target, func(), error)
		if *base != "" {
			baseline = func() (target, func(), error) { return startCollector(*base, opt.batch) }
		}
		compare(collector, victoria, baseline, *runs, opt, one)
	case *vl != "":
		if r, ok := one(victoria); ok {
			print(r)
		}
	case *bin != "":
		if r, ok := one(collector); ok {
			print(r)
		}
	default:
		fmt.Fprintln(os.Stderr, "ingestload: -bin, -vl or -url is required")
		exitCode = 2
	}
}

func print(r result) {
	fmt.Printf("ingest: %d events in %v\n", r.events, r.elapsed.Round(time.Millisecond))
	fmt.Printf("rate:   %.0f events/s, %.1f MB/s\n", r.rate, r.mbps)
	fmt.Printf("request time: p50 %v  p99 %v  max %v  (failed requests: %d)\n", r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.max.Round(time.Microsecond), r.failed)
	if r.cpuPerEvent > 0 {
		fmt.Printf("server CPU: %.2f µs/event (%.2f cores busy on average)\n", float64(r.cpuPerEvent)/1e3, r.cores)
	}
	if r.cpuIndexed > 0 {
		fmt.Printf("index: %d records behind at the last answer, caught up %v later; server CPU until then: %.2f µs/event\n", r.lagAtEnd, r.catchUp.Round(time.Millisecond), float64(r.cpuIndexed)/1e3)
		fmt.Printf("index lag in time (sampled every %v until caught up): p50 %v, p99 %v, max %v (issue 15 goal: p99 ≤ 1s)\n", lagEvery, r.lagP50.Round(time.Millisecond), r.lagP99.Round(time.Millisecond), r.lagMax.Round(time.Millisecond))
	}
	if r.failed > 0 {
		exitCode = 1
	}
}

// ratios formats paired ratios, in round order.
func ratios(v []float64) string {
	var b strings.Builder
	for i, x := range v {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%.2f", x)
	}
	return b.String()
}

// compare alternates runs of the collector and VictoriaLogs (and of
// baseline, another build of the collector, when not nil) and prints the
// goals of issue 15 item 3.
func compare(collector, victoria, baseline func() (target, func(), error), runs int, opt options, one func(func() (target, func(), error)) (result, bool)) {
	var tg, vl, bl []result
	fmt.Printf("%d events per run (%d per request, %d connections), %d runs each, alternated\n", opt.events, opt.batch, opt.conns, runs)
	if opt.rate > 0 {
		fmt.Printf("offered at most %.0f events/s\n", opt.rate)
	}
	fmt.Printf("%-4s %-13s %10s %8s %8s %12s %6s   %s\n", "run", "server", "events/s", "p50", "p99", "CPU µs/event", "cores", "index behind at the end; caught up after; CPU µs/event until then; lag p99")
	row := func(i int, name string, r result) {
		fmt.Printf("%-4d %-13s %10.0f %8v %8v %12.2f %6.2f", i, name, r.rate, r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), float64(r.cpuPerEvent)/1e3, r.cores)
		if r.cpuIndexed > 0 {
			fmt.Printf("   %d records; %v; %.2f; %v", r.lagAtEnd, r.catchUp.Round(100*time.Millisecond), float64(r.cpuIndexed)/1e3, r.lagP99.Round(100*time.Millisecond))
		}
		fmt.Println()
	}
	// The order rotates from round to round, so that each server runs as
	// often in each place of a round (with -runs a multiple of the
	// servers): the place moves the figures. In the place right after
	// VictoriaLogs a build used 2-7 % more CPU per event than the build run
	// first in the same round (twenty-third session: main and a candidate,
	// swapped between the two places, each lower in every round from the
	// first place; the cause was not looked for).
	type server struct {
		name  string
		start func() (target, func(), error)
		res   *[]result
	}
	order := []server{{"trailguard", collector, &tg}, {"VictoriaLogs", victoria, &vl}}
	if baseline != nil {
		order = append(order, server{"base build", baseline, &bl})
	}
	for i := 1; i <= runs; i++ {
		for k := range order {
			sv := order[(i-1+k)%len(order)]
			r, ok := one(sv.start)
			if !ok || r.failed > 0 {
				exitCode = 1
				return
			}
			*sv.res = append(*sv.res, r)
			row(i, sv.name, r)
		}
	}
	med := func(rs []result, f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	rate := func(r result) float64 { return r.rate }
	p99 := func(r result) float64 { return r.p99.Seconds() * 1e3 }
	cpu := func(r result) float64 { return float64(r.cpuPerEvent) / 1e3 }
	tr, vr := med(tg, rate), med(vl, rate)
	tp, vp := med(tg, p99), med(vl, p99)
	tc, vc := med(tg, cpu), med(vl, cpu)
	fmt.Printf("medians: trailguard %.0f events/s, p99 %.0f ms, %.2f CPU µs/event; VictoriaLogs %.0f events/s, p99 %.0f ms, %.2f CPU µs/event\n", tr, tp, tc, vr, vp, vc)
	fmt.Printf("trailguard ÷ VictoriaLogs: throughput %.2f, p99 %.2f, CPU per event %.2f\n", tr/vr, tp/vp, tc/vc)
	if len(bl) > 0 {
		br, bp, bc := med(bl, rate), med(bl, p99), med(bl, cpu)
		fmt.Printf("base build: %.0f events/s, p99 %.0f ms, %.2f CPU µs/event; ÷ VictoriaLogs: throughput %.2f, p99 %.2f\n", br, bp, bc, br/vr, bp/vp)
		fmt.Printf("trailguard ÷ base build: throughput %.2f, p99 %.2f, CPU per event %.2f\n", tr/br, tp/bp, tc/bc)
		// Round by round (the two ran within a minute of each other):
		// the spread of these is what a difference must exceed.
		var pr, pc []float64
		lower := 0
		for i := range bl {
			pr = append(pr, tg[i].rate/bl[i].rate)
			pc = append(pc, float64(tg[i].cpuPerEvent)/float64(bl[i].cpuPerEvent))
			if tg[i].cpuPerEvent < bl[i].cpuPerEvent {
				lower++
			}
		}
		fmt.Printf("trailguard ÷ base build, round by round: throughput %s; CPU per event %s (lower in %d of %d)\n", ratios(pr), ratios(pc), lower, len(bl))
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Printf("goal throughput ≥ 0.8× VictoriaLogs: %.2f  %s\n", tr/vr, verdict(tr/vr >= 0.8))
	fmt.Printf("goal throughput ≥ 1.0× VictoriaLogs (stretch): %.2f  %s\n", tr/vr, verdict(tr/vr >= 1.0))
	fmt.Printf("goal p99 request time ≤ VictoriaLogs': %.0f ms vs %.0f ms  %s\n", tp, vp, verdict(tp <= vp))
	lag := med(tg, func(r result) float64 { return r.lagP99.Seconds() })
	fmt.Printf("goal index lag p99 ≤ 1 s while ingesting (issue 15 item 6): %.1f s  %s\n", lag, verdict(lag <= 1))
	if tr/vr < 0.8 || tp > vp {
		exitCode = 2
	}
}

// load posts opt.events events to t and measures.
func load(t target, opt options) result {
	tmpl, slots := makeBatch(opt.batch)
	requests := opt.events / opt.batch
	var next atomic.Int64
	var failed atomic.Int64
	lat := make([][]time.Duration, opt.conns)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: opt.conns}, Timeout: time.Minute}
	defer client.CloseIdleConnections()
	cpu0 := cpuTime(t.pid)
	start := time.Now()
	var lags lagSampler
	stopLag := make(chan struct{})
	lagDone := make(chan struct{})
	if t.readTok != "" {
		go func() {
			defer close(lagDone)
			tick := time.NewTicker(lagEvery)
			defer tick.Stop()
			for {
				lags.sample(t)
				select {
				case <-stopLag:
					return
				case <-tick.C:
				}
			}
		}()
	} else {
		close(lagDone)
	}
	var wg sync.WaitGroup
	for c := range opt.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := make([]byte, len(tmpl))
			for {
				n := next.Add(1)
				if n > int64(requests) {
					break
				}
				if opt.rate > 0 {
					// Request n starts at its slot of the schedule.
					time.Sleep(time.Until(start.Add(time.Duration(float64(n-1) * float64(opt.batch) / opt.rate * float64(time.Second)))))
				}
				// Every event needs its own event.id: the collector drops
				// ids it stored recently, as resends.
				copy(body, tmpl)
				for _, off := range slots {
					putDigits(body[off:off+8], n)
				}
				req, _ := http.NewRequest("POST", t.base+t.path, bytes.NewReader(body))
				if t.token != "" {
					req.Header.Set("Authorization", "Bearer "+t.token)
				}
				// Without this Content-Type VictoriaLogs stores nothing.
				req.Header.Set("Content-Type", "application/x-ndjson")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !bytes.Contains(out, []byte(t.wantBody)) {
					failed.Add(1)
					fmt.Fprintf(os.Stderr, "ingestload: %s: %d %.200s\n", t.name, resp.StatusCode, out)
					continue
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime(t.pid) - cpu0
	var lagAtEnd int64 = -1
	var catchUp, cpuIndexed time.Duration
	if t.readTok != "" {
		lagAtEnd = indexLag(t)
		for lag := lagAtEnd; lag > 0 && time.Since(start) < 10*time.Minute; lag = indexLag(t) {
			time.Sleep(20 * time.Millisecond)
		}
		catchUp = time.Since(start) - elapsed
		cpuIndexed = cpuTime(t.pid) - cpu0
	}
	close(stopLag)
	<-lagDone
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(float64(len(all))*p))]
	}
	sent := len(all) * opt.batch
	r := result{events: sent, elapsed: elapsed, failed: failed.Load(),
		rate: float64(sent) / elapsed.Seconds(), mbps: float64(len(all)*len(tmpl)) / elapsed.Seconds() / 1e6,
		p50: pct(0.50), p99: pct(0.99), max: pct(1)}
	if t.pid != 0 && sent > 0 && cpu > 0 {
		r.cpuPerEvent = cpu / time.Duration(sent)
		r.cores = cpu.Seconds() / elapsed.Seconds()
	}
	if lagAtEnd >= 0 && sent > 0 {
		r.lagAtEnd, r.catchUp, r.cpuIndexed = lagAtEnd, catchUp, cpuIndexed/time.Duration(sent)
		r.lagP50, r.lagP99, r.lagMax = lags.percentiles()
		if *lagTrace != "" {
			lags.write(*lagTrace)
		}
	}
	return r
}

// lagSampler turns samples of the ledger's and the index's record counts
// into the index lag in time: at each sample, how long ago the ledger
// first held more records than the index holds now (0 when caught up),
// to within lagEvery.
type lagSampler struct {
	at      []time.Time
	ledger  []int64 // records in the ledger at at[i]
	indexed []int64 // records in the index at at[i]
	lags    []time.Duration
}

func (s *lagSampler) sample(t target) {
	size, indexed, ok := ledgerAndIndex(t)
	if !ok {
		return
	}
	now := time.Now()
	s.at = append(s.at, now)
	s.ledger = append(s.ledger, size)
	s.indexed = append(s.indexed, indexed)
	lag := time.Duration(0)
	if indexed < size {
		// The first sample whose ledger already held record indexed.
		i, _ := slices.BinarySearch(s.ledger, indexed+1)
		lag = now.Sub(s.at[i])
	}
	s.lags = append(s.lags, lag)
}

func (s *lagSampler) percentiles() (p50, p99, max time.Duration) {
	if len(s.lags) == 0 {
		return 0, 0, 0
	}
	l := slices.Clone(s.lags)
	slices.Sort(l)
	return l[len(l)/2], l[min(len(l)-1, len(l)*99/100)], l[len(l)-1]
}

// write writes the samples to the file name (-lagtrace), a line each:
// milliseconds since the first, ledger records, index records, lag in
// milliseconds; it appends, so that runs can share a file (a line "run"
// starts each).
func (s *lagSampler) write(name string) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingestload: lag trace:", err)
		return
	}
	defer f.Close()
	var b bytes.Buffer
	b.WriteString("run\n")
	for i := range s.lags {
		fmt.Fprintf(&b, "%d %d %d %d\n", s.at[i].Sub(s.at[0]).Milliseconds(), s.ledger[i], s.indexed[i], s.lags[i].Milliseconds())
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		fmt.Fprintln(os.Stderr, "ingestload: lag trace:", err)
	}
}

// ledgerAndIndex reads the ledger's and the index's record counts from
// the collector's /metrics.
func ledgerAndIndex(t target) (size, indexed int64, ok bool) {
	m := metrics(t, "trailguard_ledger_records", "trailguard_index_records")
	size, ok1 := m["trailguard_ledger_records"]
	indexed, ok2 := m["trailguard_index_records"]
	return size, indexed, ok1 && ok2
}

// metrics reads the named values from the collector's /metrics.
func metrics(t target, names ...string) map[string]int64 {
	m := map[string]int64{}
	req, _ := http.NewRequest("GET", t.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+t.readTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		for _, name := range names {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
					m[name] = n
				}
			}
		}
	}
	return m
}

// indexLag reads trailguard_index_lag_records from the collector's
// /metrics (-1 when it cannot).
func indexLag(t target) int64 {
	if n, ok := metrics(t, "trailguard_index_lag_records")["trailguard_index_lag_records"]; ok {
		return n
	}
	return -1
}

// cpuTime is the user+system CPU time of process pid so far (0 when
// unknown), from /proc.
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15 (clock ticks).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz
}

func putDigits(b []byte, n int64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
}

// makeBatch builds n ~560-byte ECS events as NDJSON, and the offsets of
// an 8-digit request number inside each event.id.
func makeBatch(n int) ([]byte, []int) {
	var b bytes.Buffer
	var slots []int
	for i := range n {
		slots = append(slots, b.Len()+len(`{"@timestamp":"2026-11-25T12:00:00.000000Z","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":1834000,"id":"0193a1b2-c3d4-7e5f-`))
		fmt.Fprintf(&b, `{"@timestamp":"2026-11-25T12:00:%02d.%06dZ","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":1834000,"id":"0193a1b2-c3d4-7e5f-RRRRRRRR%012d","dataset":"trailguard.access"},"http":{"request":{"id":"req-%08d","method":"GET"},"response":{"status_code":200,"body":{"bytes":512}}},"url":{"path":"/api/orders/%d","query":"page=2"},"source":{"ip":"10.1.%d.%d","port":51234},"user":{"name":"user%03d"},"user_agent":{"original":"Mozilla/5.0 (X11; Linux x86_64)"},"service":{"name":"orders-api"}}`+"\n",
			i%60, i%1000000, i, i, i%1000, i%250, i%200, i%500)
	}
	return b.Bytes(), slots
}

// waitUp polls url until it answers or tries run out.
func waitUp(url string, cmd *exec.Cmd, what string) error {
	for i := 0; ; i++ {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return nil
		}
		if i > 400 {
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("%s did not start", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// startVictoriaLogs runs a VictoriaLogs single node on a fresh data
// directory until stop.
func startVictoriaLogs(bin string) (target, func(), error) {
	dir, err := os.MkdirTemp("", "ingestload-vl-")
	if err != nil {
		return target{}, nil, err
	}
	srv, err := testenv.Launch("victoria-logs", func(addr string) *exec.Cmd {
		cmd := exec.Command(bin, "-httpListenAddr="+addr, "-storageDataPath="+dir, "-retentionPeriod=100y", "-loggerLevel=ERROR")
		cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
		return cmd
	})
	if err != nil {
		os.RemoveAll(dir)
		return target{}, nil, err
	}
	cmd, addr := srv.Cmd, srv.Addr
	base := "http://" + addr
	if err := waitUp(base+"/health", cmd, "victoria-logs"); err != nil {
		os.RemoveAll(dir)
		return target{}, nil, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		os.RemoveAll(dir)
	}
	// VictoriaLogs answers 200 with no body.
	return target{name: "VictoriaLogs", base: base, pid: cmd.Process.Pid,
		path: "/insert/jsonline?_time_field=%40timestamp&_msg_field=message&_stream_fields=service.name"}, stop, nil
}

// startCollector runs `trailguard serve` on a fresh data directory, with
// an ingest token, until stop.
func startCollector(bin string, batch int) (target, func(), error) {
	dir, err := os.MkdirTemp("", "ingestload-")
	if err != nil {
		return target{}, nil, err
	}
	out, err := exec.Command(bin, "token", "create", "--data", dir, "--role", "ingest", "--name", "load").Output()
	if err != nil {
		return target{}, nil, fmt.Errorf("token create: %w", err)
	}
	tok := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	out, err = exec.Command(bin, "token", "create", "--data", dir, "--role", "read", "--name", "metrics").Output()
	if err != nil {
		return target{}, nil, fmt.Errorf("token create: %w", err)
	}
	readTok := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	srv, err := testenv.Launch("collector", func(addr string) *exec.Cmd {
		cmd := exec.Command(bin, "serve", "--data-dir", dir, "--listen", addr)
		cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
		return cmd
	})
	if err != nil {
		os.RemoveAll(dir)
		return target{}, nil, err
	}
	cmd, addr := srv.Cmd, srv.Addr
	base := "http://" + addr
	if err := waitUp(base+"/healthz", cmd, "collector"); err != nil {
		os.RemoveAll(dir)
		return target{}, nil, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		os.RemoveAll(dir)
	}
	return target{name: "trailguard", base: base, path: "/v1/events", token: tok, readTok: readTok, pid: cmd.Process.Pid,
		wantBody: fmt.Sprintf(`"accepted":%d`, batch)}, stop, nil
}
