package report

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/ledger"
)

// benchSpec is what the generated ledger holds, saved beside it so that a
// later run can check its figures without generating it again.
type benchSpec struct {
	Events      int       `json:"events"`
	Days        int       `json:"days"`
	From        time.Time `json:"from"`
	Checkpoints int       `json:"checkpoints"`
	Bytes       int64     `json:"bytes"`
	LoginFail   uint64    `json:"login_fail"`
	Verifier    string    `json:"verifier"`
	Took        string    `json:"took"`
}

// benchDataset returns a ledger of n realistic events spread evenly over
// days (one checkpoint a minute, as a collector idling between bursts
// would sign), generated once and kept in TRAILGUARD_BENCH_DIR (default the
// system's temporary directory) for later runs.
func benchDataset(b *testing.B, n, days int) (string, benchSpec) {
	base := os.Getenv("TRAILGUARD_BENCH_DIR")
	if base == "" {
		base = os.TempDir()
	}
	dir := filepath.Join(base, fmt.Sprintf("trailguard-report-bench-v2-%d-%dd", n, days))
	var spec benchSpec
	if data, err := os.ReadFile(filepath.Join(dir, "spec.json")); err == nil && json.Unmarshal(data, &spec) == nil {
		return dir, spec
	}
	os.RemoveAll(dir)
	start := time.Now()
	from := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	w := newWriter(b, dir, from)
	minutes := days * 24 * 60
	rng := rand.New(rand.NewPCG(1, 2))
	users := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}
	roles := [][]string{{"admin"}, {"viewer"}, {"clerk"}, {"clerk"}, {"clerk"}, {"viewer"}, {"support"}, {"admin"}}
	paths := []string{"/api/orders", "/api/orders/1042", "/api/products", "/api/users/me", "/api/cart", "/api/checkout"}
	agents := []string{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
		"demo-mobile/2.4 (Android 15)", "python-requests/2.32.3"}
	done := 0
	batch := make([][]byte, 0, n/minutes+2)
	for m := 0; m < minutes; m++ {
		t := from.Add(time.Duration(m) * time.Minute)
		k := (n - done) / (minutes - m)
		batch = batch[:0]
		for i := range k {
			ts := t.Add(time.Duration(i) * (time.Minute / time.Duration(k+1)))
			u := rng.IntN(len(users))
			e := event.Event{Timestamp: ts, Kind: "event", Category: []string{"web"}, Type: []string{"access"}, Action: event.ActionHTTPRequest,
				Outcome: "success", ID: event.NewID(), RequestID: event.NewID(), Dataset: event.DatasetAccess, Method: "GET",
				Path: paths[rng.IntN(len(paths))], StatusCode: 200, SourceIP: "10.0.0.2", ClientIP: fmt.Sprintf("198.51.100.%d", 1+u),
				UserName: users[u], UserID: "u" + strconv.Itoa(u), UserRoles: roles[u], UserAgent: agents[rng.IntN(len(agents))],
				ServiceName: "shop-api", HostName: "api-1", Duration: time.Duration(1+rng.IntN(40)) * time.Millisecond,
				ResponseBodyBytes: int64(200 + rng.IntN(4000)), Ingested: ts.Add(20 * time.Millisecond)}
			switch r := rng.IntN(100); {
			case r < 3:
				e.Category, e.Type, e.Action, e.Outcome, e.Reason = []string{"authentication"}, []string{"start", "denied"}, event.ActionLoginFail, "failure", "bad password"
				e.Dataset, e.Method, e.Path, e.StatusCode, e.UserRoles = event.DatasetAuth, "POST", "/api/login", 401, nil
				e.ClientIP = fmt.Sprintf("203.0.113.%d", rng.IntN(200))
				spec.LoginFail++
			case r < 8:
				e.Category, e.Type, e.Action, e.Dataset, e.Method, e.Path = []string{"authentication"}, []string{"start", "allowed"}, event.ActionLoginSuccess, event.DatasetAuth, "POST", "/api/login"
			case r < 9:
				e.Category, e.Type, e.Action, e.Outcome, e.StatusCode = []string{"iam"}, []string{"denied"}, event.ActionAuthzFail, "failure", 403
			case r < 11:
				e.Action, e.Dataset, e.Method, e.Audit = event.ActionSensitiveCreate, event.DatasetAudit, "POST", &event.Audit{Resource: "order/" + strconv.Itoa(rng.IntN(1e6))}
			case r < 12:
				e.Action, e.Dataset, e.Method, e.ServiceName, e.UserName, e.UserRoles = event.ActionSensitiveRead, event.DatasetAudit, "GET", collectorService, "auditor", []string{"read"}
				e.Audit = &event.Audit{Resource: "audit-trail"}
			}
			batch = append(batch, e.AppendJSON(nil))
			spec.Bytes += int64(len(batch[len(batch)-1]))
		}
		w.at(t.Add(time.Minute - time.Millisecond))
		if len(batch) > 0 {
			w.append(batch...)
		}
		w.checkpoint()
		spec.Checkpoints++
		done += k
	}
	if err := w.l.Close(); err != nil {
		b.Fatal(err)
	}
	// As a collector's ledger is: closed segments compressed (the ledger
	// does it in the background while open).
	w.open()
	for deadline := time.Now().Add(time.Hour); ; time.Sleep(time.Second) {
		plain, _ := filepath.Glob(filepath.Join(w.dir, "seg", "*.seg"))
		if len(plain) <= 1 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d segments still uncompressed after an hour", len(plain)-1)
		}
	}
	if err := w.l.Close(); err != nil {
		b.Fatal(err)
	}
	spec.Events, spec.Days, spec.From, spec.Took = n, days, from, time.Since(start).Round(time.Second).String()
	spec.Verifier = verifierKey(w)
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(dir, "spec.json"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d events (%d MB) in %s", n, spec.Bytes>>20, spec.Took)
	return dir, spec
}

// verifierKey recovers the verifier key text of the writer's key.
func verifierKey(w *writer) string {
	return w.vkey
}

// BenchmarkReport computes a PCI DSS report over a generated ledger of
// TRAILGUARD_REPORT_BENCH_EVENTS events (default 200,000) over 30 days;
// TRAILGUARD_REPORT_BENCH_EVENTS=10000000 is the figure the README states.
// It checks the report read every event and counted every failed login,
// and reports records/s, the peak Go heap and the peak resident memory.
func BenchmarkReport(b *testing.B) { benchReport(b, false) }

// BenchmarkReportCached is BenchmarkReport with the chunk cache warmed by
// a first report (not timed): what a second report over the same month
// costs.
func BenchmarkReportCached(b *testing.B) { benchReport(b, true) }

func benchReport(b *testing.B, cached bool) {
	n := 200_000
	if v, err := strconv.Atoi(os.Getenv("TRAILGUARD_REPORT_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	dir, spec := benchDataset(b, n, 30)
	v, err := note.NewVerifier(spec.Verifier)
	if err != nil {
		b.Fatal(err)
	}
	l, err := ledger.OpenReadOnly(filepath.Join(dir, "ledger"))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	cache := ""
	opts := func() Options {
		return Options{Standard: PCIDSS, From: spec.From, To: spec.From.Add(time.Duration(spec.Days) * 24 * time.Hour),
			Verifiers: []note.Verifier{v}, Now: spec.From.Add(40 * 24 * time.Hour), Cache: cache, CacheKey: testCacheKey}
	}
	if cached {
		cache = b.TempDir()
		if _, err := Compute(context.Background(), l, opts()); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	resetPeakRSS()
	var peakHeap atomic.Uint64
	stop := make(chan struct{})
	go samplePeak(stop, &peakHeap)
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		rep, err := Compute(context.Background(), l, opts())
		if err != nil {
			b.Fatal(err)
		}
		if cached && rep.State.Integrity.SummarisedEarlier == 0 {
			b.Fatal("the cache was not used")
		}
		if rep.Figures.Records != uint64(n) || rep.Figures.AuthFailures.Total != spec.LoginFail || rep.Figures.ReadError != "" {
			b.Fatalf("report read %d records (want %d), %d failed logins (want %d), read error %q", rep.Figures.Records, n,
				rep.Figures.AuthFailures.Total, spec.LoginFail, rep.Figures.ReadError)
		}
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	close(stop)
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	if !cached {
		// The limit, in the same run: reading every record and checking it
		// against the signed tree, without looking at it.
		c0 := cpuTime()
		var read uint64
		for _, err := range l.Entries(0) {
			if err != nil {
				b.Fatal(err)
			}
			read++
		}
		limit := cpuTime() - c0
		if read != uint64(n) {
			b.Fatalf("read %d records", read)
		}
		b.ReportMetric(limit.Seconds(), "read+check-cpu-s")
		b.ReportMetric(cpu.Seconds()/float64(b.N)/limit.Seconds(), "x-read+check")
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(n), "cpu-ns/record")
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(spec.Bytes)*float64(b.N)/b.Elapsed().Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(peakHeap.Load())/(1<<20), "peak-heap-MiB")
	if rss := peakRSS(); rss > 0 {
		b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
	}
}

func samplePeak(stop <-chan struct{}, peak *atomic.Uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		metrics.Read(s)
		if v := s[0].Value.Uint64(); v > peak.Load() {
			peak.Store(v)
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// resetPeakRSS resets the kernel's high-water mark of resident memory
// (Linux: writing 5 to clear_refs), so that peakRSS measures what follows
// rather than the generation of the dataset.
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuTime is the process's CPU time (user and system, all threads): on a
// machine shared with other work, the figure that does not depend on how
// much of the cores the benchmark got.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sampleRec is a typical access event, ~750 bytes.

var sampleRec = (&event.Event{Timestamp: time.Now().UTC(), Kind: "event", Category: []string{"web"}, Type: []string{"access"}, Action: event.ActionHTTPRequest,
	Outcome: "success", ID: event.NewID(), RequestID: event.NewID(), Dataset: event.DatasetAccess, Method: "GET",
	Path: "/api/orders/1042", StatusCode: 200, SourceIP: "10.0.0.2", ClientIP: "198.51.100.7",
	UserName: "carol", UserID: "u2", UserRoles: []string{"clerk"}, UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
	ServiceName: "shop-api", HostName: "api-1", Duration: 12 * time.Millisecond, ResponseBodyBytes: 2000, Ingested: time.Now().UTC()}).AppendJSON(nil)

func BenchmarkParse(b *testing.B) {
	var f fields
	b.SetBytes(int64(len(sampleRec)))
	for b.Loop() {
		if err := f.parse(sampleRec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAdd is the report cache's work per record (the warmer's
// acc.add): Parse reads the record, Spans where the collector's ingest
// located its fields (what the warmer does with the records ingest
// appended). cpu-ns/op is the CPU time of the loop's thread.
func BenchmarkAdd(b *testing.B) {
	var sp event.Spans
	rec, _, ok := event.AppendNormalizedSpans(nil, sampleRec, time.Now(), event.AppendID, &sp)
	if !ok || !sp.OK() {
		b.Fatal("sample record not normalised")
	}
	for _, tc := range []struct {
		name string
		rec  []byte
		sp   *event.Spans
	}{{"Parse", sampleRec, nil}, {"Spans", rec, &sp}} {
		b.Run(tc.name, func(b *testing.B) {
			p := &computeParams{tolerance: time.Second, maxDelay: time.Minute,
				adminRoles: set("admin"), cpSizes: []uint64{1 << 40}, cpTimes: []int64{time.Now().Add(time.Hour).UnixNano()}}
			a := newAcc(p)
			var f fields
			b.SetBytes(int64(len(tc.rec)))
			b.ReportAllocs()
			cpu := testenv.ThreadCPU(func() {
				for i := 0; b.Loop(); i++ {
					a.add(uint64(i), time.Time{}, tc.rec, tc.sp, &f)
				}
			})
			if a.events != uint64(b.N) || a.undec != 0 {
				b.Fatalf("%d records accounted as events, %d undecodable, want %d and 0", a.events, a.undec, b.N)
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkAddStream is BenchmarkAdd over a varied trail (addStream:
// logins, account changes, alerts and the collector's records read
// without spans, events ahead or late, minutes and checkpoints changing),
// the records one after another as the report cache warmer reads a chunk.
func BenchmarkAddStream(b *testing.B) {
	recs, sps := addStream(4096)
	t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	p := &computeParams{tolerance: time.Second, maxDelay: time.Minute, adminRoles: set("admin")}
	for i := uint64(40); i < 1<<30; i += 1000 {
		p.cpSizes = append(p.cpSizes, i)
		p.cpTimes = append(p.cpTimes, t0.Add(time.Duration(i%4096)*7*time.Second).UnixNano())
	}
	a := newAcc(p)
	var f fields
	b.ReportAllocs()
	cpu := testenv.ThreadCPU(func() {
		for i := 0; b.Loop(); i++ {
			if i%len(recs) == 0 && i > 0 {
				a = newAcc(p) // a chunk's figures
			}
			a.add(uint64(i), t0, recs[i%len(recs)], sps[i%len(recs)], &f)
		}
	})
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkAddChunk is the warmer's work on a whole chunk of ordinary
// request events as ingest stores them (ingestload's), laid out one after
// another in one buffer as the ledger keeps them for its followers: 40 MB
// read once per chunk, far past the caches, as in the collector (where
// BenchmarkAdd's one record, always cached, is not).
func BenchmarkAddChunk(b *testing.B) {
	now := time.Now()
	var buf []byte
	var ends []int
	sps := make([]event.Spans, ChunkSize)
	for i := range ChunkSize {
		doc := fmt.Sprintf(`{"@timestamp":"2026-11-25T12:00:%02d.%06dZ","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":1834000,"id":"0193a1b2-c3d4-7e5f-RRRRRRRR%012d","dataset":"trailguard.access"},"http":{"request":{"id":"req-%08d","method":"GET"},"response":{"status_code":200,"body":{"bytes":512}}},"url":{"path":"/api/orders/%d","query":"page=2"},"source":{"ip":"10.1.%d.%d","port":51234},"user":{"name":"user%03d"},"user_agent":{"original":"Mozilla/5.0 (X11; Linux x86_64)"},"service":{"name":"orders-api"}}`,
			i/1000%60, i%1000000, i, i, i, i/250%250, i%250, i%1000)
		var ok bool
		if buf, _, ok = event.AppendNormalizedSpans(buf, []byte(doc), now, event.AppendID, &sps[i]); !ok {
			b.Fatal("not normalised")
		}
		ends = append(ends, len(buf))
	}
	p := &computeParams{tolerance: time.Second, maxDelay: time.Minute, adminRoles: set("admin"), cpSizes: []uint64{1 << 40}, cpTimes: []int64{now.UnixNano()}}
	var f fields
	var a *acc
	b.ReportAllocs()
	cpu := testenv.ThreadCPU(func() {
		for i := 0; b.Loop(); i++ {
			k := i % ChunkSize
			if k == 0 {
				a = newAcc(p) // a chunk's figures, as Warm's
			}
			start := 0
			if k > 0 {
				start = ends[k-1]
			}
			a.add(uint64(k), now, buf[start:ends[k]], &sps[k], &f)
		}
	})
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}
