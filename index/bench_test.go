package index

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/query"
)

// BenchmarkInsert measures Run's write path: batches of 5000 events into
// a WAL-mode index with all its indexes, JSON decoding included (Run does
// it on another goroutine). add-cpu-ns/event is the CPU time of the
// writer's transactions alone (its thread's: decoding and the background
// garbage collector excluded), per event: what a shared machine moves far
// less than the rates.
func BenchmarkInsert(b *testing.B) {
	ix := openIndex(b, filepath.Join(b.TempDir(), "i.db"))
	const batch = 5000
	entries := make([]rec, batch)
	next := 0
	b.ResetTimer()
	var decodeTime, addCPU time.Duration
	for b.Loop() {
		t := time.Now()
		for j := range entries {
			entries[j] = decode(ledger.Entry{Index: uint64(next + j), Time: t0, Data: genEvent(next+j, time.Millisecond).AppendJSON(nil)})
		}
		decodeTime += time.Since(t)
		addCPU += addTimed(b, ix, next, entries)
		next += batch
	}
	b.StopTimer()
	checkRows(b, ix, uint64(next))
	b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(next)/(b.Elapsed()-decodeTime).Seconds(), "inserts/s")
	b.ReportMetric(batch, "rows/op")
	b.ReportMetric(float64(addCPU.Nanoseconds())/float64(next), "add-cpu-ns/event")
}

// addTimed adds entries from ledger index next with the writer's add
// and returns the CPU time the calling thread spent in it.
func addTimed(b *testing.B, ix *Index, next int, entries []rec) time.Duration {
	var err error
	cpu := testenv.ThreadCPU(func() { err = ix.add(context.Background(), uint64(next), entries) })
	if err != nil {
		b.Fatal(err)
	}
	return cpu
}

// BenchmarkInsertBatches measures the writer's transactions alone (add,
// records decoded beforehand) at the batch sizes Run makes: 4096, a
// block per batch (Run behind the ledger: its batches end with blocks),
// and a few hundred rows (a moderate rate: every batch adds rows to the
// last block). add-cpu-ns/event is the writer thread's CPU per event.
func BenchmarkInsertBatches(b *testing.B) {
	for _, batch := range []int{250, 1000, 4096} {
		b.Run(fmt.Sprintf("rows=%d", batch), func(b *testing.B) {
			ix := openIndex(b, filepath.Join(b.TempDir(), "i.db"))
			// Decoded once: the writer's work only.
			const pool = 1 << 14
			recs := make([]rec, pool)
			for j := range recs {
				recs[j] = decode(ledger.Entry{Index: uint64(j), Time: t0, Data: genEvent(j, time.Millisecond).AppendJSON(nil)})
			}
			entries := make([]rec, batch)
			next := 0
			var addCPU time.Duration
			for b.Loop() {
				for j := range entries {
					entries[j] = recs[(next+j)%pool]
					entries[j].idx = uint64(next + j)
				}
				addCPU += addTimed(b, ix, next, entries)
				next += batch
			}
			b.StopTimer()
			checkRows(b, ix, uint64(next))
			b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(addCPU.Nanoseconds())/float64(next), "add-cpu-ns/event")
		})
	}
}

// BenchmarkInsertWriteBytes measures write amplification at small
// batches: the bytes the process hands to write(2) (the database and its
// WAL) per event, over 10,240 events (two blocks and a half) added in
// batches of 1, 16 and 250 rows. Linux only (/proc/self/io's wchar).
// db+wal-bytes is the files' size at the end.
func BenchmarkInsertWriteBytes(b *testing.B) {
	if _, err := os.Stat("/proc/self/io"); err != nil {
		b.Skip("no /proc/self/io")
	}
	const total = 10240
	recs := make([]rec, total)
	for j := range recs {
		recs[j] = decode(ledger.Entry{Index: uint64(j), Time: t0, Data: genEvent(j, time.Millisecond).AppendJSON(nil)})
	}
	for _, batch := range []int{1, 16, 250} {
		b.Run(fmt.Sprintf("rows=%d", batch), func(b *testing.B) {
			var written, events int64
			for b.Loop() {
				p := filepath.Join(b.TempDir(), "i.db")
				ix := openIndex(b, p)
				w0 := wchar(b)
				for next := 0; next < total; next += batch {
					n := min(batch, total-next)
					if err := ix.add(context.Background(), uint64(next), recs[next:next+n]); err != nil {
						b.Fatal(err)
					}
				}
				written += wchar(b) - w0
				events += total
				checkRows(b, ix, total)
				var size int64
				for _, f := range []string{p, p + "-wal"} {
					if st, err := os.Stat(f); err == nil {
						size += st.Size()
					}
				}
				b.ReportMetric(float64(size), "db+wal-bytes")
			}
			b.ReportMetric(float64(written)/float64(events), "written-B/event")
		})
	}
}

// wchar returns the bytes this process has passed to write system calls.
func wchar(b *testing.B) int64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				b.Fatalf("/proc/self/io: %v", err)
			}
			return n
		}
	}
	b.Fatal("/proc/self/io: no wchar")
	return 0
}

// checkRows fails the benchmark unless the index holds exactly n rows and
// says it has indexed n records: what a benchmark timed must be there.
func checkRows(b *testing.B, ix *Index, n uint64) {
	b.Helper()
	rows, _, _ := count(b, ix)
	if uint64(rows) != n || ix.Indexed() != n {
		b.Fatalf("index holds %d rows and says %d indexed, want %d", rows, ix.Indexed(), n)
	}
}

// benchSpan is the time the generated events of the big benchmarks cover:
// two days, so that a 24 h query reads half of them.
const benchSpan = 48 * time.Hour

// bigLedger returns a ledger of TRAILGUARD_BENCH_N generated events
// (default 100000) spread over benchSpan, and its directory. With
// TRAILGUARD_BENCH_DIR set it is kept there and reused by later runs.
func bigLedger(b *testing.B) (*ledger.Ledger, string, int) {
	b.Helper()
	n := testenv.Count(b, "TRAILGUARD_BENCH_N", 100000)
	dir := os.Getenv("TRAILGUARD_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	base := filepath.Join(dir, fmt.Sprintf("bench-%d", n))
	lpath := filepath.Join(base, "ledger")
	if _, err := os.Stat(filepath.Join(base, "ledger.done")); err != nil {
		os.RemoveAll(base)
		start := time.Now()
		l := openLedger(b, lpath)
		appendEvents(b, l.Ledger, 0, n, benchSpan/time.Duration(n))
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		b.Logf("wrote a ledger of %d events in %v", n, time.Since(start).Round(time.Millisecond))
		if err := os.WriteFile(filepath.Join(base, "ledger.done"), nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	l, err := ledger.OpenReadOnly(lpath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	if l.Size() != uint64(n) {
		b.Fatalf("bench ledger holds %d records, want %d", l.Size(), n)
	}
	return l, base, n
}

// bigIndex returns an index of bigLedger's events, built once with
// Rebuild (the bulk path) and reading its hits from that ledger.
func bigIndex(b *testing.B) (*Index, int) {
	b.Helper()
	l, base, n := bigLedger(b)
	path := filepath.Join(base, "index.db")
	if _, err := os.Stat(path); err != nil {
		st, err := Rebuild(context.Background(), path, l)
		if err != nil {
			b.Fatal(err)
		}
		fi, _ := os.Stat(path)
		b.Logf("indexed %d events in %v (%.0f events/s), %.1f MB, %.0f bytes/event", n, st.Took.Round(time.Millisecond),
			float64(n)/st.Took.Seconds(), float64(fi.Size())/1e6, float64(fi.Size())/float64(n))
	}
	ix := openIndexOn(b, path, l)
	checkRows(b, ix, uint64(n))
	return ix, n
}

// BenchmarkBuild rebuilds the index of bigLedger's events (what trailguard
// reindex does) and reports the rate and the index's bytes per event.
func BenchmarkBuild(b *testing.B) {
	l, _, n := bigLedger(b)
	path := filepath.Join(b.TempDir(), "index.db")
	for b.Loop() {
		if _, err := Rebuild(context.Background(), path, l); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	ix := openIndexOn(b, path, l)
	checkRows(b, ix, uint64(n))
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(fi.Size())/float64(n), "index-B/event")
}

// BenchmarkByRequestID looks up the events of random requests (two each),
// reading them from the ledger.
func BenchmarkByRequestID(b *testing.B) {
	ix, n := bigIndex(b)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for b.Loop() {
		i := rng.IntN(n) / 2 * 2
		hits, _, err := ix.ByRequestID(ctx, fmt.Sprintf("req-%08d", i/2))
		if err != nil || len(hits) != 2 || hits[0].Index != uint64(i) {
			b.Fatalf("ByRequestID: %d hits, %v", len(hits), err)
		}
	}
}

// BenchmarkStats401 counts http.response.status_code:401 in 1-minute
// buckets over 24 hours (1440 buckets).
func BenchmarkStats401(b *testing.B) {
	ix, _ := bigIndex(b)
	q, err := query.Parse("http.response.status_code:401")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	from := t0.Add(12 * time.Hour)
	b.ResetTimer()
	var total int64
	for b.Loop() {
		st, err := ix.Stats(ctx, StatsRequest{Query: q, From: from, To: from.Add(24 * time.Hour), Interval: time.Minute})
		if err != nil || len(st.Buckets) != 1440 || st.Partial {
			b.Fatal(len(st.Buckets), err)
		}
		total = 0
		for _, bk := range st.Buckets {
			total += bk.Count
		}
	}
	if total == 0 {
		b.Fatal("no 401 counted in 24 h") // one event in ten is one
	}
	b.ReportMetric(float64(total), "matched")
}

// BenchmarkSearchPage fetches the newest page of 100 failed logins of one
// user, then the next page by cursor.
func BenchmarkSearchPage(b *testing.B) {
	ix, _ := bigIndex(b)
	q, _ := query.Parse("user.name:dave and event.outcome:failure")
	ctx := context.Background()
	for b.Loop() {
		// One event in ten is a failed login of dave's: both pages are full.
		res, err := ix.Search(ctx, Request{Query: q, Desc: true, Limit: 100})
		if err != nil || len(res.Hits) != 100 {
			b.Fatalf("first page: %d hits, %v", len(res.Hits), err)
		}
		res2, err := ix.Search(ctx, Request{Query: q, Desc: true, Limit: 100, Cursor: res.Next})
		if err != nil || len(res2.Hits) != 100 || res2.Hits[0].Index >= res.Hits[99].Index {
			b.Fatalf("second page: %d hits, %v", len(res2.Hits), err)
		}
	}
}

// BenchmarkByEventID looks up random events by event.id, as
// GET /v1/events/{id} does before it builds the proof.
func BenchmarkByEventID(b *testing.B) {
	ix, n := bigIndex(b)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	for b.Loop() {
		i := rng.IntN(n)
		h, err := ix.ByEventID(ctx, fmt.Sprintf("ev-%08d", i))
		if err != nil || h.Index != uint64(i) {
			b.Fatalf("ByEventID(%d) = %d, %v", i, h.Index, err)
		}
	}
}

// BenchmarkScan times what the columns cannot decide: a count of
// event.reason:"bad password" (no column) over every event, which reads
// and matches records from the ledger until the scan budget runs out. It
// reports the records checked per second: DefaultScanBudget divided by it
// is how long such a query may take.
func BenchmarkScan(b *testing.B) {
	ix, n := bigIndex(b)
	if n <= DefaultScanBudget {
		b.Skipf("needs more than %d events", DefaultScanBudget)
	}
	q, _ := query.Parse(`event.reason:"bad password"`)
	ctx := context.Background()
	for b.Loop() {
		st, err := ix.Stats(ctx, StatsRequest{Query: q, From: t0, To: t0.Add(benchSpan), Interval: time.Hour})
		if err != nil || !st.Partial || st.Scanned != DefaultScanBudget {
			b.Fatalf("partial %v after %d records, %v", st.Partial, st.Scanned, err)
		}
		var total int64
		for _, bk := range st.Buckets {
			total += bk.Count
		}
		if total != DefaultScanBudget/10 { // one event in ten is a failed login
			b.Fatalf("counted %d of %d records", total, st.Scanned)
		}
	}
	b.ReportMetric(float64(DefaultScanBudget)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkLag follows a ledger written at 50,000 events/s (500 every
// 10 ms) for TRAILGUARD_LAG_SECONDS (default 3) and reports how long
// appended events wait until they are indexed: the maximum and the 99th
// percentile over every append.
func BenchmarkLag(b *testing.B) {
	secs := testenv.Count(b, "TRAILGUARD_LAG_SECONDS", 3)
	for b.Loop() {
		dir := b.TempDir()
		l := openLedger(b, filepath.Join(dir, "ledger"))
		ix := openIndex(b, filepath.Join(dir, "i.db"))
		ctx, cancel := context.WithCancel(context.Background())
		runDone := make(chan error, 1)
		go func() { runDone <- ix.Run(ctx, l) }()

		type mark struct {
			end uint64
			at  time.Time
		}
		var mu sync.Mutex
		var pending []mark
		var lags []time.Duration
		stop := make(chan struct{})
		watchDone := make(chan struct{})
		go func() {
			defer close(watchDone)
			for {
				n := ix.Indexed()
				now := time.Now()
				mu.Lock()
				for len(pending) > 0 && pending[0].end <= n {
					lags = append(lags, now.Sub(pending[0].at))
					pending = pending[1:]
				}
				left := len(pending)
				mu.Unlock()
				select {
				case <-stop:
					if left == 0 {
						return
					}
				default:
				}
				time.Sleep(200 * time.Microsecond)
			}
		}()
		const per = 500
		recs := make([][]byte, per)
		tick := time.NewTicker(10 * time.Millisecond)
		i := 0
		deadline := time.Now().Add(time.Duration(secs) * time.Second)
		for time.Now().Before(deadline) {
			<-tick.C
			for j := range recs {
				recs[j] = genEvent(i+j, 20*time.Microsecond).AppendJSON(nil)
			}
			first, err := l.Append(context.Background(), recs...)
			if err != nil {
				b.Fatal(err)
			}
			mu.Lock()
			pending = append(pending, mark{first + per, time.Now()})
			mu.Unlock()
			i += per
		}
		tick.Stop()
		close(stop)
		<-watchDone
		cancel()
		<-runDone
		if len(lags) != i/per {
			b.Fatalf("%d of %d appends seen indexed", len(lags), i/per)
		}
		checkRows(b, ix, uint64(i))
		slices.Sort(lags)
		b.ReportMetric(float64(i)/float64(secs), "events/s")
		b.ReportMetric(float64(lags[len(lags)-1].Microseconds())/1000, "max-lag-ms")
		b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds())/1000, "p99-lag-ms")
		b.ReportMetric(float64(i), "rows/op") // checked above: every appended row indexed
		b.ReportMetric(0, "ns/op")            // one run of secs seconds: meaningless per op
	}
}

// BenchmarkTop counts the ten most frequent client addresses and user
// names of 24 hours (the Overview's top lists), from the index.
func BenchmarkTop(b *testing.B) {
	ix, _ := bigIndex(b)
	ctx := context.Background()
	from := t0.Add(12 * time.Hour)
	for b.Loop() {
		for _, field := range []string{"client.ip", "user.name"} {
			res, err := ix.Top(ctx, TopRequest{Field: field, From: from, To: from.Add(24 * time.Hour)})
			if err != nil || len(res.Values) == 0 || res.Partial {
				b.Fatalf("Top %s: %+v, %v", field, res, err)
			}
		}
	}
}
