package httpaudit

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestKeptRequestsStayTheirOwn serves requests with distinct ids, paths,
// queries, user agents, trace contexts and users from several goroutines at
// once, every handler keeping its request, its context (detached as a
// background job would: context.WithoutCancel) and its ResponseWriter, and
// reading them again from a goroutine it started while later requests are
// served. Every kept value must still be its own request's once every
// event was written, and every event must carry one request's values only.
//
// It is what a per-request object reused too early (the state, the
// handler's copy of the request, taken from a pool once the writer is done
// with them, or sooner) breaks: a kept context then answers RequestID with
// a later request's id, the event of one request carries another's path
// or user, and the race detector sees the reuse's writes beside the kept
// goroutines' reads. Net/http lets a handler keep its request and context
// (a goroutine doing work after the response), so nothing the handler can
// reach may be reused, however long after the request.
func TestKeptRequestsStayTheirOwn(t *testing.T) {
	const senders, perSender = 8, 200
	l, buf := newTestLogger(t, Config{QueueSize: senders * perSender, BatchSize: 16})
	type kept struct {
		n      string
		r      *http.Request
		ctx    context.Context
		w      http.ResponseWriter
		traceR string // the trace id as the handler saw it
	}
	var (
		mu     sync.Mutex
		keep   []kept
		checks sync.WaitGroup
		errs   = make(chan string, senders*perSender*4)
	)
	// check compares what a kept request says of itself with n, its
	// request's number.
	check := func(k kept, when string) {
		if got, want := RequestID(k.ctx), "req-"+k.n; got != want {
			errs <- fmt.Sprintf("%s: RequestID of request %s's kept context = %q", when, k.n, got)
		}
		if got, want := RequestID(k.r.Context()), "req-"+k.n; got != want {
			errs <- fmt.Sprintf("%s: RequestID of request %s's kept request = %q", when, k.n, got)
		}
		if got, want := k.r.URL.Path, "/orders/"+k.n; got != want {
			errs <- fmt.Sprintf("%s: path of request %s's kept request = %q", when, k.n, got)
		}
		if got, want := k.r.Header.Get("User-Agent"), "client/"+k.n; got != want {
			errs <- fmt.Sprintf("%s: user agent of request %s's kept request = %q", when, k.n, got)
		}
		if tr, _ := TraceContext(k.ctx); tr != k.traceR {
			errs <- fmt.Sprintf("%s: trace id of request %s's kept context = %q, was %q", when, k.n, tr, k.traceR)
		}
	}
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := strings.TrimPrefix(r.URL.Path, "/orders/")
		SetUser(r.Context(), User{ID: "user-" + n})
		tr, _ := TraceContext(r.Context())
		k := kept{n: n, r: r, ctx: context.WithoutCancel(r.Context()), w: w, traceR: tr}
		check(k, "in the handler")
		mu.Lock()
		keep = append(keep, k)
		mu.Unlock()
		checks.Add(1)
		go func() { // reads while later requests are served and written
			defer checks.Done()
			check(k, "after the response")
		}()
		w.Write([]byte(n))
	}))
	var senders_ sync.WaitGroup
	for g := range senders {
		senders_.Go(func() {
			for i := range perSender {
				n := fmt.Sprintf("%d-%d", g, i)
				r := httptest.NewRequest("GET", "/orders/"+n+"?q="+n, nil)
				r.Header.Set("X-Request-ID", "req-"+n)
				r.Header.Set("User-Agent", "client/"+n)
				r.Header.Set("Traceparent", fmt.Sprintf("00-%032x-%016x-01", g*perSender+i+1, g*perSender+i+1))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Body.String() != n || w.Header().Get("X-Request-ID") != "req-"+n {
					errs <- fmt.Sprintf("response of request %s: body %q, X-Request-ID %q", n, w.Body.String(), w.Header().Get("X-Request-ID"))
				}
			}
		})
	}
	senders_.Wait()
	checks.Wait()
	evs := events(t, l, buf) // closes the logger: the writer is done with every request
	for _, k := range keep {
		check(k, "after every event was written")
		if _, err := k.w.Write([]byte("late")); err == nil {
			errs <- fmt.Sprintf("request %s's kept ResponseWriter took a write after its handler returned", k.n)
		}
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if len(evs) != senders*perSender {
		t.Fatalf("%d events, want %d", len(evs), senders*perSender)
	}
	seen := make(map[string]bool, len(evs))
	for _, ev := range evs {
		n := strings.TrimPrefix(ev.Path, "/orders/")
		if seen[n] {
			t.Errorf("two events of request %s", n)
		}
		seen[n] = true
		if ev.RequestID != "req-"+n || ev.Query != "q="+n || ev.UserAgent != "client/"+n || ev.UserID != "user-"+n ||
			ev.ResponseBodyBytes != int64(len(n)) {
			t.Errorf("event of %s mixes requests: id %q, query %q, user agent %q, user %q, %d bytes",
				ev.Path, ev.RequestID, ev.Query, ev.UserAgent, ev.UserID, ev.ResponseBodyBytes)
		}
	}
	for _, k := range keep {
		if tr, _ := TraceContext(k.ctx); !strings.Contains(k.r.Header.Get("Traceparent"), tr) || tr == "" {
			t.Errorf("request %s: trace id %q not its traceparent's %q", k.n, tr, k.r.Header.Get("Traceparent"))
		}
	}
}
