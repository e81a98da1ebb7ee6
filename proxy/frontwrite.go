package proxy

import (
	"bufio"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/internal/h1"
)

// leanResponse is the lean front end's http.ResponseWriter. It writes what
// net/http's HTTP/1.1 server writes for the same handler calls, byte for
// byte (TestLeanFrontMatchesNetHTTP): the status line, the handler's header
// sorted, then Date, Content-Length, Content-Type (sniffed),
// Connection and Transfer-Encoding as net/http adds them, the body
// through a 2 KiB buffer (so that a small answer gets a Content-Length and
// a larger one is chunked at the same boundaries), trailers. It follows
// net/http's response and chunkWriter (server.go) for the requests the
// front end serves itself: HTTP/1.1, no body, no Connection: close, no
// Expect. It is reused for each request of its connection: a handler may
// not use it once it returned (net/http's rule; httpaudit enforces it).
type leanResponse struct {
	lc     *leanConn
	req    *http.Request
	header http.Header // the handler's
	snap   http.Header // the header as of WriteHeader (net/http's cw.header)
	// up is the upstream's fields of the fast path's common answer
	// (serveLean), sorted by key: a part of the header that never was
	// a map. Its keys are none of header's, and it is not changed once
	// WriteHeader is called, so it is its own snapshot.
	up []h1.Field
	// ans is the fast path's common answer being read for this request
	// (h1Transport.exchange): up is a part of its fields.
	ans leanAnswer
	// upReq is what the fast path sends upstream for this request, and
	// upWrite its writeReq, bound once for the connection.
	upReq   upstreamReq
	upWrite func(*bufio.Writer) error

	w       *bufio.Writer
	cw      chunkWriter
	status  int
	clen    int64 // declared Content-Length, -1 if none
	written int64

	calledHeader, wroteHeader, cwWrote, handlerDone, closeAfterReply, chunking bool

	trailers []string // declared trailers
	scratch  [32]byte
	keys     []string
}

type chunkWriter struct{ res *leanResponse }

func (w *leanResponse) reset(r *http.Request) {
	w.req = r
	clear(w.header)
	w.up = nil
	w.status, w.clen, w.written = 0, -1, 0
	w.calledHeader, w.wroteHeader, w.cwWrote, w.handlerDone, w.closeAfterReply, w.chunking = false, false, false, false, false, false
	w.trailers = w.trailers[:0]
	w.w.Reset(&w.cw)
}

func (w *leanResponse) Header() http.Header {
	w.calledHeader = true
	return w.header
}

func (w *leanResponse) WriteHeader(code int) {
	if w.wroteHeader {
		w.lc.f.logf("http: superfluous response.WriteHeader call")
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	bw := w.lc.bw
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		writeStatusLine(bw, code, w.scratch[:0])
		w.writeSubset(bw, &respHeader{m: w.header, list: w.up}, true)
		bw.WriteString("\r\n")
		bw.Flush()
		return
	}
	w.wroteHeader = true
	w.status = code
	// The header as written: later changes (trailers) do not show in it.
	clear(w.snap)
	for k, v := range w.header {
		w.snap[k] = v
	}
	h := respHeader{m: w.header, list: w.up}
	if cl := h.get("Content-Length"); cl != "" {
		v, err := strconv.ParseInt(cl, 10, 64)
		if err == nil && v >= 0 {
			w.clen = v
		} else {
			w.lc.f.logf("http: invalid Content-Length of %q", cl)
			h.del("Content-Length")
			w.up = h.list
		}
	}
}

func (w *leanResponse) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.clen != -1 && w.written > w.clen {
		return 0, http.ErrContentLength
	}
	return w.w.Write(p)
}

// Flush and FlushError: as net/http's (SSE, streamed answers).
func (w *leanResponse) Flush() { w.FlushError() }

func (w *leanResponse) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	err := w.w.Flush()
	e2 := w.cw.flush()
	if err == nil {
		err = e2
	}
	return err
}

// finish ends the response after the handler returned, and reports
// whether the connection may serve another request.
func (w *leanResponse) finish() bool {
	w.handlerDone = true
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.w.Flush()
	w.cw.close()
	w.lc.bw.Flush()
	if w.closeAfterReply {
		return false
	}
	if w.req.Method != http.MethodHead && w.clen != -1 && bodyAllowedForStatus(w.status) && w.clen != w.written {
		return false
	}
	return w.lc.werr == nil
}

func (cw *chunkWriter) Write(p []byte) (int, error) {
	w := cw.res
	if !w.cwWrote {
		w.writeHeader(p)
	}
	if w.req.Method == http.MethodHead {
		return len(p), nil
	}
	bw := w.lc.bw
	var err error
	if w.chunking {
		bw.Write(strconv.AppendInt(w.scratch[:0], int64(len(p)), 16))
		_, err = bw.WriteString("\r\n")
		if err != nil {
			w.lc.broken()
			return 0, err
		}
	}
	n, err := bw.Write(p)
	if w.chunking && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		w.lc.broken()
	}
	return n, err
}

func (cw *chunkWriter) flush() error {
	if !cw.res.cwWrote {
		cw.res.writeHeader(nil)
	}
	return cw.res.lc.bw.Flush()
}

func (cw *chunkWriter) close() {
	w := cw.res
	if !w.cwWrote {
		w.writeHeader(nil)
	}
	if w.chunking {
		bw := w.lc.bw
		bw.WriteString("0\r\n")
		if t := w.finalTrailers(); t != nil {
			w.writeSubset(bw, &respHeader{m: t}, false)
		}
		bw.WriteString("\r\n")
	}
}

// finalTrailers: net/http's, from the handler's header after it returned.
func (w *leanResponse) finalTrailers() http.Header {
	var t http.Header
	for k, vv := range w.header {
		if kk, found := strings.CutPrefix(k, http.TrailerPrefix); found {
			if t == nil {
				t = make(http.Header)
			}
			t[kk] = vv
		}
	}
	h := respHeader{m: w.header, list: w.up}
	for _, k := range w.trailers {
		if t == nil {
			t = make(http.Header)
		}
		for _, v := range h.values(k) {
			t.Add(k, v)
		}
	}
	return t
}

func (w *leanResponse) declareTrailer(k string) {
	k = http.CanonicalHeaderKey(k)
	if strings.HasPrefix(k, "If-") || badTrailer[k] {
		return
	}
	w.trailers = append(w.trailers, k)
}

// badTrailer: httpguts.ValidTrailerHeader's list.
var badTrailer = map[string]bool{
	"Authorization": true, "Cache-Control": true, "Connection": true, "Content-Encoding": true,
	"Content-Length": true, "Content-Range": true, "Content-Type": true, "Expect": true, "Host": true,
	"Keep-Alive": true, "Max-Forwards": true, "Pragma": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Proxy-Connection": true, "Range": true, "Realm": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Www-Authenticate": true,
}

// writeHeader is net/http's chunkWriter.writeHeader for an HTTP/1.1
// request without a body, Expect or Connection: close; p is the first
// chunk of the body (sniffed; its length is the Content-Length if the
// handler is done).
func (w *leanResponse) writeHeader(p []byte) {
	w.cwWrote = true
	keepAlives := !w.lc.f.shutting.Load()
	isHEAD := w.req.Method == http.MethodHead
	header := &respHeader{m: w.snap, list: w.up}
	defer func() { w.up = header.list }()
	var (
		date, clen             []byte
		ctype, conn, transferE string
	)
	trailers := false
	// The map's keys, for writeSorted below (one walk of the map; a key
	// deleted between here and there has no values, so no lines).
	keys := w.keys[:0]
	for k := range header.m {
		// (The list's keys are tokens: none has the prefix's colon.)
		if strings.HasPrefix(k, http.TrailerPrefix) {
			delete(header.m, k)
			trailers = true
			continue
		}
		keys = append(keys, k)
	}
	for _, v := range header.values("Trailer") {
		trailers = true
		v = textproto.TrimString(v)
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				w.declareTrailer(f)
			}
		}
	}
	te := header.get("Transfer-Encoding")
	hasTE := te != ""
	hasCLField := header.has("Content-Length")
	if w.handlerDone && !trailers && !hasTE && bodyAllowedForStatus(w.status) && !hasCLField && (!isHEAD || len(p) > 0) {
		w.clen = int64(len(p))
		clen = strconv.AppendInt(w.scratch[:0], int64(len(p)), 10)
	}
	hasCL := w.clen != -1
	if header.get("Connection") == "close" || !keepAlives {
		w.closeAfterReply = true
	}
	code := w.status
	if bodyAllowedForStatus(code) {
		haveType := header.has("Content-Type")
		if header.get("Content-Encoding") == "" && !haveType && !hasTE && len(p) > 0 {
			ctype = http.DetectContentType(p)
		}
	} else {
		header.del("Content-Length")
		header.del("Transfer-Encoding")
		if code == http.StatusNotModified {
			header.del("Content-Type")
		}
	}
	if !header.has("Date") {
		date = appendDate(w.lc.date[:0])
	}
	if hasCL && hasTE && te != "identity" {
		w.lc.f.logf("http: WriteHeader called with both Transfer-Encoding of %q and a Content-Length of %d", te, w.clen)
		header.del("Content-Length")
		hasCL = false
	}
	switch {
	case isHEAD || !bodyAllowedForStatus(code) || code == http.StatusNoContent:
		header.del("Transfer-Encoding")
	case hasCL:
		header.del("Transfer-Encoding")
	case hasTE && te == "identity":
		w.chunking = false
		w.closeAfterReply = true
		header.del("Transfer-Encoding")
	default:
		w.chunking = true
		transferE = "chunked"
		if hasTE && te == "chunked" {
			header.del("Transfer-Encoding")
		}
	}
	if w.chunking {
		header.del("Content-Length")
	}
	if w.closeAfterReply && (!keepAlives || !hasToken(header.get("Connection"), "close")) && !isProtocolSwitch(code, header) {
		header.del("Connection")
		conn = "close"
	}
	bw := w.lc.bw
	writeStatusLine(bw, code, w.lc.status[:0])
	slices.Sort(keys)
	writeSorted(bw, header, keys, false)
	clear(keys)
	w.keys = keys[:0]
	if date != nil {
		bw.WriteString("Date: ")
		bw.Write(date)
		bw.WriteString("\r\n")
	}
	if clen != nil {
		bw.WriteString("Content-Length: ")
		bw.Write(clen)
		bw.WriteString("\r\n")
	}
	for i, v := range [3]string{ctype, conn, transferE} {
		if v != "" {
			bw.WriteString([3]string{"Content-Type", "Connection", "Transfer-Encoding"}[i])
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("\r\n")
}

// writeSubset is Header.WriteSubset: sorted by key, fields with invalid
// names dropped, CR and LF in values made spaces, values trimmed; noBody
// leaves out Content-Length and Transfer-Encoding (1xx answers). The
// map's keys and the list's (sorted already) are written merged in one
// order, as if they were one map.
func (w *leanResponse) writeSubset(bw *bufio.Writer, h *respHeader, noBody bool) {
	keys := w.keys[:0]
	for k := range h.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	writeSorted(bw, h, keys, noBody)
	clear(keys)
	w.keys = keys[:0]
}

// writeSorted is writeSubset with the map's keys given, sorted.
func writeSorted(bw *bufio.Writer, h *respHeader, keys []string, noBody bool) {
	list := h.list
	for i := 0; i < len(keys) || len(list) > 0; {
		if i < len(keys) && (len(list) == 0 || keys[i] <= list[0].Key) {
			k := keys[i]
			i++
			if !(noBody && (k == "Content-Length" || k == "Transfer-Encoding")) && validFieldName(k) {
				for _, v := range h.m[k] {
					writeHeaderLine(bw, k, v)
				}
			}
			continue
		}
		k := list[0].Key
		n := 1
		for n < len(list) && list[n].Key == k {
			n++
		}
		if !(noBody && (k == "Content-Length" || k == "Transfer-Encoding")) && validFieldName(k) {
			for _, f := range list[:n] {
				writeHeaderLine(bw, k, f.Value)
			}
		}
		list = list[n:]
	}
}

// writeHeaderLine writes a field as Header.Write does: CR and LF in the
// value made spaces, the value trimmed of ASCII white space.
func writeHeaderLine(bw *bufio.Writer, k, v string) {
	if !plainValue(v) {
		if strings.ContainsAny(v, "\r\n") {
			v = strings.NewReplacer("\n", " ", "\r", " ").Replace(v)
		}
		v = textproto.TrimString(v)
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// plainValue reports whether v has no byte writeHeaderLine changes: no
// CR or LF, no ASCII white space at its ends (most values; one loop
// instead of a search and a trim).
func plainValue(v string) bool {
	if len(v) > 0 && (asciiSpace(v[0]) || asciiSpace(v[len(v)-1])) {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			return false
		}
	}
	return true
}

// asciiSpace: the bytes textproto.TrimString trims.
func asciiSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// respHeader is the header a lean response writes: a map and, for the
// fast path's common answer, a list of fields sorted by key whose keys
// are none of the map's (leanResponse.up). Its methods are the map
// operations the writer needs, over both as if they were one map.
type respHeader struct {
	m    http.Header
	list []h1.Field
}

// has reports whether k is a key.
func (h *respHeader) has(k string) bool {
	if _, ok := h.m[k]; ok {
		return true
	}
	for i := range h.list {
		if h.list[i].Key == k {
			return true
		}
	}
	return false
}

// get returns k's first value, or "".
func (h *respHeader) get(k string) string {
	if vv, ok := h.m[k]; ok {
		if len(vv) > 0 {
			return vv[0]
		}
		return ""
	}
	for i := range h.list {
		if h.list[i].Key == k {
			return h.list[i].Value
		}
	}
	return ""
}

// values returns k's values, in order.
func (h *respHeader) values(k string) []string {
	if vv, ok := h.m[k]; ok {
		return vv
	}
	var vv []string
	for i := range h.list {
		if h.list[i].Key == k {
			vv = append(vv, h.list[i].Value)
		}
	}
	return vv
}

// del removes k.
func (h *respHeader) del(k string) {
	delete(h.m, k)
	if !h.has(k) {
		return
	}
	kept := h.list[:0]
	for _, f := range h.list {
		if f.Key != k {
			kept = append(kept, f)
		}
	}
	clear(h.list[len(kept):])
	h.list = kept
}

func bodyAllowedForStatus(status int) bool {
	return !(status >= 100 && status <= 199 || status == 204 || status == 304)
}

func isProtocolSwitch(code int, h *respHeader) bool {
	if code != http.StatusSwitchingProtocols || h.get("Upgrade") == "" {
		return false
	}
	for _, v := range h.values("Connection") {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(f), "upgrade") {
				return true
			}
		}
	}
	return false
}

// hasToken is net/http's: token appears in v, case-insensitively, between
// token boundaries.
func hasToken(v, token string) bool {
	if len(token) > len(v) || token == "" {
		return false
	}
	if v == token {
		return true
	}
	for sp := 0; sp <= len(v)-len(token); sp++ {
		if b := v[sp]; b != token[0] && b|0x20 != token[0] {
			continue
		}
		if sp > 0 && !isTokenBoundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !isTokenBoundary(v[end]) {
			continue
		}
		if strings.EqualFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

func writeStatusLine(bw *bufio.Writer, code int, scratch []byte) {
	bw.WriteString("HTTP/1.1 ")
	if text := http.StatusText(code); text != "" {
		bw.Write(strconv.AppendInt(scratch, int64(code), 10))
		bw.WriteByte(' ')
		bw.WriteString(text)
		bw.WriteString("\r\n")
	} else {
		c := strconv.Itoa(code)
		for len(c) < 3 {
			c = "0" + c
		}
		bw.WriteString(c + " status code " + strconv.Itoa(code) + "\r\n")
	}
}

// dateCache is the Date field of the current second (formatting it is a
// noticeable share of a small answer's cost).
type dateCache struct {
	sec int64
	b   []byte
}

var lastDate atomic.Pointer[dateCache]

func appendDate(dst []byte) []byte {
	now := time.Now()
	sec := now.Unix()
	if d := lastDate.Load(); d != nil && d.sec == sec {
		return append(dst, d.b...)
	}
	d := &dateCache{sec: sec, b: now.UTC().AppendFormat(nil, http.TimeFormat)}
	lastDate.Store(d)
	return append(dst, d.b...)
}
