package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// rawUpstream is a real HTTP/1.1 server on 127.0.0.1 that records each
// request head exactly as it came (request line and header lines) and
// answers with canned bytes chosen by the path: the test sees what the
// gateway writes, not what a parser makes of it.
type rawUpstream struct {
	ln    net.Listener
	mu    sync.Mutex
	heads []string
}

// serveTCP listens on 127.0.0.1 until the test ends and serves each
// connection it accepts with handle on a goroutine of its own, closing the
// connection when handle returns: the raw upstreams (hostile, dead,
// counting) the proxy tests put behind the gateway.
func serveTCP(t testing.TB, handle func(c net.Conn)) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln
}

func newRawUpstream(t *testing.T) *rawUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c)
		}
	}()
	return u
}

const upstreamTP = "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01"

func (u *rawUpstream) serve(c net.Conn) {
	defer c.Close()
	tp := textproto.NewReader(bufio.NewReader(c))
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		var fields []string
		n := 0
		for {
			f, err := tp.ReadLine()
			if err != nil {
				return
			}
			if f == "" {
				break
			}
			if v, ok := strings.CutPrefix(f, "Content-Length: "); ok {
				n, _ = strconv.Atoi(v)
			}
			fields = append(fields, f)
		}
		if slices.Contains(fields, "Transfer-Encoding: chunked") {
			if _, err := io.Copy(io.Discard, httputil.NewChunkedReader(tp.R)); err != nil {
				return
			}
			for { // the trailer section
				if f, err := tp.ReadLine(); err != nil || f == "" {
					break
				}
			}
		} else if _, err := io.CopyN(io.Discard, tp.R, int64(n)); err != nil {
			return
		}
		slices.Sort(fields)
		u.mu.Lock()
		u.heads = append(u.heads, line+"\n"+strings.Join(fields, "\n"))
		u.mu.Unlock()
		var resp string
		switch {
		case strings.Contains(line, "/slow"):
			io.Copy(io.Discard, c) // never answers
			return
		case strings.Contains(line, "/bigchunked"):
			resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"1388\r\n" + strings.Repeat("b", 5000) + "\r\n0\r\n\r\n"
		case strings.Contains(line, "/smallchunked"):
			resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
		case strings.Contains(line, "/big"):
			resp = "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + strings.Repeat("<html>", 1000)[:5000]
		case strings.Contains(line, "/nocontent"):
			resp = "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"
		case strings.Contains(line, "/notmod"):
			resp = "HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\n"
		case strings.Contains(line, "/noct"):
			resp = "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n<html>hi</html"
		case strings.Contains(line, "/upclose"):
			resp = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nuntil the end"
			io.WriteString(c, resp)
			return
		case strings.Contains(line, "/hops"):
			// The common answer (one Content-Length, keep-alive) with
			// every hop-by-hop field, the upstream's own correlation
			// fields, repeated and lower-case keys, no Content-Type.
			resp = "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c\r\n" +
				"Proxy-Connection: keep-alive\r\nProxy-Authenticate: Basic realm=\"secret\"\r\nProxy-Authorization: secret\r\n" +
				"Te: trailers\r\nx-request-id: upstream-own\r\ntraceparent: " + upstreamTP + "\r\nset-cookie: a=1\r\n" +
				"Zz-Last: z\r\nSet-Cookie: b=2\r\nAa-First:  a \r\nX-Empty:\r\nDate: Mon, 30 Nov 2026 10:00:00 GMT\r\n" +
				"Content-Length: 14\r\n\r\n<html>hi</html"
		case strings.Contains(line, "/odd"):
			resp = "HTTP/1.1 299 Whatever\r\nX-Empty:\r\nX-Spaces:   a  \r\nContent-Length: 1\r\n\r\n!"
		case strings.Contains(line, "/chunked"):
			resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\nX-Unannounced: 7\r\n\r\n"
		case strings.Contains(line, "/hints"):
			resp = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
				"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
		case strings.Contains(line, "/sse"):
			resp = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nContent-Length: 9\r\n\r\ndata: x\n\n"
		case strings.Contains(line, "/lying-short"):
			// Says 10 bytes, sends 5 and ends the connection.
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhello")
			return
		case strings.Contains(line, "/lying-long"):
			// Says 2 bytes and sends a second answer after them.
			resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok" +
				"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\nsmuggled"
		case strings.Contains(line, "/denied"):
			resp = "HTTP/1.1 401 Unauthorized\r\nWww-Authenticate: Basic realm=\"x\"\r\nContent-Length: 4\r\n\r\nnope"
		default:
			body := "ok"
			if strings.HasPrefix(line, "HEAD ") {
				body = ""
			}
			resp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: X-Up-Hop\r\nX-Up-Hop: secret\r\n" +
				"Keep-Alive: timeout=5\r\nX-Request-Id: upstream-own\r\nTraceparent: " + upstreamTP + "\r\n" +
				"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\n" + body
		}
		if _, err := io.WriteString(c, resp); err != nil {
			return
		}
	}
}

func (u *rawUpstream) last() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.heads[len(u.heads)-1]
}

// TestFastPathMatchesReverseProxy sends the same requests through the
// fast path (behind the lean front end: for the common answer, serveLean)
// and through httputil.ReverseProxy (the gateway's Rewrite and
// ModifyResponse) and compares, byte for byte, the request heads the
// upstream received (header order aside) and the answers the client got:
// hop-by-hop fields both ways, forwarding fields, correlation and trace
// context, HEAD, OPTIONS, 1xx answers, trailers, Server-Sent Events,
// escaped paths, joined upstream paths and queries, stripped prefixes.
func TestFastPathMatchesReverseProxy(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t)
	base := "http://" + up.ln.Addr().String()
	p, gw, _ := gateway(t, Config{Routes: []Route{
		{Path: "/b/", Upstream: base + "/base"},
		{Path: "/s/", Upstream: base + "/strip", StripPrefix: true},
		{Path: "/", Upstream: base},
	}})
	const validTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	cases := []struct {
		name, method, path string
		hdr                [][2]string
		fast               bool
	}{
		{"plain", "GET", "/plain?x=1&y=%20", [][2]string{{"Accept", "a/b"}, {"X-Multi", "1"}, {"X-Multi", "2"}, {"User-Agent", "tg-test"}}, true},
		{"hop-by-hop and forged forwarding", "GET", "/plain", [][2]string{{"Connection", "X-Hop, keep-alive"}, {"X-Hop", "v"},
			{"Keep-Alive", "timeout=3"}, {"Te", "trailers"}, {"Proxy-Authorization", "Basic c2VjcmV0"},
			{"X-Forwarded-For", "6.6.6.6"}, {"Forwarded", "for=1.2.3.4"}, {"X-Forwarded-Host", "evil"},
			{"Traceparent", validTP}, {"Tracestate", "v=1"}}, true},
		{"invalid traceparent", "GET", "/plain", [][2]string{{"Traceparent", "00-bad"}, {"Tracestate", "v=1"}}, true},
		{"connection names user-agent", "GET", "/plain", [][2]string{{"Connection", "User-Agent"}, {"User-Agent", "x"}}, true},
		{"no user agent", "GET", "/plain", [][2]string{{"User-Agent", ""}}, true},
		{"head", "HEAD", "/plain", nil, true},
		{"options", "OPTIONS", "/plain", nil, true},
		{"trailers", "GET", "/chunked", nil, true},
		{"early hints", "GET", "/hints", nil, true},
		{"server-sent events", "GET", "/sse", nil, true},
		{"401", "GET", "/denied", nil, true},
		{"common answer with hop-by-hop and correlation fields", "GET", "/hops", nil, true},
		{"common answer with the client's traceparent", "GET", "/hops", [][2]string{{"Traceparent", validTP}}, true},
		{"escaped path, joined upstream path", "GET", "/b/a%3Ab/plain?q=%41", nil, true},
		{"stripped prefix", "GET", "/s/x/plain?q=1", nil, true},
		{"semicolon query (ReverseProxy cleans it)", "GET", "/plain?a=1;b=2", nil, false},
		{"body", "POST", "/plain", nil, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var heads, answers [2]string
			for mode := range 2 {
				p.noFast.Store(mode == 1)
				var body io.Reader
				if tc.method == "POST" {
					body = strings.NewReader("{}")
				}
				req, _ := http.NewRequest(tc.method, gw+tc.path, body)
				req.Header.Set("X-Request-ID", "case-"+string(rune('a'+i)))
				for _, h := range tc.hdr {
					req.Header.Add(h[0], h[1])
				}
				if mode == 0 {
					in := req.Clone(req.Context())
					in.URL.Host, in.Host = "", req.URL.Host
					if in.Body == nil {
						in.Body = http.NoBody
					}
					if got := p.fast(p.route(in), in); got != tc.fast {
						t.Fatalf("fast path taken: %v, want %v", got, tc.fast)
					}
				}
				// A new connection for each: one ReverseProxy served
				// was handed to net/http by the lean front end, and the
				// fast path is to be seen behind both.
				tr := &http.Transport{DisableCompression: true}
				defer tr.CloseIdleConnections()
				resp, err := (&http.Client{Transport: tr}).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				resp.Header.Del("Date")
				tp := resp.Header.Get("Traceparent")
				var hs []string
				for k, vv := range resp.Header {
					hs = append(hs, k+": "+strings.Join(vv, " | "))
				}
				for k, vv := range resp.Trailer {
					hs = append(hs, "trailer "+k+": "+strings.Join(vv, " | "))
				}
				slices.Sort(hs)
				answers[mode] = resp.Status + "\n" + strings.Join(hs, "\n") + "\n\n" + string(b)
				heads[mode] = up.last()
				if tp != "" && tp != validTP {
					// generated per request
					answers[mode] = strings.ReplaceAll(answers[mode], tp, "<generated>")
					heads[mode] = strings.ReplaceAll(heads[mode], tp, "<generated>")
				}
			}
			p.noFast.Store(false)
			if heads[0] != heads[1] {
				t.Errorf("upstream got, fast path:\n%s\n\nReverseProxy:\n%s", heads[0], heads[1])
			}
			if answers[0] != answers[1] {
				t.Errorf("client got, fast path:\n%s\n\nReverseProxy:\n%s", answers[0], answers[1])
			}
			if strings.Contains(heads[0], "X-Hop") || strings.Contains(heads[0], "Proxy-Authorization") ||
				strings.Contains(heads[0], "6.6.6.6") || strings.Contains(answers[0], "secret") ||
				strings.Contains(answers[0], "upstream-own") || strings.Contains(answers[0], "ffffffff") {
				t.Errorf("a hop-by-hop, forged or upstream correlation field passed:\n%s\n\n%s", heads[0], answers[0])
			}
		})
	}
}

// TestFastPathNeverWritesWhatItWasNotGiven: the server only hands over
// valid header names and values without line breaks, but what the fast
// path writes upstream must not depend on that. A request built in
// process with a field name that is no token and a value with a line
// break reaches the upstream without either as a field of its own; a
// query with a space goes through ReverseProxy.
func TestFastPathNeverWritesWhatItWasNotGiven(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t)
	p, _, _ := gateway(t, Config{Routes: []Route{{Upstream: "http://" + up.ln.Addr().String()}}})
	req := httptest.NewRequest("GET", "http://gw.example/plain", nil)
	req.Proto, req.ProtoMinor, req.Close = "HTTP/1.1", 1, false
	req.Header["Bad Key"] = []string{"x"}
	req.Header["X-Split"] = []string{"a\r\nInjected: 1"}
	if !p.fast(p.route(req), req) {
		t.Fatal("not on the fast path")
	}
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	head := up.last()
	if strings.Contains(head, "Bad Key") || strings.Contains(head, "\nInjected:") || !strings.Contains(head, "X-Split: a  Injected: 1") {
		t.Errorf("upstream got:\n%s", head)
	}
	q := httptest.NewRequest("GET", "http://gw.example/plain", nil)
	q.Proto, q.ProtoMinor, q.Close = "HTTP/1.1", 1, false
	q.URL.RawQuery = "a b"
	if p.fast(p.route(q), q) {
		t.Error("a query with a space took the fast path")
	}
}
