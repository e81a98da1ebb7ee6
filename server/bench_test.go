package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/testenv"
)

// BenchmarkPrepare is the per-event work of ingest before the ledger:
// scrub, decode, check, normalise; TwoPasses scrubs and then normalises
// (every line with something to scrub, and before the one pass),
// OnePass is what ingest does with a line that has nothing to scrub.
func BenchmarkPrepare(b *testing.B) {
	b.Run("TwoPasses", func(b *testing.B) { benchmarkPrepare(b, false) })
	b.Run("OnePass", func(b *testing.B) { benchmarkPrepare(b, true) })
	b.Run("OnePassVaried", func(b *testing.B) { benchmarkPrepareVaried(b, false) })
	b.Run("OnePassMixed", func(b *testing.B) { benchmarkPrepareVaried(b, true) })
}

// benchmarkPrepareVaried is OnePass over bench/cmd/ingestload's events:
// one layout, the values that differ from event to event differing
// (times, ids, paths, addresses, users), as one shipper sends them.
// mixed: every third has no user and every fifth an error message, so
// that the layout changes often (the ScrubPass's template misses).
func benchmarkPrepareVaried(b *testing.B, mixed bool) {
	ts := newBenchServer(b)
	tok := event.NewScrubPass(ts.red.NewTokens())
	var lines [][]byte
	size := 0
	for i := range 1000 {
		lines = append(lines, fmt.Appendf(nil, `{"@timestamp":"2026-11-25T12:00:%02d.%06dZ","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":1834000,"id":"0193a1b2-c3d4-7e5f-8a9b-%012d","dataset":"trailguard.access"},"http":{"request":{"id":"req-%08d","method":"GET"},"response":{"status_code":200,"body":{"bytes":512}}},"url":{"path":"/api/orders/%d","query":"page=2"},"source":{"ip":"10.1.%d.%d","port":51234},"user":{"name":"user%03d"},"user_agent":{"original":"Mozilla/5.0 (X11; Linux x86_64)"},"service":{"name":"orders-api"}}`,
			i%60, i*7919%1000000, i, i*31, i*17, i/250, i%250, i%1000))
		if mixed && i%3 == 0 {
			lines[i] = bytes.Replace(lines[i], fmt.Appendf(nil, `"user":{"name":"user%03d"},`, i%1000), nil, 1)
		}
		if mixed && i%5 == 0 {
			lines[i] = bytes.Replace(lines[i], []byte(`"service":`), []byte(`"error":{"message":"upstream timed out"},"service":`), 1)
		}
		size += len(lines[i])
	}
	now := time.Now()
	b.SetBytes(int64(size / len(lines)))
	b.ReportAllocs()
	var dst, scratch []byte
	i := 0
	for b.Loop() {
		var err error
		var sp event.Spans
		dst, scratch, _, err = ts.prepareTok(dst[:0], scratch, lines[i%len(lines)], now, &sp, tok)
		if err != nil || !sp.OK() {
			b.Fatal(err)
		}
		i++
	}
}

func benchmarkPrepare(b *testing.B, onePass bool) {
	ts := newBenchServer(b)
	tok := event.NewScrubPass(ts.red.NewTokens())
	if !onePass {
		tok = nil
	}
	line := []byte(fmt.Sprintf(`{"@timestamp":"2026-11-25T12:00:00.000001Z","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":1834000,"id":"0193a1b2-c3d4-7e5f-8a9b-%012d","dataset":"trailguard.access"},"http":{"request":{"id":"req-1","method":"GET"},"response":{"status_code":200,"body":{"bytes":512}}},"url":{"path":"/api/orders/1","query":"page=2"},"source":{"ip":"10.1.2.3","port":51234},"user":{"name":"user001"},"user_agent":{"original":"Mozilla/5.0 (X11; Linux x86_64)"},"service":{"name":"orders-api"}}`, 1))
	now := time.Now()
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	var dst, scratch []byte
	for b.Loop() {
		var err error
		var sp event.Spans
		dst, scratch, _, err = ts.prepareTok(dst[:0], scratch, line, now, &sp, tok)
		if err != nil || len(dst) < len(line) || !sp.OK() {
			b.Fatal(err)
		}
	}
}

// BenchmarkIngest is POST /v1/events end to end in process: batches of
// 1000 events, durable in the ledger before the answer. Every iteration
// sends new event.ids (the collector drops ids it stored recently, and
// timing that would measure duplicate rejection), and every answer must
// accept the whole batch.
func BenchmarkIngest(b *testing.B) {
	ts := newBenchServer(b)
	_, tok, _ := ts.tokens.Create("bench", "ingest")
	const batch = 1000
	var body []byte
	var iterAt []int // offsets of each line's iteration digits in body
	for i := range batch {
		body = fmt.Appendf(body, `{"@timestamp":"2026-11-25T12:00:00.000001Z","event":{"kind":"event","category":["web"],"action":"http_request","outcome":"success","id":"id-`)
		iterAt = append(iterAt, len(body))
		body = fmt.Appendf(body, `00000000-%04d"},"url":{"path":"/api/orders/%d"},"source":{"ip":"10.1.2.3"},"user":{"name":"user001"},"http":{"response":{"status_code":200}}}`+"\n", i, i)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	sent := 0
	for iter := 0; b.Loop(); iter++ {
		digits := fmt.Appendf(nil, "%08d", iter)
		for _, at := range iterAt {
			copy(body[at:], digits)
		}
		req := httptest.NewRequest("POST", "/v1/events", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		ts.Handler().ServeHTTP(w, req)
		var resp ingestResponse
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &resp) != nil || resp.Accepted != batch {
			b.Fatalf("batch %d: %d %s (want all %d accepted)", iter, w.Code, w.Body, batch)
		}
		sent += batch
	}
	b.StopTimer()
	if got := ts.ledger.Size(); got < uint64(sent) {
		b.Fatalf("ledger holds %d records after %d events were accepted", got, sent)
	}
	b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "events/s")
}

func newBenchServer(b *testing.B) *Server {
	cfg := Defaults()
	cfg.DataDir = b.TempDir()
	cfg.Origin = "bench/trailguard"
	srv, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return srv
}

// BenchmarkPrepareVaried is BenchmarkPrepare/OnePass over the events
// bench/cmd/ingestload posts (issue 15 item 3): a batch of 1,000 whose
// times, ids, paths, addresses and users vary from event to event, as a
// shipper's do, so that the scrub pass's memory of the last clean value
// helps only where real traffic repeats itself.
func BenchmarkPrepareVaried(b *testing.B) {
	ts := newBenchServer(b)
	tok := event.NewScrubPass(ts.red.NewTokens())
	lines := loaderBatch(1000)
	now := time.Now()
	b.ReportAllocs()
	var dst, scratch []byte
	var size int
	cpu0 := testenv.CPUTime()
	for i := 0; b.Loop(); i++ {
		line := lines[i%len(lines)]
		size += len(line)
		var err error
		var sp event.Spans
		dst, scratch, _, err = ts.prepareTok(dst[:0], scratch, line, now, &sp, tok)
		if err != nil || len(dst) < len(line) || !sp.OK() {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)/b.Elapsed().Seconds()/1e6, "MB/s")
	// CPU time per event, which a shared machine moves far less than the
	// time per event.
	b.ReportMetric(float64(testenv.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// loaderBatch is n events as bench/cmd/ingestload's makeBatch writes them.
func loaderBatch(n int) [][]byte {
	var lines [][]byte
	for i := range n {
		lines = append(lines, fmt.Appendf(nil, `{"@timestamp":"2026-11-25T12:00:%02d.%06dZ","event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","duration":1834000,"id":"0193a1b2-c3d4-7e5f-%08d%012d","dataset":"trailguard.access"},"http":{"request":{"id":"req-%08d","method":"GET"},"response":{"status_code":200,"body":{"bytes":512}}},"url":{"path":"/api/orders/%d","query":"page=2"},"source":{"ip":"10.1.%d.%d","port":51234},"user":{"name":"user%03d"},"user_agent":{"original":"Mozilla/5.0 (X11; Linux x86_64)"},"service":{"name":"orders-api"}}`,
			i%60, i%1000000, 7, i, i, i%1000, i%250, i%200, i%500))
	}
	return lines
}
