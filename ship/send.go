package ship

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/regfile"
)

// maxResponse bounds how much of an answer the sender reads: enough for a
// Bulk answer to thousands of items, not enough for a hostile or broken
// server to exhaust memory.
const maxResponse = 16 << 20

// Cursor file: segment, offset, sequence (uint64 LE each) and a CRC-32C of
// the 24 bytes. Replaced by write-to-temp, fsync, rename, fsync-dir, so a
// crash leaves the old cursor or the new one, never a mix.
const cursorSize = 28

func readCursor(path string) (position, bool, error) {
	// A regular file of cursorSize bytes (regfile; a larger one is
	// damaged): a FIFO planted at the name would hang the start, a link
	// to /dev/zero take all the memory there is.
	b, err := regfile.Read(path, 4<<10)
	if errors.Is(err, os.ErrNotExist) {
		return position{}, false, nil
	}
	if err != nil {
		return position{}, false, fmt.Errorf("read cursor: %w", err)
	}
	if len(b) != cursorSize || crc32.Checksum(b[:24], castagnoli) != binary.LittleEndian.Uint32(b[24:]) {
		return position{}, false, fmt.Errorf("cursor %s is damaged", path)
	}
	return position{
		seg: binary.LittleEndian.Uint64(b[0:]),
		off: int64(binary.LittleEndian.Uint64(b[8:])),
		seq: binary.LittleEndian.Uint64(b[16:]),
	}, true, nil
}

func (s *Shipper) saveCursor(p position) error {
	var b [cursorSize]byte
	binary.LittleEndian.PutUint64(b[0:], p.seg)
	binary.LittleEndian.PutUint64(b[8:], uint64(p.off))
	binary.LittleEndian.PutUint64(b[16:], p.seq)
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
	path := filepath.Join(s.dir, "cursor")
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("ship: save cursor: %w", err)
	}
	_, err = f.Write(b[:])
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		return fmt.Errorf("ship: save cursor: %w", err)
	}
	return nil
}

// item is one record of a batch.
type item struct {
	rec []byte // aliases batch.arena
	ts  int64
}

// batch is the records read from the spool for one delivery, and the spool
// position just after them.
type batch struct {
	items []item
	arena []byte
	bytes int
	end   position
	since time.Time // when the first item was read, for FlushInterval
}

func (b *batch) reset() {
	b.items, b.arena, b.bytes = b.items[:0], b.arena[:0], 0
}

// reader is the sender's read position in the spool.
type reader struct {
	seg *segment
	f   *os.File
	fr  *frameReader
	pos position
}

// run is the sender goroutine.
func (s *Shipper) run() {
	defer close(s.done)
	var rd reader
	defer func() {
		if rd.f != nil {
			rd.f.Close()
		}
	}()
	s.mu.Lock()
	rd.pos = s.cursor
	s.mu.Unlock()
	b := &batch{end: rd.pos}
	sd := &sender{s: &s.core}
	var timer *time.Timer
	for {
		if s.ctx.Err() != nil {
			return
		}
		full, err := s.fill(&rd, b)
		if err != nil {
			s.report(err)
			if !s.sleep(time.Second) {
				return
			}
			continue
		}
		if len(b.items) == 0 {
			if b.end != s.cursorPos() {
				// Skipped damage or moved past a sealed segment: record
				// it, so the segment can be deleted.
				s.commit(b)
				continue
			}
			select {
			case <-s.kickC:
			case <-s.ctx.Done():
				return
			}
			continue
		}
		if !full && !s.urgent() {
			now := time.Now()
			wait := b.since.Add(s.opts.FlushInterval).Sub(now)
			if old := s.opts.Now().Sub(time.Unix(0, b.items[0].ts)); old >= s.opts.FlushInterval {
				wait = 0 // a backlog: no reason to wait for more
			}
			if wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-s.kickC:
				case <-timer.C:
				case <-s.ctx.Done():
					return
				}
				timer.Stop()
				continue
			}
		}
		if err := sd.deliver(b); err != nil {
			return // stopped; the batch stays in the spool
		}
		s.commit(b)
		b.reset()
	}
}

func (s *Shipper) cursorPos() position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursor
}

// urgent reports whether partial batches must go now (Flush, Close).
func (s *Shipper) urgent() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushing > 0 || s.draining
}

// sleep waits d or until the sender is stopped; false means stopped.
func (s *core) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// fill reads records into b until it is full (true) or the durable end of the
// spool is reached (false).
func (s *Shipper) fill(rd *reader, b *batch) (bool, error) {
	for len(b.items) < s.opts.BatchSize {
		s.mu.Lock()
		if rd.seg == nil || rd.seg.first != rd.pos.seg {
			rd.seg = nil
			for _, g := range s.segs {
				if g.first == rd.pos.seg {
					rd.seg = g
				}
			}
		}
		var limit int64
		var next *segment
		if rd.seg != nil {
			limit = rd.seg.size
			for i, g := range s.segs {
				if g == rd.seg && i+1 < len(s.segs) {
					next = s.segs[i+1]
				}
			}
		}
		s.mu.Unlock()
		if rd.seg == nil {
			return false, fmt.Errorf("ship: spool: segment %d vanished", rd.pos.seg)
		}
		if rd.f == nil {
			f, err := os.Open(rd.seg.path)
			if err != nil {
				return false, fmt.Errorf("ship: spool: %w", err)
			}
			var buf []byte
			if rd.fr != nil {
				buf = rd.fr.buf
			}
			rd.f, rd.fr = f, newFrameReader(f, rd.pos.off, limit, buf)
		}
		rd.fr.limit = limit
		ts, p, err := rd.fr.next()
		switch {
		case err == nil:
			if len(b.items) > 0 && b.bytes+len(p) > s.opts.BatchBytes {
				// Put it back for the next batch.
				rd.fr.seek(rd.pos.off)
				return true, nil
			}
			if len(b.items) == 0 {
				b.since = time.Now()
				s.mu.Lock()
				s.headTS = ts
				s.mu.Unlock()
			}
			start := len(b.arena)
			b.arena = append(b.arena, p...)
			b.items = append(b.items, item{ts: ts, rec: b.arena[start:len(b.arena):len(b.arena)]})
			b.bytes += len(p)
			rd.pos.off = rd.fr.offset()
			rd.pos.seq++
			b.end = rd.pos
		case err == io.EOF:
			if next == nil {
				return false, nil // caught up with the writers
			}
			// A sealed segment ends here: continue in the next one.
			rd.f.Close()
			rd.f = nil
			rd.pos = position{seg: next.first, off: int64(len(segMagic)), seq: next.first}
			rd.seg = next
			b.end = rd.pos
		case err == errShort || err == errCorrupt:
			at := rd.fr.offset()
			to, found, rerr := resync(rd.f, at, limit)
			if rerr != nil {
				return false, fmt.Errorf("ship: spool: read %s: %w", rd.seg.path, rerr)
			}
			if !found {
				to = limit
			}
			s.mu.Lock()
			s.st.CorruptBytes += uint64(to - at)
			s.mu.Unlock()
			s.report(fmt.Errorf("ship: spool: %s: skipped %d damaged bytes at offset %d", rd.seg.path, to-at, at))
			rd.fr.seek(to)
			rd.pos.off = to
			b.end = rd.pos
		default:
			return false, fmt.Errorf("ship: spool: read %s: %w", rd.seg.path, err)
		}
	}
	return true, nil
}

// commit makes b.end the cursor: saves it, deletes segments wholly before
// it and wakes Flush, Close and Writes waiting for room.
func (s *Shipper) commit(b *batch) {
	saved := false
	for !saved {
		err := s.saveCursor(b.end)
		if saved = err == nil; saved {
			break
		}
		// Without a saved cursor a restart ships the batch again, which
		// is harmless; keep trying until the sender is stopped.
		s.report(err)
		if !s.sleep(time.Second) {
			break
		}
	}
	s.mu.Lock()
	var drop []*segment
	for saved && len(s.segs) > 1 && s.segs[0].first < b.end.seg {
		drop = append(drop, s.segs[0])
		s.segs = s.segs[1:]
	}
	s.cursor = b.end
	if s.cursor.seq >= s.next {
		s.headTS = 0
	}
	close(s.progressC)
	s.progressC = make(chan struct{})
	s.mu.Unlock()
	var freed int64
	for _, g := range drop {
		if err := os.Remove(g.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.report(fmt.Errorf("ship: spool: remove shipped segment: %w", err))
		}
		freed += g.size
	}
	if len(drop) > 0 {
		s.mu.Lock()
		s.spoolBytes -= freed
		close(s.roomC)
		s.roomC = make(chan struct{})
		s.mu.Unlock()
	}
}

// outcome of one request for each record sent.
type verdict uint8

const (
	delivered verdict = iota
	duplicate         // Bulk 409: already there
	retry             // send again later
	reject            // dead-letter
)

// attempt is the result of one request.
type attempt struct {
	whole      verdict   // applies to every record unless per is set
	per        []verdict // per record, from a Bulk or NDJSON answer
	perErr     []string  // per record error text for retry/reject
	perCode    []int     // per record status (Bulk item status; else the HTTP status)
	status     int
	err        error
	retryAfter time.Duration
}

// sender holds the reusable buffers of the delivery loop.
type sender struct {
	s     *core
	body  []byte
	zbuf  bytes.Buffer
	zw    *gzip.Writer
	dead  []byte
	fails int
}

// deliver sends every record of b until each is delivered or dead-lettered.
// It returns an error only when the Shipper is stopping.
func (d *sender) deliver(b *batch) error {
	s := d.s
	all := make([]int, len(b.items))
	for i := range all {
		all[i] = i
	}
	queue := [][]int{all}
	for len(queue) > 0 {
		if err := s.ctx.Err(); err != nil {
			return err // stopped: what is left of b stays in the spool
		}
		set := queue[0]
		a := d.post(b, set)
		if s.ctx.Err() != nil && a.per == nil && a.whole == retry {
			// Most likely the stop cut the request short; not a failure
			// worth reporting.
			return s.ctx.Err()
		}
		// An answer that came before the stop is acted on, and a batch it
		// completes is committed: Close must not leave the cursor behind
		// records the far end acknowledged, or the next Shipper sends
		// them again.
		var again []int
		switch {
		case a.per != nil:
			var ok, dup uint64
			for k, v := range a.per {
				switch v {
				case delivered:
					ok++
				case duplicate:
					ok++
					dup++
				case retry:
					again = append(again, set[k])
				case reject:
					d.deadLetter(b.items[set[k]].rec, a.perStatus(k), a.perErr[k])
				}
			}
			s.mu.Lock()
			s.st.Shipped += ok
			s.st.Duplicates += dup
			s.mu.Unlock()
			if len(again) > 0 {
				err := fmt.Errorf("ship: %d of %d records failed, retrying them: %s", len(again), len(set), firstErr(a, retry))
				d.failed(err, len(again))
				if !d.backoff(a.retryAfter) {
					return s.ctx.Err()
				}
				queue[0] = again
				continue
			}
			if ok > 0 {
				d.fails = 0
			}
			queue = queue[1:]
		case a.whole == delivered:
			d.fails = 0
			s.mu.Lock()
			s.st.Shipped += uint64(len(set))
			s.mu.Unlock()
			queue = queue[1:]
		case a.whole == retry:
			d.failed(a.err, len(set))
			if !d.backoff(a.retryAfter) {
				return s.ctx.Err()
			}
		case a.whole == reject:
			if len(set) == 1 {
				d.deadLetter(b.items[set[0]].rec, a.status, a.err.Error())
				queue = queue[1:]
				continue
			}
			// Which records are bad is unknown: halve until each bad one is
			// alone, so good records are not dead-lettered with it.
			h := len(set) / 2
			queue = append([][]int{set[:h], set[h:]}, queue[1:]...)
		}
	}
	return d.flushDead()
}

func (a *attempt) perStatus(k int) int {
	if a.perCode != nil && a.perCode[k] != 0 {
		return a.perCode[k]
	}
	return a.status
}

func firstErr(a attempt, v verdict) string {
	for k, x := range a.per {
		if x == v {
			return a.perErr[k]
		}
	}
	return ""
}

// failed counts and reports a retryable failure.
func (d *sender) failed(err error, n int) {
	d.fails++
	d.s.mu.Lock()
	d.s.st.Retried += uint64(n)
	d.s.mu.Unlock()
	d.s.report(err)
}

// backoff waits before the next retry: Retry-After if the server gave one
// (capped by MaxRetryAfter), else exponential from MinBackoff to MaxBackoff
// with jitter, so that many shippers recovering together do not stampede.
func (d *sender) backoff(retryAfter time.Duration) bool {
	o := d.s.opts
	var w time.Duration
	if retryAfter > 0 {
		w = min(retryAfter, o.MaxRetryAfter)
	} else {
		w = o.MinBackoff
		for i := 1; i < d.fails && w < o.MaxBackoff; i++ {
			w *= 2
		}
		w = min(w, o.MaxBackoff)
		w = w/2 + rand.N(w/2+1)
	}
	return d.s.sleep(w)
}

// post sends the records set of b in one request and classifies the answer.
func (d *sender) post(b *batch, set []int) attempt {
	s := d.s
	body := d.body[:0]
	for _, i := range set {
		r := b.items[i].rec
		if s.opts.Protocol == Bulk {
			body = appendAction(body, s.opts.Index, r)
		}
		body = append(body, r...)
		body = append(body, '\n')
	}
	if cap(body) <= 2*s.opts.BatchBytes+1<<20 {
		d.body = body
	} else {
		d.body = nil
	}
	payload := body
	if s.opts.Gzip {
		d.zbuf.Reset()
		if d.zw == nil {
			d.zw, _ = gzip.NewWriterLevel(&d.zbuf, gzip.BestSpeed)
		} else {
			d.zw.Reset(&d.zbuf)
		}
		d.zw.Write(body)
		d.zw.Close()
		payload = d.zbuf.Bytes()
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.opts.URL, bytes.NewReader(payload))
	if err != nil {
		return attempt{whole: retry, err: fmt.Errorf("ship: request: %w", err)}
	}
	if s.opts.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	// VictoriaLogs reads any other type as a form, answers 200 and stores
	// nothing; Elasticsearch requires it too.
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("User-Agent", "trailguard-ship/1")
	if s.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.opts.Token)
	}
	for k, vs := range s.opts.Headers {
		req.Header.Del(k)
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return attempt{whole: retry, err: fmt.Errorf("ship: post %d records to %s: %w", len(set), redactURL(s.opts.URL), err)}
	}
	respBody, rerr := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	resp.Body.Close()
	a := attempt{status: resp.StatusCode}
	code := resp.StatusCode
	if resp.Request != nil && resp.Request.Method != http.MethodPost {
		// A 301/302/303 turned the POST into a GET: its 200 says nothing
		// about the records.
		a.whole = retry
		a.err = fmt.Errorf("ship: post to %s was redirected to %s %s; set URL to the final endpoint", redactURL(s.opts.URL), resp.Request.Method, redactURL(resp.Request.URL.String()))
		return a
	}
	switch {
	case code >= 200 && code < 300:
		if rerr != nil {
			// The records are stored (2xx) but the answer is cut: the
			// per-item verdicts are unknown, so send again (at least once).
			a.whole, a.err = retry, fmt.Errorf("ship: reading answer to %d records: %w", len(set), rerr)
			return a
		}
		if s.opts.Protocol == Bulk {
			return bulkVerdicts(a, respBody, len(set))
		}
		return ndjsonVerdicts(a, respBody, len(set))
	case retryable(code):
		a.whole = retry
		a.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), s.opts.Now())
		a.err = fmt.Errorf("ship: post %d records to %s: %w%s", len(set), redactURL(s.opts.URL), &StatusError{Code: code, Status: resp.Status}, snippet(respBody))
		return a
	default:
		if s.opts.Protocol == NDJSON {
			// The collector answers 400 with per-line errors when it
			// rejects every line.
			if v := ndjsonVerdicts(a, respBody, len(set)); v.per != nil && allRejected(v.per) {
				return v
			}
		}
		a.whole = reject
		a.err = fmt.Errorf("ship: %s rejected %d records: %s%s", redactURL(s.opts.URL), len(set), resp.Status, snippet(respBody))
		return a
	}
}

func allRejected(v []verdict) bool {
	for _, x := range v {
		if x != reject {
			return false
		}
	}
	return true
}

// StatusError is the far end's HTTP answer to a batch it did not take and
// that is retried (Stats.LastError wraps it): a caller can tell a refused
// token (401, 403) or a wrong URL (404, 405) from an outage.
type StatusError struct {
	Code   int    // the HTTP status code
	Status string // the status line, e.g. "401 Unauthorized"
}

// Error is the status line alone ("401 Unauthorized"): it is what the
// operator compares with the far end's log or documentation.
func (e *StatusError) Error() string { return e.Status }

// retryable reports whether an HTTP status is worth sending again. Besides
// the transient ones (408, 425, 429, 5xx) it includes those that mean the
// shipper is misconfigured — credentials, URL, method, content type — since
// a fix of the configuration, not of the records, will make them pass.
func retryable(code int) bool {
	switch code {
	case 401, 403, 404, 405, 407, 408, 415, 425, 429:
		return true
	}
	return code >= 500 || code < 200 || (code >= 300 && code < 400)
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// snippet quotes the start of an answer body for an error message.
func snippet(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return ""
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return ": " + strconv.Quote(string(b))
}

// redactURL drops user info and the query from a URL for messages.
func redactURL(u string) string {
	if i := bytes.IndexAny([]byte(u), "?#"); i >= 0 {
		u = u[:i]
	}
	if i := bytes.Index([]byte(u), []byte("@")); i >= 0 {
		if j := bytes.Index([]byte(u), []byte("://")); j >= 0 && j < i {
			u = u[:j+3] + u[i+1:]
		}
	}
	return u
}

// appendAction appends the Bulk action line for record r.
func appendAction(dst []byte, index string, r []byte) []byte {
	dst = append(dst, `{"create":{`...)
	if index != "" {
		dst = append(dst, `"_index":`...)
		dst = event.AppendString(dst, index)
		dst = append(dst, ',')
	}
	dst = append(dst, `"_id":`...)
	dst = appendDocID(dst, r)
	return append(dst, "}}\n"...)
}

// bulkItem is one entry of a Bulk answer's "items".
type bulkItem struct {
	Status int             `json:"status"`
	Error  json.RawMessage `json:"error"`
}

// bulkVerdicts classifies a 2xx Bulk answer item by item.
func bulkVerdicts(a attempt, body []byte, n int) attempt {
	var r struct {
		Errors bool                  `json:"errors"`
		Items  []map[string]bulkItem `json:"items"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		a.whole, a.err = retry, fmt.Errorf("ship: bulk answer is not JSON (%v)%s", err, snippet(body))
		return a
	}
	if !r.Errors {
		a.whole = delivered
		return a
	}
	if len(r.Items) != n {
		a.whole, a.err = retry, fmt.Errorf("ship: bulk answer has errors and %d items for %d records", len(r.Items), n)
		return a
	}
	a.per = make([]verdict, n)
	a.perErr = make([]string, n)
	a.perCode = make([]int, n)
	for k, m := range r.Items {
		var it bulkItem
		for _, v := range m { // one key: the action
			it = v
		}
		a.perCode[k] = it.Status
		switch {
		case it.Status >= 200 && it.Status < 300:
			a.per[k] = delivered
		case it.Status == http.StatusConflict:
			a.per[k] = duplicate
		case it.Status == 408 || it.Status == 429 || it.Status >= 500:
			a.per[k] = retry
			a.perErr[k] = fmt.Sprintf("item %d: status %d: %s", k, it.Status, it.Error)
		default:
			a.per[k] = reject
			a.perErr[k] = fmt.Sprintf("status %d: %s", it.Status, it.Error)
		}
	}
	return a
}

// ndjsonVerdicts classifies a collector answer: lines named in "errors"
// (numbered from 1) are rejected, unless the entry carries a retryable
// "status"; every other line is delivered. An answer that is not JSON or
// names no lines means every line was accepted.
func ndjsonVerdicts(a attempt, body []byte, n int) attempt {
	var r struct {
		Errors []struct {
			Line   int             `json:"line"`
			Status int             `json:"status"`
			Error  json.RawMessage `json:"error"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &r) != nil || len(r.Errors) == 0 {
		a.whole = delivered
		return a
	}
	a.per = make([]verdict, n)
	a.perErr = make([]string, n)
	for _, e := range r.Errors {
		k := e.Line - 1
		if k < 0 || k >= n {
			continue
		}
		msg := string(e.Error)
		var str string
		if json.Unmarshal(e.Error, &str) == nil {
			msg = str
		}
		if e.Status == 408 || e.Status == 429 || e.Status >= 500 {
			a.per[k] = retry
		} else {
			a.per[k] = reject
		}
		a.perErr[k] = fmt.Sprintf("line %d: %s", e.Line, msg)
	}
	return a
}

// deadLetter queues a rejected record for the dead-letter file.
func (d *sender) deadLetter(rec []byte, status int, msg string) {
	s := d.s
	d.dead = append(d.dead, `{"time":`...)
	d.dead = event.AppendString(d.dead, s.opts.Now().UTC().Format(time.RFC3339Nano))
	d.dead = append(d.dead, `,"url":`...)
	d.dead = event.AppendString(d.dead, redactURL(s.opts.URL))
	d.dead = append(d.dead, `,"status":`...)
	d.dead = strconv.AppendInt(d.dead, int64(status), 10)
	d.dead = append(d.dead, `,"error":`...)
	d.dead = event.AppendString(d.dead, msg)
	if json.Valid(rec) {
		d.dead = append(d.dead, `,"record":`...)
		d.dead = append(d.dead, rec...)
	} else {
		d.dead = append(d.dead, `,"record_text":`...)
		d.dead = event.AppendString(d.dead, string(rec))
	}
	d.dead = append(d.dead, "}\n"...)
	s.mu.Lock()
	s.st.DeadLettered++
	s.mu.Unlock()
	s.report(fmt.Errorf("ship: record dead-lettered to %s: %s", DeadLetterFile, msg))
}

// flushDead appends the queued dead letters and fsyncs them; the cursor
// must not pass a rejected record before its copy is durable.
func (d *sender) flushDead() error {
	for len(d.dead) > 0 {
		path := filepath.Join(d.s.dir, DeadLetterFile)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err == nil {
			var fi os.FileInfo
			if fi, err = f.Stat(); err == nil {
				if _, err = f.Write(d.dead); err != nil {
					f.Truncate(fi.Size())
				} else {
					err = f.Sync()
				}
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err == nil {
			d.dead = d.dead[:0]
			break
		}
		d.s.report(fmt.Errorf("ship: dead-letter file: %w", err))
		if !d.s.sleep(time.Second) {
			return d.s.ctx.Err()
		}
	}
	return nil
}
