package httpaudit

import (
	"context"
	"net/http"
)

// MaxRequestIDLen is the longest incoming request id that is kept.
const MaxRequestIDLen = 128

// validRequestID reports whether an incoming correlation id may be logged
// and echoed as is: at most MaxRequestIDLen characters of [A-Za-z0-9._:-].
// Anything else (spaces, quotes, newlines, a megabyte of junk) is replaced
// by a generated id, so a client cannot inject into logs or responses
// through it.
func validRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !requestIDByte[id[i]] {
			return false
		}
	}
	return true
}

var requestIDByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == ':' || c == '-'
	}
	return t
}()

// parseTraceparent extracts the trace id and parent span id from a W3C
// Trace Context traceparent header ("00-<32 hex>-<16 hex>-<2 hex>"). It
// accepts future versions' longer headers as the spec asks, and rejects
// version ff, upper-case hex and all-zero ids.
func parseTraceparent(h string) (traceID, spanID string, ok bool) {
	if len(h) < 55 || (len(h) > 55 && h[55] != '-') || h[2] != '-' || h[35] != '-' || h[52] != '-' {
		return "", "", false
	}
	version := h[:2]
	if !lowerHex(version) || version == "ff" || (version == "00" && len(h) != 55) {
		return "", "", false
	}
	traceID, spanID = h[3:35], h[36:52]
	if !lowerHex(traceID) || !lowerHex(spanID) || !lowerHex(h[53:55]) || allZero(traceID) || allZero(spanID) {
		return "", "", false
	}
	return traceID, spanID, true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !lowerHexByte[s[i]] {
			return false
		}
	}
	return true
}

var lowerHexByte = func() (t [256]bool) {
	for _, c := range "0123456789abcdef" {
		t[c] = true
	}
	return t
}()

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

// Transport returns an http.RoundTripper that copies the correlation id of
// the request's context (see RequestID) into the X-Request-ID header of
// outgoing calls, so the services an API calls log the same
// http.request.id. A nil base means http.DefaultTransport. An outgoing
// request that already carries the header is left alone.
func Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{base: base}
}

type transport struct{ base http.RoundTripper }

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	st := stateFrom(r.Context())
	if st == nil || r.Header.Get(st.l.cfg.RequestIDHeader) != "" {
		return t.base.RoundTrip(r)
	}
	// A RoundTripper must not modify the caller's request.
	r2 := r.Clone(r.Context())
	r2.Header.Set(st.l.cfg.RequestIDHeader, st.requestID)
	return t.base.RoundTrip(r2)
}

// RequestID returns the correlation id of the request whose context ctx
// is (or derives from), or "" outside the middleware.
func RequestID(ctx context.Context) string {
	if st := stateFrom(ctx); st != nil {
		return st.requestID
	}
	return ""
}
