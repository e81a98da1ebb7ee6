package alerting

import (
	"bufio"
	"bytes"
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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/stalltest"
)

// logBuffer collects a logger's lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLog() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// slackID is the alert id in a slack notifier's message.
var slackID = regexp.MustCompile("alert `([^`]+)`")

func slackAlertID(r *http.Request) string {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if m := slackID.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

func noticeID(id, level string) Notice {
	no := notice()
	no.Alert.ID, no.Alert.Level = id, level
	return no
}

// TestNotifierQueueBytes: while a receiver hangs, 200 alerts whose
// documents hold 70 KB each (values chosen by clients) are queued for a
// notifier with queue_bytes 1 MiB: it holds at most that (measured on the
// heap too), drops the rest, the oldest of the lowest level first (a
// critical alert queued first is kept and delivered), and logs the burst
// once when it starts and once when the queue has room again. Before, the
// queue was bounded by count alone (1000 notices: ~70 MB for each
// notifier) and dropped the oldest whatever its level.
func TestNotifierQueueBytes(t *testing.T) {
	block := make(chan struct{})
	var mu sync.Mutex
	var got []string
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := slackAlertID(r)
		if calls.Add(1) == 1 {
			<-block
		}
		mu.Lock()
		got = append(got, id)
		mu.Unlock()
	}))
	defer srv.Close()
	unblock := sync.OnceFunc(func() { close(block) })
	defer unblock()
	log, lines := newLog()
	const limit = 1 << 20
	n, err := newNotifier(NotifierConfig{Type: "slack", URL: srv.URL, QueueBytes: limit, Timeout: time.Minute}, log, fastPolicy)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(0)
	n.Enqueue(noticeID("first", "high"))
	waitFor(t, "the hanging delivery", func() bool { return calls.Load() == 1 })
	n.Enqueue(noticeID("crit", "critical"))

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const flood, docBytes = 200, 70_000
	for i := range flood {
		no := noticeID(fmt.Sprint("low-", i), "low")
		no.Doc = bytes.Repeat([]byte{'A' + byte(i%26)}, docBytes)
		n.Enqueue(no)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	st := n.Stats()
	t.Logf("%d alerts of %d KB queued: %+v; heap grew %d KB", flood, docBytes/1000, st, held>>10)
	if st.QueuedBytes > limit || st.Queued < 5 || st.Queued+int(st.Dropped) != flood+1 {
		t.Errorf("stats %+v: want at most %d bytes queued, the rest of %d dropped", st, limit, flood+1)
	}
	if held > 3*limit {
		t.Errorf("the queue holds %d KB of the heap, queue_bytes is %d KB", held>>10, limit>>10)
	}
	if c := lines.count("notifier queue full"); c != 1 {
		t.Errorf("the burst of drops was logged %d times, want once:\n%s", c, lines)
	}
	unblock()
	waitFor(t, "the queue delivered", func() bool { return int(n.Stats().Sent) == flood+2-int(n.Stats().Dropped) })
	mu.Lock()
	if len(got) < 2 || got[0] != "first" || got[1] != "crit" {
		t.Errorf("delivered %v, want first, then the critical alert, then the newest low ones", got[:min(len(got), 5)])
	}
	if last := got[len(got)-1]; last != fmt.Sprint("low-", flood-1) {
		t.Errorf("the last delivered is %s, want the newest", last)
	}
	mu.Unlock()
	waitFor(t, "the end of the burst logged", func() bool { return lines.count("notifier queue has room again") == 1 })
	if !strings.Contains(lines.String(), "dropped="+fmt.Sprint(n.Stats().Dropped)) {
		t.Errorf("the end of the burst does not say how many were dropped:\n%s", lines)
	}

	// The default bound.
	d, err := NewNotifier(NotifierConfig{Type: "slack", URL: srv.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.Close(0)
	if d.maxBytes != 8<<20 || d.maxCount != 1000 {
		t.Errorf("default bounds %d notices, %d bytes", d.maxCount, d.maxBytes)
	}
}

// rawReceiver answers each request on a connection of its own with
// answer (read the request first); it returns the URL.
func rawReceiver(t *testing.T, answer func(c net.Conn)) string {
	t.Helper()
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
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				answer(c)
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/hook"
}

// TestNotifierResponseBounded: a receiver (hostile, broken, or anyone on
// the path of an http:// URL) costs an attempt bounded memory and time:
// response headers of 3 MiB are refused after 64 KiB (Go's default
// took 10 MB: the 3 MiB were read, held, and the alert counted
// delivered), an endless body is not read past a few KiB, headers that
// never come end at the timeout, and a refusal's body reaches the error
// message cut to 256 bytes and quoted (before, 512 raw bytes: escape
// sequences and line breaks into the operator's log).
func TestNotifierResponseBounded(t *testing.T) {
	big := append(append([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Big: "), bytes.Repeat([]byte("a"), 3<<20)...), "\r\n\r\n"...)
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 2048)
	endless := func(status string) func(c net.Conn) {
		return func(c net.Conn) {
			if _, err := io.WriteString(c, "HTTP/1.1 "+status+"\r\nContent-Type: text/plain\r\n\r\n"); err != nil {
				return
			}
			for range 1 << 15 { // up to 1 GiB, until the client hangs up
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}
	}
	hostile := "\x1b[2J\x1b[31m\nlevel=ERROR msg=\"forged line\"\r\n" + strings.Repeat("x", 100<<10)
	tests := []struct {
		name    string
		answer  func(c net.Conn)
		timeout time.Duration
		// within bounds the attempt's duration (before the stall allowance).
		within time.Duration
		// maxAlloc bounds the bytes allocated by the attempt.
		maxAlloc uint64
		check    func(t *testing.T, err error)
	}{
		{"3 MiB of headers", func(c net.Conn) { c.Write(big) }, 10 * time.Second, 5 * time.Second, 1 << 20,
			func(t *testing.T, err error) {
				if err == nil || !strings.Contains(err.Error(), "header") {
					t.Errorf("err %v, want the headers refused", err)
				}
			}},
		{"endless 200 body", endless("200 OK"), 10 * time.Second, 5 * time.Second, 512 << 10,
			func(t *testing.T, err error) {
				if err != nil {
					t.Errorf("err %v, want delivered", err)
				}
			}},
		{"endless 500 body", endless("500 Internal Server Error"), 10 * time.Second, 5 * time.Second, 512 << 10,
			func(t *testing.T, err error) {
				if err == nil || len(err.Error()) > 400 {
					t.Errorf("err %d bytes: %.500v", len(fmt.Sprint(err)), err)
				}
			}},
		{"headers never come", func(c net.Conn) { time.Sleep(10 * time.Second) }, time.Second, 1500 * time.Millisecond, 512 << 10,
			func(t *testing.T, err error) {
				if err == nil {
					t.Error("no error")
				}
			}},
		{"hostile refusal text", func(c net.Conn) {
			fmt.Fprintf(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n%s", len(hostile), hostile)
		}, 10 * time.Second, 5 * time.Second, 512 << 10,
			func(t *testing.T, err error) {
				if err == nil {
					t.Fatal("no error")
				}
				msg := err.Error()
				if len(msg) > 400 || strings.ContainsAny(msg, "\x1b\r\n") || !strings.Contains(msg, `\x1b[2J`) || !strings.Contains(msg, "forged") {
					t.Errorf("error message %d bytes: %.600q", len(msg), msg)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := rawReceiver(t, tt.answer)
			client := newHTTPClient(tt.timeout, nil)
			defer client.CloseIdleConnections()
			watch := stalltest.Start(t)
			var err error
			var alloc uint64
			// TotalAlloc counts every goroutine's allocations (the
			// runtime's, another test's receiver still writing): the
			// attempt is measured up to 3 times and the least kept.
			for try := range 3 {
				var ms0, ms1 runtime.MemStats
				runtime.ReadMemStats(&ms0)
				took, stalled, ok := stalltest.Run(func() {
					err = httpPost(context.Background(), client, url, []byte(`{"alert":1}`), nil)
				}, watch, tt.within+5*time.Second)
				runtime.ReadMemStats(&ms1)
				alloc = ms1.TotalAlloc - ms0.TotalAlloc
				t.Logf("try %d: %v, %d KiB allocated: %.120v", try, took.Round(time.Millisecond), alloc>>10, err)
				if !ok || took > tt.within+stalled {
					t.Fatalf("the attempt took %v (stalled %v), want at most %v", took, stalled, tt.within)
				}
				if alloc <= tt.maxAlloc {
					break
				}
			}
			if alloc > tt.maxAlloc {
				t.Errorf("the attempt allocated %d KiB, want at most %d", alloc>>10, tt.maxAlloc>>10)
			}
			tt.check(t, err)
		})
	}

	// Through a notifier: the alert is not counted delivered.
	n, err := newNotifier(NotifierConfig{Type: "slack", URL: rawReceiver(t, func(c net.Conn) { c.Write(big) })}, nil, fastPolicy)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(0)
	n.Enqueue(notice())
	waitFor(t, "the failed attempt", func() bool { return n.Stats().Failures > 0 })
	if st := n.Stats(); st.Sent != 0 {
		t.Errorf("stats %+v: an answer with 3 MiB of headers counted delivered", st)
	}
}

// TestNotifierHeadOfLine: a receiver answers 500 to one alert forever
// (its template breaks on it) and takes the others. Each alert queued
// after it arrives within a bound (the receiver's backoff after one
// failure), and the refused one is given up as undeliverable after its
// attempts and age (fastPolicy: 4 and 2 s; 8 and 15 min by default),
// logged with its id. Before, the notifier retried the first alert
// forever (backoff up to 5 min) and every later one waited behind it
// until pushed out of the queue.
func TestNotifierHeadOfLine(t *testing.T) {
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	var poisonCalls []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := slackAlertID(r)
		mu.Lock()
		defer mu.Unlock()
		if id == "poison" {
			poisonCalls = append(poisonCalls, time.Now())
			http.Error(w, "template error", http.StatusInternalServerError)
			return
		}
		arrived[id] = time.Now()
	}))
	defer srv.Close()
	log, lines := newLog()
	n, err := newNotifier(NotifierConfig{Type: "slack", URL: srv.URL}, log, fastPolicy)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(0)
	watch := stalltest.Start(t)
	n.Enqueue(noticeID("poison", "critical"))
	const later = 15
	// One failure makes the receiver wait fastPolicy.base (20 ms) at most
	// before the next notice; 500 ms leaves room for the attempts.
	laterArrive(t, n, later, &mu, arrived, 500*time.Millisecond, watch)
	waitFor(t, "the refused alert given up", func() bool { return n.Stats().Undeliverable == 1 })
	mu.Lock()
	calls := len(poisonCalls)
	age := poisonCalls[calls-1].Sub(poisonCalls[0])
	mu.Unlock()
	if calls < fastPolicy.giveUpAttempts || age < fastPolicy.giveUpAge {
		t.Errorf("given up after %d attempts over %v, want at least %d and %v", calls, age, fastPolicy.giveUpAttempts, fastPolicy.giveUpAge)
	}
	if st := n.Stats(); st.Sent != later || st.Queued != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(lines.String(), "undeliverable") || !regexp.MustCompile(`gave up.* alert=poison .*attempts=\d+`).MatchString(lines.String()) {
		t.Errorf("the give-up is not logged with the alert id:\n%s", lines)
	}
	// Its first failure and the give-up are logged, not every retry.
	if c := lines.count("alert=poison"); c != 2 {
		t.Errorf("%d log lines name the refused alert, want 2:\n%s", c, lines)
	}
	// Given up for good: not tried again.
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	if len(poisonCalls) != calls {
		t.Errorf("tried %d times after it was given up", len(poisonCalls)-calls)
	}
	mu.Unlock()
}

// laterArrive queues count alerts later-0, later-1, … 100 ms apart on n,
// waits until the receiver has them all in arrived (written under mu) and
// checks that each arrived within bound of being queued, or bound and
// the longest stall watch saw. It returns the longest wait.
func laterArrive(t *testing.T, n *Notifier, count int, mu *sync.Mutex, arrived map[string]time.Time, bound time.Duration, watch *stalltest.Watch) (worst time.Duration) {
	t.Helper()
	queued := map[string]time.Time{}
	for i := range count {
		id := fmt.Sprint("later-", i)
		queued[id] = time.Now()
		n.Enqueue(noticeID(id, "high"))
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(t, "the later alerts", func() bool { mu.Lock(); defer mu.Unlock(); return len(arrived) == count })
	mu.Lock()
	defer mu.Unlock()
	for id, at := range queued {
		took := arrived[id].Sub(at)
		worst = max(worst, took)
		if took > bound+watch.Worst() {
			t.Errorf("%s arrived %v after it was queued (stalled %v), want within %v", id, took, watch.Worst(), bound)
		}
	}
	return worst
}

// TestNotifierReceiverDown: a receiver wholly down (answering 503, or
// closing every connection) for 1.5 s, scaled from a 5-minute outage
// against the 15-minute give-up age (fastPolicy: 2 s), while 30 alerts
// are queued: nothing is lost, the receiver is tried at the receiver's
// backoff rather than once a notice (not burning through the queue, each
// notice's attempts counting towards its give-up), and once it is back
// every alert arrives, in order (but for the one tried as it came back),
// within a bound.
func TestNotifierReceiverDown(t *testing.T) {
	for _, mode := range []string{"503", "hang up"} {
		t.Run(mode, func(t *testing.T) {
			var down atomic.Bool
			var mu sync.Mutex
			var got []string
			var downCalls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				id := slackAlertID(r)
				if down.Load() {
					downCalls.Add(1)
					if mode == "503" {
						http.Error(w, "maintenance", http.StatusServiceUnavailable)
						return
					}
					c, _, err := http.NewResponseController(w).Hijack()
					if err == nil {
						c.Close()
					}
					return
				}
				mu.Lock()
				got = append(got, id)
				mu.Unlock()
			}))
			defer srv.Close()
			policy := fastPolicy
			policy.giveUpAge, policy.receiverMax = 3*time.Second, 300*time.Millisecond
			log, lines := newLog()
			n, err := newNotifier(NotifierConfig{Type: "slack", URL: srv.URL}, log, policy)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close(0)
			watch := stalltest.Start(t)
			down.Store(true)
			const alerts, outage = 30, 1500 * time.Millisecond
			start := time.Now()
			for i := range alerts {
				n.Enqueue(noticeID(fmt.Sprint("a-", i), "high"))
				time.Sleep(outage / alerts)
			}
			time.Sleep(time.Until(start.Add(outage)))
			down.Store(false)
			up := time.Now()
			calls := downCalls.Load()
			waitFor(t, "every alert delivered", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == alerts })
			took := time.Since(up)
			// The receiver has the last one before the notifier has its
			// answer.
			waitFor(t, "the last answer", func() bool { return n.Stats().Sent == alerts })
			st := n.Stats()
			t.Logf("%d attempts in the outage of %v; all delivered %v after; %+v", calls, outage, took.Round(time.Millisecond), st)
			if st.Undeliverable != 0 || st.Dropped != 0 || st.Refused != 0 || st.Sent != alerts {
				t.Errorf("stats %+v: alerts lost in a short outage", st)
			}
			// The receiver's backoff doubles from 20 ms to 300 ms (less
			// jitter): 13 attempts in 1.5 s at most; a notice each would
			// be 30 and more.
			if calls > 20 {
				t.Errorf("%d attempts in an outage of %v: the receiver was not backed off", calls, outage)
			}
			if took > time.Second+watch.Worst() {
				t.Errorf("delivered %v after the receiver was back (stalled %v)", took, watch.Worst())
			}
			// The outage is logged as one: a first failure, "failing
			// every attempt" at 3 in a row (and every 10th), its end.
			if a, b, c := lines.count("notifier failed"), lines.count("failing every attempt"), lines.count("answers again"); a != 1 || b < 1 || b > 3 || c != 1 {
				t.Errorf("the outage logged as %d, %d, %d lines:\n%s", a, b, c, lines)
			}
			// In order, but for the notice tried when the receiver came
			// back, which may go ahead of those before it.
			mu.Lock()
			rest := slices.DeleteFunc(slices.Clone(got), func(id string) bool { return id == got[0] })
			for i := 1; i < len(rest); i++ {
				if idNum(rest[i]) < idNum(rest[i-1]) {
					t.Errorf("delivered in the order %v", got)
					break
				}
			}
			mu.Unlock()
		})
	}
}

func idNum(id string) int {
	var k int
	fmt.Sscanf(id, "a-%d", &k)
	return k
}

// TestNotifierRetryAfter: a receiver answering 429 (or 503) with
// Retry-After is not tried again before then, within a cap
// (fastPolicy: 1 s; 5 min by default). Before, the next attempt came at
// the backoff (20 ms here).
func TestNotifierRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		status         int
		header         string
		atLeast, limit time.Duration
	}{
		{429, "1", 900 * time.Millisecond, 1500 * time.Millisecond},
		{503, "1", 900 * time.Millisecond, 1500 * time.Millisecond},
		{429, time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), 900 * time.Millisecond, 1500 * time.Millisecond},
		{429, "86400", 900 * time.Millisecond, 1500 * time.Millisecond},
		{429, "", 0, 500 * time.Millisecond},
	} {
		t.Run(fmt.Sprint(tt.status, " ", tt.header), func(t *testing.T) {
			var mu sync.Mutex
			var calls []time.Time
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, time.Now())
				if len(calls) == 1 {
					if tt.header != "" {
						w.Header().Set("Retry-After", tt.header)
					}
					w.WriteHeader(tt.status)
				}
			}))
			defer srv.Close()
			n, err := newNotifier(NotifierConfig{Type: "slack", URL: srv.URL}, nil, fastPolicy)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close(0)
			watch := stalltest.Start(t)
			n.Enqueue(notice())
			waitFor(t, "the delivery", func() bool { return n.Stats().Sent == 1 })
			mu.Lock()
			gap := calls[1].Sub(calls[0])
			mu.Unlock()
			if gap < tt.atLeast || gap > tt.limit+watch.Worst() {
				t.Errorf("tried again %v later (stalled %v), want within [%v, %v]", gap, watch.Worst(), tt.atLeast, tt.limit)
			}
		})
	}
}

// TestNotifierManyRefused: a receiver refuses (500) every alert of one
// attacker (their values break its template: 30 of them, queued first)
// and takes the others: the others still arrive within a bound of being
// queued. A notice that failed while the next one was delivered is
// suspect: tried only when no other notice is due, and its failures do
// not back off the receiver; otherwise the refused ones, older, were
// tried first at every turn, and their failures in a row looked like an
// outage that held every later alert for the receiver's backoff (1 min
// at most by default, 1 s here).
func TestNotifierManyRefused(t *testing.T) {
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	var refused atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := slackAlertID(r)
		if strings.HasPrefix(id, "attacker-") {
			refused.Add(1)
			http.Error(w, "template error", http.StatusInternalServerError)
			return
		}
		mu.Lock()
		arrived[id] = time.Now()
		mu.Unlock()
	}))
	defer srv.Close()
	policy := retryPolicy{base: 50 * time.Millisecond, noticeMax: 2 * time.Second, receiverMax: time.Second,
		giveUpAttempts: 4, giveUpAge: 4 * time.Second, retryAfterMax: time.Second}
	n, err := newNotifier(NotifierConfig{Type: "slack", URL: srv.URL}, nil, policy)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(0)
	watch := stalltest.Start(t)
	for i := range 30 {
		n.Enqueue(noticeID(fmt.Sprint("attacker-", i), "high"))
	}
	const later = 30
	// At most the receiver's backoff cap (1 s here, 1 min by default)
	// while the refused alerts are tried before they are suspect.
	worst := laterArrive(t, n, later, &mu, arrived, time.Second, watch)
	t.Logf("latest of %d alerts behind 30 refused: %v; %d refusals meanwhile", later, worst, refused.Load())
	waitFor(t, "the refused alerts given up", func() bool { return n.Stats().Undeliverable == 30 })
}

// TestNotifierCloseMidAttempt: Close(0) while a notice is being
// delivered and others wait returns at once, tries nothing more, and
// logs what was left. Before, the attempt cut short requeued its notice,
// due at once, and the delivery loop took it and failed it again (the
// context was cancelled) without end: Close never returned and the loop
// spun a core (a collector's shutdown hung whenever a notice was in
// flight).
func TestNotifierCloseMidAttempt(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		// Read to the end: the server notices the client hanging up
		// (the request's context) only then.
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	log, lines := newLog()
	n, err := newNotifier(NotifierConfig{Type: "slack", URL: srv.URL, Timeout: time.Minute}, log, fastPolicy)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		n.Enqueue(noticeID(fmt.Sprint("a-", i), "high"))
	}
	waitFor(t, "the delivery in flight", func() bool { return calls.Load() == 1 })
	closed := make(chan struct{})
	go func() { defer close(closed); n.Close(0) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("Close(0) with a delivery in flight has not returned in 10 s (%d attempts)", calls.Load())
	}
	if st := n.Stats(); calls.Load() != 1 || st.Queued != 3 || st.Sent != 0 {
		t.Errorf("%d attempts, stats %+v: want 1 attempt, the 3 notices left queued", calls.Load(), st)
	}
	if !strings.Contains(lines.String(), "undelivered=3") {
		t.Errorf("the notices left are not logged:\n%s", lines)
	}
}
