package httpaudit

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"unsafe"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/sink"
)

// BenchmarkMiddleware measures a request through the middleware, the
// background encoding included (Close is inside the timed region).
func BenchmarkMiddleware(b *testing.B) {
	// The request path outruns the single writer when requests come back
	// to back, so the queue holds every event: the timed region then
	// includes draining it in Close.
	l, err := New(Config{Sink: sink.NewWriter(io.Discard), ServiceName: "bench", QueueSize: max(1<<16, b.N)})
	if err != nil {
		b.Fatal(err)
	}
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	req := httptest.NewRequest("GET", "/api/orders/42?page=2&sort=desc", nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
	req.Header.Set("X-Request-ID", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		h.ServeHTTP(w, req)
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	if d := l.Stats().Dropped; d > 0 {
		b.Fatalf("%d events dropped", d)
	}
}

// TestStateSize keeps the per-request state in the 224-byte size class.
// It is allocated, zeroed and collected on every request, and a field that
// pushes it into the next class (240) costs every request 16 bytes more of
// allocation, which the garbage collector's sweeping and marking pay for
// by the byte. Move what only some requests need to reqOpt, bodyReader or
// actor instead.
func TestStateSize(t *testing.T) {
	if n := unsafe.Sizeof(state{}); n > 224 {
		t.Fatalf("state is %d bytes, over the 224-byte size class", n)
	}
}

// TestRequestCostsTwoAllocations holds the middleware's request path to
// two allocations, the state and WithContext's copy of the request, for a
// request that brings its own id and traceparent. (The copy was once the
// state's own field, set through the offset of http.Request's context:
// one allocation, but every queued event then kept its request alive,
// TestQueuedRequestKeepsNoRequest.) The response writer's header map
// already has the id's key, as a server's reused one would, and Skip
// keeps the background writer, whose buffers grow at first, out of the
// count.
func TestRequestCostsTwoAllocations(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage counters may allocate")
	}
	l, err := New(Config{Sink: sink.NewWriter(io.Discard), Skip: func(*http.Request) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var seen string
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = RequestID(r.Context())
		w.WriteHeader(http.StatusNoContent)
	}))
	r := httptest.NewRequest("GET", "/api/orders?page=2", nil)
	r.Header.Set("User-Agent", "test")
	r.Header.Set("X-Request-ID", "5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1e")
	r.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	w := &nopWriter{h: http.Header{"X-Request-Id": nil}}
	if n := testing.AllocsPerRun(1000, func() { h.ServeHTTP(w, r) }); n != 2 {
		t.Errorf("%v allocations per request, want 2 (the state and the handler's request)", n)
	}
	if seen != "5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1e" {
		t.Errorf("handler saw request id %q", seen)
	}
}

// nopWriter is a ResponseWriter that allocates nothing.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkAccessEncode is the writer's work for one access event: the
// scrubbing of path, query and user agent and the encoding of the ECS
// document. "repeated" encodes the same request over and over, as the
// middleware benchmarks in bench/ do, so the scrubbing memo answers for
// every value; "unique" cycles through 4096 requests whose path, query
// and user agent all differ, more than the memo holds, so that every
// value is scanned: the cost on traffic that never repeats itself.
// "stream" is bench/'s traffic (paths and queries that seldom repeat,
// eight user agents): the writer's share of bench/run.sh's requests,
// without the pipeline around it.
func BenchmarkAccessEncode(b *testing.B) {
	l, err := New(Config{Sink: sink.NewWriter(io.Discard), ServiceName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	mk := func(i int, stream bool) *state {
		r := httptest.NewRequest("GET", fmt.Sprintf("/api/v1/orders/%d?page=%d&sort=desc", i, i), nil)
		r.Header.Set("User-Agent", fmt.Sprintf("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.%d.0 Safari/537.36", i))
		if stream {
			// bench/'s stream: order ids in paths, pages in queries,
			// eight user agents, sixteen clients in runs of eight.
			r = httptest.NewRequest("GET", fmt.Sprintf("/api/v1/orders/%d?page=%d&sort=desc", 100000+i*7919%900000, i+1), nil)
			r.Header.Set("User-Agent", fmt.Sprintf("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.%d.0 Safari/537.36", i%8))
			r.RemoteAddr = fmt.Sprintf("203.0.113.%d:%d", 10+i/8%16, 40000+i/8%16)
		}
		info, method := l.capture(r)
		st := &state{l: l, status: 200, written: 21, requestID: "5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1e",
			trace: "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", info: info, method: method}
		st.info.elapsed = 1234567 // ticks: the writer converts them
		return st
	}
	for _, tc := range []struct {
		name   string
		n      int
		stream bool
	}{{"repeated", 1, false}, {"unique", 4096, false}, {"stream", 1024, true}} {
		b.Run(tc.name, func(b *testing.B) {
			states := make([]*state, tc.n)
			for i := range states {
				states[i] = mk(i, tc.stream)
			}
			wc := writerCache{memo: l.red.NewMemo(), now: l.stamp()}
			ids := event.NewIDSource()
			var buf []byte
			var id [36]byte
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				var ok bool
				buf, ok = l.appendAccess(buf[:0], states[i%len(states)], ids.Append(id[:0], wc.now.Time), &wc, nil)
				if !ok || len(buf) < 600 || buf[len(buf)-1] != '}' {
					b.Fatalf("not encoded: %s", buf)
				}
			}
			b.StopTimer()
			if err := event.Validate(buf); err != nil || !bytes.Contains(buf, []byte(`"user_agent":{"original":"Mozilla/5.0`)) {
				b.Fatalf("not an access event (%v): %s", err, buf)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// BenchmarkRequestPath is the request goroutine's own share of a request,
// without the writer's: the bench module's request (ten headers, an
// incoming id and traceparent) through a handler that answers 200 with a
// short body, against the bare handler. Skip keeps the event out of the
// queue, so what it measures is the capture, the checks of the incoming
// ids, the clock readings and the state's allocation (and the garbage
// collection it causes).
func BenchmarkRequestPath(b *testing.B) {
	r := httptest.NewRequest("GET", "/api/v1/orders?page=2&sort=desc", nil)
	for k, v := range map[string]string{
		"User-Agent":      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
		"Accept":          "application/json",
		"Accept-Encoding": "gzip, deflate, br",
		"Accept-Language": "en-US,en;q=0.9",
		"Content-Type":    "application/json",
		"X-Request-Id":    "5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1e",
		"Traceparent":     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"X-Forwarded-For": "203.0.113.7, 198.51.100.2",
		"Cookie":          "session=9f86d081884c7d659a2feaa0c55ad015; theme=dark",
		"Authorization":   "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
	} {
		r.Header.Set(k, v)
	}
	body := []byte(`{"status":"ok","n":2}`)
	var seen string
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = RequestID(r.Context())
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	})
	w := &nopWriter{h: http.Header{"X-Request-Id": nil}}
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			handler.ServeHTTP(w, r)
		}
	})
	b.Run("httpaudit", func(b *testing.B) {
		l, err := New(Config{Sink: sink.NewWriter(io.Discard), Skip: func(*http.Request) bool { return true }})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		h := l.Middleware(handler)
		b.ReportAllocs()
		for range b.N {
			h.ServeHTTP(w, r)
		}
		if seen != "5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1e" {
			b.Fatalf("the handler saw request id %q", seen)
		}
	})
}
