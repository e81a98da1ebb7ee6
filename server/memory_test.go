package server

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// ingestMemoryBound is the most one ingest request, whatever its body,
// may add to a fresh collector's anonymous memory with the default
// limits, counting the indexing of what it stored. The request itself
// holds the line reader and one chunk (~1.3 MiB), one event in
// preparation (a few times max_line_bytes), per-line results (≤
// max_request_events × ~50 B, the _ids it echoes, ≤ 1 MiB of error text);
// the rest is garbage the Go collector lets accumulate (GOGC=100) and the
// indexer's batches, which belong to the process, not to the request.
// Measured (README "Limits"): 0–145 MB, the worst a _bulk of 60,000 items
// with 512-byte _ids; the bodies cost 6 GB and 690 MB.
const ingestMemoryBound = 192 << 20

// worstBody is one hostile ingest request.
type worstBody struct {
	name, path, encoding string
	contentType          string // default application/x-ndjson
	body                 []byte
	wantStatus           int
}

// worstBodies are the worst requests we could construct against the
// default limits (max_request_bytes 32 MiB, max_line_bytes 256 KiB,
// max_request_events 100,000).
func worstBodies(t testing.TB) []worstBody {
	const size = 31 << 20
	// Bodies whose cost is per line need not be the largest to show it
	// does not add up.
	const medium = 8 << 20
	var out []worstBody
	// The attack: 31 MB of "{}" lines (it peaked at 6 GB): stops
	// at max_request_events.
	out = append(out, worstBody{name: "31 MB of {} lines", path: "/v1/events", body: bytes.Repeat([]byte("{}\n"), size/3), wantStatus: 413})
	// As many tiny valid events as one request may carry, all stored.
	// As many invalid lines as one request may carry: 100k errors answered.
	var bad bytes.Buffer
	for i := range 100000 {
		fmt.Fprintf(&bad, "{\"event\":{\"outcome\":\"nope-%d\"}}\n", i)
	}
	out = append(out, worstBody{name: "100k invalid lines, distinct errors", path: "/v1/events", body: bad.Bytes(), wantStatus: 400})
	// Lines of max_line_bytes, each a valid event.
	line := `{"message":"` + strings.Repeat("m", (256<<10)-64) + `"}` + "\n"
	out = append(out, worstBody{name: "max-size lines (256 KiB each)", path: "/v1/events", body: []byte(strings.Repeat(line, medium/len(line))), wantStatus: 200})
	// Deep nesting in max-size lines (rejected by depth limits).
	depth := 40000
	nested := strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth) + "\n"
	out = append(out, worstBody{name: "deeply nested lines", path: "/v1/events", body: []byte(strings.Repeat(nested, medium/len(nested))), wantStatus: 400})
	// Huge arrays in max-size lines (stored: tags is a keyword array).
	arr := `{"tags":[` + strings.Repeat(`"t",`, 60000) + `"t"]}` + "\n"
	out = append(out, worstBody{name: "huge arrays", path: "/v1/events", body: []byte(strings.Repeat(arr, medium/len(arr))), wantStatus: 200})
	// Gzip bombs: 1 GiB in about 1 MB, as 128 gzip members of 8 MiB each
	// (a reader decodes concatenated members as one stream), of "{}"
	// lines and of one endless line. The 2.6 MB bomb peaked at
	// 690 MB.
	bomb := func(unit []byte) []byte {
		var member bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
		for range (8 << 20) / len(unit) {
			zw.Write(unit)
		}
		zw.Close()
		return bytes.Repeat(member.Bytes(), 128)
	}
	b1, b2 := bomb(bytes.Repeat([]byte("{}\n"), 1<<16)), bomb(make([]byte, 1<<16))
	out = append(out, worstBody{name: fmt.Sprintf("gzip bomb (%d KB → 1 GiB)", len(b1)>>10), path: "/v1/events", encoding: "gzip", body: b1, wantStatus: 413})
	out = append(out, worstBody{name: fmt.Sprintf("gzip bomb, no newline (%d KB → 1 GiB)", len(b2)>>10), path: "/v1/events", encoding: "gzip", body: b2, wantStatus: 413})
	// _bulk: most items, each with a 512-byte _id to echo.
	var bulk bytes.Buffer
	id := strings.Repeat("i", 500)
	for i := 0; bulk.Len() < size; i++ {
		fmt.Fprintf(&bulk, "{\"index\":{\"_id\":\"%s%06d\"}}\n{}\n", id, i)
	}
	out = append(out, worstBody{name: "_bulk, 512-byte _ids", path: "/_bulk", body: bulk.Bytes(), wantStatus: 200})
	out = append(out, worstBody{name: "_bulk, 100k tiny items", path: "/_bulk", body: bytes.Repeat([]byte("{\"index\":{}}\n{}\n"), 100000), wantStatus: 200})
	// OTLP/JSON is decoded whole (4 MiB at most): 4 MiB of empty log
	// records (1.4 million, each {} decoded into a LogRecord), and one
	// record whose body is an array of 1.4 million empty values. They
	// held 270 MB and 100 MB before records and values were bounded as
	// they were read.
	const otlpJSON = 4<<20 - 100
	otlpOf := func(prefix, suffix string) []byte {
		n := (otlpJSON - len(prefix) - len(suffix)) / 3
		return []byte(prefix + strings.Repeat("{},", n-1) + "{}" + suffix)
	}
	out = append(out, worstBody{name: "OTLP/JSON, 4 MiB of empty log records", path: "/v1/logs", contentType: "application/json",
		body: otlpOf(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[`, `]}]}]}`), wantStatus: 413})
	out = append(out, worstBody{name: "OTLP/JSON, 4 MiB of empty values", path: "/v1/logs", contentType: "application/json",
		body: otlpOf(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"arrayValue":{"values":[`, `]}}}]}]}]}`), wantStatus: 413})
	return out
}

// anonPeak samples a process's anonymous resident memory (the Go heap,
// stacks, SQLite's allocations: not the ledger's memory-mapped segments,
// which are page cache the kernel may drop) every 2 ms until stop, and
// returns the highest value seen.
func anonPeak(pid int, stop <-chan struct{}) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		var peak int64
		for {
			if a := rssAnon(pid); a > peak {
				peak = a
			}
			select {
			case <-stop:
				out <- peak
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return out
}

func rssAnon(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n << 10
		}
	}
	return 0
}

// rss returns a process's current and peak resident set size in bytes.
func rss(t testing.TB, pid int) (cur, peak int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			cur = n << 10
		case "VmHWM:":
			peak = n << 10
		}
	}
	return cur, peak
}

// resetPeak starts a new peak-RSS measurement (Linux: clear_refs 5).
func resetPeak(t testing.TB, pid int) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset peak RSS: %v", err)
	}
}

// TestIngestMemoryBound is issue 7's item 6 against real processes: for
// each of the worst bodies above, a fresh collector's peak RSS while it
// answers (and indexes what it stored) stays within ingestMemoryBound of
// its RSS when idle. Run with -v for the table of peaks (README "Limits"
// quotes it). Each body gets its own process so that no measurement
// profits from memory an earlier one left to the Go heap.
func TestIngestMemoryBound(t *testing.T) {
	t.Parallel()
	testenv.Long(t)
	testenv.Require(t, runtime.GOOS == "linux", "peak RSS is read from /proc (Linux)")
	bodies := worstBodies(t)
	type result struct {
		idle, peak, hwm int64
		status          int
		answer          []byte
	}
	results := make([]result, len(bodies))
	parallel(len(bodies), 3, func(i int) {
		wb := bodies[i]
		p := startProc(t, t.TempDir())
		pid := p.cmd.Process.Pid
		if status, _, body := p.do(t, "POST", "/v1/events", p.ingest, strings.NewReader("{}\n")); status != 200 {
			t.Errorf("first event: %d %s", status, body)
			return
		}
		p.settle(t)
		idle := rssAnon(pid)
		resetPeak(t, pid)
		stop := make(chan struct{})
		peakc := anonPeak(pid, stop)
		hdr := []string{"Content-Type", cmp.Or(wb.contentType, "application/x-ndjson")}
		if wb.encoding != "" {
			hdr = append(hdr, "Content-Encoding", wb.encoding)
		}
		status, _, answer := p.do(t, "POST", wb.path, p.ingest, bytes.NewReader(wb.body), hdr...)
		p.settle(t) // indexing what it stored is part of the request's cost
		close(stop)
		_, hwm := rss(t, pid)
		results[i] = result{idle, <-peakc, hwm, status, answer}
	})
	t.Logf("%-42s %8s %9s %9s %9s  %s", "body", "bytes", "anon idle", "anon peak", "increase", "peak RSS incl. mapped ledger")
	for i, wb := range bodies {
		r := results[i]
		t.Logf("%-42s %8d %6d MB %6d MB %6d MB  %d MB", wb.name, len(wb.body), r.idle>>20, r.peak>>20, (r.peak-r.idle)>>20, r.hwm>>20)
		if r.status != wb.wantStatus {
			t.Errorf("%s: status %d, want %d: %.300s", wb.name, r.status, wb.wantStatus, r.answer)
		}
		if r.peak-r.idle > ingestMemoryBound {
			t.Errorf("%s: anonymous memory peaked at %d MB, %d MB above idle, bound %d MB", wb.name, r.peak>>20, (r.peak-r.idle)>>20, ingestMemoryBound>>20)
		}
	}
}
