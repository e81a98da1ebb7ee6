package httpaudit

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"unsafe"

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
