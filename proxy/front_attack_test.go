package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/h1"
	"github.com/trailguard/trailguard/internal/stalltest"
	"time"
)

// readUntilQuiet writes raw on a new connection and returns every byte
// the client received until the server closed the connection or was
// quiet for quiet.
func readUntilQuiet(t *testing.T, addr, raw string, quiet time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go io.WriteString(c, raw)
	var got []byte
	buf := make([]byte, 32<<10)
	for {
		c.SetReadDeadline(time.Now().Add(quiet))
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return string(got)
		}
	}
}

var upHost = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// TestLeanFrontAttacks sends request-smuggling and malformed-head bytes to
// a gateway served by the lean front end and to one served by net/http,
// and requires the same client bytes and the same request heads at the
// upstream.
func TestLeanFrontAttacks(t *testing.T) {
	t.Parallel()
	var addrs [2]string
	var ups [2]*rawUpstream
	var sinks [2]*memSink
	for i, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		ups[i] = newRawUpstream(t)
		_, url, sink := gateway(t, Config{HTTP1: mode, Routes: []Route{{Path: "/", Upstream: "http://" + ups[i].ln.Addr().String()}},
			TrustedProxies: []string{"127.0.0.1/32"}, Timeouts: Timeouts{ReadHeader: 2 * time.Second, Idle: 3 * time.Second},
			Logins: []Login{{Method: "GET", Path: "/plain/login-basic", User: "basic"}, {Method: "GET", Path: "/plain/login-denied/denied", User: "basic"},
				{Method: "GET", Path: "/plain/login-query", User: "query:u"}},
			Sensitive: []Sensitive{{Method: "GET", Path: "/plain/sensitive/*", Action: "export"}}})
		addrs[i] = strings.TrimPrefix(url, "http://")
		sinks[i] = sink
	}
	g := func(id string, extra ...string) string {
		return "GET /plain/" + id + " HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: " + id + "\r\n" + strings.Join(extra, "") + "\r\n"
	}
	cases := []struct{ id, raw string }{
		{"cl-te", strings.TrimSuffix(g("cl-te", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), "") + "0\r\n\r\n" + g("cl-te-smuggled")},
		{"te-cl", g("te-cl", "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n") + "0\r\n\r\n" + g("te-cl-smuggled")},
		{"te-get", g("te-get", "Transfer-Encoding: chunked\r\n") + "5\r\nhello\r\n0\r\n\r\n" + g("te-get-smuggled")},
		{"te-space", g("te-space", "Transfer-Encoding : chunked\r\n") + "0\r\n\r\n" + g("te-space-smuggled")},
		{"te-x", g("te-x", "Transfer-Encoding: xchunked\r\n") + "0\r\n\r\n" + g("te-x-smuggled")},
		{"te-tab", g("te-tab", "Transfer-Encoding:\tchunked\r\n") + "0\r\n\r\n" + g("te-tab-smuggled")},
		{"te-dup", g("te-dup", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n") + "0\r\n\r\n" + g("te-dup-smuggled")},
		{"te-lower", g("te-lower", "transfer-encoding: chunked\r\n") + "0\r\n\r\n" + g("te-lower-smuggled")},
		{"te-head", strings.Replace(g("te-head", "Transfer-Encoding: chunked\r\n"), "GET", "HEAD", 1) + "0\r\n\r\n" + g("te-head-smuggled")},
		{"cl-dup", g("cl-dup", "Content-Length: 0\r\nContent-Length: 38\r\n") + g("cl-dup-smuggled")},
		{"cl-list", g("cl-list", "Content-Length: 3, 3\r\n") + "abc" + g("cl-list-smuggled")},
		{"cl-plus", g("cl-plus", "Content-Length: +3\r\n") + "abc" + g("cl-plus-smuggled")},
		{"cl-zero", g("cl-zero", "Content-Length: 003\r\n") + "abc" + g("cl-zero-smuggled")},
		{"cl-space", g("cl-space", "Content-Length : 3\r\n") + "abc" + g("cl-space-smuggled")},
		{"cl-pad", g("cl-pad", "Content-Length:  3 \r\n") + "abc" + g("cl-pad-smuggled")},
		{"cl-neg", g("cl-neg", "Content-Length: -1\r\n") + g("cl-neg-smuggled")},
		{"obs-fold", g("obs-fold", "X-A: a\r\n b\r\n") + g("obs-fold-smuggled")},
		{"obs-fold-te", g("obs-fold-te", "X-A: a\r\n Transfer-Encoding: chunked\r\n") + "0\r\n\r\n" + g("obs-fold-te-smuggled")},
		{"bare-lf", strings.ReplaceAll(g("bare-lf"), "\r\n", "\n") + g("bare-lf-smuggled")},
		{"bare-lf-one", strings.Replace(g("bare-lf-one", "X-A: 1\r\n"), "X-A: 1\r\n", "X-A: 1\n", 1) + g("bare-lf-one-smuggled")},
		{"bare-cr", g("bare-cr", "X-A: a\rb\r\n") + g("bare-cr-smuggled")},
		{"nul-value", g("nul-value", "X-A: a\x00b\r\n") + g("nul-value-smuggled")},
		{"nul-name", g("nul-name", "X-\x00A: a\r\n") + g("nul-name-smuggled")},
		{"ctl-value", g("ctl-value", "X-A: a\x0bb\r\n") + g("ctl-value-smuggled")},
		{"del-value", g("del-value", "X-A: a\x7fb\r\n") + g("del-value-smuggled")},
		{"space-name", g("space-name", "X A: a\r\n") + g("space-name-smuggled")},
		{"space-before-colon", g("space-before-colon", "X-A : a\r\n") + g("space-before-colon-smuggled")},
		{"high-bytes", g("high-bytes", "X-A: caf\xc3\xa9\xff\r\n") + g("high-bytes-smuggled")},
		{"high-name", g("high-name", "X-\xc3\xa9: a\r\n") + g("high-name-smuggled")},
		{"empty-name", g("empty-name", ": a\r\n") + g("empty-name-smuggled")},
		{"absolute", "GET http://other.test/plain/absolute HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: absolute\r\n\r\n" + g("absolute-smuggled")},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: asterisk\r\n\r\n" + g("asterisk-smuggled")},
		{"authority", "CONNECT gw.test:80 HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: authority\r\n\r\n" + g("authority-smuggled")},
		{"no-host", "GET /plain/no-host HTTP/1.1\r\nX-Request-Id: no-host\r\n\r\n" + g("no-host-smuggled")},
		{"two-hosts", "GET /plain/two-hosts HTTP/1.1\r\nHost: gw.test\r\nHost: evil.test\r\nX-Request-Id: two-hosts\r\n\r\n" + g("two-hosts-smuggled")},
		{"host-userinfo", "GET /plain/host-userinfo HTTP/1.1\r\nHost: a@gw.test\r\nX-Request-Id: host-userinfo\r\n\r\n" + g("host-userinfo-smuggled")},
		{"host-empty", "GET /plain/host-empty HTTP/1.1\r\nHost:\r\nX-Request-Id: host-empty\r\n\r\n" + g("host-empty-smuggled")},
		{"host-port", "GET /plain/host-port HTTP/1.1\r\nHost: gw.test:8080\r\nX-Request-Id: host-port\r\n\r\n" + g("host-port-smuggled")},
		{"host-lower", "GET /plain/host-lower HTTP/1.1\r\nhOST: gw.test\r\nX-Request-Id: host-lower\r\n\r\n" + g("host-lower-smuggled")},
		{"http10", strings.Replace(g("http10"), "HTTP/1.1", "HTTP/1.0", 1) + g("http10-smuggled")},
		{"http10-ka", strings.Replace(g("http10-ka", "Connection: keep-alive\r\n"), "HTTP/1.1", "HTTP/1.0", 1) + g("http10-ka-smuggled")},
		{"http09", "GET /plain/http09\r\n\r\n"},
		{"http12", strings.Replace(g("http12"), "HTTP/1.1", "HTTP/1.2", 1) + g("http12-smuggled")},
		{"lower-method", strings.Replace(g("lower-method"), "GET", "get", 1) + g("lower-method-smuggled")},
		{"double-space", strings.Replace(g("double-space"), "GET ", "GET  ", 1) + g("double-space-smuggled")},
		{"space-before-version", strings.Replace(g("space-before-version"), " HTTP/1.1", "  HTTP/1.1", 1) + g("space-before-version-smuggled")},
		{"trailing-space", strings.Replace(g("trailing-space"), "HTTP/1.1\r\n", "HTTP/1.1 \r\n", 1) + g("trailing-space-smuggled")},
		{"tab-sep", strings.Replace(g("tab-sep"), "GET ", "GET\t", 1) + g("tab-sep-smuggled")},
		{"leading-crlf", "\r\n" + g("leading-crlf") + g("leading-crlf-smuggled")},
		{"double-slash", "GET //evil.test/plain/double-slash HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: double-slash\r\n\r\n" + g("double-slash-smuggled")},
		{"dot-segments", "GET /plain/../plain/dot-segments HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: dot-segments\r\n\r\n" + g("dot-segments-smuggled")},
		{"fragment", "GET /plain/fragment#x HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: fragment\r\n\r\n" + g("fragment-smuggled")},
		{"bad-escape", "GET /plain/bad-escape%zz HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: bad-escape\r\n\r\n" + g("bad-escape-smuggled")},
		{"long-line", "GET /plain/long-line?" + strings.Repeat("a", 60000) + " HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: long-line\r\n\r\n" + g("long-line-smuggled")},
		{"expect", g("expect", "Expect: 100-continue\r\n") + g("expect-smuggled")},
		{"expect-odd", g("expect-odd", "Expect: 100-continuex\r\n") + g("expect-odd-smuggled")},
		{"upgrade", g("upgrade", "Connection: Upgrade\r\nUpgrade: websocket\r\n") + g("upgrade-smuggled")},
		{"upgrade-h2c", g("upgrade-h2c", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n") + g("upgrade-h2c-smuggled")},
		{"conn-names", g("conn-names", "Connection: keep-alive, X-Secret, Authorization\r\nX-Secret: s\r\nAuthorization: Bearer t\r\n") + g("conn-names-smuggled")},
		{"conn-names-two", g("conn-names-two", "Connection: keep-alive\r\nConnection: X-Secret\r\nX-Secret: s\r\n") + g("conn-names-two-smuggled")},
		{"conn-ka-case", g("conn-ka-case", "Connection: Keep-Alive\r\nKeep-Alive: timeout=5\r\n") + g("conn-ka-case-smuggled")},
		{"conn-close-case", g("conn-close-case", "Connection: CLOSE\r\n") + g("conn-close-case-smuggled")},
		{"proxy-conn", g("proxy-conn", "Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\nTe: trailers, deflate\r\n") + g("proxy-conn-smuggled")},
		{"pragma", g("pragma", "Pragma: no-cache\r\n") + g("pragma-smuggled")},
		{"xff-forged", g("xff-forged", "X-Forwarded-For: 10.0.0.1, 203.0.113.9\r\nX-Real-Ip: 1.1.1.1\r\nForwarded: for=9.9.9.9\r\n") + g("xff-forged-smuggled")},
		{"underscore", g("underscore", "X_Forwarded_For: 6.6.6.6\r\n") + g("underscore-smuggled")},
		{"req-id-bad", strings.Replace(g("req-id-bad"), "X-Request-Id: req-id-bad", "X-Request-Id: req-id-bad\x01", 1) + g("req-id-bad-smuggled")},
		{"traceparent-bad", g("traceparent-bad", "Traceparent: 00-00000000000000000000000000000000-0000000000000000-01\r\n") + g("traceparent-bad-smuggled")},
		{"traceparent-two", g("traceparent-two", "Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nTraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01\r\n") + g("traceparent-two-smuggled")},
		{"req-id-two", g("req-id-two", "X-Request-Id: other\r\n") + g("req-id-two-smuggled")},
		{"pipeline-post-partial", g("pipeline-post-partial") + "POST /plain/pp HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: pipeline-post-partial-2\r\nContent-Length: 10\r\n\r\n01234" + "56789" + g("pipeline-post-partial-smuggled")},
		{"pipeline-lean-bad", g("pipeline-lean-bad") + g("pipeline-lean-bad-2", "X-A: a\r\n b\r\n") + g("pipeline-lean-bad-smuggled")},
		{"pipeline-lean-te", g("pipeline-lean-te") + g("pipeline-lean-te-2", "Transfer-Encoding: chunked\r\n") + "0\r\n\r\n" + g("pipeline-lean-te-smuggled")},
		{"pipeline-lean-crlf", g("pipeline-lean-crlf") + "\r\n" + g("pipeline-lean-crlf-smuggled")},
		{"tls-hello", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + strings.Repeat("\x00", 40)},
		{"many-fields", g("many-fields", strings.Repeat("X-A: a\r\n", 5000)) + g("many-fields-smuggled")},
		{"huge-head", g("huge-head", "X-Big: "+strings.Repeat("b", 80<<10)+"\r\n") + g("huge-head-smuggled")},
		{"cookie-split", g("cookie-split", "Cookie: a=1\r\nCookie: b=2\r\n") + g("cookie-split-smuggled")},
		{"login-basic", g("login-basic", "Authorization: Basic YWxpY2U6aHVudGVyMg==\r\n") + g("login-basic-smuggled")},
		{"login-denied", "GET /plain/login-denied/denied HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: login-denied\r\nAuthorization: Basic YWxpY2U6aHVudGVyMg==\r\n\r\n" + g("login-denied-smuggled")},
		{"login-query", "GET /plain/login-query?u=alice&password=hunter2 HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: login-query\r\n\r\n" + g("login-query-smuggled")},
		{"sensitive", "GET /plain/sensitive/7?token=abc HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: sensitive\r\nAuthorization: Bearer abc.def\r\nCookie: session=s3cr3t\r\n\r\n" + g("sensitive-smuggled")},
		{"lying-short", g("lying-short") + g("lying-short-smuggled")},
		{"lying-long", g("lying-long") + g("lying-long-2") + g("lying-long-smuggled")},
		{"auth-basic", g("auth-basic", "Authorization: Basic YWRtaW46aHVudGVyMg==\r\n") + g("auth-basic-smuggled")},
	}
	var mu sync.Mutex
	type result struct{ answer, heads string }
	results := map[string][2]result{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, tc := range cases {
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				a := normalize(readUntilQuiet(t, addrs[i], tc.raw, 400*time.Millisecond))
				mu.Lock()
				r := results[tc.id]
				r[i].answer = a
				results[tc.id] = r
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	// The login and sensitive routes are recognised, and no secret they
	// carried is in any record.
	for id, action := range map[string]string{"login-basic": "authn_login_success", "login-denied": "authn_login_fail",
		"login-query": "authn_login_success", "sensitive": "export"} {
		sinks[0].wait(t, action+" of "+id, func([]*event.Event) bool {
			return strings.Contains(strings.Join(eventsOf(t, sinks[0], id), "\n"), "event.action="+action)
		})
	}
	for i, sink := range sinks {
		for _, secret := range []string{"hunter2", "s3cr3t", "abc.def", "YWxpY2U6aHVudGVyMg"} {
			if strings.Contains(string(sink.all()), secret) {
				t.Errorf("mode %d: %q recorded", i, secret)
			}
		}
	}
	headsOf := func(u *rawUpstream, id string) string {
		u.mu.Lock()
		defer u.mu.Unlock()
		var out []string
		for _, h := range u.heads {
			if strings.Contains(h+"\n", "X-Request-Id: "+id+"\n") || strings.Contains(h+"\n", "X-Request-Id: "+id+"-smuggled\n") ||
				strings.Contains(h, "/plain/"+id+" ") {
				out = append(out, h)
			}
		}
		return upHost.ReplaceAllString(normalize(strings.Join(out, "\n\n")), "127.0.0.1:<up>")
	}
	// Fields the client names in Connection, and the hop-by-hop ones,
	// never reach the upstream (in either mode: equal is not enough).
	for id, never := range map[string][]string{
		"conn-names":     {"X-Secret", "Authorization", "Connection"},
		"conn-names-two": {"X-Secret", "Connection"},
		"conn-ka-case":   {"Keep-Alive", "Connection"},
		"proxy-conn":     {"Proxy-Connection", "Proxy-Authorization", "deflate"},
	} {
		for i, u := range ups {
			h := headsOf(u, id)
			if h == "" {
				// Cut by a client that gave up after 400ms on a loaded
				// machine: once more, patiently, under an id of its own.
				again := strings.ToUpper(id)
				for _, tc := range cases {
					if tc.id == id {
						readUntilQuiet(t, addrs[i], strings.ReplaceAll(tc.raw, id, again), 2*time.Second)
					}
				}
				h = headsOf(u, again)
			}
			if h == "" {
				t.Errorf("%s: nothing reached upstream %d", id, i)
			}
			for _, s := range never {
				if strings.Contains(h, s) {
					t.Errorf("%s: upstream %d got %q:\n%s", id, i, s, h)
				}
			}
		}
	}
	// differ compares what the two modes did with one attack, sent with
	// request id id: what the client got, what reached the upstream and
	// what was recorded.
	differ := func(id string, answers [2]string, wait time.Duration) (diffs []string) {
		if answers[0] != answers[1] {
			diffs = append(diffs, fmt.Sprintf("%s: client got, lean front end:\n%q\n\nnet/http:\n%q", id, answers[0], answers[1]))
		}
		if h0, h1 := headsOf(ups[0], id), headsOf(ups[1], id); h0 != h1 {
			diffs = append(diffs, fmt.Sprintf("%s: upstream got, lean front end:\n%s\n\nnet/http:\n%s", id, h0, h1))
		}
		for _, id := range []string{id, id + "-smuggled"} {
			var evs [2][]string
			for deadline := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
				evs[0], evs[1] = eventsOf(t, sinks[0], id), eventsOf(t, sinks[1], id)
				if slices.Equal(evs[0], evs[1]) || time.Now().After(deadline) {
					break
				}
			}
			if !slices.Equal(evs[0], evs[1]) {
				diffs = append(diffs, fmt.Sprintf("%s: events, lean front end:\n%s\n\nnet/http:\n%s", id, strings.Join(evs[0], "\n"), strings.Join(evs[1], "\n")))
			}
		}
		return diffs
	}
	// cutByClient reports whether a request of attempt id was cut by the
	// client (readUntilQuiet gave up while a mode was still at work; the
	// clients here never leave before that).
	cutByClient := func(id string) bool {
		for _, sink := range sinks {
			for _, id := range []string{id, id + "-smuggled"} {
				if strings.Contains(strings.Join(eventsOf(t, sink, id), "\n"), "event.reason=client closed the request") {
					return true
				}
			}
		}
		return false
	}
	for _, tc := range cases {
		r := results[tc.id]
		first := differ(tc.id, [2]string{r[0].answer, r[1].answer}, 3*time.Second)
		// A loaded machine may have been quiet for longer than 400ms
		// before an answer: the client then closed the connection while
		// one mode was still at work (its request cancelled, its events
		// and the upstream's heads those of a cut request). Ask again,
		// more patiently, under request ids of their own (the same
		// length: the attacks' lengths stay as they are), so that the
		// first attempt's leftovers are not compared. Once more, yet
		// more patiently, if the client cut that one too (MANY-FIELDS,
		// 5000 fields, was still at work after 2s of quiet at load 20).
		diffs, last := first, tc.id
		for i, again := range []string{strings.ToUpper(tc.id), strings.ToUpper(tc.id[:1]) + tc.id[1:]} {
			if len(diffs) == 0 || i > 0 && !cutByClient(last) {
				break
			}
			quiet := []time.Duration{2 * time.Second, 10 * time.Second}[i]
			raw := strings.ReplaceAll(tc.raw, tc.id, again)
			var answers [2]string
			for i := range 2 {
				answers[i] = normalize(readUntilQuiet(t, addrs[i], raw, quiet))
			}
			diffs, last = differ(again, answers, max(3*time.Second, quiet)), again
		}
		if last == tc.id {
			continue // no differences the first time
		}
		for _, d := range diffs {
			t.Errorf("%s\n(asked again; the first time: %s)", d, strings.Join(first, "\n"))
		}
	}
}

// TestLeanFrontLateH2Preface: after requests the front end served, the
// cleartext HTTP/2 preface is not taken for a new connection's (net/http
// looks for it only when a connection starts, and would switch this one
// to HTTP/2 mid-stream): the connection is closed. A request that merely
// starts like it (POST, sent a byte at a time) is still handed over.
func TestLeanFrontLateH2Preface(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t)
	_, url, _, srv := gatewayServer(t, Config{Routes: []Route{{Upstream: "http://" + up.ln.Addr().String()}}})
	addr := strings.TrimPrefix(url, "http://")
	get := "GET /plain HTTP/1.1\r\nHost: gw.test\r\n\r\n"
	for _, tc := range []struct {
		name  string
		parts []string
		want  int // answers
	}{
		{"preface", []string{get, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"}, 1},
		{"preface a byte at a time", append([]string{get}, strings.Split("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "")...), 1},
		{"post a byte at a time", append([]string{get}, strings.Split("POST /plain HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2\r\n\r\n{}", "")...), 2},
		{"pri request", []string{get, "PRI /plain HTTP/1.1\r\nHost: gw.test\r\n\r\n"}, 2},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for _, p := range tc.parts {
				io.WriteString(c, p)
				time.Sleep(time.Millisecond)
			}
		}()
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		n := 0
		for ; ; n++ {
			if _, err := br.Peek(1); err != nil {
				break
			}
			if b, _ := br.Peek(5); string(b) != "HTTP/" {
				b, _ = br.Peek(br.Buffered())
				t.Fatalf("%s: after %d answers the client got %q, not HTTP/1.1", tc.name, n, b)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			io.Copy(io.Discard, resp.Body)
			if n+1 == tc.want && resp.Header.Get("Connection") != "close" {
				c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			}
		}
		c.Close()
		if n != tc.want {
			t.Errorf("%s: %d answers, want %d", tc.name, n, tc.want)
		}
	}
	if f := srv.(*front); f.served.Load() != 4 {
		t.Errorf("served %d requests, want the 4 GETs", f.served.Load())
	}
}

// TestLeanFrontClientGoneWithPipelinedBytes: a client that sends a
// request and, at once, enough of a next one to fill the front end's read
// buffer, then goes away while the first waits for the upstream, cancels
// the upstream exchange as net/http does (the front end's watch for the
// client's departure must not need room in the buffer).
func TestLeanFrontClientGoneWithPipelinedBytes(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			arrived, gone := make(chan struct{}, 1), make(chan struct{}, 1)
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				arrived <- struct{}{}
				select {
				case <-r.Context().Done():
					gone <- struct{}{}
				case <-time.After(time.Minute): // past the test's waits
				}
			})
			_, url, sink := gateway(t, Config{HTTP1: mode, Routes: []Route{{Upstream: up.URL}}})
			c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			// 4096 bytes: the front end's buffer, and net/http's.
			raw := "GET /hang HTTP/1.1\r\nHost: a\r\nX-Request-Id: gone-full\r\n\r\n" + "GET /next HTTP/1.1\r\nHost: a\r\nX-Pad: "
			io.WriteString(c, raw+strings.Repeat("a", 4096-len(raw)))
			// The waits are long: what they wait for must come, and a
			// process stalled for seconds on a loaded machine makes it
			// late, not missing.
			select {
			case <-arrived:
			case <-time.After(30 * time.Second):
				t.Fatal("the request did not reach the upstream")
			}
			time.Sleep(50 * time.Millisecond) // several sweeps: the front end watches by now
			c.Close()
			select {
			case <-gone:
			case <-time.After(30 * time.Second):
				t.Fatal("the upstream exchange went on after the client left")
			}
			sink.wait(t, "the access event", func([]*event.Event) bool { return len(eventsOf(t, sink, "gone-full")) > 0 })
		})
	}
}

// TestLeanFrontWatchKeepsPipelinedBytes: the bytes a watch reads, and
// those it moves to make room, are the next requests' and are served in
// order (a slow first request, a full buffer of pipelined ones).
func TestLeanFrontWatchKeepsPipelinedBytes(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(60 * time.Millisecond)
		}
		io.WriteString(w, r.URL.Path+" "+r.Header.Get("X-Pad")[:min(3, len(r.Header.Get("X-Pad")))])
	})
	_, url, _, srv := gatewayServer(t, Config{Routes: []Route{{Upstream: up.URL}}})
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n" + "GET /second HTTP/1.1\r\nHost: a\r\nX-Pad: " + strings.Repeat("b", 1000) + "\r\n\r\n" +
		"GET /third HTTP/1.1\r\nHost: a\r\nX-Pad: "
	io.WriteString(c, first+strings.Repeat("c", 4096-len(first)))
	time.Sleep(30 * time.Millisecond) // the first is at the upstream, watched
	io.WriteString(c, strings.Repeat("c", 3000)+"\r\n\r\n")
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for _, want := range []string{"/slow ", "/second bbb", "/third ccc"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			t.Errorf("answer %q, want %q", b, want)
		}
	}
	if f := srv.(*front); f.served.Load() != 3 {
		t.Errorf("served %d, want 3", f.served.Load())
	}
}

// TestLeanFrontShutdown: Shutdown with connections in every state: an
// idle one and one mid-head are closed at once, a request in flight is
// answered in full (with Connection: close), a client that never reads
// its large answer is cut when the drain ends, and no goroutine of the
// front end outlives it — as with net/http (which closes a connection
// mid-head only once it is 5s old).
//
// The test waits for conditions, not for time: Shutdown starts once every
// connection is accepted and both requests are at the upstream (a fixed
// 100 ms let a loaded machine start it with a request not yet read, which
// it then closed as idle), and the request in flight is answered once the
// idle connections are closed (a fixed 300 ms could end before Shutdown
// began, and the answer then lacked Connection: close). Its bounds are
// far from what a wrong Shutdown does: an idle connection kept until the
// drain's end is closed at the deadline (3 s), and a Shutdown that waits
// for the client that never reads returns at the write timeout (60 s).
func TestLeanFrontShutdown(t *testing.T) {
	const deadline = 3 * time.Second
	for _, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		t.Run(mode, func(t *testing.T) {
			release := make(chan struct{}) // the request in flight may be answered
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/slow":
					select {
					case <-release:
					case <-r.Context().Done():
						return
					}
					io.WriteString(w, "done")
				case "/big":
					for i := 0; i < 1<<10; i++ {
						if _, err := w.Write(make([]byte, 64<<10)); err != nil {
							return
						}
					}
				default:
					io.WriteString(w, "ok")
				}
			})
			var releaseOnce sync.Once
			releaseSlow := func() { releaseOnce.Do(func() { close(release) }) }
			t.Cleanup(releaseSlow) // before the upstream's Close, which waits for it
			cfg := Config{HTTP1: mode, Routes: []Route{{Upstream: up.URL}}}
			ms := &memSink{}
			cfg.Sink = ms
			p, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			tcp, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := &acceptCounter{Listener: tcp}
			srv := NewPlainServer(p, cfg, nil)
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			dial := func(raw string) (net.Conn, *bufio.Reader) {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				io.WriteString(c, raw)
				return c, bufio.NewReader(c)
			}
			idle, idleR := dial("GET /plain HTTP/1.1\r\nHost: a\r\n\r\n")
			resp, err := http.ReadResponse(idleR, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			partial, _ := dial("GET /plain HTTP/1.1\r\nHost: a\r\n")
			slow, slowR := dial("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
			dial("GET /big HTTP/1.1\r\nHost: a\r\n\r\n") // never read
			// All at the server: four connections accepted, /plain, /slow
			// and /big at the upstream.
			for wait := time.Now().Add(30 * time.Second); ln.accepted.Load() < 4 || up.count() < 3; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(wait) {
					t.Fatalf("after 30 s: %d connections accepted, %d requests at the upstream; want 4 and 3", ln.accepted.Load(), up.count())
				}
			}
			// The bounds on how soon allow the longest stall of this
			// process meanwhile (a loaded machine stops it, and the server
			// in it, for seconds); the waits for what must come are long.
			watch := stalltest.Start(t)
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			type result struct {
				err  error
				took time.Duration // Shutdown's own, not when this test looked
			}
			shut := make(chan result, 1)
			go func() {
				err := srv.Shutdown(ctx)
				shut <- result{err, time.Since(start)}
			}()
			waiting := []net.Conn{idle, partial}
			if mode == HTTP1NetHTTP {
				// net/http closes a connection mid-head only once it is 5s
				// old; the front end is stricter.
				waiting = waiting[:1]
			}
			for _, c := range waiting {
				rest, _, err := readAll(c, 30*time.Second)
				took, stalled := time.Since(start), watch.Worst()
				if err != nil || rest != "" || took >= deadline*2/3+stalled {
					t.Errorf("an idle or mid-head connection: %q after %v, stalled %v (%v), want it closed at once (well before the deadline, %v)", rest, took, stalled, err, deadline)
				}
			}
			releaseSlow()
			slow.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err = http.ReadResponse(slowR, nil)
			if err != nil {
				t.Fatalf("the request in flight: %v", err)
			}
			b, err := io.ReadAll(resp.Body)
			if string(b) != "done" || err != nil || !resp.Close {
				t.Errorf("the request in flight: %q (%v), close %v; want done, closed", b, err, resp.Close)
			}
			select {
			case r := <-shut:
				if stalled := watch.Worst(); r.err == nil || r.took < deadline || r.took > deadline+5*time.Second+stalled {
					t.Errorf("Shutdown returned %v after %v (stalled %v), want the deadline's error after %v", r.err, r.took, stalled, deadline)
				}
			case <-time.After(deadline + 30*time.Second):
				t.Fatal("Shutdown did not return")
			}
			srv.Close()
			if err := <-served; err != http.ErrServerClosed {
				t.Errorf("Serve returned %v", err)
			}
			// No goroutine of the front end or of net/http's server lives on.
			deadline := time.Now().Add(30 * time.Second)
			for {
				buf := make([]byte, 1<<20)
				stacks := string(buf[:runtime.Stack(buf, true)])
				left := 0
				for _, g := range strings.Split(stacks, "\n\n") {
					if strings.Contains(g, "proxy.(*leanConn)") || strings.Contains(g, "proxy.(*front)") ||
						strings.Contains(g, "net/http.(*conn).serve") && strings.Contains(g, "proxy.(*Proxy)") {
						left++
					}
				}
				if left == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d goroutines of the server left after Shutdown:\n%s", left, stacks)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// acceptCounter counts the connections its listener accepted: a test
// waits for the server to hold them before it acts.
type acceptCounter struct {
	net.Listener
	accepted atomic.Int64
}

func (l *acceptCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// TestLeanFrontTrickledHeadCost: a large head sent in many small writes
// costs the front end work in proportion to its length, not to its length
// times the number of reads (parsing it again from its start at every
// read made a 64 KiB head of short lines, sent 8 bytes at a time, cost a
// core seconds), and the head, whole, is still served or handed over.
func TestLeanFrontTrickledHeadCost(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t)
	_, url, _, srv := gatewayServer(t, Config{Routes: []Route{{Upstream: "http://" + up.ln.Addr().String()}}})
	f := srv.(*front)
	for _, tc := range []struct {
		name, head string
		chunk      int
		lean       bool
	}{
		{"short lines", "GET /plain HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("a:\r\n", 12000) + "\r\n", 16, true},
		{"bare LF", "GET /plain HTTP/1.1\nHost: a\n" + strings.Repeat("a:\n", 12000) + "\n", 16, false},
		{"split end", "GET /plain HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("b:\r\n", 1000) + "\r\n", 1, true},
	} {
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		looked, served := f.looked.Load(), f.served.Load()
		go func() {
			for i := 0; i < len(tc.head); i += tc.chunk {
				if _, err := io.WriteString(c, tc.head[i:min(i+tc.chunk, len(tc.head))]); err != nil {
					return
				}
				if i%(64*tc.chunk) == 0 {
					time.Sleep(time.Millisecond) // small reads
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", tc.name, resp, err)
		}
		if got := f.served.Load() - served; (got == 1) != tc.lean {
			t.Errorf("%s: served by the front end: %d", tc.name, got)
		}
		if n := f.looked.Load() - looked; n > 4*uint64(len(tc.head)) {
			t.Errorf("%s: the front end looked at %d bytes for a head of %d", tc.name, n, len(tc.head))
		}
	}
}

// FuzzHeadEnds: the front end skips parsing between reads while the new
// bytes hold no end of a head; it must never skip a head the parser would
// take or decline whole (the request would hang until its timeout). For
// every split of the bytes into what came before and after a read: if
// the parser found the first part incomplete and takes the whole, the
// scan of the new bytes finds an end.
func FuzzHeadEnds(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\nGET / HTTP/1.1\r\n",
		"OPTIONS /a HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\n",
		"HEAD / HTTP/1.1\r\nHost: a\r\nX:\r\n\r\n",
	} {
		for k := range len(s) + 1 {
			f.Add([]byte(s), k)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, k int) {
		if k < 0 || k > len(b) {
			return
		}
		const max = 1 << 12
		if _, res := h1.Parse(b[:k], max); res != h1.Incomplete || k < len("OPTIONS /") || len(b) >= max {
			return
		}
		if _, res := h1.Parse(b, max); res == h1.Incomplete {
			return
		}
		// The whole is taken or declined. A decline the scan misses is
		// only later (net/http then reads the same bytes); a head taken
		// must be seen.
		if h, res := h1.Parse(b, max); res == h1.OK && !headEnds(b, k) {
			t.Fatalf("the head of %d bytes in %q is complete after byte %d, and the scan of the bytes after it misses its end", h.Len, b, k)
		}
	})
}

// TestLeanFrontShutdownRecordsCutRequests: a single node stopped with
// requests in flight that outlast its drain (an upstream that does not
// answer, a client that does not read) cuts them, and their events are in
// the ledger all the same, lean and net/http alike.
func TestLeanFrontShutdownRecordsCutRequests(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			arrived := make(chan struct{}, 2)
			var bigSent atomic.Int64
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				arrived <- struct{}{}
				if r.URL.Path == "/big" {
					for i := 0; i < 1<<10; i++ {
						n, err := w.Write(make([]byte, 64<<10))
						bigSent.Add(int64(n))
						if err != nil {
							return
						}
					}
					return
				}
				select {
				case <-r.Context().Done():
				case <-time.After(time.Minute):
				}
			})
			// 6 s, not 2 s: the cut requests' events are waited for, and
			// flushed into the ledger, within shares of what is left after
			// the drain (40 %): 175 ms each of 2 s, which a loaded machine
			// overran (load 15, -test.cpu 1: 'big false', the flush
			// abandoned, in 4 of 40 runs). The default is 15 s.
			const budget = 6 * time.Second
			dir := t.TempDir()
			_, gw, stop := serveGateway(t, Config{HTTP1: mode, DataDir: dir, Routes: []Route{{Upstream: up.URL}},
				Timeouts: Timeouts{Shutdown: budget}})
			for _, raw := range []string{"GET /hang HTTP/1.1\r\nHost: a\r\nX-Request-Id: cut-hang\r\n\r\n",
				"GET /big HTTP/1.1\r\nHost: a\r\nX-Request-Id: cut-big\r\n\r\n"} {
				c, err := net.Dial("tcp", strings.TrimPrefix(gw, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				io.WriteString(c, raw)
			}
			for range 2 {
				select {
				case <-arrived:
				case <-time.After(30 * time.Second):
					t.Fatal("the requests did not reach the upstream")
				}
			}
			// The big answer streams to a client that does not read; it
			// fills the buffers on the way long before the drain ends
			// (64 MiB cannot fit), and the stop finds it blocked there.
			waitFor(t, "the big answer streaming", func() bool { return bigSent.Load() >= 1<<20 })
			watch := stalltest.Start(t)
			start := time.Now()
			err := stop()
			if err != nil {
				t.Logf("stop: %v", err)
			}
			took, stalled := time.Since(start), watch.Worst()
			found := map[string]bool{}
			for _, ev := range ledgerEvents(t, dir+"/ledger") {
				if ev.Action == event.ActionHTTPRequest {
					found[ev.RequestID] = true
				}
			}
			missing := 0
			for _, id := range []string{"cut-hang", "cut-big"} {
				if !found[id] {
					missing++
				}
			}
			// Nothing lost, or lost and said: a ledger whose appends (an
			// fdatasync) outlast the flush's share of the shutdown loses
			// the events not yet written, and the shutdown counts them
			// (under load: the 1 s share of 6 s overrun, the /big event
			// still queued). Events lost without the count (a handler not
			// waited for: its event finds the queue closed) fail.
			said := 0
			if m := regexp.MustCompile(`(\d+) events accepted but not written are lost`).FindStringSubmatch(fmt.Sprint(err)); m != nil {
				said, _ = strconv.Atoi(m[1])
			}
			// Within the budget, but for a loaded machine's lateness (a
			// half, and the longest stall of this process meanwhile); far
			// short of the hanging request's minute.
			if missing > said || took > budget+budget/2+stalled {
				t.Errorf("after a stop of %v (stalled %v), access events of the cut requests: hang %v, big %v (stop: %v)", took, stalled, found["cut-hang"], found["cut-big"], err)
			} else if missing > 0 {
				t.Logf("the ledger was too slow for the flush's share: %d cut requests' events lost and counted", missing)
			}
		})
	}
}

// TestUnsolicitedUpstreamAnswerNotServed: an upstream that sends more
// after an answer (a Content-Length that undercounts, an app writing on
// after its answer) must not have those bytes taken for the answer to
// the next request on the pooled connection — another client's: the
// gateway does not reuse a connection with bytes waiting on it, as
// net/http's Transport drops one that speaks while idle. Both listeners
// (the fast path serves both).
func TestUnsolicitedUpstreamAnswerNotServed(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			// The extra answer is written once the first is, a little
			// later; the test waits until it is written (on loopback: in
			// the gateway's socket) before the next client asks. One that
			// came after the next request went out could not be told from
			// its answer, by the gateway or by net/http's Transport: the
			// flake seen when a fixed 100 ms wait was too short under load.
			poisoned := make(chan struct{}, 1)
			ln := serveTCP(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if req.URL.Path == "/poison" {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
						time.Sleep(30 * time.Millisecond)
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\npoisoned")
						poisoned <- struct{}{}
						continue
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nvictim")
				}
			})
			_, url, _ := gateway(t, Config{HTTP1: mode, Routes: []Route{{Upstream: "http://" + ln.Addr().String()}}})
			get := func(path string) string {
				c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n")
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				return string(b)
			}
			for range 3 {
				if got := get("/poison"); got != "ok" {
					t.Fatalf("the first client got %q", got)
				}
				select {
				case <-poisoned: // the extra answer is at the gateway
				case <-time.After(30 * time.Second):
					t.Fatal("the upstream did not write its extra answer in 30 s")
				}
				if got := get("/victim"); got != "victim" {
					t.Fatalf("the next client got %q, sent after the answer to another's request", got)
				}
			}
		})
	}
}

// stuckSink is a sink whose writes wait until release is closed.
type stuckSink struct{ release chan struct{} }

func (s *stuckSink) Write(context.Context, [][]byte) error { <-s.release; return nil }
func (s *stuckSink) Close() error                          { return nil }

// TestLeanFrontQueuedEventsKeepNoHead: while the sink is slow, the events
// waiting to be written keep the strings of their requests they record
// (httpaudit counts them against MaxQueueBytes), not the whole heads those
// strings were cut from: 200 requests with 200 KiB of junk fields each
// must not keep 40 MiB alive. Not parallel: it measures the heap.
func TestLeanFrontQueuedEventsKeepNoHead(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	for _, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		t.Run(mode, func(t *testing.T) {
			sink := &stuckSink{release: make(chan struct{})}
			cfg := Config{HTTP1: mode, Routes: []Route{{Upstream: up.URL}}, MaxHeaderBytes: 256 << 10, Sink: sink}
			p, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := listen(p, cfg, ln)
			defer func() {
				close(sink.release)
				srv.Close()
				p.Close()
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			get := func(extra string) {
				io.WriteString(c, "GET /plain?q=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: junk-sender\r\nReferer: http://r/\r\n"+extra+"\r\n")
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
			}
			get("") // the connection's buffers, the pools
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			before := ms.HeapAlloc
			junk := "X-Junk: " + strings.Repeat("j", 200<<10) + "\r\n"
			const n = 200
			for range n {
				get(junk)
			}
			runtime.GC()
			runtime.ReadMemStats(&ms)
			grew := int64(ms.HeapAlloc) - int64(before)
			if q := p.Stats().Events.Queued; q < n {
				t.Fatalf("%d events waiting, want %d", q, n)
			}
			t.Logf("the heap grew by %d KiB with %d events waiting", grew>>10, n)
			if grew > 12<<20 {
				t.Errorf("the heap grew by %d MiB with %d events waiting: they keep their requests' heads (%d MiB of them)", grew>>20, n, n*(200<<10)>>20)
			}
		})
	}
}

// TestLeanFrontBytesWhileServing: a connection is read in one operation
// whose readiness is reset once (readStep), and between requests the
// front end waits without a read first. Bytes that come while a request
// is served — a small next request, a client's end — must then still
// wake it: the next request is answered at once (not after the idle
// timeout), and an end after an answer closes the connection.
func TestLeanFrontBytesWhileServing(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(50 * time.Millisecond)
		}
		io.WriteString(w, r.URL.Path)
	})
	_, url, _, srv := gatewayServer(t, Config{Routes: []Route{{Upstream: up.URL}}, Timeouts: Timeouts{Idle: 10 * time.Second}})
	addr := strings.TrimPrefix(url, "http://")
	// The bounds below (2 s, against the idle timeout's 10 s) allow the
	// longest stall of this process seen while the test waited (a loaded
	// machine stops it for seconds); the reads' deadlines outlast them.
	watch := stalltest.Start(t)
	for i := range 5 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
		time.Sleep(20 * time.Millisecond) // the first request is at the upstream
		watch.Reset()
		io.WriteString(c, "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
		br := bufio.NewReader(c)
		start := time.Now()
		c.SetReadDeadline(start.Add(30 * time.Second))
		for _, want := range []string{"/slow", "/fast"} {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("round %d, %s: %v after %v", i, want, err, time.Since(start))
			}
			b, _ := io.ReadAll(resp.Body)
			if string(b) != want {
				t.Fatalf("round %d: answer %q, want %q", i, b, want)
			}
		}
		if took, stalled := time.Since(start), watch.Worst(); took > 2*time.Second+stalled {
			t.Fatalf("round %d: both answers took %v (stalled up to %v)", i, took, stalled)
		}
		// The client's end, sent while a request is served (which it
		// cancels, as with net/http): the connection is closed.
		io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
		time.Sleep(5 * time.Millisecond)
		c.(*net.TCPConn).CloseWrite()
		if _, took, stalled, err := stalltest.ReadCut(c, br, watch, 5*time.Second); err != nil || took > 2*time.Second+stalled {
			t.Fatalf("round %d: after the client's end: %v after %v (stalled up to %v), want the connection closed", i, err, took, stalled)
		}
		c.Close()
	}
	if f := srv.(*front); f.served.Load() != 15 || f.handed.Load() != 0 {
		t.Errorf("served %d, handed %d, want 15 and 0", f.served.Load(), f.handed.Load())
	}
}
