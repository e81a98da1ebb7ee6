package httpaudit

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net/netip"

	"github.com/trailguard/trailguard/event"
)

// Hooks for programs that record requests they do not handle themselves,
// such as the trailguard gateway (package proxy): they need, while the
// request is being served, what the middleware otherwise only works out
// when it builds the event.

// ClientIP returns the originating client of the request whose context ctx
// is: the connection's peer, or the address a trusted proxy forwarded
// (Config.TrustedProxies), exactly as client.ip will be recorded. It is
// the zero Addr outside the middleware or when the peer address cannot be
// parsed.
func ClientIP(ctx context.Context) netip.Addr {
	st := stateFrom(ctx)
	if st == nil {
		return netip.Addr{}
	}
	src, _, _ := splitAddr(st.info.remoteAddr)
	if !src.IsValid() {
		return src
	}
	if c, ok := st.l.clientIP(&st.info, src); ok {
		return c
	}
	return src
}

// TraceContext returns the trace.id and span.id recorded for the request:
// those of a valid incoming traceparent, or generated ones with
// Config.GenerateTrace; both "" otherwise.
func TraceContext(ctx context.Context) (traceID, spanID string) {
	if st := stateFrom(ctx); st != nil {
		return st.traceIDs()
	}
	return "", ""
}

// SetPath records path as url.path of the request's events, in place of
// the path the client sent: a program that routes on a normalised path
// (the gateway merges slashes, resolves dot segments and drops ";"
// parameters before it decides) records the path it decided on, so that
// rules, searches and reports that read url.path see every spelling of a
// route as that route. url.original then keeps the request-target as the
// client sent it (path, as encoded, and query), scrubbed, whenever the two
// differ. path must be what the client's path means, not a secret-bearing
// value of the program's own: it is scrubbed like the client's path. It
// must be called from the goroutine serving the request, before the
// handler returns and before the events that should carry it (Auth,
// Audit); "" goes back to the client's path. Outside the middleware it
// does nothing.
func SetPath(ctx context.Context, path string) {
	st := stateFrom(ctx)
	if st == nil {
		return
	}
	ri := &st.info
	if ri.opt == noOpt {
		if path == "" {
			return
		}
		ri.opt = &reqOpt{} // noOpt is shared: requests needing none point at it
	}
	ri.opt.path = path
}

// Annotate registers fn to complete the request's access event: it is
// called once with the event after the middleware filled it, on the
// logger's writer goroutine, before the event is encoded. fn must only
// store values that are already scrubbed (see Logger.Redactor and
// Logger.ScrubBody) and must not keep the event. A second call adds to
// the first. Outside the middleware it does nothing.
func Annotate(ctx context.Context, fn func(*event.Event)) {
	st := stateFrom(ctx)
	if st == nil || fn == nil {
		return
	}
	a := st.lockActor()
	if prev := a.annotate; prev != nil {
		a.annotate = func(ev *event.Event) { prev(ev); fn(ev) }
	} else {
		a.annotate = fn
	}
	a.mu.Unlock()
}

// ScrubBody returns a captured request body as the middleware records it
// in http.request.body.content: form bodies scrubbed parameter by
// parameter, JSON bodies key by key, anything unparsable replaced by a
// note. The body must be complete: a truncated document cannot be
// scrubbed reliably.
func (l *Logger) ScrubBody(contentType string, body []byte) string {
	return l.scrubBody(contentType, body)
}

// Capturable reports whether a body of this Content-Type can be recorded:
// JSON (application/json, application/*+json) and URL-encoded forms.
func Capturable(contentType string) bool { return capturable(contentType) }

// newTrace returns random non-zero trace and span ids as the state keeps
// them (trace id, '-', span id): one string, one allocation.
func newTrace() string {
	var raw [24]byte
	for {
		binary.LittleEndian.PutUint64(raw[0:], rand.Uint64())
		binary.LittleEndian.PutUint64(raw[8:], rand.Uint64())
		binary.LittleEndian.PutUint64(raw[16:], rand.Uint64())
		if binary.LittleEndian.Uint64(raw[16:]) != 0 && (binary.LittleEndian.Uint64(raw[0:]) != 0 || binary.LittleEndian.Uint64(raw[8:]) != 0) {
			break
		}
	}
	var ids [49]byte
	hex.Encode(ids[:32], raw[:16])
	ids[32] = '-'
	hex.Encode(ids[33:], raw[16:])
	return string(ids[:])
}
