package httpaudit

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/redact"
	"github.com/trailguard/trailguard/sink"
)

// accessCase is one request and what its handler does, for comparing the
// direct encoding of access events with the event path.
type accessCase struct {
	method, path, rawPath, rawQuery string
	ua, referer, header, remote     string
	xff, body, contentType          string
	requestID, traceparent          string
	status, write                   int
	user                            User
	setPath                         string // given to SetPath by the handler
}

// serveCase serves c through l and returns the request's state once the
// middleware has finished with it (the writer only reads it from then on).
func serveCase(t testing.TB, l *Logger, c accessCase) *state {
	t.Helper()
	r := &http.Request{
		Method:     c.method,
		URL:        &url.URL{Path: c.path, RawPath: c.rawPath, RawQuery: c.rawQuery},
		Header:     http.Header{},
		RemoteAddr: c.remote,
		Body:       http.NoBody,
	}
	set := func(k, v string) {
		if v != "" {
			r.Header[k] = []string{v}
		}
	}
	set("User-Agent", c.ua)
	set("Referer", c.referer)
	set("X-Debug", c.header)
	set("Authorization", c.header)
	set("X-Forwarded-For", c.xff)
	set("Content-Type", c.contentType)
	set("X-Request-Id", c.requestID)
	set("Traceparent", c.traceparent)
	if c.body != "" {
		r.Body = io.NopCloser(strings.NewReader(c.body))
		r.ContentLength = int64(len(c.body))
	}
	var st *state
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st = stateFrom(r.Context())
		if c.setPath != "" {
			SetPath(r.Context(), c.setPath)
		}
		io.Copy(io.Discard, r.Body)
		if c.user.Name != "" || c.user.ID != "" || c.user.Roles != nil {
			SetUser(r.Context(), c.user)
		}
		if c.status != 0 {
			w.WriteHeader(c.status)
		}
		if c.write > 0 {
			w.Write(bytes.Repeat([]byte("x"), c.write))
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), r)
	return st
}

// checkDirect compares the two encodings of st's access event.
func checkDirect(t testing.TB, l *Logger, st *state) []byte {
	t.Helper()
	id := []byte("01a213cb-c08f-7a0b-beb8-a7736a357c1a")
	wc := writerCache{memo: l.red.NewMemo(), now: l.stamp()}
	got, ok := l.appendAccess(nil, st, id, &wc, nil)
	if !ok {
		t.Fatal("appendAccess refused a request without hooks")
	}
	if again, _ := l.appendAccess(nil, st, id, &wc, nil); !bytes.Equal(again, got) { // from the caches
		t.Fatalf("encoded again with the time cache and the scrubbing memo:\n%s\n%s", again, got)
	}
	for k := range wc.gates.g { // every kind past the memo (memoGates)
		wc.gates.g[k] = memoGate{bypass: true}
	}
	if again, _ := l.appendAccess(nil, st, id, &wc, nil); !bytes.Equal(again, got) {
		t.Fatalf("encoded again with the memo bypassed:\n%s\n%s", again, got)
	}
	ev := l.finish(st, wc.now)
	ev.ID = string(id)
	want := ev.AppendJSON(nil)
	if !bytes.Equal(got, want) {
		t.Fatalf("direct encoding differs from the event's:\n got %s\nwant %s", got, want)
	}
	// (Validate insists on @timestamp, which a zero clock leaves out.)
	if err := event.Validate(got); err != nil && !l.startOf(&st.info, wc.now).IsZero() {
		t.Fatalf("not valid ECS: %v\n%s", err, got)
	}
	checkEncoded(t, l, st, &wc, id, got)
	return got
}

// checkEncoded holds the notes appendAccess takes for an EncodedSink to
// what they are for: event.AppendEncoded over them stores exactly what
// event.AppendNormalizedSpans, parsing the record, stores (the same
// bytes, the same spans), and takes every record the normaliser takes.
func checkEncoded(t testing.TB, l *Logger, st *state, wc *writerCache, id, want []byte) {
	t.Helper()
	var enc event.EncodedSpans
	enc.Reset()
	prefix := []byte(`garbage before the record`)
	got, ok := l.appendAccess(prefix, st, id, wc, &enc)
	if !ok || !bytes.Equal(got[len(prefix):], want) {
		t.Fatalf("appendAccess with notes wrote another record:\n%s\n%s", got[len(prefix):], want)
	}
	rec := got[len(prefix):]
	now := time.Date(2026, 11, 30, 15, 0, 0, 123, time.UTC)
	newID := func(b []byte) []byte { return append(b, "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"...) }
	var wantSp, gotSp event.Spans
	norm, wantID, normOK := event.AppendNormalizedSpans([]byte("x"), rec, now, newID, &wantSp)
	out, gotID, encOK := event.AppendEncoded([]byte("x"), rec, &enc, now, newID, &gotSp)
	// The normaliser stores the record as it came, with event.ingested
	// added (it writes some strings otherwise: "\ufffd" as the character,
	// for one; AppendEncoded leaves those records to it).
	asIs := false
	if normOK && wantSp.OK() {
		vs, ve := wantSp.Span(event.SpanField("event.ingested"))
		stored := norm[1:]
		ms := vs - len(`,"ingested":`)
		asIs = string(stored[:ms])+string(stored[ve:]) == string(rec)
	}
	switch {
	case asIs && !encOK:
		t.Fatalf("the normaliser takes the record as it is, AppendEncoded does not (the notes do not describe it):\n%s", rec)
	case !normOK && encOK:
		t.Fatalf("AppendEncoded takes a record the normaliser does not:\n%s\n%s", rec, out)
	case encOK && (!bytes.Equal(out, norm) || gotSp != wantSp || !bytes.Equal(gotID, wantID)):
		t.Fatalf("AppendEncoded differs from the normaliser:\n got %s\nwant %s\nspans %+v\n want %+v\nid %q want %q", out, norm, gotSp, wantSp, gotID, wantID)
	}
}

func directLogger(t testing.TB, cfg Config) *Logger {
	t.Helper()
	if cfg.Sink == nil {
		cfg.Sink = sink.NewWriter(io.Discard)
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestAccessDirectMatchesEvent holds the writer's direct encoding of access
// events to the bytes event.AppendJSON writes for the event finish builds:
// every optional member present and absent, secrets in every field, odd
// bytes, forwarded clients, captured bodies, recorded headers, a zero
// clock. The events the writer actually wrote are compared too, each
// request served twice.
func TestAccessDirectMatchesEvent(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cases := []accessCase{
		{method: "GET", path: "/api/v1/orders", rawQuery: "page=2&sort=desc", remote: "192.0.2.1:1234",
			requestID: "5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1e", traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			ua: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"},
		{method: "POST", path: "/login", remote: "10.1.2.3:80", xff: "203.0.113.7, 10.9.9.9", status: 401, write: 12,
			body: `{"user":"bob","password":"hunter2"}`, contentType: "application/json", user: User{ID: "u1", Name: "bob", Roles: []string{"admin", "x\"y"}}},
		{method: "PUT", path: "/files/../x y/" + "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", rawPath: "/files/%2e%2e/x%20y/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
			rawQuery: "access_token=abc&q=4111111111111111", referer: "https://x.example/?token=abc", header: "Bearer abcdefgh12345", remote: "[2001:db8::1]:443"},
		{method: "G\"ET", path: "", remote: "not an address", status: 500},
		{method: "PROPFIND", path: "/dav/x", remote: "192.0.2.1:1", status: 207}, // kept as sent, in the reqOpt
		{method: "DELETE", path: "/a\x00b\n\u2028\xff", ua: "ua\"\\\x7f", remote: "[::ffff:192.0.2.9]:5", write: 1},
		{method: "GET", path: "*", remote: "192.0.2.1:0", body: "a=1&password=x", contentType: "application/x-www-form-urlencoded"},
		{method: "GET", path: "/p(1)!*'", remote: "192.0.2.1:1", user: User{Name: strings.Repeat("n", 5000)}},
		{method: "GET", path: "/" + strings.Repeat("é", 3000), rawQuery: strings.Repeat("a=b&", 1000), remote: "192.0.2.1:1"},
		{method: strings.Repeat("M", 17), path: "/x", remote: "192.0.2.1:1", body: "{not json", contentType: "application/json"},
		{method: "POST", path: "/login;jsessionid=1", rawQuery: "a=1", remote: "192.0.2.1:1", setPath: "/login"},
		{method: "GET", path: "/api/./x y/../" + "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", remote: "192.0.2.1:1", setPath: "/api/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"},
		{method: "GET", path: "/same", remote: "192.0.2.1:1", setPath: "/same"},
		// The writer's cache of the port's text: written as a number, not
		// as the address spelled it, and formatted again for each address.
		{method: "GET", path: "/p", remote: "192.0.2.1:0080"},
		{method: "GET", path: "/p", remote: "192.0.2.1:8080"},
		{method: "GET", path: "/p", remote: "[2001:db8::2]:123456789012"},
		{method: "GET", path: "/p", remote: "[2001:db8::2]:-7"},
	}
	clocks := map[string]func() time.Time{
		"real": time.Now,
		"zero": func() time.Time { return time.Time{} },
		"backwards": func() func() time.Time {
			var mu sync.Mutex
			t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
			return func() time.Time {
				mu.Lock()
				defer mu.Unlock()
				t0 = t0.Add(-time.Millisecond)
				return t0
			}
		}(),
	}
	for clock, now := range clocks {
		var out syncBuffer
		l := directLogger(t, Config{
			Sink: sink.NewWriter(&out), ServiceName: "svc \"q\"", HostName: "h\u2028", Now: now,
			TrustedProxies: trusted, MaxBody: 1 << 10, MaxFieldBytes: 256,
			Headers: []string{"X-Debug", "authorization", "Authorization", "X-Absent"},
		})
		// Twice: the writer's second encoding of each comes from its
		// caches (scrubbing memo, connection address, time).
		var want [][]byte
		for range 2 {
			for _, c := range cases {
				want = append(want, checkDirect(t, l, serveCase(t, l, c)))
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("%s clock: %d lines written, want %d", clock, len(lines), len(want))
		}
		for i, line := range lines {
			// The writer minted its own event.id.
			ev, err := event.Decode([]byte(line))
			if err != nil {
				t.Fatalf("decode %s: %v", line, err)
			}
			got := strings.Replace(line, ev.ID, "01a213cb-c08f-7a0b-beb8-a7736a357c1a", 1)
			if got != string(want[i]) {
				t.Errorf("%s clock, case %d: written\n%s\nwant\n%s", clock, i, got, want[i])
			}
		}
	}
	// Without service, host or recorded headers, and with no request id
	// option changes: the tail and header members are left out.
	l := directLogger(t, Config{HostName: "-"})
	l.cfg.HostName, l.tail, l.tailSpans = "", accessTail("", ""), nil
	checkDirect(t, l, serveCase(t, l, cases[0]))
}

func FuzzAccessDirect(f *testing.F) {
	f.Add("GET", "/api/v1/orders", "", "page=2", "Mozilla/5.0", "", "", "192.0.2.1:1", "", "", 200, 10, "alice",
		"5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1e", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("POST", "/x y", "/x%20y", "password=1", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "https://r/?token=x",
		"Bearer abcdefgh1", "10.0.0.1:9", "198.51.100.1", `{"password":"x"}`, 403, 0, "", "a\"b", "00-x")
	f.Add("\x00", "\xff", "%zz", "&&=", "\u2028", "\n", "\"", "[::1]:1", "10.0.0.2, 1.1.1.1", "a=1", 0, 1, "\\",
		"req.1:2_3-4", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
	redactors := map[string]*redact.Redactor{}
	for _, m := range []redact.Mode{redact.Remove, redact.Mask, redact.HMAC} {
		r, err := redact.New(redact.Config{Mode: m, Secret: []byte("0123456789abcdef-fuzz"), Emails: m == redact.Mask})
		if err != nil {
			f.Fatal(err)
		}
		redactors[m.String()] = r
	}
	var loggers []*Logger
	for _, r := range redactors {
		loggers = append(loggers, directLogger(f, Config{
			Redactor: r, ServiceName: "svc", HostName: "host", MaxBody: 256, MaxFieldBytes: 64,
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			Headers:        []string{"X-Debug", "Authorization"},
			QueueSize:      1 << 16,
		}))
	}
	f.Fuzz(func(t *testing.T, method, path, rawPath, rawQuery, ua, referer, header, remote, xff, body string, status, write int, user, requestID, traceparent string) {
		c := accessCase{method: method, path: path, rawPath: rawPath, rawQuery: rawQuery, ua: ua, referer: referer,
			requestID: requestID, traceparent: traceparent,
			header: header, remote: remote, xff: xff, body: body, status: 200 + int(uint(status)%400), write: int(uint(write) % 64),
			contentType: "application/x-www-form-urlencoded", user: User{Name: user}}
		if strings.HasPrefix(body, "{") {
			c.contentType = "application/json"
		}
		for _, l := range loggers {
			checkDirect(t, l, serveCase(t, l, c))
		}
		// The same request with a path the handler decided on (the
		// gateway's normalised path, SetPath): url.path is then the
		// referrer's text, and url.original the path as sent.
		if referer != "" {
			c.setPath = referer
			for _, l := range loggers {
				checkDirect(t, l, serveCase(t, l, c))
			}
		}
	})
}

// TestTimeCache: the cached text of a timestamp is event.AppendTime's,
// across seconds, days, years, zones and the years it cannot cache.
func TestTimeCache(t *testing.T) {
	var tc timeCache
	base := time.Date(2026, 12, 31, 23, 59, 58, 999999990, time.UTC)
	for i := range 5000 {
		tm := base.Add(time.Duration(i) * 3 * time.Millisecond / 7)
		if i%50 == 0 {
			tm = tm.In(time.FixedZone("X", 3600*(i%24-12)))
		}
		if i%97 == 0 {
			tm = tm.AddDate(8000-i%3*9000, 0, 0) // years beyond 9999 and before 0
		}
		if got, want := string(tc.append(nil, tm)), string(event.AppendTime(nil, tm)); got != want {
			t.Fatalf("%v: %s, want %s", tm, got, want)
		}
	}
}

// TestEscapedPath holds the shortcut to url.URL.EscapedPath for every byte.
func TestEscapedPath(t *testing.T) {
	for c := range 256 {
		for _, p := range []string{string(rune(c)), "/a" + string([]byte{byte(c)}) + "b", "*"} {
			want := (&url.URL{Path: p}).EscapedPath()
			if got := escapedPath(p, ""); got != want {
				t.Errorf("escapedPath(%q) = %q, want %q", p, got, want)
			}
		}
	}
}

// FuzzSplitAddr holds the fast path for "a.b.c.d:port" to the general
// parsers.
func FuzzSplitAddr(f *testing.F) {
	for _, s := range []string{"192.0.2.1:1234", "1.2.3.4:", "01.2.3.4:5", "256.1.1.1:1", "1.2.3.4:123456",
		"1.2.3.4:+5", "[::1]:80", "1.2.3.4", "1.2.3.4:5:6", "1.2.3:4", "0.0.0.0:0", "255.255.255.255:65535", "1.2.3.4.5:6"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		a1, h1, p1 := splitAddr(addr)
		a2, h2, p2 := splitAddrSlow(addr)
		if a1 != a2 || h1 != h2 || p1 != p2 {
			t.Fatalf("splitAddr(%q) = %v %q %d, the general parsers say %v %q %d", addr, a1, h1, p1, a2, h2, p2)
		}
	})
}

// TestAppendInt holds the writer's durations and byte counts to
// strconv.AppendInt's text: around every power of ten, at the ends of
// int64 and below zero.
func TestAppendInt(t *testing.T) {
	vals := []int64{0, 1, 9, 10, 99, 100, 101, 1234567, math.MaxInt64, math.MaxInt64 - 1, -1, -10, math.MinInt64}
	for p := int64(1); p <= math.MaxInt64/10; p *= 10 {
		vals = append(vals, p-1, p, p+1, 10*p-1, 10*p)
	}
	for i := range 10000 {
		vals = append(vals, int64(i)*7919, int64(i)*1_000_003_007)
	}
	for _, v := range vals {
		if got, want := string(appendInt([]byte("x"), v)), "x"+strconv.FormatInt(v, 10); got != want {
			t.Fatalf("appendInt(%d) = %q, want %q", v, got, want)
		}
	}
}

// TestAppendStatus holds the table's status codes to strconv.AppendInt's
// text, inside net/http's range and around it.
func TestAppendStatus(t *testing.T) {
	for code := -1000; code <= 2000; code++ {
		if got, want := string(appendStatus([]byte("x"), code)), "x"+strconv.Itoa(code); got != want {
			t.Fatalf("appendStatus(%d) = %q, want %q", code, got, want)
		}
	}
}

// TestMethodCode: the methods the state keeps as a code (written without
// the escaping test) are exactly what the encoder would write for them,
// each code gives its method back, and one that needs escaping or is not
// standard has no code (the request's reqOpt keeps it).
func TestMethodCode(t *testing.T) {
	for _, m := range []string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"} {
		c := methodCode(m)
		if c == 0 || methods[c-1] != m {
			t.Errorf("methodCode(%q) = %d", m, c)
		}
		if got, want := string(appendQuoted(nil, m)), string(event.AppendString(nil, m)); got != want {
			t.Errorf("%s quoted as %s, the encoder writes %s", m, got, want)
		}
	}
	for _, m := range []string{"get", "GE\\T", `G"ET`, "PROPFIND", "GETX", ""} {
		if c := methodCode(m); c != 0 {
			t.Errorf("methodCode(%q) = %d", m, c)
		}
	}
}

// TestMemoGates holds the writer's scrubbing to the redactor's verdicts
// whether a kind of value goes through the memo or past it, and checks
// that a kind whose values never repeat stops being looked up, and starts
// again once its values repeat. The values mix clean ones with secrets
// only one of the two scrubbers finds (a query parameter named like a
// credential and percent-encoded is Query's), so that a value
// scrubbed by the wrong method, or a miss taken for a clean hit, shows.
func TestMemoGates(t *testing.T) {
	red, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	l := &Logger{red: red}
	m := &memoGates{memo: red.NewMemo()}
	check := func(i int, repeat bool) {
		t.Helper()
		n := i
		if repeat {
			n = i % 8
		}
		path := fmt.Sprintf("/api/v1/orders/%d", n)
		query := fmt.Sprintf("page=%d&sort=desc&q=shoes&username=bob", n)
		if n%5 == 3 {
			path = fmt.Sprintf("/api/v1/orders/%d/Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", n)
			query = fmt.Sprintf("page=%d&pass%%77ord=s3cr3t%d", n, n)
		}
		if n%5 == 4 { // names the memo saw with harmless values (redact.Memo.QueryScan)
			query = fmt.Sprintf("page=%d&sort=4111111111111111&q=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl&password=s3cr3t%d", n, n)
		}
		if got, want := l.scrubString(m, gatePath, path), red.String(path); got != want {
			t.Fatalf("value %d: path scrubbed to %q, the redactor gives %q", i, got, want)
		}
		if got, want := l.scrubQuery(m, query), red.Query(query); got != want {
			t.Fatalf("value %d: query scrubbed to %q, the redactor gives %q", i, got, want)
		}
	}
	// The secrets are found by one method only; else the test could not
	// tell the methods apart.
	if q := "page=1&pass%77ord=s3cr3t1"; red.String(q) == red.Query(q) {
		t.Fatalf("String and Query agree on %q", q)
	}
	for i := range 4 * memoWindow {
		check(i, false)
	}
	if !m.g[gatePath].bypass || !m.g[gateQuery].bypass {
		t.Fatalf("after %d values that never repeat, the gates still ask the memo: %+v", 4*memoWindow, m.g)
	}
	if m.g[gateUA].bypass {
		t.Fatal("an unused kind's gate closed")
	}
	for i := range 4 * memoWindow * memoProbe {
		check(i, true)
	}
	if m.g[gatePath].bypass || m.g[gateQuery].bypass {
		t.Fatalf("after %d values that repeat, the gates still bypass the memo: %+v", 4*memoWindow*memoProbe, m.g)
	}
	for i := range 4 * memoWindow {
		check(i, true)
	}
}
