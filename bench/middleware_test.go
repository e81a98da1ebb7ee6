// Package bench compares the httpaudit middleware with peer request loggers
// built on log/slog. It is a separate module so that the peers never become
// dependencies of trailguard itself.
package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/httplog/v3"
	sloghttp "github.com/samber/slog-http"

	"github.com/trailguard/trailguard/httpaudit"
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

// newRequest builds the request every benchmark serves: a GET with a query
// string and the ten headers a browser or API client behind a proxy sends.
// Each benchmark goroutine builds its own, once: none of the middlewares
// may change it, but slog-http swaps the body of its copy.
func newRequest() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api/v1/orders?page=2&sort=desc", nil)
	h := r.Header
	h.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36")
	h.Set("Accept", "application/json")
	h.Set("Accept-Encoding", "gzip, deflate, br")
	h.Set("Accept-Language", "en-US,en;q=0.9")
	h.Set("Content-Type", "application/json")
	h.Set("X-Request-ID", requestID)
	h.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.Set("X-Forwarded-For", "203.0.113.7, 198.51.100.2")
	h.Set("Cookie", "session=9f86d081884c7d659a2feaa0c55ad015; theme=dark")
	h.Set("Authorization", "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
	return r
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
	r := newRequest()
	var w *httptest.ResponseRecorder
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for range b.N {
		w = httptest.NewRecorder()
		h.ServeHTTP(w, r)
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
	cpu := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		r := newRequest()
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
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
		b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
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
	l := newHTTPAudit(b, io.Discard, b.N)
	serve(b, l.Middleware(handler), closeAudit(b, l))
}

func BenchmarkHTTPLog(b *testing.B) { serve(b, newHTTPLog(io.Discard)(handler), nil) }

func BenchmarkSlogHTTP(b *testing.B) { serve(b, newSlogHTTP(io.Discard)(handler), nil) }

func BenchmarkBaselineParallel(b *testing.B) { serveParallel(b, handler, nil) }

func BenchmarkHTTPAuditParallel(b *testing.B) {
	l := newHTTPAudit(b, io.Discard, b.N)
	serveParallel(b, l.Middleware(handler), closeAudit(b, l))
}

func BenchmarkHTTPLogParallel(b *testing.B) {
	serveParallel(b, newHTTPLog(io.Discard)(handler), nil)
}

func BenchmarkSlogHTTPParallel(b *testing.B) {
	serveParallel(b, newSlogHTTP(io.Discard)(handler), nil)
}

// TestEachLogsTheRequest makes sure the benchmarks compare like with like:
// every middleware writes exactly one JSON line per request, naming the
// path and status, and keeps secrets it was not asked to log out of it.
func TestEachLogsTheRequest(t *testing.T) {
	tests := []struct {
		name string
		wrap func(t *testing.T, w io.Writer) (http.Handler, func())
		want []string // substrings of the line
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
			want: []string{`"/api/v1/orders"`, `200`, requestID, `4bf92f3577b34da6a3ce929d0e0e4736`, `"bench"`},
		},
		{
			name: "httplog",
			wrap: func(t *testing.T, w io.Writer) (http.Handler, func()) {
				return newHTTPLog(w)(handler), func() {}
			},
			want: []string{`/api/v1/orders`, `200`},
		},
		{
			name: "slog-http",
			wrap: func(t *testing.T, w io.Writer) (http.Handler, func()) {
				return newSlogHTTP(w)(handler), func() {}
			},
			want: []string{`/api/v1/orders`, `200`, requestID},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			h, done := tt.wrap(t, &out)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, newRequest())
			done()
			if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), responseBody) {
				t.Fatalf("response %d %q", w.Code, w.Body.Bytes())
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(lines) != 1 {
				t.Fatalf("%d log lines, want 1:\n%s", len(lines), out.String())
			}
			if !json.Valid([]byte(lines[0])) {
				t.Fatalf("not JSON: %s", lines[0])
			}
			for _, s := range tt.want {
				if !strings.Contains(lines[0], s) {
					t.Errorf("line lacks %q: %s", s, lines[0])
				}
			}
			for _, s := range []string{"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", "9f86d081884c7d659a2feaa0c55ad015"} {
				if strings.Contains(lines[0], s) {
					t.Errorf("line leaks %q: %s", s, lines[0])
				}
			}
			t.Logf("%s", lines[0])
		})
	}
}
