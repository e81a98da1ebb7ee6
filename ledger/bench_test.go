package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/internal/demotraffic"
	"github.com/trailguard/trailguard/ledger/internal/sha256x2"
)

// The benchmarks report records/s and the ratios the project's targets are
// stated in, each against a limit measured in the same run:
//
//	go test -run '^$' -bench . -benchtime 1x ./ledger/
//
// (BenchmarkVerify writes a 1 GiB ledger to $TMPDIR first.)

// benchDir is where benchmark ledgers go: $TRAILGUARD_BENCH_DIR if set
// (put it on the file system the ledger will live on), else a temp dir.
func benchDir(b *testing.B) string {
	if d := os.Getenv("TRAILGUARD_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "ledger-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

func benchRecords(n int) [][]byte {
	recs := make([][]byte, n)
	for i := range recs {
		r := fmt.Appendf(nil, `{"@timestamp":"2026-01-01T00:00:00.000Z","event":{"id":"%016x","action":"api.request","outcome":"success"},"pad":"`, i)
		for len(r) < 510 {
			r = append(r, 'x')
		}
		recs[i] = append(r, '"', '}')
	}
	return recs
}

// rawHashRate measures RFC 6962 leaf + interior hashing alone, with the
// transparency-dev/merkle compact range, on one goroutine: the raw limit.
// It returns the root too, so callers can check the work was done.
func rawHashRate(recs [][]byte, rounds int) (float64, Hash) {
	start := time.Now()
	h := rfc6962.DefaultHasher
	var root []byte
	for range rounds {
		r := (&compact.RangeFactory{Hash: h.HashChildren}).NewEmptyRange(0)
		for _, rec := range recs {
			r.Append(h.HashLeaf(rec), nil)
		}
		var err error
		if root, err = r.GetRootHash(nil); err != nil {
			panic(err)
		}
	}
	return float64(len(recs)*rounds) / time.Since(start).Seconds(), Hash(root)
}

// treeRoot is the ledger's own root of recs, the reference the raw
// hashing must reproduce.
func treeRoot(recs [][]byte) Hash {
	t := &tree{}
	for _, r := range recs {
		t.append(LeafHash(r), nil)
	}
	return t.root()
}

func BenchmarkRawHashing(b *testing.B) {
	recs := benchRecords(1 << 16)
	want := treeRoot(recs)
	var rate float64
	for b.Loop() {
		var root Hash
		if rate, root = rawHashRate(recs, 4); root != want {
			b.Fatalf("compact range root %v, the ledger's tree says %v", root, want)
		}
	}
	b.ReportMetric(rate, "rec/s")
}

// bestRawRate is the best of three raw hashing runs (the machine is shared).
func bestRawRate(b *testing.B, recs [][]byte) float64 {
	want := treeRoot(recs)
	best := 0.0
	for range 3 {
		rate, root := rawHashRate(recs, 8)
		if root != want {
			b.Fatalf("compact range root %v, the ledger's tree says %v", root, want)
		}
		best = max(best, rate)
	}
	return best
}

// BenchmarkAppend measures durable appends by 64 concurrent callers against
// raw RFC 6962 hashing on one core in the same run (issue 15 item 1's
// goals: 64×64 ≥ 0.6 of raw hashing with ack p99 ≤ 20 ms; 64×1 ≥ 0.2).
// Where 0.2 of raw hashing is beyond what the disk gives one-record
// durable acks, the 64×1 goal is ≥ 0.8 of the device limit: each of its
// iterations alternates devicePairs rounds of a device run
// (devlimit_test.go) and a ledger run of the same size, and the ledger's
// median run is set against the device's median run (best against best is
// printed beside it; docs/ledger.md, thirteenth session, says why).
//
// TRAILGUARD_BENCH_APPEND_RECORDS=demo appends the demo's events instead.
// TRAILGUARD_BENCH_APPEND_WARM=N (not for 64×1) first appends N rounds of
// the measured shape and waits for their compaction: a ledger that has
// been running instead of a new one.
// The sustained case appends ~1.5 M records (~48 segments of 16 MiB) per
// iteration: long enough that the compaction backlog reaches its bound
// (Options.CompactBacklog) and the rate is what appending and compacting
// together sustain; the short runs measure bursts, where compaction waits.
func BenchmarkAppend(b *testing.B) {
	for _, tc := range []struct {
		batch     int
		goal      float64
		p99Goal   float64 // ms, 0 for none
		sustained bool
	}{{1, 0.2, 0, false}, {16, 0, 0, false}, {64, 0.6, 20, false}, {64, 0.6, 20, true}} {
		name := fmt.Sprintf("appenders=64/batch=%d", tc.batch)
		if tc.sustained {
			if os.Getenv("TRAILGUARD_BENCH_APPEND_BURSTS") != "" {
				// (Alternated comparisons of the bursts: -bench
				// selects the sustained case's parent, so it would run.)
				continue
			}
			name += "/sustained"
		}
		b.Run(name, func(b *testing.B) {
			perWriter := 0
			if tc.sustained {
				perWriter = 370
			}
			ratio, p99, dev := benchAppend(b, 64, tc.batch, perWriter)
			if dev.rounds > 0 {
				dev.report(b, tc.goal)
			}
			if tc.goal > 0 {
				goal := fmt.Sprintf("≥ %.1f of raw hashing", tc.goal)
				met := ratio >= tc.goal
				if tc.p99Goal > 0 {
					goal += fmt.Sprintf(", ack p99 ≤ %.0f ms", tc.p99Goal)
					met = met && p99 <= tc.p99Goal
				}
				what := "goal"
				if dev.rounds > 0 && tc.goal*dev.raw > slices.Max(dev.dev) {
					what = "the issue's goal as written (beyond this disk: the device limit above is the goal)"
				}
				b.Logf("%s: 64 appenders × %d records: %s: %s (ratio %.2f, p99 %.1f ms; a shared machine moves both)", what, tc.batch, goal, metWord(met), ratio, p99)
			}
		})
	}
}

func metWord(met bool) string {
	if met {
		return "met"
	}
	return "MISSED"
}

// deviceGoal is the 64×1 case's goal where 0.2 of raw hashing is beyond
// the device limit: most of what the disk allows 64 callers of one record.
const deviceGoal = 0.8

// devicePairs is how many (device run, ledger run) rounds one iteration of
// the 64×1 case alternates: -benchtime 3x gives nine of each, enough for a
// median when single runs move ±15–25 % (docs/ledger.md, twelfth and
// thirteenth sessions).
const devicePairs = 3

// deviceFigures is the 64×1 case's yardstick (devlimit_test.go): device
// runs alternated with the ledger's runs of the same size in one process.
type deviceFigures struct {
	rounds   int
	depth    int    // the device runs' depth, the fastest median of the probes
	probes   string // those depth-picking runs
	dev, led []float64
	devP99   []time.Duration
	perRun   int // appends per caller in a run (either kind)
	recLen   int
	raw      float64
}

// median of xs (the mean of the middle two of an even count).
func median(xs []float64) float64 {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

// ratio is the goal's measure: the ledger's median run over the device's
// median run, alternated.
func (d deviceFigures) ratio() float64 { return median(d.led) / median(d.dev) }

// bestRatio is the ledger's best run over the device's best run.
func (d deviceFigures) bestRatio() float64 { return slices.Max(d.led) / slices.Max(d.dev) }

// report logs exactly what is compared, the ratios and the goal.
func (d deviceFigures) report(b *testing.B, rawGoal float64) {
	p99s := slices.Clone(d.devP99)
	slices.Sort(p99s)
	rounds := ""
	for i := range d.led {
		rounds += fmt.Sprintf(" %.0f/%.0f", d.led[i]/1e3, d.dev[i]/1e3)
	}
	b.Logf("device limit: %d rounds alternated in this process, each a device run (64 callers × 1 durable record each, %d bytes, O_DIRECT write + AIO fdatasync at depth %d, no framing, hashing or tree; the depth whose median was the fastest of three runs at each, interleaved, acks/s: %s) then a ledger run of the same 64 callers × %d appends of 1 record; the ledger's background work (tiles, checkpoint, compaction, zeroing ahead) ends before each device run",
		d.rounds, d.recLen, d.depth, d.probes, d.perRun)
	b.Logf("device limit: ledger/device k-records/s per round:%s; median vs median %.0f / %.0f = %.2f (the goal's measure); best vs best %.0f / %.0f = %.2f; device p99 median %.1f ms",
		rounds, median(d.led), median(d.dev), d.ratio(), slices.Max(d.led), slices.Max(d.dev), d.bestRatio(), float64(p99s[len(p99s)/2].Microseconds())/1000)
	g := rawGoal * d.raw
	if g > slices.Max(d.dev) {
		b.Logf("goal: 0.2 of raw hashing is %.0f rec/s, %.2f× the device's median run and %.2f× its best (%.0f acks/s): beyond this disk; the goal is ≥ %.1f of the device limit, median vs median alternated: %s (%.2f; best vs best %.2f)",
			g, g/median(d.dev), g/slices.Max(d.dev), slices.Max(d.dev), deviceGoal, metWord(d.ratio() >= deviceGoal), d.ratio(), d.bestRatio())
	} else {
		b.Logf("0.2 of raw hashing is %.0f rec/s, %.2f of the device's best run (%.0f acks/s): within this disk's reach", g, g/slices.Max(d.dev), slices.Max(d.dev))
	}
}

// quiesce waits until the ledger's background work has ended: tiles and
// a checkpoint written (Checkpoint returns once they are durable), closed
// segments compressed (the compactor starts 200 ms after the last batch),
// the next segment zeroed ahead. A device run beside any of them would
// find the disk and the cores shared, and flatter the ledger.
func quiesce(b *testing.B, l *Ledger) {
	if _, err := l.Checkpoint(context.Background()); err != nil {
		b.Fatal(err)
	}
	waitCompressed(b, l, time.Minute)
	for l.zeroing.Load() > 0 {
		time.Sleep(time.Millisecond)
	}
}

func benchAppend(b *testing.B, appenders, batch, perWriter int) (ratio, p99 float64, dev deviceFigures) {
	recs := benchRecords(1 << 14)
	if os.Getenv("TRAILGUARD_BENCH_APPEND_RECORDS") == "demo" {
		// The demo's events (~750 bytes) instead of padded 512-byte
		// records: they cost ~3× as much to compress, so a sustained run
		// reaches the compaction backlog's bound.
		gen := demotraffic.New(1, time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), time.Millisecond)
		for i := range recs {
			recs[i] = gen.Next(nil)
		}
	}
	// The machine is shared and noisy: the limit is the best of three.
	raw := bestRawRate(b, recs)
	k := newKey(b, testOrigin)
	dir := benchDir(b)
	if perWriter == 0 {
		perWriter = max(2000/batch, 20)
		if batch == 1 {
			perWriter = 300
		}
	}
	l, err := Open(dir, Options{Origin: testOrigin, Signer: k.signer, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	// The device limit, for one record per append: runs of the same size
	// as the ledger's, alternated with them (deviceFigures).
	var devH *deviceHarness
	rounds := 1
	if batch == 1 {
		devH = newDeviceHarness(b, benchDir(b), appenders, perWriter, len(recs[0]))
		quiesce(b, l)
		probes, depth, ok := devH.pickDepth([]int{1, 2, 4}, 3)
		if ok {
			dev = deviceFigures{depth: depth, perRun: perWriter, recLen: len(recs[0])}
			for _, d := range []int{1, 2, 4} {
				if dev.probes != "" {
					dev.probes += "; "
				}
				dev.probes += fmt.Sprintf("depth %d:", d)
				for _, r := range probes {
					if r.depth == d {
						dev.probes += fmt.Sprintf(" %.0fk", r.rate/1e3)
					}
				}
			}
			rounds = devicePairs
		} else {
			devH = nil
		}
	}
	// The compaction backlog, sampled: the most closed segments waiting
	// uncompressed (bounded by the write stall at 2 × CompactBacklog).
	var maxBacklog atomic.Int64
	sampling := make(chan struct{})
	defer close(sampling)
	go func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-sampling:
				return
			case <-t.C:
				if n := l.backlog.Load(); n > maxBacklog.Load() {
					maxBacklog.Store(n)
				}
			}
		}
	}()
	// appendRound has every appender append perWriter batches at once and
	// returns each append's latency: the measured round, and the warm-up's.
	appendRound := func() []time.Duration {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var lats []time.Duration
		for w := range appenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mine := make([]time.Duration, 0, perWriter)
				for i := range perWriter {
					off := (w*perWriter + i) * batch % (len(recs) - batch)
					t0 := time.Now()
					if _, err := l.Append(context.Background(), recs[off:off+batch]...); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lats = append(lats, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		return lats
	}
	// TRAILGUARD_BENCH_APPEND_WARM=N appends N rounds of the same shape
	// before the measured ones and waits for their segments to be
	// compressed: the state of a ledger that has been running a while
	// (docs/ledger.md, twenty-second session), rather than a new one.
	var warm int
	if n, err := strconv.Atoi(os.Getenv("TRAILGUARD_BENCH_APPEND_WARM")); err == nil && n > 0 && devH == nil {
		for range n {
			appendRound()
			warm += appenders * perWriter * batch
		}
		quiesce(b, l)
		maxBacklog.Store(0)
	}
	rot0 := l.rotations.Load()
	stalls0 := l.compactStalls.Load()
	var total int
	var lats []time.Duration
	var elapsed, cpu time.Duration
	syncs0 := l.syncs.Load()
	for b.Loop() {
		for range rounds {
			if devH != nil {
				// A device run, with nothing of the ledger's running.
				b.StopTimer()
				quiesce(b, l)
				r, ok := devH.run(dev.depth)
				if !ok {
					b.Fatal("device limit: measurable at first, refused now")
				}
				dev.dev, dev.devP99 = append(dev.dev, r.rate), append(dev.devP99, r.p99)
				b.StartTimer()
			}
			cpu0 := cpuTime()
			start := time.Now()
			round := appendRound()
			took := time.Since(start)
			lats = append(lats, round...)
			elapsed += took
			cpu += cpuTime() - cpu0
			total += appenders * perWriter * batch
			if devH != nil {
				dev.led = append(dev.led, float64(appenders*perWriter*batch)/took.Seconds())
			}
		}
	}
	// The limit again, after the run: the better of the two is the
	// machine's least disturbed figure.
	raw = max(raw, bestRawRate(b, recs))
	// Check the work: every record appended is in the ledger, and the
	// signed root is the root of what is stored.
	signed, err := l.Checkpoint(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	cp, _ := parseUnverified(signed)
	var stored [][]byte
	for e, err := range l.Entries(0) {
		if err != nil {
			b.Fatal(err)
		}
		stored = append(stored, e.Data)
	}
	if uint64(warm+total) != cp.Size || cp.Size != uint64(len(stored)) || treeRoot(stored) != cp.Root {
		b.Fatalf("%d records appended, checkpoint covers %d, %d read back, root match %v", warm+total, cp.Size, len(stored), treeRoot(stored) == cp.Root)
	}
	slices.Sort(lats)
	rate := float64(total) / elapsed.Seconds()
	p99 = float64(lats[len(lats)*99/100].Microseconds()) / 1000
	b.ReportMetric(rate, "rec/s")
	b.ReportMetric(raw, "raw-rec/s")
	b.ReportMetric(rate/raw, "ratio")
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	// The tail beyond p99: rotations (a segment closed, made durable and
	// the next one named before its records are acknowledged) show here.
	b.ReportMetric(float64(lats[len(lats)*999/1000].Microseconds())/1000, "p999-ms")
	b.ReportMetric(float64(lats[len(lats)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(l.rotations.Load()-rot0), "rotations")
	// The sequencer's time in rotations (every append waits behind it).
	if n := l.rotations.Load(); n > 0 {
		b.ReportMetric(float64(l.rotateNs.Load())/float64(n)/1e3, "rotate-µs")
		b.ReportMetric(float64(l.rotateMax.Load())/1e3, "rotate-max-µs")
		b.ReportMetric(float64(l.sealNs.Load())/float64(n)/1e3, "seal-µs")
	}
	// CPU time of the whole process per record appended (hashing, framing,
	// writes, the kernel's share, tiles and checkpoints): the cost that
	// competes for the cores, steadier than wall-clock rates here.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(total)/1000, "cpu-µs/rec")
	// How often the sequencer had to wait for a checkpoint to stay within
	// the unsigned bound (it cannot run further ahead of the signer).
	b.ReportMetric(float64(l.boundWaits.Load())*1e6/float64(total), "bound-waits/Mrec")
	// Records per fdatasync: how well the syncs are shared (group commit).
	b.ReportMetric(float64(total)/float64(l.syncs.Load()-syncs0), "rec/sync")
	// Compaction: the most segments that waited, and how often the
	// writer waited for the compactor (the backlog at its bound).
	b.ReportMetric(float64(maxBacklog.Load()), "backlog-max")
	b.ReportMetric(float64(l.compactStalls.Load()-stalls0), "stalls")
	if len(dev.led) > 0 {
		dev.rounds, dev.raw = len(dev.led), raw
		b.ReportMetric(median(dev.dev), "device-acks/s")
		b.ReportMetric(dev.ratio(), "device-ratio")
		b.ReportMetric(dev.bestRatio(), "device-best-ratio")
	}
	return rate / raw, p99, dev
}

// BenchmarkVerify verifies a ledger of 1 GiB of records against the
// throughput of plain SHA-256 over the same records on all cores, measured
// in the same run (issue 15 item 2's goal: ≥ 0.7). Two ledgers: segments
// as written (frames), and closed segments compressed (the default), where
// verify also decompresses; the records are the demo's traffic (~750
// bytes each), so that compression is what it is on real events. Also
// reported: the ratio against two interleaved hashes per core (sha256x2,
// what verify hashes with), the cores verify got and the share of its Ps
// it left idle (its own pipeline's stalls, whatever else the machine runs).
// TRAILGUARD_BENCH_VERIFY_MB sets another size (profiling).
func BenchmarkVerify(b *testing.B) {
	mb := 1024
	if v := os.Getenv("TRAILGUARD_BENCH_VERIFY_MB"); v != "" {
		fmt.Sscan(v, &mb)
	}
	gen := demotraffic.New(1, time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), time.Millisecond)
	recs := make([][]byte, 1<<14)
	recBytes := 0
	for i := range recs {
		recs[i] = gen.Next(nil)
		recBytes += len(recs[i])
	}
	total := int(int64(mb) << 20 * int64(len(recs)) / int64(recBytes))
	for _, compressed := range []bool{false, true} {
		name := "frames"
		if compressed {
			name = "compressed"
		}
		b.Run(name, func(b *testing.B) {
			ratio := benchVerify(b, recs, total, compressed)
			b.Logf("goal: verify ≥ 0.7 of SHA-256 on all cores (%s): %s (median ratio %.2f, each run against crypto/sha256 measured just before it; cpu-ratio is crypto/sha256's CPU time over verify's; x2-ratio is against two interleaved hashes per core, sha256x2, which verify uses)", name, metWord(ratio >= 0.7), ratio)
		})
	}
}

func benchVerify(b *testing.B, recs [][]byte, total int, compressed bool) float64 {
	k := newKey(b, testOrigin)
	dir := benchDir(b)
	l, err := Open(dir, Options{Origin: testOrigin, Signer: k.signer, Logger: quietLogger(), DisableCompression: !compressed})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	per := total / 4 / 1024 * 1024
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i += 1024 {
				off := (w*per + i) % (len(recs) - 1024)
				if _, err := l.Append(context.Background(), recs[off:off+1024]...); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if compressed {
		waitCompressed(b, l, 10*time.Minute)
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	size := l.Size()
	// The records each index holds, as appended (for the reference).
	at := func(i int) []byte {
		w, k := i/per, i%per
		return recs[(w*per+k/1024*1024)%(len(recs)-1024)+k%1024]
	}
	bytes := int64(0)
	for i := range int(size) {
		bytes += int64(len(at(i)))
	}

	// Raw SHA-256 of the same bytes on all cores, in memory, right before
	// each verify run: the machine is shared, so each run is judged
	// against the limit of its own moment, and the median ratio is the
	// figure.
	shaAll := func() (rate float64, cpu time.Duration) {
		start, cpu0 := time.Now(), cpuTime()
		workers := runtime.GOMAXPROCS(0)
		var rw sync.WaitGroup
		for w := range workers {
			rw.Add(1)
			go func() {
				defer rw.Done()
				for i := w; i < int(size); i += workers {
					sha256.Sum256(at(i))
				}
			}()
		}
		rw.Wait()
		return float64(bytes) / time.Since(start).Seconds(), cpuTime() - cpu0
	}
	// The same with two hashes interleaved per core (sha256x2, what verify
	// hashes with): the hashing limit of this machine, as a second
	// reference (the goal is stated against crypto/sha256 above).
	sha2All := func() float64 {
		start := time.Now()
		workers := runtime.GOMAXPROCS(0)
		var rw sync.WaitGroup
		for w := range workers {
			rw.Add(1)
			go func() {
				defer rw.Done()
				msgs := make([][]byte, 0, tileWidth)
				out := make([]Hash, tileWidth)
				for i := w * tileWidth; i < int(size); i += workers * tileWidth {
					msgs = msgs[:0]
					for k := i; k < min(i+tileWidth, int(size)); k++ {
						msgs = append(msgs, at(k))
					}
					sha256x2.Prefixed(out, 0, msgs)
				}
			}()
		}
		rw.Wait()
		return float64(bytes) / time.Since(start).Seconds()
	}
	b.SetBytes(bytes)
	var ratios, rates, raws, cpuRatios, x2Ratios, cores, idles []float64
	for b.Loop() {
		raw2 := sha2All()
		raw, shaCPU := shaAll()
		idle0 := goIdle()
		start, cpu0 := time.Now(), cpuTime()
		rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
		wall, cpu := time.Since(start), cpuTime()-cpu0
		// The share of verify's time its goroutines left a P idle (a
		// core it could have used, had the machine been quiet).
		idles = append(idles, (goIdle()-idle0)/(wall.Seconds()*float64(runtime.GOMAXPROCS(0))))
		if err != nil || !rep.OK() || rep.Records != size {
			b.Fatalf("verify: %v\n%s", err, rep)
		}
		rate := float64(bytes) / wall.Seconds()
		rates, raws = append(rates, rate), append(raws, raw)
		ratios = append(ratios, rate/raw)
		x2Ratios = append(x2Ratios, rate/raw2)
		// How many cores verify kept busy (GOMAXPROCS is the most).
		cores = append(cores, cpu.Seconds()*rate/float64(bytes))
		// CPU time: the SHA-256 verify cannot avoid, over what verify
		// spends; steady however loaded the machine is.
		cpuRatios = append(cpuRatios, float64(shaCPU)/float64(cpu))
	}
	median := func(xs []float64) float64 {
		xs = slices.Clone(xs)
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	b.ReportMetric(float64(size), "records")
	b.ReportMetric(median(rates)/1e6, "verify-MB/s")
	b.ReportMetric(median(raws)/1e6, "sha256-MB/s")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(median(cpuRatios), "cpu-ratio")
	b.ReportMetric(median(x2Ratios), "x2-ratio")
	b.ReportMetric(median(cores), "verify-cores")
	b.ReportMetric(median(idles), "idle-P")
	os.RemoveAll(dir)
	return median(ratios)
}

// BenchmarkRead measures what checking every record read against its leaf
// hash costs (issue 7 item 3: no read trusts the .idx): sequential reads
// (Entries, Follow, FindEventID) and random reads (Read, proofs) of 64k
// 512-byte records, checked as the API does and unchecked, in one run.
func BenchmarkRead(b *testing.B) {
	recs := benchRecords(1 << 16)
	k := newKey(b, testOrigin)
	l, err := Open(benchDir(b), Options{Origin: testOrigin, Signer: k.signer, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < len(recs); i += 1024 {
		if _, err := l.Append(context.Background(), recs[i:i+1024]...); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(context.Background()); err != nil {
		b.Fatal(err)
	}
	n := uint64(len(recs))
	seq := func(b *testing.B, check bool) {
		for b.Loop() {
			var got uint64
			for e, err := range l.entries(0, n, check) {
				if err != nil || !bytes.Equal(e.Data, recs[e.Index]) {
					b.Fatalf("record %d: %v", e.Index, err)
				}
				got++
			}
			if got != n {
				b.Fatalf("read %d of %d records", got, n)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/record")
	}
	// The floor of any check: one SHA-256 leaf hash per record.
	b.Run("leafhash-only", func(b *testing.B) {
		var x byte
		for b.Loop() {
			for _, r := range recs {
				h := LeafHash(r)
				x ^= h[0]
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/record")
		_ = x
	})
	b.Run("sequential/checked", func(b *testing.B) { seq(b, true) })
	b.Run("sequential/unchecked", func(b *testing.B) { seq(b, false) })
	random := func(b *testing.B, check bool) {
		i := uint64(0)
		for b.Loop() {
			i = (i + 40503) % n // a stride that visits every tile
			var e Entry
			var err error
			if check {
				e, err = l.Read(i)
			} else {
				var s *segment
				if s, err = l.segmentFor(i); err == nil {
					e, err = s.read(i-s.first, maxFrameLen, nil, l.fds)
				}
			}
			if err != nil || !bytes.Equal(e.Data, recs[i]) {
				b.Fatalf("Read(%d): %v", i, err)
			}
		}
	}
	b.Run("random/checked", func(b *testing.B) { random(b, true) })
	b.Run("random/unchecked", func(b *testing.B) { random(b, false) })
}

// BenchmarkStorage appends 200,000 events replayed from the demo's mixed
// traffic (internal/demotraffic: fresh ids, times, ports and client
// addresses; ~750 bytes each as NDJSON) in batches of 1,000, as the
// collector does, and reports the ledger's bytes per event on disk:
// records (compressed closed segments, the open segment), .idx, hash level
// files, checkpoints. Issue 15 item 4's goal is for the whole store
// (ledger + SQLite index) ≤ 3× VictoriaLogs' bytes per event (stretch
// 2×); bench/storage.sh compares the whole store with VictoriaLogs on the
// same events. Compression is also run with it off, in the same run.
//
//	go test -run '^$' -bench Storage -benchtime 1x ./ledger/
func BenchmarkStorage(b *testing.B) {
	const events = 200_000
	gen := demotraffic.New(1, time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), time.Millisecond)
	recs := make([][]byte, events)
	raw := 0
	for i := range recs {
		recs[i] = gen.Next(nil)
		raw += len(recs[i]) + 1
	}
	for _, compress := range []bool{true, false} {
		b.Run(fmt.Sprintf("compress=%v", compress), func(b *testing.B) {
			var sizes map[string]int64
			for b.Loop() {
				sizes = storageRun(b, recs, !compress)
			}
			per := func(n int64) float64 { return float64(n) / events }
			total := sizes["closed"] + sizes["open"] + sizes["idx"] + sizes["hashes"] + sizes["checkpoints"]
			b.ReportMetric(float64(raw)/events, "ndjson-B/event")
			b.ReportMetric(per(total), "ledger-B/event")
			b.ReportMetric(per(sizes["closed"])*events/float64(sizes["closedEvents"]), "closed-seg-B/event")
			b.ReportMetric(per(sizes["hashes"]), "hashes-B/event")
			b.ReportMetric(per(sizes["idx"]), "idx-B/event")
			b.ReportMetric(float64(sizes["openEvents"]), "open-seg-events")
			// A year's worth sits in closed segments: what an event costs
			// there, with its hashes (and no .idx).
			steady := per(sizes["closed"])*events/float64(sizes["closedEvents"]) + per(sizes["hashes"])
			b.ReportMetric(steady, "steady-B/event")
			if compress {
				b.Logf("ledger at %d events: %.0f B/event (closed segments %.1f, open segment %d events uncompressed, hashes %.1f, .idx %.1f); steady state (closed segments + hashes) %.1f B/event against %.0f B/event of NDJSON",
					events, per(total), per(sizes["closed"])*events/float64(sizes["closedEvents"]), sizes["openEvents"], per(sizes["hashes"]), per(sizes["idx"]), steady, float64(raw)/events)
			}
		})
	}
}

// storageRun writes recs to a fresh ledger, waits for the closed segments
// to be compressed, closes it and returns the bytes on disk by kind.
func storageRun(b *testing.B, recs [][]byte, disable bool) map[string]int64 {
	k := newKey(b, testOrigin)
	dir := benchDir(b)
	l, err := Open(dir, Options{Origin: testOrigin, Signer: k.signer, Logger: quietLogger(), DisableCompression: disable})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < len(recs); i += 1000 {
		if _, err := l.Append(context.Background(), recs[i:min(i+1000, len(recs))]...); err != nil {
			b.Fatal(err)
		}
	}
	if !disable {
		waitCompressed(b, l, 2*time.Minute)
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	sizes := map[string]int64{}
	segs, err := listSegments(filepath.Join(dir, "seg"))
	if err != nil {
		b.Fatal(err)
	}
	for i, s := range segs {
		st, err := os.Stat(s.path)
		if err != nil {
			b.Fatal(err)
		}
		if i == len(segs)-1 {
			sizes["open"] += st.Size()
			sizes["openEvents"] = int64(uint64(len(recs)) - s.first)
		} else {
			sizes["closed"] += st.Size()
			sizes["closedEvents"] = int64(segs[i+1].first)
		}
		if st, err := os.Stat(idxPath(s.path)); err == nil && s.z == nil {
			sizes["idx"] += st.Size()
		}
	}
	for kind, pattern := range map[string]string{"hashes": filepath.Join(dir, hashDir, "*"), "checkpoints": filepath.Join(dir, cpDir, "*")} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			if st, err := os.Stat(f); err == nil {
				sizes[kind] += st.Size()
			}
		}
	}
	// The work was done: every record is there, and verify agrees.
	rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
	if err != nil || !rep.OK() || rep.Records != uint64(len(recs)) {
		b.Fatalf("verify: %v\n%s", err, rep)
	}
	os.RemoveAll(dir)
	return sizes
}

// BenchmarkReadCompressed measures reads from compressed segments: 64k
// events of the demo's traffic in 1 MiB segments, all closed ones
// compressed. A random Read decodes the record's block (a cache miss: the
// stride lands in another block each time) and authenticates its leaf; a
// sequential read decodes each block once.
func BenchmarkReadCompressed(b *testing.B) {
	const n = 1 << 16
	gen := demotraffic.New(1, time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), time.Millisecond)
	recs := make([][]byte, n)
	for i := range recs {
		recs[i] = gen.Next(nil)
	}
	k := newKey(b, testOrigin)
	l, err := Open(benchDir(b), Options{Origin: testOrigin, Signer: k.signer, Logger: quietLogger(), SegmentSize: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < n; i += 1000 {
		if _, err := l.Append(context.Background(), recs[i:min(i+1000, n)]...); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(context.Background()); err != nil {
		b.Fatal(err)
	}
	waitCompressed(b, l, time.Minute)
	b.Run("random", func(b *testing.B) {
		i := uint64(0)
		for b.Loop() {
			i = (i + 40503) % (n - 20000) // within the compressed segments
			e, err := l.Read(i)
			if err != nil || !bytes.Equal(e.Data, recs[i]) {
				b.Fatalf("Read(%d): %v", i, err)
			}
		}
	})
	b.Run("sequential", func(b *testing.B) {
		for b.Loop() {
			got := 0
			for e, err := range l.Entries(0) {
				if err != nil || !bytes.Equal(e.Data, recs[e.Index]) {
					b.Fatalf("record %d: %v", e.Index, err)
				}
				got++
			}
			if got != n {
				b.Fatalf("read %d", got)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/record")
	})
}

// goIdle is the CPU time the Go scheduler found no goroutine to run, in
// seconds (runtime/metrics; brought up to date by a collection): verify's
// own idle time, whatever else the machine runs.
func goIdle() float64 {
	runtime.GC()
	m := []metrics.Sample{{Name: "/cpu/classes/idle:cpu-seconds"}}
	metrics.Read(m)
	return m[0].Value.Float64()
}

// BenchmarkCompressSegment measures compaction alone: one closed 16 MiB
// segment of the demo's traffic compressed (read, every frame's CRC
// checked, zstd, decoded again and compared, written and synced) over and
// over. Compaction runs beside the appends, so its CPU per record is part
// of what a record costs; the Append benchmark includes it when it runs in
// its window.
func BenchmarkCompressSegment(b *testing.B) {
	gen := demotraffic.New(1, time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), time.Millisecond)
	k := newKey(b, testOrigin)
	dir := benchDir(b)
	l, err := Open(dir, Options{Origin: testOrigin, Signer: k.signer, Logger: quietLogger(), DisableCompression: true})
	if err != nil {
		b.Fatal(err)
	}
	for l.Size() < 24000 { // 16 MiB segments of ~750-byte events: one closed
		batch := make([][]byte, 1000)
		for i := range batch {
			batch[i] = gen.Next(nil)
		}
		if _, err := l.Append(context.Background(), batch...); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	segs, err := listSegments(filepath.Join(dir, "seg"))
	if err != nil {
		b.Fatal(err)
	}
	s, count := segs[0], segs[1].first-segs[0].first
	st, err := os.Stat(s.path)
	if err != nil {
		b.Fatal(err)
	}
	var cpu time.Duration
	var zsize int64
	for b.Loop() {
		cpu0 := cpuTime()
		zp, err := compressSegment(s.path, s.first, count)
		cpu += cpuTime() - cpu0
		if err != nil {
			b.Fatal(err)
		}
		// The work was done: the compressed segment holds every record.
		z, err := readZIndex(zp)
		if err != nil || z.count != count {
			b.Fatalf("compressed segment: %v, want %d records", err, count)
		}
		zst, err := os.Stat(zp)
		if err != nil {
			b.Fatal(err)
		}
		zsize = zst.Size()
		os.Remove(zp)
	}
	b.SetBytes(st.Size())
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(uint64(b.N)*count)/1000, "cpu-µs/rec")
	b.ReportMetric(float64(zsize)/float64(count), "zseg-B/rec")
}
