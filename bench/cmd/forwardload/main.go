// Command forwardload measures how fast the collector's forwarding moves a
// ledger into VictoriaLogs, against the ceiling of a minimal loader posting
// the same documents, in the same batches, over as many connections, to a
// VictoriaLogs started the same way, in the same run:
//
//	go run ./cmd/forwardload -vl ~/.cache/trailguard-ci/bin/victoria-logs -events 500000 -runs 3
//
// One VictoriaLogs single node (a temporary data directory) takes every
// run; loader and forwarder alternate who goes first. The forwarder
// is trailguard's forward package as `serve` runs it (outputs: type
// victorialogs, jsonline), over a ledger filled beforehand; its rate is
// records acknowledged per second, and the time until every record was
// also confirmed stored by query is reported. It prints the medians and
// the goals (≥ 100k events/s; ≥ 0.8 of the loader's rate), met or missed.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/forward"
	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/ledger"
)

const origin = "bench.trailguard.example/forward"

// tailBytes is the collector's ledger.Options.TailBytes (server.followTailBytes).
const tailBytes = 64 << 20

func main() {
	vl := flag.String("vl", "", "victoria-logs binary (bash .ci/victoria-logs.sh prints its path)")
	events := flag.Int("events", 500_000, "events in the ledger")
	batch := flag.Int("batch", 2000, "events per request")
	conns := flag.Int("conns", 4, "connections (forwarder workers)")
	runs := flag.Int("runs", 3, "alternated runs of loader and forwarder")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the forwarder runs (this process only) to this file")
	flag.Parse()
	if *vl == "" {
		fmt.Fprintln(os.Stderr, "forwardload: -vl is required")
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "forwardload-")
	check(err)
	defer os.RemoveAll(dir)

	l := fillLedger(filepath.Join(dir, "ledger"), *events)
	defer l.Close()
	fmt.Printf("ledger: %d events; %d per request, %d connections, no gzip (loopback)\n", *events, *batch, *conns)

	// One VictoriaLogs for every run, as the issue asks ("the same
	// VictoriaLogs"): each run's documents carry their own origin (same
	// length), so the forwarder's verification counts only its own.
	n := startVL(*vl, filepath.Join(dir, "vl"))
	defer n.stop()
	var loader, fwd, verified []float64
	// CPU time per event (µs) of this process and of VictoriaLogs during
	// each side's run (the forwarder's includes its verification queries
	// and waiting for them).
	var ldrCPU, fwdCPU, vlLdrCPU, vlFwdCPU []float64
	for r := range *runs {
		// Alternate which goes first, so that neither always meets the
		// engine in the same state.
		var rate, ack, all float64
		loaderRun := func() {
			bodies := loaderBatches(l, *batch, fmt.Sprintf("bench.trailguard.example/ldr-%03d", r))
			c0, v0 := selfCPU(), n.cpu()
			rate = runLoader(n.url, bodies, *conns, *events)
			ldrCPU = append(ldrCPU, perEvent(selfCPU()-c0, *events))
			vlLdrCPU = append(vlLdrCPU, perEvent(n.cpu()-v0, *events))
		}
		forwardRun := func() {
			if *cpuprofile != "" {
				f, err := os.Create(fmt.Sprintf("%s.%d", *cpuprofile, r))
				check(err)
				check(pprof.StartCPUProfile(f))
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
			c0, v0 := selfCPU(), n.cpu()
			defer func() {
				fwdCPU = append(fwdCPU, perEvent(selfCPU()-c0, *events))
				vlFwdCPU = append(vlFwdCPU, perEvent(n.cpu()-v0, *events))
			}()
			ack, all = runForwarder(n.url, l, filepath.Join(dir, fmt.Sprintf("forward-%d", r)), fmt.Sprintf("bench.trailguard.example/fwd-%03d", r), *batch, *conns, *events)
		}
		// Each side starts on a quiet engine: right after a loader run
		// VictoriaLogs still flushes and merges its rows for seconds,
		// while after a forwarder run (which waits for verification) it
		// has had that time, so without this the side that follows the
		// loader is slowed by the loader's work.
		if r%2 == 0 {
			n.settle()
			loaderRun()
			n.settle()
			forwardRun()
		} else {
			n.settle()
			forwardRun()
			n.settle()
			loaderRun()
		}
		loader = append(loader, rate)
		fwd = append(fwd, ack)
		verified = append(verified, all)
		fmt.Printf("run %d: loader %.0f events/s; forwarder %.0f events/s acknowledged (%.2f of the loader), all verified after %.1f s\n",
			r+1, rate, ack, ack/rate, all)
	}
	ml, mf := median(loader), median(fwd)
	fmt.Printf("\nmedians of %d runs: loader %.0f events/s, forwarder %.0f events/s (%.2f of the loader); every record confirmed stored %.1f s after the start (median)\n",
		*runs, ml, mf, mf/ml, median(verified))
	fmt.Printf("CPU per event (medians): loader %.2f µs + VictoriaLogs %.2f µs; forwarder %.2f µs + VictoriaLogs %.2f µs (verification queries included)\n",
		median(ldrCPU), median(vlLdrCPU), median(fwdCPU), median(vlFwdCPU))
	goal("forwarding rate ≥ 100,000 events/s", mf >= 100_000, fmt.Sprintf("%.0f", mf))
	goal("forwarding ≥ 0.8 × the minimal loader", mf >= 0.8*ml, fmt.Sprintf("%.2f", mf/ml))
}

func goal(what string, ok bool, got string) {
	verdict := "met"
	if !ok {
		verdict = "MISSED"
	}
	fmt.Printf("goal %s: %s  %s\n", what, got, verdict)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "forwardload:", err)
		os.Exit(1)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// fillLedger appends n ~560-byte ECS events (the ingest benchmark's shape)
// with recent timestamps, so VictoriaLogs keeps them.
func fillLedger(dir string, n int) *ledger.Ledger {
	skey, _, err := ledger.GenerateKey(origin)
	check(err)
	signer, err := note.NewSigner(skey)
	check(err)
	// TailBytes as `serve` sets it (server.followTailBytes): the newest
	// 64 MiB of records reach the forwarder from the ledger's copies of
	// the bytes it hashed, the older ones are read back and checked.
	l, err := ledger.Open(dir, ledger.Options{Origin: origin, Signer: signer, TailBytes: tailBytes, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	check(err)
	ts := time.Now().UTC()
	for i := 0; i < n; i += 1000 {
		recs := make([][]byte, 0, 1000)
		for j := i; j < min(n, i+1000); j++ {
			recs = append(recs, fmt.Appendf(nil, `{"@timestamp":"%s","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":1834000,"id":"0193a1b2-c3d4-7e5f-8000-%012d","dataset":"trailguard.access","ingested":"%s"},"http":{"request":{"id":"req-%08d","method":"GET"},"response":{"status_code":200,"body":{"bytes":512}}},"url":{"path":"/api/orders/%d","query":"page=2"},"source":{"ip":"10.1.%d.%d","port":51234},"user":{"name":"user%03d"},"user_agent":{"original":"Mozilla/5.0 (X11; Linux x86_64)"},"service":{"name":"orders-api"}}`,
				ts.Add(time.Duration(j)*time.Microsecond).Format(time.RFC3339Nano), j, ts.Format(time.RFC3339Nano), j, j, j%250, j%200, j%500))
		}
		_, err := l.Append(context.Background(), recs...)
		check(err)
	}
	return l
}

// loaderBatches pre-builds the request bodies the forwarder would send:
// each record with trailguard.ledger.origin and .index added.
func loaderBatches(l *ledger.Ledger, batch int, origin string) [][]byte {
	var out [][]byte
	var b []byte
	k := 0
	for e, err := range l.Entries(0) {
		check(err)
		b = append(b, e.Data[:len(e.Data)-1]...)
		b = append(b, `,"trailguard.ledger.origin":"`+origin+`","trailguard.ledger.index":`...)
		b = strconv.AppendUint(b, e.Index, 10)
		b = append(b, "}\n"...)
		if k++; k == batch {
			out, b, k = append(out, b), nil, 0
		}
	}
	if len(b) > 0 {
		out = append(out, b)
	}
	return out
}

const insertPath = "/insert/jsonline?_time_field=%40timestamp&_msg_field=message&_stream_fields=service.name%2Cevent.dataset"

// runLoader posts the bodies over conns connections and returns events/s.
func runLoader(base string, bodies [][]byte, conns, events int) float64 {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conns
	client := &http.Client{Transport: tr}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(bodies) {
					return
				}
				req, _ := http.NewRequest("POST", base+insertPath, bytes.NewReader(bodies[i]))
				req.Header.Set("Content-Type", "application/x-ndjson")
				resp, err := client.Do(req)
				check(err)
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					check(fmt.Errorf("loader: %s", resp.Status))
				}
			}
		}()
	}
	wg.Wait()
	return float64(events) / time.Since(start).Seconds()
}

// runForwarder forwards the whole ledger and returns the acknowledged rate
// and the seconds until every record was confirmed stored.
func runForwarder(base string, l *ledger.Ledger, dir, origin string, batch, conns, events int) (float64, float64) {
	off := false
	cfg := forward.Config{Name: "bench", Type: forward.TypeVictoriaLogs, URL: base, BatchEvents: batch, BatchBytes: 64 << 20,
		Workers: conns, Gzip: &off, FlushInterval: 100 * time.Millisecond, VerifyDelay: 6 * time.Second,
		StreamFields: []string{"service.name", "event.dataset"}}
	m, err := forward.Open([]forward.Config{cfg}, forward.Options{Dir: dir, Origin: origin, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	check(err)
	start := time.Now()
	m.Start(l)
	defer m.Close()
	var acked time.Duration
	for {
		st := m.Stats()[0]
		if acked == 0 && st.Acknowledged >= uint64(events) {
			acked = time.Since(start)
		}
		if st.Cursor >= uint64(events) {
			break
		}
		if time.Since(start) > 10*time.Minute {
			check(fmt.Errorf("forwarder stuck: %+v", st))
		}
		// Stats reads a ledger record (the lag's age): polling it every
		// 2 ms cost the forwarder's process ~9% of its CPU. 10 ms is
		// under 1% of a timed run.
		time.Sleep(10 * time.Millisecond)
	}
	return float64(events) / acked.Seconds(), time.Since(start).Seconds()
}

type vlNode struct {
	url string
	cmd *exec.Cmd
}

func startVL(bin, dir string) *vlNode {
	srv, err := testenv.Launch("victoria-logs", func(addr string) *exec.Cmd {
		cmd := exec.Command(bin, "-httpListenAddr="+addr, "-storageDataPath="+dir, "-retentionPeriod=30d", "-loggerLevel=ERROR")
		cmd.Stderr = os.Stderr
		return cmd
	})
	check(err)
	cmd, addr := srv.Cmd, srv.Addr
	n := &vlNode{url: "http://" + addr, cmd: cmd}
	for i := 0; ; i++ {
		if resp, err := http.Get(n.url + "/health"); err == nil {
			resp.Body.Close()
			n.warmUp()
			return n
		}
		if i > 400 {
			check(fmt.Errorf("victoria-logs did not start"))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// warmUp stores a few rows of another origin, so that neither side pays
// a fresh node's first-request costs (seconds on a busy machine) in its
// timed run.
func (n *vlNode) warmUp() {
	var b []byte
	for i := range 4000 {
		b = fmt.Appendf(b, `{"@timestamp":"%s","message":"warm-up %d","service":{"name":"orders-api"},"event":{"dataset":"trailguard.access"}}`+"\n", time.Now().UTC().Format(time.RFC3339Nano), i)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", n.url+insertPath, bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/x-ndjson")
			resp, err := http.DefaultClient.Do(req)
			check(err)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
}

// selfCPU is this process's user and system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func perEvent(d time.Duration, events int) float64 {
	return float64(d.Microseconds()) / float64(events)
}

// cpu is VictoriaLogs' CPU time so far (from /proc; 0 without it).
func (n *vlNode) cpu() time.Duration {
	t, _ := n.ticks()
	return time.Duration(t) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// ticks is VictoriaLogs' user and system CPU time in clock ticks.
func (n *vlNode) ticks() (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.cmd.Process.Pid))
	if err != nil {
		return 0, false
	}
	// Fields after the command name, which ends at the last ')': utime
	// and stime are the 12th and 13th.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, false
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return u + st, true
}

// settle asks VictoriaLogs to flush and waits until its CPU use (from
// /proc) stays below a tenth of a core for half a second, at most a
// minute.
func (n *vlNode) settle() {
	if resp, err := http.Get(n.url + "/internal/force_flush"); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	prev, ok := n.ticks()
	if !ok {
		time.Sleep(3 * time.Second) // no /proc: a fixed pause
		return
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		t, _ := n.ticks()
		if t-prev < 5 { // 100 ticks/s: under 10% of a core
			return
		}
		prev = t
	}
}

func (n *vlNode) stop() {
	n.cmd.Process.Signal(syscall.SIGTERM)
	n.cmd.Wait()
}
