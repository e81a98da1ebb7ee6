package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/stalltest"
)

var traceRe = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`)

func TestForwardCorrelationAndHeaders(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		// An upstream that echoes ids itself must not make them appear twice.
		w.Header().Set("X-Request-ID", r.Header.Get("X-Request-ID"))
		w.Header().Set("Traceparent", "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01")
		w.Header().Set("Connection", "X-Secret-Hop")
		w.Header().Set("X-Secret-Hop", "no")
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.RequestURI())
	})
	_, gw, ms := gateway(t, Config{Routes: []Route{{Upstream: up.URL + "/base"}}})

	cases := []struct {
		name, reqID, traceparent string
		keepID, keepTrace        bool
	}{
		{"generated", "", "", false, false},
		{"kept", "client-id-1", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true, true},
		{"invalid replaced", "bad id\"with spaces", "00-XYZ-bad", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", gw+"/orders/7?page=2", nil)
			if tc.reqID != "" {
				req.Header.Set("X-Request-ID", tc.reqID)
			}
			if tc.traceparent != "" {
				req.Header.Set("Traceparent", tc.traceparent)
				req.Header.Set("Tracestate", "vendor=1")
			}
			req.Header.Set("Connection", "X-Hop")
			req.Header.Set("X-Hop", "must not pass")
			req.Header.Set("X-Forwarded-For", "6.6.6.6") // forged: the peer is not trusted
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "GET /base/orders/7?page=2" {
				t.Fatalf("upstream saw %q", body)
			}
			in := up.last()
			id := in.Header.Get("X-Request-ID")
			if tc.keepID && id != tc.reqID || !tc.keepID && (len(id) != 36 || id == tc.reqID) {
				t.Errorf("upstream X-Request-ID %q (sent %q)", id, tc.reqID)
			}
			if got := resp.Header.Values("X-Request-ID"); len(got) != 1 || got[0] != id {
				t.Errorf("echoed X-Request-ID %q, want exactly [%s]", got, id)
			}
			tp := in.Header.Get("Traceparent")
			if tc.keepTrace {
				if tp != tc.traceparent || in.Header.Get("Tracestate") != "vendor=1" {
					t.Errorf("valid traceparent not forwarded as is: %q %q", tp, in.Header.Get("Tracestate"))
				}
			} else if !traceRe.MatchString(tp) || in.Header.Get("Tracestate") != "" {
				t.Errorf("upstream traceparent %q tracestate %q: want a generated one and no tracestate", tp, in.Header.Get("Tracestate"))
			}
			if got := resp.Header.Values("Traceparent"); len(got) != 1 || got[0] != tp {
				t.Errorf("echoed traceparent %q, want [%s]", got, tp)
			}
			if in.Header.Get("X-Hop") != "" || resp.Header.Get("X-Secret-Hop") != "" {
				t.Error("hop-by-hop header passed through")
			}
			if got := in.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
				t.Errorf("X-Forwarded-For %q: an untrusted client's header must be replaced", got)
			}
			if got := in.Header.Get("Forwarded"); !strings.HasPrefix(got, `for=127.0.0.1;host="127.0.0.1:`) || !strings.HasSuffix(got, ";proto=http") {
				t.Errorf("Forwarded %q", got)
			}
			if in.Header.Get("X-Forwarded-Proto") != "http" || !strings.HasPrefix(in.Header.Get("X-Forwarded-Host"), "127.0.0.1:") {
				t.Errorf("X-Forwarded-Proto/Host %q %q", in.Header.Get("X-Forwarded-Proto"), in.Header.Get("X-Forwarded-Host"))
			}
			m := traceRe.FindStringSubmatch(tp)
			if tc.keepTrace {
				m = []string{"", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"}
			}
			evs := ms.wait(t, "access event", func(evs []*event.Event) bool {
				for _, ev := range evs {
					if ev.RequestID == id {
						return true
					}
				}
				return false
			})
			for _, ev := range evs {
				if ev.RequestID != id {
					continue
				}
				if ev.Action != event.ActionHTTPRequest || ev.StatusCode != 200 || ev.Path != "/orders/7" || ev.Query != "page=2" {
					t.Errorf("access event %+v", ev)
				}
				if ev.TraceID != m[1] || ev.SpanID != m[2] {
					t.Errorf("event trace %s/%s, upstream got %s", ev.TraceID, ev.SpanID, tp)
				}
				if ev.ClientIP != "127.0.0.1" {
					t.Errorf("client.ip %q: a forged X-Forwarded-For was believed", ev.ClientIP)
				}
			}
		})
	}
}

func TestTrustedProxyChain(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	p, gw, ms := gateway(t, Config{Routes: []Route{{Upstream: up.URL}}, TrustedProxies: []string{"127.0.0.0/8"}})
	p.Apply("test", Update{New: []Decision{{Type: "ban", Scope: "Ip", Value: "203.0.113.9", Duration: "1h"}}})

	resp := get(t, gw+"/x", "X-Forwarded-For", "203.0.113.7", "Forwarded", "for=203.0.113.7")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	in := up.last()
	if got := in.Header.Get("X-Forwarded-For"); got != "203.0.113.7, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", got)
	}
	if got := in.Header.Get("Forwarded"); !strings.HasPrefix(got, "for=203.0.113.7, for=127.0.0.1;") {
		t.Errorf("Forwarded %q", got)
	}
	ms.wait(t, "client.ip from the trusted chain", func(evs []*event.Event) bool {
		for _, ev := range evs {
			if ev.Action == event.ActionHTTPRequest && ev.ClientIP == "203.0.113.7" && ev.SourceIP == "127.0.0.1" {
				return true
			}
		}
		return false
	})
	// The blocklist applies to the client behind the trusted proxy.
	n := up.count()
	if resp := get(t, gw+"/x", "X-Forwarded-For", "203.0.113.9"); resp.StatusCode != 403 {
		t.Fatalf("blocked client behind a trusted proxy: status %d", resp.StatusCode)
	}
	if up.count() != n {
		t.Fatal("a blocked request reached the upstream")
	}
}

func TestRoutesByHostAndPrefix(t *testing.T) {
	t.Parallel()
	mk := func(name string) *upstream {
		return newUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%s %s", name, r.URL.Path) })
	}
	api, admin, www, any := mk("api"), mk("admin"), mk("www"), mk("any")
	_, gw, _ := gateway(t, Config{Routes: []Route{
		{Path: "/", Upstream: any.URL},
		{Host: "api.example.com", Path: "/", Upstream: api.URL},
		{Host: "api.example.com", Path: "/admin", Upstream: admin.URL, StripPrefix: true},
		{Host: "*.example.org", Path: "/", Upstream: www.URL, PreserveHost: true},
	}})
	cases := []struct{ host, path, want string }{
		{"api.example.com", "/v1/users", "api /v1/users"},
		{"API.example.com:443", "/admin/users", "admin /users"},
		{"api.example.com", "/administrator", "api /administrator"},
		{"api.example.com", "/admin", "admin /"},
		{"shop.example.org", "/cart", "www /cart"},
		{"other.test", "/x", "any /x"},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest("GET", gw+tc.path, nil)
		req.Host = tc.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != tc.want {
			t.Errorf("%s%s went to %q, want %q", tc.host, tc.path, b, tc.want)
		}
	}
	if h := www.last().Host; h != "shop.example.org" {
		t.Errorf("preserve_host: upstream saw Host %q", h)
	}
	if h := api.last().Host; h != strings.TrimPrefix(api.URL, "http://") {
		t.Errorf("upstream Host %q, want the upstream's own", h)
	}
}

func TestStreamingBothWays(t *testing.T) {
	t.Parallel()
	gotFirst := make(chan string, 1)
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upload":
			// Read the first chunk while the client has not sent the second.
			buf := make([]byte, 5)
			io.ReadFull(r.Body, buf)
			gotFirst <- string(buf)
			rest, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s%s", buf, rest)
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: one\n\n")
			w.(http.Flusher).Flush()
			<-release
			fmt.Fprint(w, "data: two\n\n")
		}
	})
	_, gw, ms := gateway(t, Config{Routes: []Route{{Upstream: up.URL}}})

	// Request body: the upstream sees the first chunk before the client
	// sends the rest, so the gateway does not buffer the body.
	pr, pw := io.Pipe()
	done := make(chan string, 1)
	go func() {
		resp, err := http.Post(gw+"/upload", "application/octet-stream", pr)
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- string(b)
	}()
	pw.Write([]byte("first"))
	select {
	case s := <-gotFirst:
		if s != "first" {
			t.Fatalf("upstream read %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream did not get the first chunk before the body ended: the request body is buffered")
	}
	pw.Write([]byte(" second"))
	pw.Close()
	if s := <-done; s != "first second" {
		t.Fatalf("echo %q", s)
	}

	// SSE: the first event arrives while the upstream still holds the
	// response open.
	resp, err := http.Get(gw + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first SSE line %q, %v", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if string(rest) != "\ndata: two\n\n" {
		t.Fatalf("rest of the stream %q", rest)
	}
	ms.wait(t, "upload recorded with its size", func(evs []*event.Event) bool {
		for _, ev := range evs {
			if ev.Path == "/upload" && ev.RequestBodyBytes == int64(len("first second")) && ev.ResponseBodyBytes == int64(len("first second")) {
				return true
			}
		}
		return false
	})
}

func TestWebSocketPassThrough(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want an upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
		brw.Flush()
		buf := make([]byte, 4)
		for {
			if _, err := io.ReadFull(brw, buf); err != nil {
				return
			}
			conn.Write(append([]byte("echo:"), buf...))
		}
	})
	_, gw, ms := gateway(t, Config{Routes: []Route{{Upstream: up.URL}}})
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for _, msg := range []string{"ping", "pong"} {
		conn.Write([]byte(msg))
		got := make([]byte, 9)
		if _, err := io.ReadFull(br, got); err != nil || string(got) != "echo:"+msg {
			t.Fatalf("frame %q, %v", got, err)
		}
	}
	conn.Close()
	ms.wait(t, "the WebSocket recorded as 101", func(evs []*event.Event) bool {
		for _, ev := range evs {
			if ev.Path == "/ws" && ev.StatusCode == 101 {
				return true
			}
		}
		return false
	})
}

func TestUpstreamFailures(t *testing.T) {
	t.Parallel()
	slow := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Minute): // far past the bound below
		case <-r.Context().Done():
		}
	})
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	_, gw, ms := gateway(t, Config{
		Routes:   []Route{{Path: "/slow", Upstream: slow.URL}, {Path: "/dead", Upstream: deadURL}},
		Timeouts: Timeouts{ResponseHeader: 200 * time.Millisecond, Dial: time.Second},
	})
	if resp := get(t, gw+"/dead"); resp.StatusCode != 502 {
		t.Errorf("dead upstream: %d, want 502", resp.StatusCode)
	}
	// Within 2 s, or as late as a stall of this process made it (a
	// loaded machine stops it, and the gateway in it, for seconds).
	watch := stalltest.Start(t)
	start := time.Now()
	if resp := get(t, gw+"/slow"); resp.StatusCode != 504 {
		t.Errorf("slow upstream: %d, want 504", resp.StatusCode)
	}
	if d, stalled := time.Since(start), watch.Worst(); d > 2*time.Second+stalled {
		t.Errorf("504 after %v (stalled %v): the response_header timeout was not applied", d, stalled)
	}
	ms.wait(t, "502 and 504 events with the reason", func(evs []*event.Event) bool {
		var got502, got504 bool
		for _, ev := range evs {
			switch {
			case ev.StatusCode == 502 && ev.Reason == "upstream unavailable" && strings.Contains(ev.ErrorMessage, "refused"):
				got502 = true
			case ev.StatusCode == 504 && ev.Reason == "upstream timed out" && ev.ErrorMessage != "":
				got504 = true
			}
		}
		return got502 && got504
	})
}

func TestHTTP2TLSAndH2C(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.Header.Get("X-Forwarded-Proto")) })
	ms := &memSink{}
	p, err := New(Config{Routes: []Route{{Upstream: up.URL}}, Sink: ms}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// h2c with prior knowledge on a plain listener.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := NewServer(p, Config{}, nil)
	go srv.Serve(ln)
	defer srv.Close()
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &protos}}
	resp, err := c.Get("http://" + ln.Addr().String() + "/h2c")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "http" {
		t.Errorf("h2c: proto %s, body %q", resp.Proto, b)
	}

	// TLS termination with a given certificate, HTTP/2 by ALPN.
	ts := httptest.NewUnstartedServer(p)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	tc := ts.Client()
	tc.Transport.(*http.Transport).TLSClientConfig.MinVersion = tls.VersionTLS12
	resp, err = tc.Get(ts.URL + "/tls")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "https" {
		t.Errorf("TLS: proto %s, X-Forwarded-Proto %q", resp.Proto, b)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	cfg := Config{
		TLSCert: "x",
		Routes: []Route{{Upstream: "ftp://x"}, {Upstream: "http://127.0.0.1:1", Path: "api",
			RateLimit: &RateLimit{Rate: 0, Burst: 1}}, {Upstream: "127.0.0.1:9000", Path: "/b/"}},
		Logins:         []Login{{Path: "/login", User: "password"}, {Path: "/a/{x}/{x}", User: "basic"}},
		Sensitive:      []Sensitive{{Path: "/u/{id}", TargetUser: "uid"}, {Path: "/v", Action: "Bad Action"}},
		TrustedProxies: []string{"10.0.0.0/33"},
		HTTP1:          "nginx",
		Collector:      Collector{URL: "http://collector:8600"}, // no token
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid configuration accepted")
	}
	for _, want := range []string{"tls_cert and tls_key", `routes[0]: upstream "ftp://x"`, `upstream "127.0.0.1:9000": want http://host:port or https://host:port (the scheme is missing: http://127.0.0.1:9000?)`, `path "api" must start with /`,
		"rate 0", `user "password"`, "{x} appears twice", `target_user "uid"`, "action is required", `action "Bad Action"`,
		`"10.0.0.0/33" is not a CIDR`, `http1 "nginx": want "lean" (default) or "net/http"`,
		"collector.token (--token TOKEN, or TRAILGUARD_PROXY_TOKEN) is needed with collector.url"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}

func TestPatternMatch(t *testing.T) {
	t.Parallel()
	cases := []struct {
		pattern, path, name, want string
		ok                        bool
	}{
		{"/api/users/{id}/role", "/api/users/42/role", "id", "42", true},
		{"/api/users/*/role", "/api/users/42/role", "", "", true},
		{"/api/users/{id}/role", "/api/users//role", "id", "", false},
		{"/api/users/{id}/role", "/api/users/42/role/x", "id", "", false},
		{"/api/users/{id}/role", "/api/users/42", "id", "", false},
		{"/files/{rest...}", "/files/a/b/c", "rest", "a/b/c", true},
		{"/files/**", "/files/", "", "", true},
		{"/login", "/login", "", "", true},
		{"/login", "/login/", "", "", true}, // as Express and Spring serve it
		{"/login/", "/login", "", "", true},
		{"/Login", "/LOGIN", "", "", true}, // as Express and ASP.NET serve it
		{"/api/users/{id}/role", "/API/Users/Ab/ROLE/", "id", "Ab", true},
		{"/files/**", "/files", "", "", true},
		{"/files/{rest...}", "/files/a/", "rest", "a", true},
		{"/login", "/loginx", "", "", false},
		{"/", "/", "", "", true},
		{"/", "/x", "", "", false},
		{"/{id}", "/0/0", "id", "", false}, // gave "0" with false
	}
	for _, tc := range cases {
		pt, err := compilePattern(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := pt.match(tc.path, tc.name)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s ~ %s: %q %v, want %q %v", tc.pattern, tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

func TestLoadConfigYAML(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := dir + "/proxy.yml"
	yml := `
listen: 127.0.0.1:0
service_name: shop
trusted_proxies: [10.0.0.0/8, 127.0.0.1]
routes:
  - name: api
    host: api.example.com
    path: /api/
    upstream: http://127.0.0.1:9001
    capture_body: 4096
    rate_limit: {rate: 5, burst: 10, per: route}
  - path: /
    upstream: http://127.0.0.1:9002
logins:
  - {method: POST, path: /api/login, user: "json:credentials.email"}
sensitive:
  - {method: PUT, path: "/api/users/{id}/role", action: user_role_change, target_user: id}
rate_limit: {rate: 100, burst: 200}
timeouts: {response_header: 5s, dial: 1s}
http1: net/http
collector: {url: "http://127.0.0.1:8600", token: tg_x, poll_interval: 100ms}
`
	if err := writeFile(path, yml); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Routes) != 2 || cfg.Routes[0].RateLimit.Per != "route" || cfg.Timeouts.ResponseHeader != 5*time.Second ||
		cfg.Collector.PollInterval != 100*time.Millisecond || cfg.Logins[0].User != "json:credentials.email" ||
		cfg.HTTP1 != HTTP1NetHTTP {
		t.Errorf("parsed %+v", cfg)
	}
	if err := writeFile(path, "routes: []\nupstreams: x\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "upstreams") {
		t.Errorf("unknown key accepted: %v", err)
	}
	// A value of the wrong type names the key as written and what it
	// takes, at its line: it said "Go struct field Config.Timeouts of
	// type time.Duration" for timeouts.dial, and for "5x" no key or line.
	for yml, want := range map[string]string{
		"timeouts: {dial: 5}\n":  `[1:18] timeouts.dial: want a duration such as 500ms, 30s, 5m or 2h, got "5"`,
		"timeouts: {idle: 5x}\n": `[1:18] timeouts.idle: want a duration such as 500ms, 30s, 5m or 2h, got "5x"`,
		"routes:\n  - path: /\n    upstream: http://127.0.0.1:1\n    rate_limit: {rate: fast}\n": `[4:24] routes[0].rate_limit.rate: want a number, got "fast"`,
		"trusted_proxies: 10.0.0.0/8\n":    `trusted_proxies: want a list`,
		"collector: {poll_interval: 50}\n": `collector.poll_interval: want a duration`,
	} {
		if err := writeFile(path, yml); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: error %v, want one saying %q", yml, err, want)
		}
	}
}

func writeFile(path, s string) error {
	return os.WriteFile(path, []byte(s), 0o600)
}
