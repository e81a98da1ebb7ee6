package proxy

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
)

// memSink keeps every record written, for tests to read back.
type memSink struct {
	mu   sync.Mutex
	recs [][]byte
}

func (m *memSink) Write(_ context.Context, recs [][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range recs {
		m.recs = append(m.recs, bytes.Clone(r))
	}
	return nil
}

func (m *memSink) Close() error { return nil }

func (m *memSink) all() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Join(m.recs, []byte("\n"))
}

func (m *memSink) events(t testing.TB) []*event.Event {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*event.Event
	for _, r := range m.recs {
		ev, err := event.Decode(r)
		if err != nil {
			t.Fatalf("stored record is not an event: %v: %s", err, r)
		}
		out = append(out, ev)
	}
	return out
}

// wait waits until pred holds for the events written, or fails. Its
// deadline is long: what it waits for must come, and a process stalled for
// seconds on a loaded machine (4.6 s seen) makes it late, not missing.
func (m *memSink) wait(t testing.TB, what string, pred func([]*event.Event) bool) []*event.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs := m.events(t)
		if pred(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			for _, ev := range evs {
				t.Logf("event: %s %s %s %d %s", ev.Action, ev.Method, ev.Path, ev.StatusCode, ev.Reason)
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func byAction(evs []*event.Event, action string) []*event.Event {
	var out []*event.Event
	for _, ev := range evs {
		if ev.Action == action {
			out = append(out, ev)
		}
	}
	return out
}

func hasAction(action string, n int) func([]*event.Event) bool {
	return func(evs []*event.Event) bool { return len(byAction(evs, action)) >= n }
}

// gateway starts a Proxy with cfg in front of nothing but what cfg routes
// to, on a real listener, and returns its URL and its sink.
func gateway(t testing.TB, cfg Config) (*Proxy, string, *memSink) {
	t.Helper()
	p, url, ms, _ := gatewayServer(t, cfg)
	return p, url, ms
}

// gatewayServer is gateway, with the server it listens with.
func gatewayServer(t testing.TB, cfg Config) (*Proxy, string, *memSink, PlainServer) {
	t.Helper()
	ms := &memSink{}
	cfg.Sink = ms
	p, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := listen(p, cfg, ln)
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	return p, "http://" + ln.Addr().String(), ms, srv
}

// listen serves p on ln as Gateway.Serve does.
func listen(p *Proxy, cfg Config, ln net.Listener) PlainServer {
	srv := NewPlainServer(p, cfg, nil)
	go srv.Serve(ln)
	return srv
}

// upstream is a real HTTP server on 127.0.0.1 that counts requests.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newUpstream(t testing.TB, h http.HandlerFunc) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(context.Background()))
		u.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *upstream) last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.reqs[len(u.reqs)-1]
}

func get(t testing.TB, url string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// walkFiles calls fn with the contents of every regular file under dir.
func walkFiles(dir string, fn func(path string, data []byte) error) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return fn(path, data)
	})
}

// readAll reads c until it ends, and reports what came and when.
func readAll(c net.Conn, limit time.Duration) (string, time.Duration, error) {
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	b, err := io.ReadAll(c)
	return string(b), time.Since(start), err
}
