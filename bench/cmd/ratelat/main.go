// Command ratelat measures latency at a constant request rate, open loop,
// against several targets in turn: each target gets the whole rate for one
// slice (1 s by default), then the next, round after round, so that on a
// shared machine every target meets the same conditions, and the latency
// one adds over another (a proxy over its upstream) is read from the same
// minutes. Latency runs from the moment a request was due, not from when
// it could be sent, so a stalled client or server cannot hide its queue
// (no coordinated omission).
//
//	go run ./cmd/ratelat -rate 2000 -rounds 10 direct=http://127.0.0.1:9000/get gateway=http://127.0.0.1:8080/get
//
// It prints p50, p90, p99, p99.9 and max per target, the p99 each target
// adds over the first, and RESULT lines for bench/proxy.sh:
// "RESULT name p50_ms p99_ms ok_fraction".
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

type target struct {
	name, url string
	lat       []time.Duration
	errs      int
	sent      int
}

func main() {
	rate := flag.Int("rate", 2000, "requests per second")
	slice := flag.Duration("slice", time.Second, "how long each target gets the rate before the next")
	rounds := flag.Int("rounds", 10, "rounds over all targets")
	warm := flag.Duration("warmup", 2*time.Second, "warm-up per target before measuring")
	workers := flag.Int("workers", 64, "requests in flight at most (connections per target)")
	timeout := flag.Duration("timeout", 5*time.Second, "request timeout")
	flag.Parse()
	if flag.NArg() == 0 || *rate <= 0 {
		fmt.Fprintln(os.Stderr, "usage: ratelat [-rate N] [-slice D] [-rounds N] name=URL...")
		os.Exit(2)
	}
	var ts []*target
	for _, a := range flag.Args() {
		name, u, ok := strings.Cut(a, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "ratelat: %q is not name=URL\n", a)
			os.Exit(2)
		}
		ts = append(ts, &target{name: name, url: u})
	}
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}}
	for _, t := range ts {
		run(client, t, *rate, *warm, *workers, false)
	}
	for range *rounds {
		for _, t := range ts {
			run(client, t, *rate, *slice, *workers, true)
		}
	}
	base := ts[0]
	for _, t := range ts {
		slices.Sort(t.lat)
		ok := float64(len(t.lat)) / float64(max(t.sent, 1))
		fmt.Printf("%-12s %6d requests at %d/s: p50 %7.3f ms  p90 %7.3f  p99 %7.3f  p99.9 %7.3f  max %7.3f  errors %d\n",
			t.name, t.sent, *rate, ms(q(t.lat, 0.5)), ms(q(t.lat, 0.9)), ms(q(t.lat, 0.99)), ms(q(t.lat, 0.999)), ms(q(t.lat, 1)), t.errs)
		if t != base {
			fmt.Printf("%-12s p99 added over %s: %.3f ms (p50 %.3f ms)\n", t.name, base.name,
				ms(q(t.lat, 0.99))-ms(q(base.lat, 0.99)), ms(q(t.lat, 0.5))-ms(q(base.lat, 0.5)))
		}
		fmt.Printf("RESULT %s %.3f %.3f %.4f\n", t.name, ms(q(t.lat, 0.5)), ms(q(t.lat, 0.99)), ok)
	}
}

// run sends rate requests a second to t for d, open loop: a fixed pool of
// workers (so a stall does not turn into a storm of new connections) takes
// the requests as they fall due; one that waits for a worker counts the
// wait in its latency.
func run(client *http.Client, t *target, rate int, d time.Duration, workers int, keep bool) {
	interval := time.Second / time.Duration(rate)
	n := int(d / interval)
	due := make(chan time.Time, n)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for at := range due {
				ok := get(client, t.url)
				lat := time.Since(at)
				if !keep {
					continue
				}
				mu.Lock()
				if ok {
					t.lat = append(t.lat, lat)
				} else {
					t.errs++
				}
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		due <- at
	}
	close(due)
	wg.Wait()
	if keep {
		t.sent += n
	}
}

func get(client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "ratelat")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err == nil && resp.StatusCode == http.StatusOK
}

func q(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(p*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
