// Package bench compares the httpaudit middleware with peer request loggers
// built on log/slog. It is a separate module so that the peers never become
// dependencies of trailguard itself.
package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/httplog/v3"
	sloghttp "github.com/samber/slog-http"

	"github.com/trailguard/trailguard/httpaudit"
	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/sink"
)

// responseBody is what the handler under every middleware writes.
var responseBody = []byte(`{"status":"ok","n":2}`)

// handler is the application: a 200 with a short body.
var handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(responseBody)
})

const requestID = "5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1e"

// userAgents are the clients of the request stream: a server sees the
// same few user agents over and over, unlike paths with ids in them,
// queries and correlation ids.
var userAgents = []string{
	"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
	"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
	"okhttp/4.12.0",
	"python-requests/2.32.3",
	"Go-http-client/1.1",
}

// streamLen is how many different requests the benchmarks cycle through:
// more than httpaudit's scrubbing memo holds (redact.MemoSlots), so that
// paths, queries and ids that never repeat are scanned as they would be
// on a real server, rather than found in the memo every time (a stream of
// one request repeated was the memo's best case, which flattered httpaudit).
const streamLen = 1024

// stream is the sequence of requests every benchmark serves: GETs of an
// order by id with a query string, and the ten headers a browser or API
// client behind a proxy sends, each with its own request id and trace
// context (correlation ids are unique per request). The user agent is one
// of eight; the client address one of sixteen, in runs of eight requests
// (keep-alive connections).
//
// A server parses every request into a fresh Request whose header map is
// still in the core's cache when the middleware reads it; a stream of
// streamLen prebuilt Requests would have each one's map fetched from
// memory (~70 ns per header lookup here), a cost no server pays. So each
// benchmark goroutine has one Request (one header map) whose path, query,
// ids, user agent and address next sets for every request, in the timed
// loop of every benchmark, Baseline included. None of the middlewares may
// keep the request past its handler (httpaudit keeps copies of the
// strings it records, not the request), and none may change it, but
// slog-http swaps the body of its copy.
type stream struct {
	r                           *http.Request
	paths, queries, uris, addrs []string
	ids, traceparents           [][]string
	userAgents                  [][]string
}

func newStream() *stream {
	s := &stream{}
	for i := range streamLen {
		id := requestID
		tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		if i > 0 {
			id = fmt.Sprintf("%08x-%04x-4%03x-9%03x-%012x", uint32(i*2654435761), i, i%4096, (i*7)%4096, uint64(i)*0x9e3779b97f4a7c15&0xffffffffffff)
			tp = fmt.Sprintf("00-%016x%016x-%016x-01", uint64(i)*0x9e3779b97f4a7c15, uint64(i)*0xbf58476d1ce4e5b9, uint64(i)*0x94d049bb133111eb|1)
		}
		path := fmt.Sprintf("/api/v1/orders/%d", 100000+i*7919%900000)
		query := fmt.Sprintf("page=%d&sort=desc", i+1)
		s.paths = append(s.paths, path)
		s.queries = append(s.queries, query)
		s.uris = append(s.uris, path+"?"+query)
		s.addrs = append(s.addrs, fmt.Sprintf("203.0.113.%d:%d", 10+i/8%16, 40000+i/8%16))
		s.ids = append(s.ids, []string{id})
		s.traceparents = append(s.traceparents, []string{tp})
	}
	for _, ua := range userAgents {
		s.userAgents = append(s.userAgents, []string{ua})
	}
	r := httptest.NewRequest(http.MethodGet, s.uris[0], nil)
	h := r.Header
	h.Set("User-Agent", userAgents[0])
	h.Set("Accept", "application/json")
	h.Set("Accept-Encoding", "gzip, deflate, br")
	h.Set("Accept-Language", "en-US,en;q=0.9")
	h.Set("Content-Type", "application/json")
	h.Set("X-Request-ID", requestID)
	h.Set("Traceparent", s.traceparents[0][0])
	h.Set("X-Forwarded-For", "203.0.113.7, 198.51.100.2")
	h.Set("Cookie", "session=9f86d081884c7d659a2feaa0c55ad015; theme=dark")
	h.Set("Authorization", "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
	s.r = r
	return s
}

// next returns request i of the stream (the same Request each time, set
// to request i's values: stored, not copied, so that it costs a few
// stores and nothing a middleware would notice).
func (s *stream) next(i int) *http.Request {
	k := i % streamLen
	r := s.r
	r.URL.Path, r.URL.RawQuery, r.RequestURI, r.RemoteAddr = s.paths[k], s.queries[k], s.uris[k], s.addrs[k]
	r.Header["X-Request-Id"], r.Header["Traceparent"] = s.ids[k], s.traceparents[k]
	r.Header["User-Agent"] = s.userAgents[k%len(s.userAgents)]
	return r
}

// openOut opens what every middleware writes its lines to: /dev/null, as
// an *os.File. Each Write is then a write(2), as to the standard output
// or a log file a server's logger writes to, but the file does not grow
// over millions of requests. (io.Discard, used before, made a peer's
// write per request free; httpaudit makes one per batch. A regular file
// costs more per write than /dev/null still: the page cache.)
func openOut(tb testing.TB) *os.File {
	tb.Helper()
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

// newHTTPAudit returns httpaudit's logger writing to w. The queue holds
// at least n events, so that none is dropped even if the background writer
// falls behind for the whole run: every request's event is encoded and
// written, and counted.
func newHTTPAudit(tb testing.TB, w io.Writer, n int) *httpaudit.Logger {
	tb.Helper()
	l, err := httpaudit.New(httpaudit.Config{
		Sink:        sink.NewWriter(w),
		ServiceName: "bench",
		QueueSize:   max(1<<16, n),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// newHTTPLog returns httplog's middleware with its default options
// (ECS field names, Content-Type and Origin request headers, no bodies) on
// a plain JSON handler writing to w.
func newHTTPLog(w io.Writer) func(http.Handler) http.Handler {
	return httplog.RequestLogger(slog.New(slog.NewJSONHandler(w, nil)), nil)
}

// newSlogHTTP returns slog-http's middleware with its default configuration
// (request id and client ip, no headers, no bodies).
func newSlogHTTP(w io.Writer) func(http.Handler) http.Handler {
	return sloghttp.New(slog.New(slog.NewJSONHandler(w, nil)))
}

// serve runs h b.N times on one goroutine. finish runs inside the timed
// region, so work a middleware defers to the background (httpaudit's
// encoder) is paid for before the clock stops.
func serve(b *testing.B, h http.Handler, finish func()) {
	rs := newStream()
	var w *httptest.ResponseRecorder
	b.ReportAllocs()
	b.ResetTimer()
	cpu := testenv.CPUTime()
	for i := range b.N {
		w = httptest.NewRecorder()
		h.ServeHTTP(w, rs.next(i))
	}
	if finish != nil {
		finish()
	}
	b.StopTimer()
	reportCPU(b, cpu)
	if b.N > 0 && (w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), responseBody)) {
		b.Fatalf("response %d %q", w.Code, w.Body.Bytes())
	}
}

// serveParallel is serve with GOMAXPROCS goroutines sending requests.
func serveParallel(b *testing.B, h http.Handler, finish func()) {
	b.ReportAllocs()
	b.ResetTimer()
	cpu := testenv.CPUTime()
	b.RunParallel(func(pb *testing.PB) {
		rs := newStream()
		for i := 0; pb.Next(); i++ {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, rs.next(i))
			if w.Code != http.StatusOK {
				b.Errorf("status %d", w.Code)
				return
			}
		}
	})
	if finish != nil {
		finish()
	}
	b.StopTimer()
	reportCPU(b, cpu)
}

// reportCPU reports the CPU time the process used per request since
// start: unlike ns/op it counts work done on other cores (httpaudit's
// background encoder, the garbage collector) and not time spent waiting
// for a core, so it stays comparable when the machine is busy with
// something else.
func reportCPU(b *testing.B, start time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64((testenv.CPUTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// closeAudit returns the finish step of an httpaudit benchmark: Close
// drains the queue, so the encoding of every event is inside the timing.
// It also reports how many events were still queued when the last request
// was served and how long draining them took, per request: a backlog says
// that the background writer did not keep up with the requests.
func closeAudit(b *testing.B, l *httpaudit.Logger) func() {
	return func() {
		backlog := l.Stats().Queued
		start := time.Now()
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		drain := time.Since(start)
		b.ReportMetric(float64(backlog), "backlog")
		b.ReportMetric(float64(drain.Nanoseconds())/float64(max(b.N, 1)), "drain-ns/op")
		s := l.Stats()
		if s.Dropped != 0 || s.Lost != 0 || s.Written != uint64(b.N) {
			b.Fatalf("httpaudit stats after %d requests: %+v", b.N, s)
		}
	}
}

func BenchmarkBaseline(b *testing.B) { serve(b, handler, nil) }

func BenchmarkHTTPAudit(b *testing.B) {
	l := newHTTPAudit(b, openOut(b), b.N)
	serve(b, l.Middleware(handler), closeAudit(b, l))
}

func BenchmarkHTTPLog(b *testing.B) { serve(b, newHTTPLog(openOut(b))(handler), nil) }

func BenchmarkSlogHTTP(b *testing.B) { serve(b, newSlogHTTP(openOut(b))(handler), nil) }

func BenchmarkBaselineParallel(b *testing.B) { serveParallel(b, handler, nil) }

func BenchmarkHTTPAuditParallel(b *testing.B) {
	l := newHTTPAudit(b, openOut(b), b.N)
	serveParallel(b, l.Middleware(handler), closeAudit(b, l))
}

func BenchmarkHTTPLogParallel(b *testing.B) {
	serveParallel(b, newHTTPLog(openOut(b))(handler), nil)
}

func BenchmarkSlogHTTPParallel(b *testing.B) {
	serveParallel(b, newSlogHTTP(openOut(b))(handler), nil)
}

// TestEachLogsTheRequest makes sure the benchmarks compare like with like:
// every middleware writes exactly one JSON line per request of the stream,
// naming its path and status (and, where the middleware records them, its
// request id and trace id: httpaudit keeps every incoming id of the
// stream rather than minting its own), and keeps secrets it was not asked
// to log out of it.
func TestEachLogsTheRequest(t *testing.T) {
	tests := []struct {
		name string
		wrap func(t *testing.T, w io.Writer) (http.Handler, func())
		want func(s *stream, k int) []string // substrings of the line of request k
	}{
		{
			name: "httpaudit",
			wrap: func(t *testing.T, w io.Writer) (http.Handler, func()) {
				l := newHTTPAudit(t, w, 1)
				return l.Middleware(handler), func() {
					if err := l.Close(); err != nil {
						t.Fatal(err)
					}
				}
			},
			want: func(s *stream, k int) []string {
				return []string{`"` + s.paths[k] + `"`, `"` + s.queries[k] + `"`, `200`, `"` + s.ids[k][0] + `"`,
					`"` + s.traceparents[k][0][3:35] + `"`, `"` + s.userAgents[k%len(s.userAgents)][0] + `"`,
					`"` + strings.Split(s.addrs[k], ":")[0] + `"`, `"bench"`}
			},
		},
		{
			name: "httplog",
			wrap: func(t *testing.T, w io.Writer) (http.Handler, func()) {
				return newHTTPLog(w)(handler), func() {}
			},
			want: func(s *stream, k int) []string {
				return []string{`"` + s.paths[k] + `"`, `200`, `"` + s.userAgents[k%len(s.userAgents)][0] + `"`}
			},
		},
		{
			name: "slog-http",
			wrap: func(t *testing.T, w io.Writer) (http.Handler, func()) {
				return newSlogHTTP(w)(handler), func() {}
			},
			want: func(s *stream, k int) []string {
				return []string{`"` + s.paths[k] + `"`, `"` + s.queries[k] + `"`, `200`, `"` + s.ids[k][0] + `"`}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := newStream()
			var out bytes.Buffer
			h, done := tt.wrap(t, &out)
			for k := range streamLen {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, stream.next(k))
				if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), responseBody) {
					t.Fatalf("response %d %q", w.Code, w.Body.Bytes())
				}
			}
			done()
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(lines) != streamLen {
				t.Fatalf("%d log lines for %d requests", len(lines), streamLen)
			}
			for i, line := range lines {
				if !json.Valid([]byte(line)) {
					t.Fatalf("not JSON: %s", line)
				}
				for _, s := range tt.want(stream, i) {
					if !strings.Contains(line, s) {
						t.Errorf("line %d lacks %s: %s", i, s, line)
					}
				}
				for _, s := range []string{"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", "9f86d081884c7d659a2feaa0c55ad015"} {
					if strings.Contains(line, s) {
						t.Errorf("line %d leaks %q: %s", i, s, line)
					}
				}
			}
			t.Logf("%s", lines[1])
		})
	}
}
