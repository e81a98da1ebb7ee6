package httpaudit

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync"
	"testing"

	"github.com/trailguard/trailguard/event"
)

func TestGenerateTraceAndAnnotate(t *testing.T) {
	hex := regexp.MustCompile(`^[0-9a-f]+$`)
	for _, tc := range []struct {
		name, traceparent string
		generate          bool
		wantTrace         string
	}{
		{"generated", "", true, ""},
		{"invalid replaced", "00-zz-bad", true, ""},
		{"incoming kept", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"off", "", false, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, buf := newTestLogger(t, Config{GenerateTrace: tc.generate})
			var traceID, spanID string
			h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				traceID, spanID = TraceContext(r.Context())
				Annotate(r.Context(), func(ev *event.Event) { ev.Reason = "first" })
				Annotate(r.Context(), func(ev *event.Event) { ev.Reason += "+second" })
			}))
			req := httptest.NewRequest("GET", "/", nil)
			if tc.traceparent != "" {
				req.Header.Set("Traceparent", tc.traceparent)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
			ev := events(t, l, buf)[0]
			switch tc.wantTrace {
			case "-":
				if traceID != "" || ev.TraceID != "" {
					t.Fatalf("trace %q generated without GenerateTrace", traceID)
				}
			case "":
				if len(traceID) != 32 || len(spanID) != 16 || !hex.MatchString(traceID+spanID) {
					t.Fatalf("generated trace %q span %q", traceID, spanID)
				}
			default:
				if traceID != tc.wantTrace {
					t.Fatalf("trace %q, want %q", traceID, tc.wantTrace)
				}
			}
			if ev.TraceID != traceID || ev.SpanID != spanID {
				t.Fatalf("event trace %s/%s, handler saw %s/%s", ev.TraceID, ev.SpanID, traceID, spanID)
			}
			if ev.Reason != "first+second" {
				t.Fatalf("annotations: reason %q", ev.Reason)
			}
		})
	}
}

// TestConcurrentFirstAnnotations: goroutines of one handler that annotate
// the request and set its user at the same moment, none of them first,
// all count: the request's actor is created once (a second one would drop
// what was recorded in the first).
func TestConcurrentFirstAnnotations(t *testing.T) {
	l, buf := newTestLogger(t, Config{})
	const n = 8
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if i == 0 {
					SetUser(ctx, User{ID: "u-1"})
					return
				}
				Annotate(ctx, func(ev *event.Event) {
					if ev.Labels == nil {
						ev.Labels = map[string]string{}
					}
					ev.Labels[strconv.Itoa(i)] = "x"
				})
			}()
		}
		close(start)
		wg.Wait()
	}))
	for range 50 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}
	for _, ev := range events(t, l, buf) {
		if ev.UserID != "u-1" || len(ev.Labels) != n-1 {
			t.Fatalf("user %q and %d of %d annotations recorded", ev.UserID, len(ev.Labels), n-1)
		}
	}
}
