package httpaudit

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/stalltest"
	"github.com/trailguard/trailguard/sink"
)

// TestAuditPersisted: in a logger that is not fail-closed, Audit returns
// once the event is queued, AuditPersisted only once the sink has it (or
// with an error after WriteTimeout). "At once" allows a stall of the test
// process meanwhile (a loaded CI machine stops it for longer than the
// bound); an Audit that waited for the stuck sink would take WriteTimeout.
func TestAuditPersisted(t *testing.T) {
	watch := stalltest.Start(t)
	g := &gateSink{Sink: sink.NewWriter(io.Discard), gate: make(chan struct{})}
	l, _ := newTestLogger(t, Config{Sink: g, WriteTimeout: 100 * time.Millisecond})
	var queuedErr, persistedErr error
	var queuedTook, queuedStall, persistedTook time.Duration
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		watch.Reset()
		start := time.Now()
		queuedErr = Audit(r.Context(), Op{Action: event.ActionSensitiveRead})
		queuedTook, queuedStall = time.Since(start), watch.Worst()
		start = time.Now()
		persistedErr = AuditPersisted(r.Context(), Op{Action: event.ActionSensitiveRead})
		persistedTook = time.Since(start)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	if queuedErr != nil || queuedTook > 50*time.Millisecond+queuedStall {
		t.Errorf("Audit: %v after %v (stalls %v); want it back at once", queuedErr, queuedTook, queuedStall)
	}
	if persistedErr == nil || !strings.Contains(persistedErr.Error(), "not persisted") || persistedTook < 100*time.Millisecond {
		t.Errorf("AuditPersisted with the sink stuck: %v after %v; want a timeout after WriteTimeout", persistedErr, persistedTook)
	}
	close(g.gate)
	h = l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		persistedErr = AuditPersisted(r.Context(), Op{Action: event.ActionSensitiveRead})
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	if persistedErr != nil {
		t.Errorf("AuditPersisted with a working sink: %v", persistedErr)
	}
}
