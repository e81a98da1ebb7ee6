package server

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/redact"
)

// Ingest streams: a request's events are prepared and appended to the
// ledger in chunks of at most chunkEvents events or chunkBytes bytes of
// prepared records, each durable before the next is read, so the memory a
// request holds does not grow with its body. What it does hold: the line
// reader (max_line_bytes), one chunk (chunkBytes plus one record), one
// event being prepared (a few times max_line_bytes), and the per-line
// results the answer needs (a few dozen bytes per rejected line or _bulk
// item, at most max_request_events of them, plus at most maxErrorText of
// distinct error messages). README "Limits" states the resulting bound.
const (
	chunkEvents = 2048
	chunkBytes  = 1 << 20
	// maxErrorLen cuts one error message; maxErrorText bounds the distinct
	// error text one request keeps for its answer.
	maxErrorLen  = 300
	maxErrorText = 1 << 20
)

// lineError is one rejected input line.
type lineError struct {
	Line   int    `json:"line"`
	Status int    `json:"status,omitempty"`
	Error  string `json:"error"`
}

// storedRange is one append of a request's events: count events at
// consecutive ledger indices from first_index.
type storedRange struct {
	First uint64 `json:"first_index"`
	Count int    `json:"count"`
}

// ingestResponse is the answer to POST /v1/events.
//
// A request either completes (200, or 400 when no line was valid): every
// line not named in errors was stored, or was a duplicate of an event
// stored recently. Or it stops at resume_line (any other status, with
// error saying why): lines before resume_line were processed as reported,
// lines from resume_line on were not stored, except that with outcome
// "unknown" the lines up to unknown_through_line may have been. Resending
// a whole stopped request is safe for events that carry event.id:
// duplicates are dropped.
type ingestResponse struct {
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
	// Duplicates are events whose event.id was stored recently: they are
	// acknowledged without being stored again.
	Duplicates int `json:"duplicates,omitempty"`
	// FirstIndex is the ledger index of the first event stored; Stored
	// lists every append (one per chunk of the request).
	FirstIndex *uint64       `json:"first_index,omitempty"`
	Stored     []storedRange `json:"stored,omitempty"`
	Errors     []lineError   `json:"errors,omitempty"`

	Error              string `json:"error,omitempty"`
	ResumeLine         int    `json:"resume_line,omitempty"`
	Outcome            string `json:"outcome,omitempty"`
	UnknownThroughLine int    `json:"unknown_through_line,omitempty"`
}

// Body errors. Each names the limit or the fault, so the client knows
// what to change.
var (
	errTooLarge       = errors.New("request body too large")
	errTooManyEvents  = errors.New("too many events in one request")
	errBadEncoding    = errors.New("unsupported Content-Encoding")
	errBadGzip        = errors.New("bad gzip body")
	errContentTooLong = errors.New("Content-Length above max_request_bytes")
)

// body returns the request body, decompressed when the client says so,
// bounded by MaxRequestBytes both before and after decompression (a small
// gzip bomb must not become gigabytes) and by the body timeouts.
func (s *Server) body(w http.ResponseWriter, r *http.Request) (io.Reader, *deadlineBody, error) {
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	if enc != "" && enc != "identity" && enc != "gzip" && enc != "x-gzip" {
		return nil, nil, fmt.Errorf("%w %q: send the body plain or with Content-Encoding: gzip", errBadEncoding, r.Header.Get("Content-Encoding"))
	}
	if r.ContentLength > s.cfg.MaxRequestBytes {
		return nil, nil, fmt.Errorf("%w: request body of %d bytes exceeds %d bytes (max_request_bytes); nothing was stored", errContentTooLong, r.ContentLength, s.cfg.MaxRequestBytes)
	}
	db := newDeadlineBody(w, r.Body, s.cfg.BodyIdleTimeout, s.cfg.BodyReadTimeout)
	body := &limitedReader{r: db, n: s.cfg.MaxRequestBytes, what: "request body"}
	if enc == "gzip" || enc == "x-gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			if errors.Is(err, errTooLarge) || errors.Is(err, errBodyTimeout) {
				return nil, db, err
			}
			return nil, db, fmt.Errorf("%w: %v", errBadGzip, err)
		}
		return &gzipErrReader{&limitedReader{r: zr, n: s.cfg.MaxRequestBytes, what: "request body after decompression"}}, db, nil
	}
	return body, db, nil
}

// limitedReader fails, rather than truncating silently, past n bytes.
type limitedReader struct {
	r     io.Reader
	n     int64
	limit int64
	what  string
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.limit == 0 {
		l.limit = l.n
	}
	if l.n <= 0 {
		// One byte more tells an exact fit from an excess.
		var b [1]byte
		if n, _ := l.r.Read(b[:]); n == 0 {
			return 0, io.EOF
		}
		return 0, fmt.Errorf("%w: %s exceeds %d bytes (max_request_bytes)", errTooLarge, l.what, l.limit)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// gzipErrReader marks corrupt compressed data as the client's mistake.
type gzipErrReader struct{ r io.Reader }

func (g *gzipErrReader) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, errTooLarge) && !errors.Is(err, errBodyTimeout) &&
		(errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) || isFlateError(err)) {
		err = fmt.Errorf("%w: %v", errBadGzip, err)
	}
	return n, err
}

func isFlateError(err error) bool {
	return strings.HasPrefix(err.Error(), "flate: ")
}

// forLines calls fn for every non-blank line of r, numbered from 1, until
// fn returns false. A line longer than max is passed as nil with tooLong
// set, after its bytes were skipped, so one oversized line costs neither
// memory nor the rest of the request.
//
// With u (not nil), fn is called holding u's turn (prepTurns), which is
// given up before any read of r: lines already in the reader's buffer are
// handed to fn with it, and when no complete line is left, it is given up
// before the next is read.
func forLines(r io.Reader, max int, u *turn, fn func(n int, line []byte, tooLong bool) bool) error {
	br := getLineReader(r, max+1)
	defer putLineReader(br)
	defer u.give()
	// partial is how many bytes at the end of br's buffer follow its last
	// newline (-1: not known): while more are buffered, ReadSlice returns
	// a complete line without reading r.
	partial := -1
	for n := 1; ; n++ {
		if u != nil && (partial < 0 || br.Buffered() <= partial) {
			b, _ := br.Peek(br.Buffered()) // what is buffered: reads nothing
			partial = len(b) - (bytes.LastIndexByte(b, '\n') + 1)
			if len(b) <= partial {
				// No complete line buffered: ReadSlice reads r.
				u.give()
				partial = -1
			}
		}
		line, err := br.ReadSlice('\n')
		tooLong := false
		for errors.Is(err, bufio.ErrBufferFull) {
			tooLong = true
			_, err = br.ReadSlice('\n')
		}
		if tooLong {
			partial = -1 // the buffer was read past the line
		}
		if err != nil && err != io.EOF {
			return err
		}
		if len(bytes.TrimSpace(line)) > 0 || tooLong {
			u.take()
			var ok bool
			if tooLong {
				ok = fn(n, nil, true)
			} else {
				ok = fn(n, trimEOL(line), false)
			}
			if !ok {
				return nil
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

// trimEOL is bytes.TrimRight(line, "\r\n") without building the cutset's
// set for every line (~0.7 % of the collector's CPU under ingest load).
func trimEOL(line []byte) []byte {
	for len(line) > 0 && (line[len(line)-1] == '\n' || line[len(line)-1] == '\r') {
		line = line[:len(line)-1]
	}
	return line
}

// lineReaders keeps forLines' readers (a max_line_bytes buffer each, 256
// KiB by default: allocated per request, they were a twentieth of the
// collector's allocations under ingest load).
var lineReaders sync.Pool

func getLineReader(r io.Reader, size int) *bufio.Reader {
	if br, ok := lineReaders.Get().(*bufio.Reader); ok && br.Size() == size {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, size)
}

func putLineReader(br *bufio.Reader) {
	br.Reset(nil) // drop the body
	lineReaders.Put(br)
}

// prepare appends to dst the record the ledger stores for one submitted
// event: scrubbed again (a shipper may not have scrubbed, or scrubbed
// less), checked, normalised to trailguard's encoding, stamped
// event.ingested. key identifies the event.id the client sent, for
// deduplication (0 when the collector assigned one, or the resend window
// is off). scratch is reused for the scrubbed copy.
//
// The scrubbed line is re-encoded in one pass by event.AppendNormalized
// when it can; any line it leaves (fields Event does not model, invalid
// lines, …) takes the full path, prepareDecoded, which it matches byte
// for byte (TestPrepareFastMatchesDecoded, FuzzPrepare).
//
// sp (if not nil) receives where the record holds each field (event.Spans) when the
// one-pass path wrote it, and is left not OK otherwise: the ledger's
// followers read their fields through it instead of parsing the record.
func (s *Server) prepare(dst, scratch, line []byte, now time.Time, sp *event.Spans) (out, scratchOut []byte, key uint64, err error) {
	return s.prepareTok(dst, scratch, line, now, sp, nil)
}

// prepareTok is prepare, in one pass over line when tok (s.red's, for
// this goroutine) is not nil and the line has nothing to scrub: the
// normaliser asks tok about every key, string and number as it reads them
// (event.AppendNormalizedScrubbed), and when scrubbing would change none
// of them the scrubbed line is the line itself. Otherwise, and for every
// line the one pass does not handle, the line is scrubbed and normalised
// in two passes as before (TestPrepareOnePassMatchesTwo, FuzzPrepare).
// Scrubbing and normalising were each a sixth of the collector's CPU
// under ingest load, most of the scrubber's share in walking the JSON a
// second time.
func (s *Server) prepareTok(dst, scratch, line []byte, now time.Time, sp *event.Spans, tok *event.ScrubPass) (out, scratchOut []byte, key uint64, err error) {
	if tok != nil {
		if out, id, ok := event.AppendNormalizedScrubbed(dst, line, now, event.AppendID, sp, tok); ok {
			return out, scratch, s.recent.keyOf(id), nil
		}
	}
	scrubbed, err := s.red.JSON(scratch[:0], line)
	if err != nil {
		return dst, scratch, 0, err
	}
	if out, id, ok := event.AppendNormalizedSpans(dst, scrubbed, now, event.AppendID, sp); ok {
		return out, scrubbed, s.recent.keyOf(id), nil
	}
	if sp != nil {
		*sp = event.Spans{}
	}
	out, id, err := prepareDecoded(dst, scrubbed, now, event.AppendID)
	return out, scrubbed, s.recent.keyOfString(id), err
}

// prepareDecoded is prepare's full path for a scrubbed line: decode into an
// Event, check, fill in what the collector adds, encode. id is the
// event.id the client sent ("" when none: newID makes one).
func prepareDecoded(dst, scrubbed []byte, now time.Time, newID func([]byte) []byte) (out []byte, id string, err error) {
	ev, err := event.Decode(scrubbed)
	if err != nil {
		return dst, "", err
	}
	if err := checkCategories(ev); err != nil {
		return dst, "", err
	}
	// Every ECS field at its ECS type: a line that breaks it is rejected
	// with the field, what ECS wants and what came (README: the original
	// is not kept under event.original, so nothing sits under an ECS name
	// with the wrong type, and the client learns what to fix).
	if err := ev.CheckECS(); err != nil {
		return dst, "", err
	}
	// What the collector trusts as its own (alerts and their status
	// changes, rebuilt at start; its reads and stops in signed reports)
	// must not come from a shipper's token.
	if err := ev.CheckProvenance(); err != nil {
		return dst, "", err
	}
	clientID := ev.ID
	if ev.Timestamp.IsZero() {
		ev.Timestamp = now
	}
	if ev.Kind == "" {
		ev.Kind = event.KindEvent
	}
	if ev.ID == "" {
		ev.ID = string(newID(nil))
	}
	ev.Ingested = now
	return ev.AppendJSON(dst), clientID, nil
}

// checkCategories rejects categorisation values ECS does not allow: they
// would make the event invisible to every ECS-based rule and dashboard.
func checkCategories(ev *event.Event) error {
	// An empty kind or outcome is one not sent; an empty element of a
	// category or type list is a value, and not one ECS allows.
	check := func(field string, emptyIsAbsent bool, vals ...string) error {
		allowed := event.ECSAllowed(field)
		for _, v := range vals {
			if (v != "" || !emptyIsAbsent) && !slices.Contains(allowed, v) {
				return fmt.Errorf("%s %q is not an ECS value (%s)", field, v, strings.Join(allowed, ", "))
			}
		}
		return nil
	}
	return errors.Join(
		check("event.kind", true, ev.Kind),
		check("event.category", false, ev.Category...),
		check("event.type", false, ev.Type...),
		check("event.outcome", true, ev.Outcome),
	)
}

// chunk collects prepared records until they are appended together.
type chunk struct {
	buf     []byte // records back to back
	ends    []int
	keys    []uint64 // the clients' event.ids as recentIDs keys (0: none)
	refs    []int    // line or item number of each record
	lines   []int    // the line a client resumes from to send the record again
	recs    [][]byte
	scratch []byte
	// spans locate the fields of each record (not OK for those the
	// one-pass path did not write); the ledger is handed a copy with the
	// records (AppendAux) and keeps it.
	spans []event.Spans
	// tok is tokFor's, for the one-pass prepare (the pool is shared by
	// every Server of the process).
	tok    *event.ScrubPass
	tokFor *redact.Redactor
}

var chunkPool = sync.Pool{New: func() any { return &chunk{buf: make([]byte, 0, chunkBytes+64<<10)} }}

func getChunk() *chunk { return chunkPool.Get().(*chunk) }

func putChunk(c *chunk) {
	c.reset()
	// A chunk that grew around a huge record is not kept.
	if cap(c.buf) <= 4*chunkBytes && cap(c.scratch) <= 4*chunkBytes {
		chunkPool.Put(c)
	}
}

func (c *chunk) len() int { return len(c.ends) }

func (c *chunk) full(maxEvents int) bool { return len(c.ends) >= maxEvents || len(c.buf) >= chunkBytes }

func (c *chunk) reset() {
	c.buf, c.ends, c.keys, c.refs, c.lines = c.buf[:0], c.ends[:0], c.keys[:0], c.refs[:0], c.lines[:0]
	c.spans = c.spans[:0]
	clear(c.recs)
	c.recs = c.recs[:0]
}

// addTo prepares line into the chunk.
func (s *Server) addTo(c *chunk, line []byte, ref, lineNo int, now time.Time) error {
	start := len(c.buf)
	c.spans = append(c.spans, event.Spans{})
	if c.tokFor != s.red {
		c.tok, c.tokFor = event.NewScrubPass(s.red.NewTokens()), s.red
	}
	buf, scratch, key, err := s.prepareTok(c.buf, c.scratch, line, now, &c.spans[len(c.spans)-1], c.tok)
	c.scratch = scratch
	if err != nil {
		c.buf = c.buf[:start]
		c.spans = c.spans[:len(c.spans)-1]
		return err
	}
	c.buf = buf
	c.ends = append(c.ends, len(buf))
	c.keys = append(c.keys, key)
	c.refs = append(c.refs, ref)
	c.lines = append(c.lines, lineNo)
	return nil
}

// clientID is the event.id of record i, read back from the record (for
// the rare answers that name it).
func (c *chunk) clientID(i int) string {
	start := 0
	if i > 0 {
		start = c.ends[i-1]
	}
	id, _ := event.PeekID(c.buf[start:c.ends[i]])
	return id
}

// storeFailure is what a client is told when the ledger did not store a
// chunk: the status, whether the events are certainly not stored, and
// when to try again. The message never carries server paths.
type storeFailure struct {
	status     int
	outcome    string // "not_stored" or "unknown"
	msg        string
	retryAfter int // seconds, 0 for none
}

// classifyStoreError maps a ledger error to what the client can rely on
// (ledger.Append says which errors guarantee what). The message never
// carries the ledger's own text, which names server paths.
func classifyStoreError(err error) storeFailure {
	switch {
	case errors.Is(err, ledger.ErrNoSpace):
		return storeFailure{http.StatusInsufficientStorage, "not_stored",
			"the collector's disk is full (or below its disk_reserve); events not stored: send them again later, the collector resumes by itself when space is freed", 30}
	case errors.Is(err, ledger.ErrUnknownOutcome):
		return storeFailure{http.StatusInternalServerError, "unknown",
			"writing the events failed and they may or may not be stored: send them again; events with event.id that were stored are dropped as duplicates", 5}
	case errors.Is(err, ledger.ErrFailed):
		return storeFailure{http.StatusServiceUnavailable, "not_stored",
			"the collector's storage failed after an I/O error and needs its operator (a restart); events not stored: send them again later", 60}
	case errors.Is(err, ledger.ErrClosed):
		return storeFailure{http.StatusServiceUnavailable, "not_stored", "the collector is shutting down; events not stored, send them again", 5}
	case errors.Is(err, ledger.ErrTooLarge):
		return storeFailure{http.StatusRequestEntityTooLarge, "not_stored", "an event is larger than the ledger's record limit; events not stored", 0}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return storeFailure{http.StatusServiceUnavailable, "not_stored", "the request ended before its events were queued for storage; events not stored, send them again", 1}
	}
	return storeFailure{http.StatusInternalServerError, "unknown",
		"storing the events failed and they may or may not be stored: send them again; events with event.id that were stored are dropped as duplicates", 5}
}

// storeFailed accounts for n events of a request (what: "ingest", "bulk",
// "otlp") that the ledger did not take, the same for every way in: the
// log line (rate-limited), the failed-events counter, and what the client
// may rely on.
func (s *Server) storeFailed(what string, n int, err error) storeFailure {
	s.appendLog.log(s.log, time.Now(), what, n, err)
	s.metrics.failed.Add(uint64(n))
	return classifyStoreError(err)
}

// appendChunk stores a chunk's records, except those whose event.id was
// stored recently or by a request meanwhile (recentIDs.claim). dup tells which were dropped as duplicates; the others
// are at consecutive ledger indices from first.
func (s *Server) appendChunk(ctx context.Context, c *chunk) (dup []bool, first uint64, kept int, err error) {
	dup = s.recent.claim(c.keys)
	stored := false
	defer func() { s.recent.release(c.keys, dup, stored) }()
	start := 0
	c.recs = c.recs[:0]
	for i, end := range c.ends {
		if !dup[i] {
			c.recs = append(c.recs, c.buf[start:end:end])
		}
		start = end
	}
	if len(c.recs) == 0 {
		return dup, 0, 0, nil
	}
	// The ledger keeps the spans with the records for the followers: a
	// copy of the kept records' spans, of their number.
	var spans []event.Spans
	if len(c.recs) == len(c.ends) {
		// Nothing dropped (the usual case): one copy, without first
		// zeroing what it overwrites (as make and append did).
		spans = slices.Clone(c.spans[:len(c.ends)])
	} else {
		spans = make([]event.Spans, 0, len(c.recs))
		for i := range c.ends {
			if !dup[i] {
				spans = append(spans, c.spans[i])
			}
		}
	}
	first, err = s.ledger.AppendAux(ctx, spans, c.recs...)
	if err != nil {
		return dup, 0, 0, err
	}
	stored = true
	s.metrics.ingested.Add(uint64(len(c.recs)))
	return dup, first, len(c.recs), nil
}

// errorTexts keeps one copy of each distinct error message of a request,
// up to maxErrorText bytes in all: an attacker's body of a million
// different mistakes costs no more than that.
type errorTexts struct {
	seen  map[string]string
	bytes int
}

func (e *errorTexts) text(msg string) string {
	if len(msg) > maxErrorLen {
		msg = msg[:maxErrorLen] + "…"
	}
	if s, ok := e.seen[msg]; ok {
		return s
	}
	if e.bytes+len(msg) > maxErrorText {
		return "invalid (details omitted: this request's errors exceed 1 MiB of text)"
	}
	if e.seen == nil {
		e.seen = map[string]string{}
	}
	e.seen[msg] = msg
	e.bytes += len(msg)
	return msg
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// bodyStatus is the status and message for an error reading the body.
func bodyStatus(err error) (int, string) {
	switch {
	case errors.Is(err, errContentTooLong), errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge, err.Error() + "; send smaller batches"
	case errors.Is(err, errBadEncoding):
		return http.StatusUnsupportedMediaType, err.Error()
	case errors.Is(err, errBadGzip):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, errBodyTimeout):
		return http.StatusRequestTimeout, err.Error() + "; send faster or in smaller requests"
	}
	return http.StatusBadRequest, "reading request body: " + err.Error()
}

// handleIngest is POST /v1/events: NDJSON, one ECS event per line. Events
// are appended in chunks as the body streams in; the answer is sent once
// every accepted event is durable (see ingestResponse).
func (s *Server) handleIngest(w http.ResponseWriter, r *http.Request) {
	body, db, err := s.body(w, r)
	if err != nil {
		status, msg := bodyStatus(err)
		writeError(w, status, msg)
		return
	}
	now := time.Now().UTC()
	var resp ingestResponse
	var texts errorTexts
	c := getChunk()
	defer putChunk(c)
	var fail *storeFailure
	stopLine := 0 // the first line not processed, once stopped
	overLimit := false
	lastLine, events := 0, 0
	u := s.turns.newTurn()
	flush := func() bool {
		u.give() // not held through the wait for durability
		if c.len() == 0 {
			return true
		}
		dup, first, kept, err := s.appendChunk(r.Context(), c)
		if err != nil {
			f := s.storeFailed("ingest", c.len(), err)
			fail = &f
			stopLine = c.refs[0]
			if f.outcome == "unknown" {
				resp.UnknownThroughLine = c.refs[len(c.refs)-1]
			}
			c.reset()
			return false
		}
		for _, d := range dup {
			if d {
				resp.Duplicates++
			}
		}
		if kept > 0 {
			resp.Accepted += kept
			if resp.FirstIndex == nil {
				resp.FirstIndex = &first
			}
			resp.Stored = append(resp.Stored, storedRange{first, kept})
		}
		c.reset()
		return true
	}
	err = forLines(body, s.cfg.MaxLineBytes, u, func(n int, line []byte, tooLong bool) bool {
		if events++; events > s.cfg.MaxRequestEvents {
			overLimit, stopLine = true, n
			return false
		}
		lastLine = n
		if tooLong {
			resp.Errors = append(resp.Errors, lineError{Line: n, Status: http.StatusRequestEntityTooLarge,
				Error: fmt.Sprintf("line exceeds %d bytes (max_line_bytes)", s.cfg.MaxLineBytes)})
			return true
		}
		if err := s.addTo(c, line, n, n, now); err != nil {
			resp.Errors = append(resp.Errors, lineError{Line: n, Error: texts.text(err.Error())})
			return true
		}
		if c.full(s.chunkEvents) {
			return flush()
		}
		return true
	})
	switch {
	case fail != nil:
	case err != nil:
		// The body broke off: its last, partial line is not processed, and
		// neither are the complete lines still waiting in the chunk (the
		// client must send the request again anyway).
		stopLine = lastLine + 1
		if c.len() > 0 {
			stopLine = c.refs[0]
		}
	default:
		if !overLimit {
			db.finish()
		}
		flush() // may fail, and set fail
	}
	resp.Rejected = len(resp.Errors)
	s.metrics.rejected.Add(uint64(resp.Rejected))
	s.metrics.duplicates.Add(uint64(resp.Duplicates))
	s.answerDeadline(w)
	switch {
	case fail != nil:
		resp.Error, resp.ResumeLine, resp.Outcome = fail.msg+partialNote(resp.Accepted), stopLine, fail.outcome
		if fail.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(fail.retryAfter))
		}
		writeIngestAnswer(w, fail.status, &resp)
	case err != nil:
		status, msg := bodyStatus(err)
		resp.Error, resp.ResumeLine, resp.Outcome = msg+partialNote(resp.Accepted), stopLine, "not_stored"
		writeIngestAnswer(w, status, &resp)
	case overLimit:
		s.metrics.overflow.Add(1)
		resp.Error = fmt.Sprintf("%v: more than %d events (max_request_events); send the lines from resume_line on in another request",
			errTooManyEvents, s.cfg.MaxRequestEvents) + partialNote(resp.Accepted)
		resp.ResumeLine, resp.Outcome = stopLine, "not_stored"
		writeIngestAnswer(w, http.StatusRequestEntityTooLarge, &resp)
	case resp.Accepted == 0 && resp.Duplicates == 0 && resp.Rejected == 0:
		writeError(w, http.StatusBadRequest, "no events in body (want NDJSON: one JSON event per line)")
	case resp.Accepted == 0 && resp.Duplicates == 0:
		writeIngestAnswer(w, http.StatusBadRequest, &resp)
	default:
		writeIngestAnswer(w, http.StatusOK, &resp)
	}
}

// writeIngestAnswer sends resp, streaming its errors, so that an answer
// naming max_request_events lines is never built in memory whole.
func writeIngestAnswer(w http.ResponseWriter, status int, resp *ingestResponse) {
	errs := resp.Errors
	resp.Errors = nil
	head, _ := json.Marshal(resp)
	resp.Errors = errs
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if len(errs) == 0 {
		w.Write(append(head, '\n'))
		return
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	bw.Write(head[:len(head)-1])
	buf := append(make([]byte, 0, 1024), `,"errors":[`...)
	for i, e := range errs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"line":`...)
		buf = strconv.AppendInt(buf, int64(e.Line), 10)
		if e.Status != 0 {
			buf = append(buf, `,"status":`...)
			buf = strconv.AppendInt(buf, int64(e.Status), 10)
		}
		buf = append(buf, `,"error":`...)
		buf = event.AppendString(buf, e.Error)
		buf = append(buf, '}')
		if len(buf) > 16<<10 {
			bw.Write(buf)
			buf = buf[:0]
		}
	}
	buf = append(buf, "]}\n"...)
	bw.Write(buf)
	bw.Flush()
}

// partialNote says, in an answer to a request that stopped, how many of
// its events were stored before it did.
func partialNote(stored int) string {
	if stored == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d events before resume_line were stored; see stored)", stored)
}

// answerDeadline bounds the time to send an ingest answer to a client that
// does not read it.
func (s *Server) answerDeadline(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.BodyReadTimeout))
}
