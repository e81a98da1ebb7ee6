package httpaudit

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/trailguard/trailguard/sink"
)

func BenchmarkZZReqPath(b *testing.B) {
	r := httptest.NewRequest("GET", "/api/v1/orders?page=2&sort=desc", nil)
	h := r.Header
	h.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36")
	h.Set("Accept", "application/json")
	h.Set("Accept-Encoding", "gzip, deflate, br")
	h.Set("Accept-Language", "en-US,en;q=0.9")
	h.Set("Content-Type", "application/json")
	h.Set("X-Request-ID", "5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1e")
	h.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.Set("X-Forwarded-For", "203.0.113.7, 198.51.100.2")
	h.Set("Cookie", "session=9f86d081884c7d659a2feaa0c55ad015; theme=dark")
	h.Set("Authorization", "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
	hf := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200); w.Write([]byte("ok")) })
	w := &nopWriter{h: http.Header{"X-Request-Id": nil}}
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			hf.ServeHTTP(w, r)
		}
	})
	b.Run("skip", func(b *testing.B) {
		l, _ := New(Config{Sink: sink.NewWriter(io.Discard), Skip: func(*http.Request) bool { return true }})
		defer l.Close()
		m := l.Middleware(hf)
		b.ReportAllocs()
		for range b.N {
			m.ServeHTTP(w, r)
		}
	})
}
