package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/connlimit"
	"github.com/trailguard/trailguard/internal/stalltest"
)

// connCounter is an upstream that counts the connections it accepted and
// closed.
type connCounter struct {
	*httptest.Server
	opened, closed atomic.Int64
}

func newConnCounter(t *testing.T, h http.HandlerFunc) *connCounter {
	c := &connCounter{}
	c.Server = httptest.NewUnstartedServer(h)
	c.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			c.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			c.closed.Add(1)
		}
	}
	c.Start()
	t.Cleanup(c.Close)
	return c
}

// waitFor waits for what must come: its deadline is long, as a process
// stalled for seconds on a loaded machine makes it late, not missing
// (none of its callers bounds how soon).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The gateway keeps its upstream connections alive and reuses them, for
// every kind of answer that leaves the connection usable; an answer that
// says Connection: close is the last on its connection.
func TestUpstreamConnectionsReused(t *testing.T) {
	t.Parallel()
	up := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/chunked":
			w.Write([]byte("part one, "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part two"))
		case "/close":
			w.Header().Set("Connection", "close")
			w.Write([]byte("bye"))
		default:
			w.Write([]byte(strings.Repeat("x", 1000)))
		}
	})
	_, gw, _ := gateway(t, Config{Routes: []Route{{Upstream: up.URL}}})
	client := &http.Client{Transport: &http.Transport{}}
	do := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, gw+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	for i := range 30 {
		path := []string{"/get", "/empty", "/chunked"}[i%3]
		method := http.MethodGet
		if i%5 == 4 {
			method = http.MethodHead
		}
		code, body := do(method, path)
		want := map[string]string{"/get": strings.Repeat("x", 1000), "/empty": "", "/chunked": "part one, part two"}[path]
		if method == http.MethodHead {
			want = ""
		}
		if code/100 != 2 || body != want {
			t.Fatalf("%s %s: %d %q", method, path, code, body)
		}
	}
	if n := up.opened.Load(); n != 1 {
		t.Fatalf("30 sequential requests opened %d upstream connections, want 1 (kept alive and reused)", n)
	}
	if code, body := do(http.MethodGet, "/close"); code != 200 || body != "bye" {
		t.Fatalf("/close: %d %q", code, body)
	}
	do(http.MethodGet, "/get")
	if n := up.opened.Load(); n != 2 {
		t.Fatalf("after an answer with Connection: close, %d connections were opened, want 2", n)
	}
}

// oneShotUpstream answers one request per connection and then closes it
// without saying so (no Connection: close), as an upstream whose
// keep-alive timeout just expired does.
func oneShotUpstream(t *testing.T) (string, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var served atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				served.Add(1)
				body := "ok"
				if req.Method == http.MethodHead {
					body = ""
				}
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n%s", body)
			}()
		}
	}()
	return "http://" + ln.Addr().String(), &served
}

// A kept-alive upstream connection closed while it waited in the pool is
// met by the next request: the request is sent again on a new connection
// instead of failing with a 502.
func TestStaleUpstreamConnectionRetried(t *testing.T) {
	t.Parallel()
	url, served := oneShotUpstream(t)
	_, gw, ms := gateway(t, Config{Routes: []Route{{Upstream: url}}})
	client := &http.Client{Transport: &http.Transport{}}
	for i := range 10 {
		method := []string{http.MethodGet, http.MethodHead, http.MethodOptions}[i%3]
		req, _ := http.NewRequest(method, gw+"/x", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d (%s) met a closed keep-alive connection: %d, want 200", i, method, resp.StatusCode)
		}
		// Let the upstream's close reach the pooled connection.
		time.Sleep(2 * time.Millisecond)
	}
	if n := served.Load(); n != 10 {
		t.Fatalf("upstream served %d requests, want 10 (each exactly once)", n)
	}
	// A request with a body is never sent twice: it goes through
	// net/http's Transport, which knows whether it may retry.
	resp, err := client.Post(gw+"/x", "text/plain", strings.NewReader("once"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || served.Load() != 11 {
		t.Fatalf("POST: %d, upstream served %d", resp.StatusCode, served.Load())
	}
	ms.wait(t, "11 access events", func(evs []*event.Event) bool { return len(byAction(evs, event.ActionHTTPRequest)) >= 11 })
}

// A client that leaves in the middle of an endless stream: the gateway
// closes its upstream connection at once (it neither keeps reading the
// stream nor returns the connection to the pool) and records a 200 whose
// body stopped short.
func TestClientGoneEndsUpstreamStream(t *testing.T) {
	t.Parallel()
	upstreamDone := make(chan struct{})
	up := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		defer close(upstreamDone)
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	_, gw, _ := gateway(t, Config{Routes: []Route{{Upstream: up.URL}}})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw+"/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: 0\n" {
		t.Fatalf("first event %q, %v", line, err)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-upstreamDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the upstream kept streaming after the client left: the gateway did not close its connection")
	}
	waitFor(t, "the upstream connection closed", func() bool { return up.closed.Load() == up.opened.Load() })
}

// The wait for an answer's header ends when the client leaves (499,
// upstream connection closed), and an answer whose header never ends is
// refused within its bound (502), not buffered.
func TestUpstreamHeaderBounds(t *testing.T) {
	t.Parallel()
	closed := make(chan string, 4)
	ln := serveTCP(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		if req.URL.Path == "/huge" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\n")
			line := "X-Filler: " + strings.Repeat("y", 1000) + "\r\n"
			for range 1000 { // 1 MB of header, more than the bound
				if _, err := io.WriteString(c, line); err != nil {
					break
				}
			}
		}
		// Hang until the gateway closes the connection.
		io.Copy(io.Discard, c)
		closed <- req.URL.Path
	})
	p, gw, ms := gateway(t, Config{Routes: []Route{{Upstream: "http://" + ln.Addr().String()}}})
	p.transport.maxHeader = 64 << 10
	if resp := get(t, gw+"/huge"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("endless header: %d, want 502", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw+"/hang", nil)
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("a request to a hanging upstream answered before its client gave up")
	}
	got := map[string]bool{}
	for range 2 {
		select {
		case path := <-closed:
			got[path] = true
		case <-time.After(30 * time.Second):
			t.Fatalf("upstream connections closed by the gateway: %v, want /huge and /hang", got)
		}
	}
	ms.wait(t, "the 502 and the 499", func(evs []*event.Event) bool {
		var bad, gone bool
		for _, ev := range evs {
			bad = bad || ev.Path == "/huge" && ev.StatusCode == 502 && strings.Contains(ev.ErrorMessage, "too large")
			gone = gone || ev.Path == "/hang" && ev.StatusCode == 499
		}
		return bad && gone
	})
}

// Informational answers (103 Early Hints) reach the client before the
// final one.
func TestEarlyHintsForwarded(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Write([]byte("page"))
	})
	_, gw, _ := gateway(t, Config{Routes: []Route{{Upstream: up.URL}}})
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, gw+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(hints) != 1 || hints[0] != "103 </style.css>; rel=preload; as=style" || string(b) != "page" {
		t.Fatalf("hints %q, body %q", hints, b)
	}
}

// Connections idle in the pool for longer than timeouts.idle are closed.
func TestIdleUpstreamConnectionsClosed(t *testing.T) {
	t.Parallel()
	up := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	p, gw, _ := gateway(t, Config{Routes: []Route{{Upstream: up.URL}}, Timeouts: Timeouts{Idle: 50 * time.Millisecond}})
	get(t, gw+"/")
	waitFor(t, "the idle upstream connection closed", func() bool { return up.opened.Load() == 1 && up.closed.Load() == 1 })
	p.transport.mu.Lock()
	n := len(p.transport.pools)
	p.transport.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d upstream pools left after the sweep", n)
	}
	get(t, gw+"/")
	if up.opened.Load() != 2 {
		t.Fatalf("%d connections opened, want a new one after the sweep", up.opened.Load())
	}
}

// An upstream that answers the moment a request's first bytes come: the
// gateway writes a request and waits for its answer in one read
// operation on the connection (h1Conn.send), begun before the write, so
// an answer that is there before the wait is not missed (it would wait
// for the response header timeout, 504). Every answer is the one to its
// own request, over reused connections. Each round trip is bounded, not
// the 600 together (on a loaded CI machine they took longer than a
// missed answer's wait): a round trip must end within a second of its
// start, plus the longest stall of the test process; the header timeout
// is far beyond it, so that a stall cannot make one fail.
func TestUpstreamAnswerAtOnce(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// The answer goes as soon as the request line's first
					// bytes are here, before the rest of the request is
					// read; the path it names is read after.
					if _, err := br.Peek(1); err != nil {
						return
					}
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					path := strings.Fields(line)[1]
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(path), path)
					for {
						l, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if l == "\r\n" {
							break
						}
					}
				}
			}()
		}
	}()
	tr := newTransport(Timeouts{Dial: 30 * time.Second, ResponseHeader: 30 * time.Second, Idle: time.Minute}, connlimit.New(1000, nil, "upstream connections"))
	// Time for the answer to come, and for the runtime's poller to see
	// it, before the wait begins.
	tr.sentHook = func() { time.Sleep(time.Millisecond) }
	defer tr.close()
	addr := ln.Addr().String()
	watch := stalltest.Start(t)
	var mu sync.Mutex
	var slowest time.Duration
	var slowestPath string
	var cw sync.WaitGroup
	for g := range 4 {
		cw.Add(1)
		go func() {
			defer cw.Done()
			for i := range 150 {
				path := fmt.Sprintf("/g%d/%d", g, i)
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
				start := time.Now()
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Errorf("%s: %v", path, err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != path {
					t.Errorf("%s: answer %q, %v", path, b, err)
					return
				}
				took := time.Since(start)
				mu.Lock()
				if took > slowest {
					slowest, slowestPath = took, path
				}
				mu.Unlock()
			}
		}()
	}
	cw.Wait()
	if stalled := watch.Worst(); slowest > time.Second+stalled {
		t.Fatalf("the answer to %s took %v (stalls %v): its wait missed it", slowestPath, slowest, stalled)
	}
}

// A lean front end's request whose connection ended before its exchange
// began (its context's AfterFunc then found no upstream connection to
// fail) does not wait on the upstream: the exchange sees the end itself.
func TestExchangeAfterConnectionEnded(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	quit := make(chan struct{})
	t.Cleanup(func() { close(quit); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		http.ReadRequest(br) // the second is never answered
		<-quit
	}()
	tr := newTransport(Timeouts{Dial: time.Second, Idle: time.Minute}, connlimit.New(1000, nil, "upstream connections")) // no response header timeout
	defer tr.close()
	url := "http://" + ln.Addr().String() + "/"
	conn, end := context.WithCancel(context.Background())
	ctx := (&Proxy{}).connContext(conn)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	end()                             // the client went away
	time.Sleep(50 * time.Millisecond) // its AfterFunc has run, and found no exchange
	// The next request's exchange takes the pooled connection.
	done := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(req)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("an exchange for an ended connection succeeded")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("an exchange for an ended connection waited for the upstream")
	}
}
