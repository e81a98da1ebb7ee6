package httpaudit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/stalltest"
	"github.com/trailguard/trailguard/sink"
)

// syncBuffer is an io.Writer safe for the logger's writer goroutine and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newTestLogger returns a Logger writing JSON lines into a buffer.
func newTestLogger(t *testing.T, cfg Config) (*Logger, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	if cfg.Sink == nil {
		cfg.Sink = sink.NewWriter(buf)
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = "test-api"
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, buf
}

// events closes the logger (flushing it) and decodes every line written,
// checking each against ECS.
func events(t *testing.T, l *Logger, buf *syncBuffer) []*event.Event {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	var out []*event.Event
	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if err := event.Validate(sc.Bytes()); err != nil {
			t.Errorf("event is not valid ECS: %v\n%s", err, sc.Bytes())
		}
		ev, err := event.Decode(sc.Bytes())
		if err != nil {
			t.Fatalf("decode %s: %v", sc.Bytes(), err)
		}
		out = append(out, ev)
	}
	return out
}

func byAction(evs []*event.Event, action string) []*event.Event {
	var out []*event.Event
	for _, e := range evs {
		if e.Action == action {
			out = append(out, e)
		}
	}
	return out
}

func TestAccessEvent(t *testing.T) {
	l, buf := newTestLogger(t, Config{HostName: "h1"})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "got %d bytes", len(body))
	}))
	req := httptest.NewRequest("POST", "/api/orders?page=2&access_token=s3cr3tvalue", strings.NewReader(`{"item":"book"}`))
	req.RemoteAddr = "192.0.2.10:40000"
	req.Header.Set("User-Agent", "curl/8.0")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)

	evs := events(t, l, buf)
	if len(evs) != 1 {
		t.Fatalf("got %d events, want 1", len(evs))
	}
	ev := evs[0]
	checks := []struct {
		field     string
		got, want any
	}{
		{"action", ev.Action, event.ActionHTTPRequest},
		{"method", ev.Method, "POST"},
		{"path", ev.Path, "/api/orders"},
		{"status", ev.StatusCode, 201},
		{"outcome", ev.Outcome, event.OutcomeSuccess},
		{"response bytes", ev.ResponseBodyBytes, int64(len("got 15 bytes"))},
		{"request bytes", ev.RequestBodyBytes, int64(15)},
		{"source ip", ev.SourceIP, "192.0.2.10"},
		{"source port", ev.SourcePort, 40000},
		{"client ip", ev.ClientIP, "192.0.2.10"},
		{"user agent", ev.UserAgent, "curl/8.0"},
		{"service", ev.ServiceName, "test-api"},
		{"host", ev.HostName, "h1"},
		{"request id echoed", ev.RequestID, rec.Header().Get("X-Request-ID")},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
	if strings.Contains(ev.Query, "s3cr3tvalue") || !strings.Contains(ev.Query, "page=2") {
		t.Errorf("query not scrubbed as expected: %q", ev.Query)
	}
	if ev.ID == "" || ev.Timestamp.IsZero() || ev.Duration < 0 {
		t.Errorf("id/timestamp/duration missing: %+v", ev)
	}
}

func TestRequestID(t *testing.T) {
	tests := []struct {
		name, in string
		keep     bool
	}{
		{"absent", "", false},
		{"uuid", "123e4567-e89b-12d3-a456-426614174000", true},
		{"safe chars", "svc.a:b_c-1", true},
		{"max length", strings.Repeat("a", 128), true},
		{"too long", strings.Repeat("a", 129), false},
		{"space", "a b", false},
		{"newline", "abc\ndef", false},
		{"quote", `abc"def`, false},
		{"unicode", "ab\u00e9", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, buf := newTestLogger(t, Config{})
			var inHandler string
			h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				inHandler = RequestID(r.Context())
			}))
			req := httptest.NewRequest("GET", "/", nil)
			if tt.in != "" {
				req.Header.Set("X-Request-ID", tt.in)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			echoed := rec.Header().Get("X-Request-ID")
			ev := events(t, l, buf)[0]
			if echoed != inHandler || ev.RequestID != echoed {
				t.Fatalf("ids differ: handler %q echoed %q event %q", inHandler, echoed, ev.RequestID)
			}
			if tt.keep && echoed != tt.in {
				t.Fatalf("safe id %q replaced by %q", tt.in, echoed)
			}
			if !tt.keep && (len(echoed) != 36 || echoed[14] != '7') {
				t.Fatalf("want generated UUIDv7, got %q", echoed)
			}
			if !tt.keep {
				// A generated id's time is the request's start (the tick
				// markStart read, converted by the request's own stamp;
				// the writer converts the same tick for @timestamp with its
				// batch's stamp): the event's @timestamp to the
				// millisecond, or the next or previous one when the two
				// conversions, a microsecond apart at most, straddle a
				// millisecond's boundary.
				ms, err := strconv.ParseInt(echoed[0:8]+echoed[9:13], 16, 64)
				if d := ms - ev.Timestamp.UnixMilli(); err != nil || d < -1 || d > 1 {
					t.Fatalf("generated id %q carries ms %d (%v), the event's start is %d", echoed, ms, err, ev.Timestamp.UnixMilli())
				}
			}
		})
	}
}

func TestTraceparent(t *testing.T) {
	tests := []struct {
		in          string
		trace, span string
		ok          bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "", "", false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", "", false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "", "", false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", "", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "", "", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", "", "", false},
		{"garbage", "", "", false},
	}
	for _, tt := range tests {
		tr, sp, ok := parseTraceparent(tt.in)
		if ok != tt.ok || tr != tt.trace || sp != tt.span {
			t.Errorf("parseTraceparent(%q) = %q, %q, %v; want %q, %q, %v", tt.in, tr, sp, ok, tt.trace, tt.span, tt.ok)
		}
	}
}

func TestTransportPropagates(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	downstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("X-Request-ID"))
		mu.Unlock()
	}))
	defer downstream.Close()
	client := &http.Client{Transport: Transport(nil)}

	l, buf := newTestLogger(t, Config{})
	api := httptest.NewServer(l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), "GET", downstream.URL, nil)
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		resp.Body.Close()
	})))
	defer api.Close()
	req, _ := http.NewRequest("GET", api.URL, nil)
	req.Header.Set("X-Request-ID", "corr-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Outside a request the transport adds nothing.
	resp, err = client.Get(downstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != "corr-42" || seen[1] != "" {
		t.Fatalf("downstream saw %q", seen)
	}
	_ = events(t, l, buf)
}

func TestPanicRecorded(t *testing.T) {
	l, buf := newTestLogger(t, Config{})
	srv := httptest.NewServer(l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]int
		m["boom"]++ // nil map write panics
	})))
	srv.Config.ErrorLog = nil
	srv.Config.ErrorLog = newDiscardLog()
	resp, err := http.Get(srv.URL + "/crash")
	if err == nil {
		resp.Body.Close()
	}
	srv.Close()
	evs := events(t, l, buf)
	if len(evs) != 1 {
		t.Fatalf("got %d events, want 1", len(evs))
	}
	ev := evs[0]
	if ev.StatusCode != 500 || ev.Outcome != event.OutcomeFailure || !strings.Contains(ev.ErrorMessage, "nil map") || ev.Path != "/crash" {
		t.Fatalf("panic event: %+v", ev)
	}
}

func TestAuthAndAudit(t *testing.T) {
	l, buf := newTestLogger(t, Config{FailClosed: true})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		switch r.URL.Path {
		case "/login-bad":
			if err := Auth(ctx, Attempt{User: User{Name: "mallory"}, Reason: "bad password"}); err != nil {
				t.Error(err)
			}
			w.WriteHeader(401)
		case "/login":
			if err := Auth(ctx, Attempt{User: User{ID: "u1", Name: "alice", Roles: []string{"admin"}}, Success: true}); err != nil {
				t.Error(err)
			}
		case "/role":
			SetUser(ctx, User{ID: "u1", Name: "alice", Roles: []string{"admin"}})
			err := Audit(ctx, Op{
				Action: event.ActionUserRoleChange, Resource: "user/u2", Target: &User{ID: "u2", Name: "bob"},
				Before: map[string]any{"roles": []string{"viewer"}, "password": "hunter2"},
				After:  map[string]any{"roles": []string{"viewer", "admin"}, "password": "hunter2"},
			})
			if err != nil {
				t.Error(err)
			}
		}
	}))
	for _, p := range []string{"/login-bad", "/login", "/role"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", p, nil))
	}
	evs := events(t, l, buf)
	if got := len(evs); got != 6 {
		t.Fatalf("got %d events, want 6", got)
	}
	fail := byAction(evs, event.ActionLoginFail)
	if len(fail) != 1 || fail[0].UserName != "mallory" || fail[0].Reason != "bad password" || fail[0].Outcome != "failure" {
		t.Fatalf("login fail event: %+v", fail)
	}
	ok := byAction(evs, event.ActionLoginSuccess)
	if len(ok) != 1 || ok[0].UserID != "u1" {
		t.Fatalf("login success event: %+v", ok)
	}
	access := byAction(evs, event.ActionHTTPRequest)
	users := map[string]string{}
	for _, a := range access {
		users[a.Path] = a.UserName
		if a.RequestID == "" {
			t.Error("access event without request id")
		}
	}
	if users["/login"] != "alice" || users["/login-bad"] != "" || users["/role"] != "alice" {
		t.Fatalf("users on access events: %v", users)
	}
	role := byAction(evs, event.ActionUserRoleChange)
	if len(role) != 1 {
		t.Fatal("no role change event")
	}
	r := role[0]
	if r.Audit == nil || r.Audit.Resource != "user/u2" || r.TargetUserName != "bob" || r.UserName != "alice" {
		t.Fatalf("role change event: %+v %+v", r, r.Audit)
	}
	if bytes.Contains(r.Audit.Before, []byte("hunter2")) || bytes.Contains(r.Audit.After, []byte("hunter2")) {
		t.Fatalf("password leaked into audit state: %s %s", r.Audit.Before, r.Audit.After)
	}
	if !bytes.Contains(r.Audit.After, []byte(`"admin"`)) {
		t.Fatalf("after state lost: %s", r.Audit.After)
	}
	for _, e := range evs {
		if e.Action != event.ActionHTTPRequest {
			var reqID string
			for _, a := range access {
				if a.RequestID == e.RequestID {
					reqID = a.RequestID
				}
			}
			if reqID == "" {
				t.Errorf("%s event not correlated with its request", e.Action)
			}
		}
	}
}

// gateSink blocks every Write until released, to fill the queue.
type gateSink struct {
	sink.Sink
	gate chan struct{}
}

func (g *gateSink) Write(ctx context.Context, recs [][]byte) error {
	<-g.gate
	return g.Sink.Write(ctx, recs)
}

func TestFailClosed(t *testing.T) {
	t.Run("sink error", func(t *testing.T) {
		broken := sink.NewWriter(io.Discard)
		broken.Close() // every Write now fails with sink.ErrClosed
		l, _ := newTestLogger(t, Config{Sink: broken, FailClosed: true, ErrorLog: newDiscardSlog()})
		var auditErr error
		h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			auditErr = Audit(r.Context(), Op{Action: event.ActionSensitiveDelete, Resource: "order/1"})
			if auditErr != nil {
				http.Error(w, "audit unavailable", http.StatusServiceUnavailable)
			}
		}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("DELETE", "/orders/1", nil))
		if !errors.Is(auditErr, sink.ErrClosed) || rec.Code != 503 {
			t.Fatalf("Audit err = %v, status %d; want sink.ErrClosed and 503", auditErr, rec.Code)
		}
		if l.Stats().Failed == 0 {
			t.Fatal("failed write not counted")
		}
	})
	t.Run("timeout", func(t *testing.T) {
		g := &gateSink{Sink: sink.NewWriter(io.Discard), gate: make(chan struct{})}
		l, _ := newTestLogger(t, Config{Sink: g, FailClosed: true, WriteTimeout: 50 * time.Millisecond})
		var auditErr error
		h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			auditErr = Audit(r.Context(), Op{Action: event.ActionSensitiveDelete})
		}))
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("DELETE", "/x", nil))
		close(g.gate)
		if auditErr == nil || !strings.Contains(auditErr.Error(), "not persisted") {
			t.Fatalf("Audit err = %v, want a timeout", auditErr)
		}
	})
	t.Run("no middleware", func(t *testing.T) {
		if err := Audit(context.Background(), Op{Action: "x"}); !errors.Is(err, ErrNoLogger) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestQueueOverload(t *testing.T) {
	buf := &syncBuffer{}
	g := &gateSink{Sink: sink.NewWriter(buf), gate: make(chan struct{})}
	l, _ := newTestLogger(t, Config{Sink: g, QueueSize: 4, BatchSize: 2, ErrorLog: newDiscardSlog()})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/audit" {
			if err := Audit(r.Context(), Op{Action: event.ActionSensitiveUpdate}); err != nil {
				t.Error(err)
			}
		}
	}))
	// Fill the queue with access events while the sink is stuck.
	for range 50 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/ok", nil))
	}
	if l.Stats().Dropped == 0 {
		t.Fatal("no access events dropped with a full queue")
	}
	// Audit events wait for room instead of being dropped.
	done := make(chan struct{})
	go func() {
		for range 10 {
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/audit", nil))
		}
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("audit writers did not wait for a full queue")
	case <-time.After(100 * time.Millisecond):
	}
	close(g.gate)
	<-done
	evs := events(t, l, buf)
	if n := len(byAction(evs, event.ActionSensitiveUpdate)); n != 10 {
		t.Fatalf("%d audit events written, want 10 (none may be dropped)", n)
	}
	st := l.Stats()
	if st.Written != st.Enqueued || int(st.Written) != len(evs) {
		t.Fatalf("stats %+v, %d lines", st, len(evs))
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name, header, remote, xff, fwd, want string
	}{
		{"direct", "", "203.0.113.5:1", "", "", "203.0.113.5"},
		{"untrusted peer ignores xff", "", "203.0.113.5:1", "1.2.3.4", "", "203.0.113.5"},
		{"trusted peer xff", "", "10.0.0.1:1", "198.51.100.7", "", "198.51.100.7"},
		{"chain skips trusted hops", "", "10.0.0.1:1", "198.51.100.7, 10.0.0.9", "", "198.51.100.7"},
		{"forged left entry ignored", "", "10.0.0.1:1", "6.6.6.6, 198.51.100.7", "", "198.51.100.7"},
		{"garbage hop", "", "10.0.0.1:1", "not-an-ip", "", "10.0.0.1"},
		{"v4 with port", "", "10.0.0.1:1", "198.51.100.9:5555", "", "198.51.100.9"},
		// A load balancer that appends to X-Forwarded-For passes the
		// client's own Forwarded on as sent: believed, it let the client
		// name any address (no ban held, anyone could be framed).
		{"client's forwarded behind an xff proxy", "", "10.0.0.1:1", "198.51.100.7", `for=6.6.6.6;proto=https`, "198.51.100.7"},
		{"client's forwarded alone behind an xff proxy", "", "10.0.0.1:1", "", `for=6.6.6.6`, "10.0.0.1"},
		{"forwarded header", "Forwarded", "10.0.0.1:1", "", `for=198.51.100.8;proto=https`, "198.51.100.8"},
		{"forwarded v6", "forwarded", "[::1]:1", "", `for="[2001:db8::1]:4711"`, "2001:db8::1"},
		{"client's xff behind a forwarded proxy", "Forwarded", "10.0.0.1:1", "6.6.6.6", `for=198.51.100.8`, "198.51.100.8"},
		{"client's xff alone behind a forwarded proxy", "Forwarded", "10.0.0.1:1", "6.6.6.6", "", "10.0.0.1"},
		// A zone's text is kept as sent by netip: a quote in it broke the
		// event's JSON (found by FuzzForwarded). Not a client: the walk stops.
		{"zone with a quote", "", "10.0.0.1:1", `::%"`, "", "10.0.0.1"},
		{"zone injecting fields", "", "10.0.0.1:1", `198.51.100.7, fe80::1%"}x":"y`, "", "10.0.0.1"},
		{"forwarded zone", "Forwarded", "10.0.0.1:1", "", `for="[fe80::1%eth0]"`, "10.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, buf := newTestLogger(t, Config{TrustedProxies: trusted, ForwardedHeader: tt.header})
			var during netip.Addr
			h := l.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { during = ClientIP(r.Context()) }))
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = tt.remote
			if tt.xff != "" {
				req.Header.Set("X-Forwarded-For", tt.xff)
			}
			if tt.fwd != "" {
				req.Header.Set("Forwarded", tt.fwd)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
			ev := events(t, l, buf)[0]
			if ev.ClientIP != tt.want {
				t.Fatalf("client.ip = %q, want %q (source.ip %q)", ev.ClientIP, tt.want, ev.SourceIP)
			}
			if during.String() != tt.want {
				t.Fatalf("ClientIP during the request = %s, want %s as recorded", during, tt.want)
			}
		})
	}
}

func TestBodyCapture(t *testing.T) {
	tests := []struct {
		name, ctype, body string
		want              string // substring of http.request.body.content; "" means not captured
		notWant           string
	}{
		{"json scrubbed", "application/json", `{"user":"alice","password":"hunter2"}`, `"user":"alice"`, "hunter2"},
		{"json+suffix", "application/vnd.api+json; charset=utf-8", `{"token":"abc123xyz"}`, `"token"`, "abc123xyz"},
		{"form scrubbed", "application/x-www-form-urlencoded", "user=bob&password=hunter2", "user=bob", "hunter2"},
		{"too large", "application/json", `{"pad":"` + strings.Repeat("x", 300) + `"}`, "", ""},
		{"not json", "text/plain", "password=hunter2", "", ""},
		{"invalid json", "application/json", `{"password":"hunter2"`, "unparsable", "hunter2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, buf := newTestLogger(t, Config{MaxBody: 256})
			h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
			}))
			req := httptest.NewRequest("POST", "/", strings.NewReader(tt.body))
			req.Header.Set("Content-Type", tt.ctype)
			h.ServeHTTP(httptest.NewRecorder(), req)
			out := buf.String()
			ev := events(t, l, buf)[0]
			if tt.want == "" && ev.RequestBody != "" {
				t.Fatalf("captured %q, want nothing", ev.RequestBody)
			}
			if !strings.Contains(ev.RequestBody, tt.want) {
				t.Fatalf("body %q, want it to contain %q", ev.RequestBody, tt.want)
			}
			if tt.notWant != "" && strings.Contains(out, tt.notWant) {
				t.Fatalf("secret %q reached the sink: %s", tt.notWant, out)
			}
			if ev.RequestBodyBytes != int64(len(tt.body)) {
				t.Fatalf("body bytes = %d, want %d", ev.RequestBodyBytes, len(tt.body))
			}
		})
	}
}

func TestSkipAndStart(t *testing.T) {
	l, buf := newTestLogger(t, Config{LogStart: true, Skip: func(r *http.Request) bool { return r.URL.Path == "/healthz" }})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("fail") != "" {
			w.WriteHeader(503)
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/healthz", nil))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/healthz?fail=1", nil))
	evs := events(t, l, buf)
	starts := byAction(evs, event.ActionHTTPRequestStart)
	ends := byAction(evs, event.ActionHTTPRequest)
	if len(starts) != 2 || len(ends) != 1 || ends[0].StatusCode != 503 {
		t.Fatalf("starts %d, ends %d (%+v): a skipped request's failure must still be logged", len(starts), len(ends), ends)
	}
	if starts[0].RequestID == starts[1].RequestID {
		t.Fatal("start events share a request id")
	}
}

func TestSlogHandler(t *testing.T) {
	l, buf := newTestLogger(t, Config{})
	log := slog.New(l.SlogHandler(&slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "billing").WithGroup("req")
	var reqID string
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqID = RequestID(r.Context())
		SetUser(r.Context(), User{Name: "alice"})
		log.InfoContext(r.Context(), "charging card 4111 1111 1111 1111",
			"amount", 42, "api_key", "sk_live_abcdef123456", slog.Group("card", "number", "4111111111111111", "exp", "12/30"),
			"err", errors.New("token=abc.def.ghi rejected"), "ok", true, "took", time.Millisecond)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/pay", nil))
	log.Debug("background job", "n", 3)
	out := buf.String()
	evs := events(t, l, buf)
	logs := byAction(evs, event.ActionLog)
	if len(logs) != 2 {
		t.Fatalf("got %d log events", len(logs))
	}
	first := logs[0]
	if first.RequestID != reqID || first.UserName != "alice" || first.LogLevel != "info" || first.Dataset != event.DatasetApp {
		t.Fatalf("log event not correlated: %+v", first)
	}
	var attrs map[string]any
	if err := json.Unmarshal(first.Attrs, &attrs); err != nil {
		t.Fatalf("attrs %s: %v", first.Attrs, err)
	}
	if attrs["component"] != "billing" {
		t.Fatalf("WithAttrs lost: %s", first.Attrs)
	}
	req, _ := attrs["req"].(map[string]any)
	if req["amount"] != float64(42) || req["ok"] != true || req["took"] != float64(time.Millisecond) {
		t.Fatalf("group attrs: %s", first.Attrs)
	}
	for _, secret := range []string{"4111 1111 1111 1111", "4111111111111111", "sk_live_abcdef123456"} {
		if strings.Contains(out, secret) {
			t.Errorf("secret %q reached the sink:\n%s", secret, out)
		}
	}
	if logs[1].RequestID != "" || logs[1].LogLevel != "debug" {
		t.Fatalf("background log: %+v", logs[1])
	}
}

func TestCloseFlushesEverything(t *testing.T) {
	dir := t.TempDir()
	fs, err := sink.OpenFile(sink.FileOptions{Dir: dir, MaxSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(Config{Sink: fs, QueueSize: 100000})
	if err != nil {
		t.Fatal(err)
	}
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	const workers, per = 8, 250
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", fmt.Sprintf("/w%d/%d", w, i), nil))
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := sink.Files(dir, "trail")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		rc, err := sink.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			ev, err := event.Decode(sc.Bytes())
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if seen[ev.Path] {
				t.Fatalf("duplicate %s", ev.Path)
			}
			seen[ev.Path] = true
		}
		rc.Close()
	}
	if len(seen) != workers*per {
		t.Fatalf("%d events on disk in %d files, want %d (stats %+v)", len(seen), len(files), workers*per, l.Stats())
	}
}

func newDiscardLog() *log.Logger { return log.New(io.Discard, "", 0) }
func newDiscardSlog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// TestOriginalURI sends raw request lines over a real connection: url.original
// must keep the client's percent-encoding (attack evidence detection rules
// match), appear only when url.path and url.query cannot reproduce it, and
// still have secrets scrubbed.
func TestOriginalURI(t *testing.T) {
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	cases := []struct {
		target, path, original string
	}{
		{"/api/orders?page=2", "/api/orders", ""},
		{"/api/orders", "/api/orders", ""},
		{"/files/%2e%2e/%2e%2e/etc/passwd?x=1", "/files/../../etc/passwd", "/files/%2e%2e/%2e%2e/etc/passwd?x=1"},
		{"/api/orders/1%27%20OR%20%271%27=%271", "/api/orders/1' OR '1'='1", "/api/orders/1%27%20OR%20%271%27=%271"},
		{"/a/%252e%252e%252fetc", "/a/%2e%2e%2fetc", "/a/%252e%252e%252fetc"},
		{"/q%20x?access_token=s3cr3tvalue&id=1%27", "/q x", "/q%20x?access_token=[REDACTED]&id=1%27"},
		{"/t/%20" + jwt, "/t/ [REDACTED:jwt]", "/t/%20%5BREDACTED:jwt%5D"},
		{"/t/%2e%2e/" + jwt, "/t/../[REDACTED:jwt]", "/t/../%5BREDACTED:jwt%5D"},
	}
	for _, c := range cases {
		t.Run(c.target, func(t *testing.T) {
			l, buf := newTestLogger(t, Config{})
			srv := httptest.NewServer(l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
			defer srv.Close()
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", c.target)
			io.ReadAll(conn)
			conn.Close()
			srv.Close()
			evs := events(t, l, buf)
			if len(evs) != 1 {
				t.Fatalf("got %d events", len(evs))
			}
			if evs[0].Path != c.path || evs[0].Original != c.original {
				t.Errorf("url.path %q, url.original %q; want %q, %q", evs[0].Path, evs[0].Original, c.path, c.original)
			}
		})
	}
}

// TestSetPath: a handler that routes on a normalised path records it
// (SetPath) as url.path of the access event and of the events it records
// itself, and url.original then keeps the request-target as the client
// sent it, scrubbed, whenever the two differ.
func TestSetPath(t *testing.T) {
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	cases := []struct {
		target, set, path, original string
	}{
		{"/login;jsessionid=1", "/login", "/login", "/login;jsessionid=[REDACTED]"}, // a session id is a secret
		{"//api//users/./7?x=1", "/api/users/7", "/api/users/7", "//api//users/./7?x=1"},
		{"/%61pi/users", "/api/users", "/api/users", "/%61pi/users"},
		{"/login?x=1", "/login", "/login", ""},
		{"/login;v=1?x=1", "/login", "/login", "/login;v=1?x=1"},
		{"/login//", "", "/login//", ""},
		{"/t/%20" + jwt + "/..", "/t/", "/t/", "/t/%20%5BREDACTED:jwt%5D/.."},
		{"/login;token=" + jwt, "/login", "/login", "/login;token=[REDACTED]"},
		{"/x/../" + jwt, "/" + jwt, "/[REDACTED:jwt]", "/x/../%5BREDACTED:jwt%5D"},
	}
	for _, c := range cases {
		t.Run(c.target, func(t *testing.T) {
			l, buf := newTestLogger(t, Config{})
			srv := httptest.NewServer(l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				SetPath(r.Context(), c.set)
				Auth(r.Context(), Attempt{User: User{Name: "admin"}})
				w.WriteHeader(http.StatusUnauthorized)
			})))
			defer srv.Close()
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", c.target)
			io.ReadAll(conn)
			conn.Close()
			srv.Close()
			evs := events(t, l, buf)
			if len(evs) != 2 {
				t.Fatalf("got %d events, want the failed login and the access event", len(evs))
			}
			for _, ev := range evs {
				if ev.Path != c.path || ev.Original != c.original {
					t.Errorf("%s: url.path %q, url.original %q; want %q, %q", ev.Action, ev.Path, ev.Original, c.path, c.original)
				}
			}
			if strings.Contains(buf.String(), jwt[:30]) {
				t.Errorf("the token reached the sink: %s", buf.String())
			}
		})
	}
	// Outside the middleware it does nothing (and does not panic).
	SetPath(context.Background(), "/x")
}

// TestFieldCaps: whatever a client sends, every value copied from the
// request is cut to MaxFieldBytes after scrubbing, so one request cannot
// make an event (and the disk it lands on) arbitrarily large.
func TestFieldCaps(t *testing.T) {
	l, buf := newTestLogger(t, Config{MaxFieldBytes: 256, Headers: []string{"X-Tenant"}})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Auth(r.Context(), Attempt{User: User{Name: strings.Repeat("n", 5000)}, Reason: strings.Repeat("r", 5000)})
		Audit(r.Context(), Op{Action: event.ActionSensitiveRead, Resource: strings.Repeat("s", 5000), Reason: strings.Repeat("é", 3000)})
		w.WriteHeader(401)
	}))
	big := strings.Repeat("a", 100<<10)
	// A card number at the very end of the query: scrubbed before the cut,
	// so no prefix of it can survive.
	req := httptest.NewRequest("GET", "/"+strings.Repeat("p%2e", 10<<10)+"?q="+big+"&card=4111111111111111", nil)
	req.Header.Set("User-Agent", big)
	req.Header.Set("Referer", "http://x/"+big)
	req.Header.Set("X-Tenant", big)
	h.ServeHTTP(httptest.NewRecorder(), req)
	evs := events(t, l, buf)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	for _, e := range evs {
		for name, v := range map[string]string{"url.path": e.Path, "url.query": e.Query, "url.original": e.Original, "user_agent.original": e.UserAgent,
			"http.request.referrer": e.Referrer, "header": e.RequestHeaders["x-tenant"], "event.reason": e.Reason, "user.name": e.UserName} {
			if len(v) > 256 {
				t.Errorf("%s %s: %d bytes, want ≤ 256", e.Action, name, len(v))
			}
			if len(v) == 256 && !strings.Contains(v, "[truncated from") {
				t.Errorf("%s %s cut without a marker", e.Action, name)
			}
		}
		if e.Audit != nil && len(e.Audit.Resource) > 256 {
			t.Errorf("resource %d bytes", len(e.Audit.Resource))
		}
	}
	if !strings.Contains(evs[0].Query, "truncated from") || !strings.HasPrefix(evs[0].Query, "q=aaa") {
		t.Errorf("query not cut as expected: %.80q", evs[0].Query)
	}
	if strings.Contains(buf.String(), "411111") {
		t.Error("a prefix of the card number reached the sink")
	}
	if e := byAction(evs, event.ActionSensitiveRead)[0]; !strings.HasPrefix(e.Reason, "éé") || !utf8.ValidString(e.Reason) {
		t.Errorf("multi-byte reason cut inside a character: %q", e.Reason[len(e.Reason)-40:])
	}
}

// TestDiscard: a handler may drop its request's access event (a collector
// sampling a flood of refused requests); its own Auth events stay.
func TestDiscard(t *testing.T) {
	l, buf := newTestLogger(t, Config{})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The flag shares the actor with SetUser: either may come first.
		switch r.URL.Query().Get("drop") {
		case "1":
			Discard(r.Context())
			SetUser(r.Context(), User{Name: "after"})
		case "2":
			SetUser(r.Context(), User{Name: "before"})
			Discard(r.Context())
		}
		Auth(r.Context(), Attempt{Reason: "no token"})
		w.WriteHeader(401)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/a?drop=1", nil))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/b", nil))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/c?drop=2", nil))
	evs := events(t, l, buf)
	if n := len(byAction(evs, event.ActionLoginFail)); n != 3 {
		t.Errorf("%d auth events, want 3", n)
	}
	access := byAction(evs, event.ActionHTTPRequest)
	if len(access) != 1 || access[0].Path != "/b" {
		t.Fatalf("access events %+v, want only /b's", access)
	}
	Discard(context.Background()) // outside the middleware: no effect, no panic
}

// brokenSink fails every write while broken is set (a full disk).
type brokenSink struct {
	broken atomic.Bool
	n      atomic.Int64
}

func (b *brokenSink) Write(_ context.Context, recs [][]byte) error {
	if b.broken.Load() {
		return errors.New("no space left on device")
	}
	b.n.Add(int64(len(recs)))
	return nil
}

func (b *brokenSink) Close() error { return nil }

// TestFailingSinkDoesNotHang: while the sink fails for good, requests that
// record events (errors, auth failures) must still finish: once the queue
// is full, further events are counted lost instead of waiting for an
// outage to end; a fail-closed Audit learns at once; when the sink
// recovers, the queued events are written.
func TestFailingSinkDoesNotHang(t *testing.T) {
	sk := &brokenSink{}
	sk.broken.Store(true)
	l, err := New(Config{Sink: sk, QueueSize: 8, ErrorLog: newDiscardSlog()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Auth(r.Context(), Attempt{Reason: "bad token"})
		w.WriteHeader(401)
	}))
	// The bounds below allow the longest stall of this process seen
	// while the test waited (a loaded machine stops it for seconds); a
	// request that hangs, or an Audit that waits, still fails.
	watch := stalltest.Start(t)
	if _, _, ok := stalltest.Run(func() {
		for range 200 {
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		}
	}, watch, 10*time.Second); !ok {
		t.Fatal("requests hang while the audit sink fails")
	}
	st := l.Stats()
	if !st.Failing || st.Lost == 0 {
		t.Fatalf("stats %+v: want Failing and events counted lost", st)
	}
	fc, err := New(Config{Sink: &brokenSink{}, FailClosed: true, ErrorLog: newDiscardSlog()})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	fc.failing.Store(true) // as after a failed write
	var auditErr error
	fh := fc.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auditErr = Audit(r.Context(), Op{Action: event.ActionSensitiveRead, Resource: "trail"})
	}))
	took, stalled, ok := stalltest.Run(func() {
		fh.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}, watch, time.Second)
	if !ok || took > time.Second+stalled {
		t.Fatalf("fail-closed Audit while failing: not done after %v (stalled up to %v)", took, stalled)
	}
	if auditErr == nil {
		t.Fatal("fail-closed Audit while failing: no error")
	}
	sk.broken.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for l.Stats().Failing || sk.n.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the sink recovered but the logger did not: %+v", l.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRealClockTimes: with the real clock a request's start is one
// monotonic reading that the writer turns into wall-clock time; the
// recorded @timestamp and duration must still bracket the request as the
// test saw it, for the access event and its start event, including a
// request the writer encodes a while after it ended (one that waited in
// the queue behind a slow sink).
func TestRealClockTimes(t *testing.T) {
	l, buf := newTestLogger(t, Config{LogStart: true})
	const work = 3 * time.Millisecond
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(work)
	}))
	type span struct{ before, after time.Time }
	var spans []span
	for range 3 {
		before := time.Now()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/t", nil))
		spans = append(spans, span{before, time.Now()})
		time.Sleep(5 * time.Millisecond) // the writer encodes in between, or after the next
	}
	evs := events(t, l, buf)
	starts, ends := byAction(evs, event.ActionHTTPRequestStart), byAction(evs, event.ActionHTTPRequest)
	if len(starts) != len(spans) || len(ends) != len(spans) {
		t.Fatalf("%d start and %d access events, want %d of each", len(starts), len(ends), len(spans))
	}
	for i, s := range spans {
		for _, ev := range []*event.Event{starts[i], ends[i]} {
			if ev.Timestamp.Before(s.before) || ev.Timestamp.After(s.after) {
				t.Errorf("request %d: %s @timestamp %v outside the request's [%v, %v]", i, ev.Action, ev.Timestamp, s.before, s.after)
			}
		}
		e := ends[i]
		if e.Duration < work || e.Timestamp.Add(e.Duration).After(s.after) {
			t.Errorf("request %d: duration %v from %v: want at least %v, ending by %v", i, e.Duration, e.Timestamp, work, s.after)
		}
		if d := e.Timestamp.Sub(starts[i].Timestamp).Abs(); d > time.Millisecond {
			t.Errorf("request %d: start event at %v, access event at %v", i, starts[i].Timestamp, e.Timestamp)
		}
	}
}

// countingSink embeds a sink.Writer and adds to its Write, as wrappers do.
type countingSink struct {
	*sink.Writer
	records int
}

func (c *countingSink) Write(ctx context.Context, recs [][]byte) error {
	c.records += len(recs)
	return c.Writer.Write(ctx, recs)
}

// TestSinkWrapperWriteNotBypassed: the writer hands framed batches only to
// the sinks of package sink themselves; a wrapper that embeds one still
// sees every batch through its own Write.
func TestSinkWrapperWriteNotBypassed(t *testing.T) {
	buf := &syncBuffer{}
	cs := &countingSink{Writer: sink.NewWriter(buf)}
	l, _ := newTestLogger(t, Config{Sink: cs})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for range 3 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(buf.String(), "\n"); cs.records != 3 || lines != 3 {
		t.Fatalf("wrapper's Write saw %d records, %d lines written; want 3 and 3", cs.records, lines)
	}
}

// TestHandlerRequest checks the request the handler gets (WithContext's
// copy of the incoming one): the same fields, a context that carries the
// middleware's state and the parent's values, the incoming request left
// alone; and that what the handler does to its copy (a real-IP middleware
// inside rewriting RemoteAddr, a method override) changes neither the
// incoming request nor the recorded event, which was captured before.
func TestHandlerRequest(t *testing.T) {
	type key struct{}
	l, buf := newTestLogger(t, Config{})
	in := httptest.NewRequest("GET", "/orders/7?x=1", strings.NewReader("{}"))
	in.RemoteAddr = "192.0.2.10:40000"
	in.Header.Set("X-Request-ID", "req-1")
	parent := context.WithValue(context.Background(), key{}, "parent value")
	in = in.WithContext(parent)
	var kept *http.Request
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kept = r
		if r == in {
			t.Error("the handler got the incoming request itself")
		}
		if r.Method != in.Method || r.URL != in.URL || r.RemoteAddr != in.RemoteAddr || r.Host != in.Host ||
			r.ContentLength != in.ContentLength || r.RequestURI != in.RequestURI {
			t.Errorf("handler's request differs from the incoming one: %+v", r)
		}
		if got := r.Header.Get("X-Request-ID"); got != "req-1" {
			t.Errorf("handler's request header X-Request-ID = %q", got)
		}
		if b, err := io.ReadAll(r.Body); err != nil || string(b) != "{}" {
			t.Errorf("body %q, %v", b, err)
		}
		if got := r.Context().Value(key{}); got != "parent value" {
			t.Errorf("parent context value = %v", got)
		}
		if got := RequestID(r.Context()); got != "req-1" {
			t.Errorf("RequestID = %q", got)
		}
		derived := r.WithContext(context.WithValue(r.Context(), key{}, "derived"))
		if RequestID(derived.Context()) != "req-1" || derived.Context().Value(key{}) != "derived" {
			t.Error("a context derived from the handler's lost the state or the value")
		}
		r.RemoteAddr = "203.0.113.66:1" // what a real-IP middleware inside does
		r.Method = "DELETE"
		w.WriteHeader(http.StatusAccepted)
	}))
	h.ServeHTTP(httptest.NewRecorder(), in)
	if in.Method != "GET" || in.RemoteAddr != "192.0.2.10:40000" || in.Context() != parent {
		t.Errorf("incoming request changed: %s %s, context %v", in.Method, in.RemoteAddr, in.Context())
	}
	evs := events(t, l, buf)
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	if ev := evs[0]; ev.Method != "GET" || ev.SourceIP != "192.0.2.10" || ev.StatusCode != http.StatusAccepted || ev.RequestID != "req-1" {
		t.Errorf("event records %s from %s, status %d, id %q; want GET from 192.0.2.10, 202, req-1", ev.Method, ev.SourceIP, ev.StatusCode, ev.RequestID)
	}
	// A handler may keep its request (a goroutine it started): after the
	// event was written, the request and its context still hold.
	if RequestID(kept.Context()) != "req-1" || kept.URL.Path != "/orders/7" || kept.Context().Value(key{}) != "parent value" {
		t.Errorf("kept request changed: id %q, path %q", RequestID(kept.Context()), kept.URL.Path)
	}
}

// TestQueuedRequestKeepsNoResponseWriter holds a request's access event
// in the queue (the sink is stuck) and checks that the response writer it
// was served with can be collected meanwhile: a queued request keeps only
// what its event needs, not the server's response object. A handler that
// kept its ResponseWriter gets an error from it once it returned.
func TestQueuedRequestKeepsNoResponseWriter(t *testing.T) {
	g := &gateSink{Sink: sink.NewWriter(io.Discard), gate: make(chan struct{})}
	l, _ := newTestLogger(t, Config{Sink: g})
	defer close(g.gate)
	var kept http.ResponseWriter
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kept = w
		w.Write([]byte("ok"))
	}))
	// The first request's event holds the writer goroutine in the sink;
	// the second's waits in the queue.
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/first", nil))
	waitFor(t, "the first event taken by the writer", func() bool { return l.Stats().Queued == 0 })
	collected := make(chan struct{})
	func() {
		w := httptest.NewRecorder()
		runtime.AddCleanup(w, func(ch chan struct{}) { close(ch) }, collected)
		h.ServeHTTP(w, httptest.NewRequest("GET", "/second", nil))
		if w.Body.String() != "ok" {
			t.Errorf("body %q", w.Body.String())
		}
	}()
	if q := l.Stats().Queued; q != 1 {
		t.Fatalf("%d events queued, want 1", q)
	}
	deadline := time.After(30 * time.Second)
	for done := false; !done; {
		runtime.GC()
		select {
		case <-collected:
			done = true
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("the response writer of a queued request was not collected")
		}
	}
	if l.Stats().Queued != 1 {
		t.Fatal("the event left the queue: the test proves nothing")
	}
	if n, err := kept.Write([]byte("late")); n != 0 || !errors.Is(err, errUsedAfterReturn) {
		t.Errorf("Write after the handler returned = %d, %v; want 0, errUsedAfterReturn", n, err)
	}
}
