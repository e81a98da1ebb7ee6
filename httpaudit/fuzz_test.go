package httpaudit

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// serveOne sends req through a fresh middleware and returns the recorded
// event, the response and what ClientIP said during the request.
func serveOne(t *testing.T, cfg Config, req *http.Request) (*eventView, *httptest.ResponseRecorder) {
	t.Helper()
	l, buf := newTestLogger(t, cfg)
	red := l.Redactor()
	var during netip.Addr
	h := l.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { during = ClientIP(r.Context()) }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	evs := events(t, l, buf) // closes l; every line must be valid ECS
	out := buf.String()
	if len(evs) != 1 || strings.Count(out, "\n") != 1 {
		t.Fatalf("%d events in %d lines for one request:\n%s", len(evs), strings.Count(out, "\n"), out)
	}
	return &eventView{evs[0].RequestID, evs[0].TraceID, evs[0].SpanID, evs[0].ClientIP, evs[0].SourceIP, during,
		red.String(req.Header.Get("X-Request-ID"))}, w
}

type eventView struct {
	requestID, traceID, spanID, clientIP, sourceIP string
	during                                         netip.Addr
	scrubbedID                                     string // the incoming id as the scrubber leaves it
}

// safeID is the documented form of an incoming id that is kept.
var safeID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// traceHex and traceV00 are W3C Trace Context's id and header forms.
var (
	traceHex = regexp.MustCompile(`^[0-9a-f]{32}-[0-9a-f]{16}$`)
	traceV00 = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)
)

// FuzzCorrelationHeaders sends arbitrary X-Request-ID and traceparent
// values: an id is kept exactly when it is safe (short, plain characters,
// nothing the scrubber would touch) and otherwise replaced by a generated
// one; the response echoes the recorded id, never a header-breaking byte;
// a trace context is recorded exactly when it parses, and a well-formed
// one always does.
func FuzzCorrelationHeaders(f *testing.F) {
	for _, c := range []struct{ id, tp string }{
		{"req-123", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"", ""},
		{"a b", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
		{strings.Repeat("x", MaxRequestIDLen+1), "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"},
		{"id\r\nX-Injected: 1", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"},
		{"4111111111111111", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-"},
		{"ünï", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"},
		// UUID-shaped ids are kept after one check (uuidShaped); near
		// misses go through validRequestID and the redactor.
		{"5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1e", ""}, {"41111111-1111-1111-1111-111111111111", ""},
		{"5F2B6C1E-8A3D-4E7B-9C10-2D4F6A8B0C1g", ""}, {"5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1\x00", ""},
		{"5f2b6c1e-8a3d-4e7b-9c10_2d4f6a8b0c1e", ""}, {"4111-1111-1111-1111-4111111111111111", ""},
	} {
		f.Add(c.id, c.tp, uint64(0x4bf92f3577b34da6), uint64(0xa3ce929d0e0e4736), uint64(0x00f067aa0ba902b7))
	}
	f.Fuzz(func(t *testing.T, id, tp string, th, tl, span uint64) {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header["X-Request-Id"] = []string{id}
		req.Header["Traceparent"] = []string{tp}
		got, w := serveOne(t, Config{}, req)
		echoed := w.Header().Get("X-Request-ID")
		if echoed != got.requestID {
			t.Fatalf("response id %q, recorded %q", echoed, got.requestID)
		}
		if !safeID.MatchString(got.requestID) {
			t.Fatalf("recorded id %q is not safe to log or echo", got.requestID)
		}
		keep := safeID.MatchString(id) && got.scrubbedID == id
		if keep != (got.requestID == id) {
			t.Fatalf("incoming id %q: recorded %q (keep %v)", id, got.requestID, keep)
		}
		if !keep && len(got.requestID) != 36 {
			t.Fatalf("replacement id %q is not a generated UUID", got.requestID)
		}
		// Recorded ids come from the header, lower-case hex, not all zero;
		// a version-00 header of the W3C form is always recorded.
		if got.traceID != "" || got.spanID != "" {
			if !traceHex.MatchString(got.traceID+"-"+got.spanID) || strings.Trim(got.traceID, "0") == "" || strings.Trim(got.spanID, "0") == "" ||
				len(tp) < 55 || tp[3:35] != got.traceID || tp[36:52] != got.spanID || tp[:2] == "ff" {
				t.Fatalf("traceparent %q recorded as %q/%q", tp, got.traceID, got.spanID)
			}
		}
		if traceV00.MatchString(tp) && strings.Trim(tp[3:35], "0") != "" && strings.Trim(tp[36:52], "0") != "" &&
			(got.traceID != tp[3:35] || got.spanID != tp[36:52]) {
			t.Fatalf("well-formed traceparent %q recorded as %q/%q", tp, got.traceID, got.spanID)
		}
		// A well-formed traceparent built from the numbers always parses
		// back to them.
		wantTrace, wantSpan := fmt.Sprintf("%016x%016x", th, tl), fmt.Sprintf("%016x", span)
		if (th != 0 || tl != 0) && span != 0 {
			tr, sp, ok := parseTraceparent("00-" + wantTrace + "-" + wantSpan + "-01")
			if !ok || tr != wantTrace || sp != wantSpan {
				t.Fatalf("well-formed traceparent for %s/%s: %q %q %v", wantTrace, wantSpan, tr, sp, ok)
			}
		}
	})
}

var fuzzTrusted = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// hopPool are the addresses a forwarding chain is built from; the first
// three are trusted proxies.
var hopPool = []string{"10.0.0.1", "10.1.2.3", "::1", "198.51.100.7", "203.0.113.9", "2001:db8::5", "6.6.6.6", "::ffff:192.0.2.44"}

// FuzzForwarded sends forwarding chains: built ones, in X-Forwarded-For or
// RFC 7239 Forwarded form with ports, brackets and quotes, whose client is
// known (the nearest hop that is not a trusted proxy, walking out from the
// peer, and nothing from an untrusted peer); and raw header text, whose
// client must be the peer or an address written in the headers. The
// event and ClientIP always agree.
func FuzzForwarded(f *testing.F) {
	f.Add([]byte{3, 0}, uint8(0), true, "", "")
	f.Add([]byte{6, 3, 0, 1}, uint8(1), true, "", "")
	f.Add([]byte{4, 0x80, 2}, uint8(2), true, "", "")
	f.Add([]byte{5}, uint8(3), false, "", "")
	f.Add([]byte{}, uint8(0), true, "1.2.3.4, not-an-ip, 10.0.0.9", `for=unknown;by=_hidden, for="[2001:db8::1]:4711"`)
	f.Add([]byte{}, uint8(1), true, "[::1]:80,,[fe80::1%eth0]", "For=192.0.2.1, for=\"\"")
	f.Add([]byte{}, uint8(0), false, "198.51.100.1", "")
	f.Fuzz(func(t *testing.T, chain []byte, format uint8, peerTrusted bool, xffRaw, fwdRaw string) {
		peer, peerAddr := "192.0.2.200:5000", netip.MustParseAddr("192.0.2.200")
		if peerTrusted {
			peer, peerAddr = "10.9.9.9:5000", netip.MustParseAddr("10.9.9.9")
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = peer
		want := peerAddr
		if len(chain) > 0 {
			if len(chain) > 16 {
				chain = chain[:16]
			}
			var hops []string
			walk := peerTrusted
			for i := len(chain) - 1; i >= 0; i-- { // nearest hop last
				b := chain[i]
				if b&0x80 != 0 {
					hops = append(hops, "unknown") // RFC 7239 obfuscated: not an address
					walk = false
					continue
				}
				a := netip.MustParseAddr(hopPool[int(b)%len(hopPool)])
				hops = append(hops, hopText(a, format, b))
				if walk {
					want = a.Unmap()
					walk = trustedHop(a.Unmap())
				}
			}
			// hops were built nearest first; headers list them farthest first.
			for i, j := 0, len(hops)-1; i < j; i, j = i+1, j-1 {
				hops[i], hops[j] = hops[j], hops[i]
			}
			if format%2 == 0 {
				req.Header.Set("X-Forwarded-For", strings.Join(hops, ", "))
			} else {
				for i, h := range hops {
					hops[i] = "for=" + h + ";proto=https"
				}
				req.Header.Set("Forwarded", strings.Join(hops, ", "))
			}
			// The client's copy of the header the proxies do not write,
			// passed on as sent: never read.
			if format%2 == 0 {
				req.Header.Set("Forwarded", "for=6.6.6.6")
			} else {
				req.Header.Set("X-Forwarded-For", "6.6.6.6")
			}
		} else {
			req.Header["X-Forwarded-For"] = []string{xffRaw}
			req.Header["Forwarded"] = []string{fwdRaw}
		}
		cfg := Config{TrustedProxies: fuzzTrusted}
		written := xffRaw
		if format%2 == 1 {
			cfg.ForwardedHeader, written = "Forwarded", fwdRaw
		}
		got, _ := serveOne(t, cfg, req)
		client, err := netip.ParseAddr(got.clientIP)
		if err != nil || got.during != client || got.sourceIP != peerAddr.String() {
			t.Fatalf("client.ip %q (%v), during the request %s, source.ip %q", got.clientIP, err, got.during, got.sourceIP)
		}
		if len(chain) > 0 {
			if client != want {
				t.Fatalf("headers %q: client %s, want %s (peer trusted %v)", req.Header, client, want, peerTrusted)
			}
			return
		}
		if !peerTrusted && client != peerAddr {
			t.Fatalf("an untrusted peer's headers were believed: client %s", client)
		}
		if client != peerAddr && !writtenIn(client, written) {
			t.Fatalf("client %s is not written in %s %q", client, cfg.ForwardedHeader, written)
		}
	})
}

func trustedHop(a netip.Addr) bool {
	for _, p := range fuzzTrusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// hopText writes a in one of the forms proxies use.
func hopText(a netip.Addr, format, b uint8) string {
	port := b%3 == 1
	quoted := format%2 == 1 && (format/2)%2 == 1
	var s string
	switch {
	case a.Is6() && !a.Is4In6() && (port || format%2 == 1):
		s = "[" + a.String() + "]"
		if port {
			s += ":4711"
		}
		if format%2 == 1 {
			quoted = true // RFC 7239: a v6 node must be quoted
		}
	case port && !a.Is6():
		s = a.String() + ":8080"
	default:
		s = a.String()
	}
	if quoted {
		s = `"` + s + `"`
	}
	return s
}

// writtenIn reports whether a is one of the addresses written in text, in
// any of the forms hops take (bare, [v6], [v6]:port, v4:port, quoted).
func writtenIn(a netip.Addr, text string) bool {
	// The separators are those the parser splits on, and the white space
	// it trims (strings.TrimSpace: any, "\n" included).
	for _, tok := range strings.FieldsFunc(text, func(r rune) bool { return unicode.IsSpace(r) || strings.ContainsRune(",;\"=", r) }) {
		if strings.HasPrefix(tok, "[") {
			if end := strings.IndexByte(tok, ']'); end > 0 {
				tok = tok[1:end]
			}
		} else if strings.Count(tok, ":") == 1 {
			tok, _, _ = strings.Cut(tok, ":")
		}
		if b, err := netip.ParseAddr(tok); err == nil && b.Unmap() == a {
			return true
		}
	}
	return false
}
