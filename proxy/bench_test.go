package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/trailguard/trailguard/sink"
)

// BenchmarkProxy measures a GET through the gateway over loopback to a
// real upstream, events encoded into a discarding sink, parallel clients
// on keep-alive connections, served by the lean front end and by
// net/http. It checks that every request reached the upstream and every
// access event was written.
func BenchmarkProxy(b *testing.B) {
	for _, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		b.Run(strings.ReplaceAll(mode, "/", ""), func(b *testing.B) { benchmarkProxy(b, mode) })
	}
}

func benchmarkProxy(b *testing.B, mode string) {
	var hits atomic.Int64
	body := []byte(`{"args":{},"headers":{},"origin":"127.0.0.1","url":"http://x/get"}`)
	up := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})}
	uln, _ := net.Listen("tcp", "127.0.0.1:0")
	go up.Serve(uln)
	defer up.Close()
	p, err := New(Config{Routes: []Route{{Upstream: "http://" + uln.Addr().String()}}, Sink: sink.NewWriter(io.Discard)}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	gln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := NewPlainServer(p, Config{HTTP1: mode}, quiet)
	go srv.Serve(gln)
	defer srv.Close()
	url := "http://" + gln.Addr().String() + "/get?x=1"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequestWithContext(context.Background(), "GET", url, nil)
			req.Header.Set("User-Agent", "bench")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.StopTimer()
	if err := p.Close(); err != nil {
		b.Fatal(err)
	}
	st := p.Stats()
	if hits.Load() != int64(b.N) || st.Events.Written < uint64(b.N) || st.Events.Dropped > 0 {
		b.Fatalf("%d requests, upstream saw %d, %d events written, %d dropped", b.N, hits.Load(), st.Events.Written, st.Events.Dropped)
	}
}
