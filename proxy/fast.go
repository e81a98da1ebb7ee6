package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/trailguard/trailguard/httpaudit"
	"github.com/trailguard/trailguard/internal/h1"
)

// The fast path forwards the requests most APIs see most — no body, no
// protocol upgrade, a method that may be sent again, to a plain-HTTP
// upstream — without httputil.ReverseProxy: the upstream request is
// written straight from the client's (no clone of the request and its
// header map, no second pass to strip hop-by-hop and forwarding headers,
// no sorted header write), and the upstream's header is handed to the
// client's response without a copy. What reaches the upstream and the
// client is what ReverseProxy with the gateway's Rewrite and
// ModifyResponse sends (TestFastPathMatchesReverseProxy compares them);
// everything else still goes through ReverseProxy. On a gateway that is
// CPU-bound, this is a noticeable part of each request's CPU.

// fastQueryOK is false when GODEBUG changes how ReverseProxy cleans query
// strings (urlmaxqueryparams): the fast path then never runs.
var fastQueryOK = !strings.Contains(os.Getenv("GODEBUG"), "urlmaxqueryparams")

// fast reports whether a request takes the fast path.
func (p *Proxy) fast(rt *route, r *http.Request) bool {
	if rt.addr == "" || !fastQueryOK || (r.Body != nil && r.Body != http.NoBody) || r.Close || r.ContentLength > 0 {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		// (TRACE is refused before: serve answers it 405.)
	default:
		return false
	}
	if _, up := r.Header["Upgrade"]; up {
		return false
	}
	return strings.HasPrefix(r.URL.Path, "/") && queryClean(r.URL.RawQuery) && asciiPrintable(r.URL.RawQuery) &&
		asciiPrintable(r.Host)
}

// leanTakes reports whether the lean front end serves r itself: a
// request the fast path takes (the rest goes to net/http, and from there
// to ReverseProxy or a 404).
func (p *Proxy) leanTakes(r *http.Request) bool {
	if p.noFast.Load() {
		return false
	}
	rt := p.route(r)
	return rt != nil && p.fast(rt, r)
}

// queryClean reports whether ReverseProxy would pass a query string
// unchanged (its cleanQueryParams re-encodes one with semicolons, bad
// escapes or over 10,000 parameters).
func queryClean(s string) bool {
	if strings.Count(s, "&") >= 10000 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(s) || !ishex(s[i+1]) || !ishex(s[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// asciiPrintable: a Host that needs no punycode conversion.
func asciiPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// upstreamURI is the request-target sent upstream: the client's path
// (less the route's prefix if stripped) joined to the upstream URL's, and
// both queries, as ReverseProxy's SetURL makes it.
func (rt *route) upstreamURI(in *url.URL) string {
	if !rt.strip && rt.target.Path == "" && rt.target.RawQuery == "" {
		return in.RequestURI()
	}
	u := *in
	rt.stripPrefix(&u)
	a := rt.target
	if a.RawPath == "" && u.RawPath == "" {
		u.Path = singleJoiningSlash(a.Path, u.Path)
	} else {
		apath, bpath := a.EscapedPath(), u.EscapedPath()
		aslash, bslash := strings.HasSuffix(apath, "/"), strings.HasPrefix(bpath, "/")
		switch {
		case aslash && bslash:
			u.Path, u.RawPath = a.Path+u.Path[1:], apath+bpath[1:]
		case !aslash && !bslash:
			u.Path, u.RawPath = a.Path+"/"+u.Path, apath+"/"+bpath
		default:
			u.Path, u.RawPath = a.Path+u.Path, apath+bpath
		}
	}
	if a.RawQuery != "" {
		if u.RawQuery == "" {
			u.RawQuery = a.RawQuery
		} else {
			u.RawQuery = a.RawQuery + "&" + u.RawQuery
		}
	}
	return u.RequestURI()
}

func singleJoiningSlash(a, b string) string {
	aslash, bslash := strings.HasSuffix(a, "/"), strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}

// skipUpstream are the client's headers never forwarded as they came:
// hop-by-hop headers (RFC 9110 7.6.1 and the older list ReverseProxy
// removes), the forwarding headers the gateway writes itself, and those
// that Request.Write leaves out of a request without a body.
var skipUpstream = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
	"Host": true, "Content-Length": true, "User-Agent": true,
}

// upstreamReq is what the fast path sends upstream, worked out once (a
// request sent again on a new connection is the same).
type upstreamReq struct {
	in        *http.Request
	uri, host string
	named     []string // headers the client's Connection names (hop-by-hop)
	traceTP   []string // the traceparent sent upstream (echoed to the client)
	tp        [1]string
	replaceTP bool // the client's traceparent (and tracestate) replaced
	fwd       forwarding
	reqID     string
	reqIDKey  string // the gateway's request id header
}

// upstreamReq works out in u what the fast path sends upstream for in
// (u may be a lean front end's connection's, reused for each request).
func (p *Proxy) upstreamReq(u *upstreamReq, rt *route, in *http.Request) {
	*u = upstreamReq{in: in, uri: rt.upstreamURI(in.URL), host: rt.target.Host, fwd: p.forwarding(in),
		reqID: httpaudit.RequestID(in.Context()), reqIDKey: p.reqID, named: u.named[:0]}
	if rt.preserveHost {
		u.host = in.Host
	}
	for _, v := range in.Header["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				u.named = append(u.named, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	if tp, ok := p.newTraceparent(in); ok {
		u.tp[0] = tp
		u.replaceTP, u.traceTP = true, u.tp[:]
	} else if !contains(u.named, "Traceparent") {
		u.traceTP = in.Header["Traceparent"]
	}
}

// writeReq is write with the gateway's request id header: what the
// transport is given (a lean front end's connection binds it once).
func (u *upstreamReq) writeReq(bw *bufio.Writer) error { return u.write(bw, u.reqIDKey) }

// write writes the upstream request: the client's header less the
// hop-by-hop and forwarding fields, then the gateway's forwarding,
// correlation and trace fields.
func (u *upstreamReq) write(bw *bufio.Writer, reqIDHeader string) error {
	in := u.in
	if !asciiPrintable(u.uri) || !asciiPrintable(u.host) {
		return errors.New("upstream request-target or host is not printable ASCII")
	}
	bw.WriteString(in.Method)
	bw.WriteByte(' ')
	bw.WriteString(u.uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(u.host)
	bw.WriteString("\r\n")
	if ua := in.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" && !contains(u.named, "User-Agent") {
		writeField(bw, "User-Agent", ua[0])
	}
	for k, vv := range in.Header {
		if skipUpstream[k] || k == reqIDHeader || u.replaceTP && (k == "Traceparent" || k == "Tracestate") ||
			len(u.named) > 0 && contains(u.named, k) {
			continue
		}
		if !validFieldName(k) {
			continue // as Request.Write drops it
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	for _, v := range in.Header["Te"] {
		if containsToken(v, "trailers") {
			// Added back after the hop-by-hop fields are removed, as
			// ReverseProxy does.
			writeField(bw, "Te", "trailers")
			break
		}
	}
	writeField(bw, "X-Forwarded-For", u.fwd.xff)
	writeField(bw, "X-Forwarded-Host", u.fwd.xfh)
	writeField(bw, "X-Forwarded-Proto", u.fwd.xfp)
	if f := &u.fwd; f.prior == "" {
		// The gateway's element alone, written without being joined
		// first: nothing in it is white space at its ends or a line
		// break, which writeField would change.
		bw.WriteString("Forwarded: for=")
		bw.WriteString(f.node)
		bw.WriteString(";host=")
		if isToken(f.host) {
			bw.WriteString(f.host)
		} else {
			appendQuoted(bw, f.host)
		}
		bw.WriteString(";proto=")
		bw.WriteString(f.proto)
		bw.WriteString("\r\n")
	} else {
		writeField(bw, "Forwarded", f.forwarded())
	}
	writeField(bw, reqIDHeader, u.reqID)
	if u.replaceTP {
		writeField(bw, "Traceparent", u.traceTP[0])
	}
	_, err := bw.WriteString("\r\n")
	return err
}

// writeField writes a header field as Request.Write does: newlines in
// the value become spaces, and surrounding white space is trimmed.
func writeField(bw *bufio.Writer, k, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(textproto.TrimString(v))
	bw.WriteString("\r\n")
}

// validFieldName reports whether k is a header field name (an RFC 9110
// token); the server only hands over such names, but what is written
// upstream must never depend on that.
func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// containsToken reports whether a comma-separated header value holds
// token (case-insensitive).
func containsToken(v, token string) bool {
	for f := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(textproto.TrimString(f), token) {
			return true
		}
	}
	return false
}

// hopHeaders are removed from the upstream's answer (with those its
// Connection header names), as ReverseProxy does.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// serveFast forwards a request on the fast path; w is the request's
// exchange. It answers as ReverseProxy would: 502/504 through
// upstreamError, 1xx answers passed on, the body streamed (flushed at
// each write for Server-Sent Events and answers of unknown length),
// trailers passed on, and a failed body copy aborts the client's
// response (http.ErrAbortHandler).
func (p *Proxy) serveFast(w http.ResponseWriter, r *http.Request, rt *route) {
	ctx := r.Context()
	var (
		done   bool
		got1xx = func(code int, h textproto.MIMEHeader) error {
			if done {
				return nil
			}
			dst := w.Header()
			for k, vv := range h {
				for _, v := range vv {
					dst.Add(k, v)
				}
			}
			w.WriteHeader(code)
			clear(dst)
			return nil
		}
	)
	// To the lean front end, the common answer comes as a list of fields
	// (serveLean); every other answer, and every answer to net/http's
	// server, as an http.Response. What is sent upstream is worked out
	// in the front end's connection's upstreamReq, reused.
	lr := leanWriter(w)
	var (
		la    *leanAnswer
		up    *upstreamReq
		write func(*bufio.Writer) error
	)
	if lr != nil {
		la, up = &lr.ans, &lr.upReq
		if lr.upWrite == nil {
			lr.upWrite = up.writeReq
		}
		write = lr.upWrite
	} else {
		up = new(upstreamReq)
		write = up.writeReq
	}
	p.upstreamReq(up, rt, r)
	res, err := p.transport.do(ctx, rt.addr, r, write, got1xx, la)
	done = true
	if err != nil {
		p.upstreamError(w, r, err)
		return
	}
	if res == nil {
		p.serveLean(w, r, lr, up.traceTP)
		return
	}
	for _, v := range res.Header["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				res.Header.Del(f)
			}
		}
	}
	for _, h := range hopHeaders {
		delete(res.Header, h)
	}
	if err := p.answer(res, up.traceTP); err != nil {
		res.Body.Close()
		p.upstreamError(w, r, err)
		return
	}
	dst := w.Header()
	for k, vv := range res.Header {
		if old, ok := dst[k]; ok {
			dst[k] = append(old, vv...)
		} else {
			dst[k] = vv
		}
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		dst.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)
	flush := res.ContentLength == -1
	if !flush {
		if ct := res.Header["Content-Type"]; len(ct) > 0 && strings.Contains(ct[0], "event-stream") {
			base, _, _ := mime.ParseMediaType(ct[0])
			flush = base == "text/event-stream"
		}
	}
	rc := http.NewResponseController(w)
	if flush {
		rc.Flush() // the header goes at once, even if the body is slow to come
	}
	if err := p.copyBody(w, res.Body, rc, flush); err != nil {
		res.Body.Close()
		if ctx.Value(http.ServerContextKey) != nil {
			// Streaming, all that can be done is abort the response.
			panic(http.ErrAbortHandler)
		}
		return
	}
	res.Body.Close()
	if len(res.Trailer) > 0 {
		rc.Flush() // trailers need a chunked answer
	}
	if len(res.Trailer) == announced {
		for k, vv := range res.Trailer {
			for _, v := range vv {
				dst.Add(k, v)
			}
		}
		return
	}
	for k, vv := range res.Trailer {
		for _, v := range vv {
			dst.Add(http.TrailerPrefix+k, v)
		}
	}
}

// leanWriter returns the lean front end's response writer under w (the
// request's exchange and the middleware's state), or nil.
func leanWriter(w http.ResponseWriter) *leanResponse {
	for range 4 {
		switch x := w.(type) {
		case *leanResponse:
			return x
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return nil
		}
	}
	return nil
}

// serveLean is serveFast for the common answer read into lr.ans (see
// leanAnswer): what serveFast does with an http.Response, on the list of
// the answer's fields. The fields the upstream must not set (hop-by-hop,
// the request id and traceparent) are taken out of the list, the
// gateway's traceparent put in, and the list, sorted, is the part of the
// header the writer merges with the handler's map (leanResponse.up),
// which holds the middleware's request id. Such an answer has a
// Content-Length and no trailers; its body is copied as any other.
func (p *Proxy) serveLean(w http.ResponseWriter, r *http.Request, lr *leanResponse, tp []string) {
	la := &lr.ans
	if err := p.answerGate(r, la.head.StatusCode); err != nil {
		la.body.Close()
		p.upstreamError(w, r, err)
		return
	}
	fields := answerFields(la.head.Fields, p.reqID, tp)
	la.head.Fields = fields
	dst := w.Header()
	shared := false
	for k := range dst {
		for i := range fields {
			if fields[i].Key == k {
				shared = true
			}
		}
	}
	if shared {
		// A key in both (none so far: the map holds the request id the
		// list has not): the upstream's values after the map's, in it.
		for _, f := range fields {
			dst[f.Key] = append(dst[f.Key], f.Value)
		}
	} else {
		lr.up = fields
	}
	w.WriteHeader(la.head.StatusCode)
	var rc *http.ResponseController
	flush := false
	for i := range fields {
		if f := &fields[i]; f.Key == "Content-Type" {
			if strings.Contains(f.Value, "event-stream") {
				base, _, _ := mime.ParseMediaType(f.Value)
				flush = base == "text/event-stream"
			}
			break
		}
	}
	if flush {
		rc = http.NewResponseController(w)
		rc.Flush() // the header goes at once, even if the body is slow to come
	}
	err := p.copyBody(w, la.body, rc, flush)
	la.body.Close()
	if err != nil && r.Context().Value(http.ServerContextKey) != nil {
		panic(http.ErrAbortHandler) // as serveFast
	}
}

// answerFields takes out of an answer's fields (in place) the hop-by-hop
// ones (hopHeaders and those its Connection names), the request id
// (reqID) and traceparent, adds the traceparent tp sent upstream (if one),
// and sorts them by key, a key's values in their order: what serveFast
// and answer do to the answer's header map.
func answerFields(fields []h1.Field, reqID string, tp []string) []h1.Field {
	var named []string
	for _, f := range fields {
		if f.Key == "Connection" {
			for n := range strings.SplitSeq(f.Value, ",") {
				if n = textproto.TrimString(n); n != "" {
					named = append(named, textproto.CanonicalMIMEHeaderKey(n))
				}
			}
		}
	}
	kept := fields[:0]
	for _, f := range fields {
		if f.Key == reqID || f.Key == "Traceparent" || contains(hopHeaders, f.Key) || contains(named, f.Key) {
			continue
		}
		kept = append(kept, f)
	}
	clear(fields[len(kept):])
	if len(tp) == 1 {
		kept = append(kept, h1.Field{Key: "Traceparent", Value: tp[0]})
	}
	slices.SortStableFunc(kept, func(a, b h1.Field) int { return strings.Compare(a.Key, b.Key) })
	return kept
}

// copyBody copies an answer's body to the client with a pooled buffer.
func (p *Proxy) copyBody(w io.Writer, body io.Reader, rc *http.ResponseController, flush bool) error {
	buf := p.pool.Get()
	defer p.pool.Put(buf)
	for {
		n, rerr := body.Read(buf)
		if rerr != nil && rerr != io.EOF && !errors.Is(rerr, context.Canceled) {
			p.log.Warn("proxy: reading the upstream's answer failed", "err", rerr)
		}
		if n > 0 {
			nw, werr := w.Write(buf[:n])
			if werr != nil {
				return werr
			}
			if nw != n {
				return io.ErrShortWrite
			}
			if flush {
				rc.Flush()
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return nil
			}
			return rerr
		}
	}
}
