package httpaudit

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/trailguard/trailguard/sink"
)

// TestQueuedRequestKeepsNoRequest: while a request's access event waits
// in the queue (the sink is stuck), the request itself can be collected: its
// headers (an unauthenticated client sends up to http.DefaultMaxHeaderBytes)
// and what its handler made of it (here a parsed multipart form, held in
// memory). A queued request keeps only what its event needs; otherwise every
// queued event (QueueSize, 8192 by default) keeps its request alive after
// the client was answered, which a client fills at will while the sink is
// slow: memory no longer bounded by the requests in flight.
func TestQueuedRequestKeepsNoRequest(t *testing.T) {
	for _, viaServer := range []bool{false, true} {
		name := "parsed form"
		if viaServer {
			name = "headers over a real server"
		}
		t.Run(name, func(t *testing.T) {
			g := &gateSink{Sink: sink.NewWriter(io.Discard), gate: make(chan struct{})}
			l, _ := newTestLogger(t, Config{Sink: g})
			defer close(g.gate)
			collected := make(chan struct{})
			h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/first" {
					return
				}
				if viaServer {
					v := r.Header.Get("X-Big")
					if len(v) != 512<<10 {
						t.Errorf("X-Big is %d bytes", len(v))
						return
					}
					runtime.AddCleanup(unsafe.StringData(v), func(ch chan struct{}) { close(ch) }, collected)
				} else {
					if err := r.ParseMultipartForm(8 << 20); err != nil {
						t.Error(err)
						return
					}
					if len(r.MultipartForm.Value["big"]) != 1 {
						t.Error("form not parsed")
					}
					runtime.AddCleanup(r.MultipartForm, func(ch chan struct{}) { close(ch) }, collected)
				}
				w.WriteHeader(http.StatusUnauthorized)
			}))
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/first", nil))
			waitFor(t, "the first event taken by the writer", func() bool { return l.Stats().Queued == 0 })
			if viaServer {
				srv := httptest.NewServer(h)
				defer srv.Close()
				req, _ := http.NewRequest("GET", srv.URL+"/second", nil)
				req.Header.Set("X-Big", strings.Repeat("x", 512<<10))
				req.Close = true
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				waitFor(t, "the second event queued", func() bool { return l.Stats().Queued == 1 })
			} else {
				var body bytes.Buffer
				mw := multipart.NewWriter(&body)
				mw.WriteField("big", strings.Repeat("x", 1<<20))
				mw.Close()
				r := httptest.NewRequest("POST", "/second", &body)
				r.Header.Set("Content-Type", mw.FormDataContentType())
				h.ServeHTTP(httptest.NewRecorder(), r)
			}
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
					t.Fatal("the request of a queued event was not collected")
				}
			}
			if l.Stats().Queued != 1 {
				t.Fatal("the event left the queue: the test proves nothing")
			}
		})
	}
}

// TestQueueBytesBounded: requests whose captured fields are large (a client
// may send a megabyte of headers with each) fill the queue's byte budget,
// not its item count: while the sink is stuck at most MaxQueueBytes of
// them wait, the rest of their access events are dropped and counted, an
// error response's event waits for room instead, and every queued event
// is written, cut to MaxFieldBytes, once the sink moves.
func TestQueueBytesBounded(t *testing.T) {
	buf := &syncBuffer{}
	g := &gateSink{Sink: sink.NewWriter(buf), gate: make(chan struct{})}
	const budget = 1 << 20
	l, _ := newTestLogger(t, Config{Sink: g, MaxQueueBytes: budget, ErrorLog: newDiscardSlog()})
	var once sync.Once
	release := func() { once.Do(func() { close(g.gate) }) }
	t.Cleanup(release) // before the logger's Close, which waits for the sink
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/first", nil))
	waitFor(t, "the first event taken by the writer", func() bool { return l.Stats().Queued == 0 })
	big := strings.Repeat("x", 256<<10)
	for range 20 {
		r := httptest.NewRequest("GET", "/big", nil)
		r.Header.Set("User-Agent", big)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	s := l.Stats()
	if s.Queued < 3 || s.Queued > 4 || s.Dropped != uint64(20-s.Queued) {
		t.Fatalf("with a %d-byte budget and 256 KiB user agents: %+v", budget, s)
	}
	// An error's event is not dropped: it waits for room.
	failed := make(chan struct{})
	go func() {
		r := httptest.NewRequest("GET", "/fail", nil)
		r.Header.Set("User-Agent", big)
		h.ServeHTTP(httptest.NewRecorder(), r)
		close(failed)
	}()
	select {
	case <-failed:
		t.Fatal("the error's event was queued beyond the budget")
	case <-time.After(50 * time.Millisecond):
	}
	queued := s.Queued
	release()
	<-failed
	evs := events(t, l, buf)
	if len(evs) != 1+queued+1 {
		t.Fatalf("%d events written, want %d", len(evs), 1+queued+1)
	}
	for _, ev := range evs[1:] {
		if len(ev.UserAgent) > 2048 {
			t.Errorf("user agent of %d bytes recorded", len(ev.UserAgent))
		}
	}
	if ev := evs[len(evs)-1]; ev.StatusCode != http.StatusBadRequest {
		t.Errorf("last event has status %d, want the error's", ev.StatusCode)
	}
}
