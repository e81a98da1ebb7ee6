// Command ingestload measures the collector's ingest rate the way a fleet
// of shippers would load it: a separate process posting NDJSON batches of
// ~500-byte events over loopback to POST /v1/events, several connections
// at once, each request answered only once its events are durable.
//
//	go run ./cmd/ingestload -bin /tmp/trailguard -events 2000000
//
// It starts `trailguard serve` (the binary given by -bin) on a fresh data
// directory, creates an ingest token with `trailguard token create`, runs
// for a fixed number of events, and prints events/s and request-time
// percentiles, then stops the collector with SIGTERM.
//
// With -vl instead of -bin it starts a VictoriaLogs single node (the binary
// given, on a fresh data directory) and posts the same bodies to its
// /insert/jsonline, for the peer figure of the same run:
//
//	go run ./cmd/ingestload -vl ~/.cache/trailguard-ci/bin/victoria-logs -events 1000000
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	run()
	os.Exit(exitCode)
}

func run() {
	bin := flag.String("bin", "", "trailguard binary (go build -o /tmp/trailguard ./cmd/trailguard)")
	events := flag.Int("events", 1_000_000, "events to send in total")
	batch := flag.Int("batch", 1000, "events per request")
	conns := flag.Int("conns", 8, "concurrent connections")
	url := flag.String("url", "", "an already running collector's base URL (then -token is needed, -bin not)")
	token := flag.String("token", "", "ingest token for -url")
	vl := flag.String("vl", "", "victoria-logs binary: load VictoriaLogs instead of the collector")
	flag.Parse()

	base, tok := *url, *token
	path, wantBody := "/v1/events", fmt.Sprintf(`"accepted":%d`, *batch)
	if *vl != "" {
		var stop func()
		var err error
		base, stop, err = startVictoriaLogs(*vl)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ingestload:", err)
			os.Exit(1)
		}
		defer stop()
		// VictoriaLogs answers 200 with no body; without this
		// Content-Type it would store nothing.
		path, wantBody = "/insert/jsonline?_time_field=%40timestamp&_msg_field=message&_stream_fields=service.name", ""
	} else if base == "" {
		if *bin == "" {
			fmt.Fprintln(os.Stderr, "ingestload: -bin or -url is required")
			os.Exit(2)
		}
		var stop func()
		var err error
		base, tok, stop, err = startCollector(*bin)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ingestload:", err)
			os.Exit(1)
		}
		defer stop()
	}
	tmpl, slots := makeBatch(*batch)
	requests := *events / *batch
	var next atomic.Int64
	var failed atomic.Int64
	lat := make([][]time.Duration, *conns)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conns}, Timeout: time.Minute}
	start := time.Now()
	var wg sync.WaitGroup
	for c := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := make([]byte, len(tmpl))
			for {
				n := next.Add(1)
				if n > int64(requests) {
					break
				}
				// Every event needs its own event.id: the collector drops
				// ids it stored recently, as resends.
				copy(body, tmpl)
				for _, off := range slots {
					putDigits(body[off:off+8], n)
				}
				req, _ := http.NewRequest("POST", base+path, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/x-ndjson")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !bytes.Contains(out, []byte(wantBody)) {
					failed.Add(1)
					fmt.Fprintf(os.Stderr, "ingestload: %d %.200s\n", resp.StatusCode, out)
					continue
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(float64(len(all))*p))]
	}
	sent := len(all) * *batch
	fmt.Printf("ingest: %d events (%d-byte events, %d per request, %d connections) in %v\n", sent, len(tmpl)/(*batch), *batch, *conns, elapsed.Round(time.Millisecond))
	fmt.Printf("rate:   %.0f events/s, %.1f MB/s\n", float64(sent)/elapsed.Seconds(), float64(len(all)*len(tmpl))/elapsed.Seconds()/1e6)
	fmt.Printf("request time: p50 %v  p99 %v  max %v  (failed requests: %d)\n", pct(0.50).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), pct(1).Round(time.Microsecond), failed.Load())
	if failed.Load() > 0 {
		exitCode = 1
	}
}

// exitCode is set instead of calling os.Exit, so that the deferred stop of
// the collector always runs.
var exitCode int

func putDigits(b []byte, n int64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
}

// makeBatch builds n ~500-byte ECS events as NDJSON, and the offsets of
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

// startVictoriaLogs runs a VictoriaLogs single node on a fresh data
// directory until stop.
func startVictoriaLogs(bin string) (string, func(), error) {
	dir, err := os.MkdirTemp("", "ingestload-vl-")
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-httpListenAddr="+addr, "-storageDataPath="+dir, "-retentionPeriod=100y", "-loggerLevel=ERROR")
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	base := "http://" + addr
	for i := 0; ; i++ {
		if resp, err := http.Get(base + "/health"); err == nil {
			resp.Body.Close()
			break
		}
		if i > 400 {
			cmd.Process.Kill()
			return "", nil, fmt.Errorf("victoria-logs did not start")
		}
		time.Sleep(25 * time.Millisecond)
	}
	return base, func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		os.RemoveAll(dir)
	}, nil
}

func startCollector(bin string) (string, string, func(), error) {
	dir, err := os.MkdirTemp("", "ingestload-")
	if err != nil {
		return "", "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	out, err := exec.Command(bin, "token", "create", "--data", dir, "--role", "ingest", "--name", "load").Output()
	if err != nil {
		return "", "", nil, fmt.Errorf("token create: %w", err)
	}
	tok := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	cmd := exec.Command(bin, "serve", "--data-dir", dir, "--listen", addr)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", "", nil, err
	}
	base := "http://" + addr
	for i := 0; ; i++ {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if i > 200 {
			cmd.Process.Kill()
			return "", "", nil, fmt.Errorf("collector did not start")
		}
		time.Sleep(25 * time.Millisecond)
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		os.RemoveAll(dir)
	}
	return base, tok, stop, nil
}
