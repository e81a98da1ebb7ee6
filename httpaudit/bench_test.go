package httpaudit

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
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

// TestStateSize keeps the per-request state in the 352-byte size class:
// it is allocated, zeroed and collected on every request, and a field
// that pushes it into the next class costs every request 32 bytes more.
// Move what only some requests need to reqOpt or bodyReader instead.
func TestStateSize(t *testing.T) {
	if n := unsafe.Sizeof(state{}); n > 352 {
		t.Fatalf("state is %d bytes, over the 352-byte size class", n)
	}
}

// BenchmarkAccessEncode is the writer's work for one access event: the
// scrubbing of path, query and user agent and the encoding of the ECS
// document. "repeated" encodes the same request over and over, as the
// middleware benchmarks in bench/ do, so the scrubbing memo answers for
// every value; "unique" cycles through 4096 requests whose path, query
// and user agent all differ, more than the memo holds, so that every
// value is scanned: the cost on traffic that never repeats itself.
func BenchmarkAccessEncode(b *testing.B) {
	l, err := New(Config{Sink: sink.NewWriter(io.Discard), ServiceName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	mk := func(i int) *state {
		r := httptest.NewRequest("GET", fmt.Sprintf("/api/v1/orders/%d?page=%d&sort=desc", i, i), nil)
		r.Header.Set("User-Agent", fmt.Sprintf("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.%d.0 Safari/537.36", i))
		st := &state{l: l, status: 200, written: 21, requestID: "5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1e",
			traceID: "4bf92f3577b34da6a3ce929d0e0e4736", spanID: "00f067aa0ba902b7"}
		st.info.capture(r, l)
		l.markStart(&st.info)
		st.info.dur = 1234 * time.Microsecond
		return st
	}
	for _, tc := range []struct {
		name string
		n    int
	}{{"repeated", 1}, {"unique", 4096}} {
		b.Run(tc.name, func(b *testing.B) {
			states := make([]*state, tc.n)
			for i := range states {
				states[i] = mk(i)
			}
			wc := writerCache{memo: l.red.NewMemo(), now: time.Now()}
			ids := event.NewIDSource()
			var buf []byte
			var id [36]byte
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				var ok bool
				buf, ok = l.appendAccess(buf[:0], states[i%len(states)], ids.Append(id[:0], wc.now), &wc)
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
