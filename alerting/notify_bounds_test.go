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
	n, err := NewNotifier(NotifierConfig{Type: "slack", URL: srv.URL, QueueBytes: limit, Timeout: time.Minute}, log)
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
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			var err error
			took, stalled, ok := stalltest.Run(func() {
				err = httpPost(context.Background(), client, url, []byte(`{"alert":1}`), nil)
			}, watch, tt.within+5*time.Second)
			runtime.ReadMemStats(&ms1)
			alloc := ms1.TotalAlloc - ms0.TotalAlloc
			t.Logf("%v, %d KiB allocated: %.120v", took.Round(time.Millisecond), alloc>>10, err)
			if !ok || took > tt.within+stalled {
				t.Fatalf("the attempt took %v (stalled %v), want at most %v", took, stalled, tt.within)
			}
			if alloc > tt.maxAlloc {
				t.Errorf("the attempt allocated %d KiB, want at most %d", alloc>>10, tt.maxAlloc>>10)
			}
			tt.check(t, err)
		})
	}

	// Through a notifier: the alert is not counted delivered.
	n, err := NewNotifier(NotifierConfig{Type: "slack", URL: rawReceiver(t, func(c net.Conn) { c.Write(big) })}, nil)
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
