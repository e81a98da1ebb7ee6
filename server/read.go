package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/httpaudit"
	"github.com/trailguard/trailguard/index"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/query"
)

// The read API answers from the index, which follows the ledger a batch
// at a time (at most 50 ms behind it when idle, about a second under heavy
// ingest; /metrics and /readyz show the lag). Every answer says how far
// the index had got (X-Trailguard-Indexed, X-Trailguard-Ledger-Size), and a
// client that must see what it just wrote waits for it:
//
//	wait_for=ledger wait until everything the ledger held when the request
//	                arrived is indexed (after an ingest answer: all it stored)
//	after_index=N   wait until records below ledger index N are indexed (N is
//	                the last "stored" range's first_index + count of an ingest
//	                answer)
//	timeout=D       wait at most D (default 5s, at most 60s); then 503
//
// Events in answers are the ledger's records byte for byte: the index only
// finds them.

// Bounds of the read-your-writes wait.
const (
	defaultWait = 5 * time.Second
	maxWait     = 60 * time.Second
	// lookupWait is how long GET /v1/events/{id} waits, unasked, for an
	// index that lags to catch up before answering 404.
	lookupWait = 2 * time.Second
	// defaultBuckets is how many buckets the default stats interval aims
	// at: 24 h in 10-minute buckets.
	defaultBuckets = 200
	// maxEventIDLen bounds the id GET /v1/events/{id} looks up.
	maxEventIDLen = 1024
)

// params are the query parameters of a read request, checked: each
// endpoint names those it takes, and anything else is a 400.
type params struct {
	v url.Values
}

// paramError is a client mistake in a parameter: answered 400 naming it.
type paramError struct {
	param, msg string
}

func (e *paramError) Error() string { return e.param + ": " + e.msg }

func badParam(param, format string, args ...any) error {
	return &paramError{param, fmt.Sprintf(format, args...)}
}

// readParamNames are the parameters every read endpoint takes besides its
// own: the read-your-writes wait.
var readParamNames = []string{"after_index", "wait_for", "timeout"}

func parseParams(r *http.Request, allowed ...string) (params, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return params{}, badParam("query string", "%v", err)
	}
	allowed = append(allowed, readParamNames...)
	for name, vals := range v {
		if !slices.Contains(allowed, name) {
			return params{}, badParam(name, "unknown parameter; %s takes %s", r.URL.Path, strings.Join(allowed, ", "))
		}
		if len(vals) > 1 {
			return params{}, badParam(name, "given %d times; give it once", len(vals))
		}
	}
	return params{v}, nil
}

func (p params) get(name string) string { return p.v.Get(name) }

// query parses q (empty: every event).
func (p params) query() (query.Expr, error) {
	q := strings.TrimSpace(p.get("q"))
	if q == "" {
		return nil, nil
	}
	return query.Parse(q)
}

// time parses an RFC 3339 time or a duration back from now (15m, 24h).
func (p params) time(name string, now time.Time) (time.Time, error) {
	s := p.get(name)
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, badParam(name, "a duration back from now must be positive, got %q", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badParam(name, "want an RFC 3339 time (2026-11-25T17:00:00Z) or a duration back from now (24h), got %q", s)
	}
	return t, nil
}

// timeRange parses from and to; to must be after from.
func (p params) timeRange(now time.Time) (from, to time.Time, err error) {
	if from, err = p.time("from", now); err != nil {
		return
	}
	if to, err = p.time("to", now); err != nil {
		return
	}
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		err = badParam("to", "%s is not after from (%s)", to.Format(time.RFC3339Nano), from.Format(time.RFC3339Nano))
	}
	return
}

// positive parses an integer in [1, max]; 0 if absent.
func (p params) positive(name string, max int) (int, error) {
	s := p.get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, badParam(name, "want an integer from 1 to %d, got %q", max, s)
	}
	return n, nil
}

// waitTarget is the index position the request asked to wait for (0:
// none) and for how long.
func (s *Server) waitTarget(p params) (uint64, time.Duration, error) {
	timeout := defaultWait
	if ts := p.get("timeout"); ts != "" {
		d, err := time.ParseDuration(ts)
		if err != nil || d <= 0 || d > maxWait {
			return 0, 0, badParam("timeout", "want a duration up to %v, such as 10s, got %q", maxWait, ts)
		}
		timeout = d
	}
	size := s.ledger.Size()
	var n uint64
	if a := p.get("after_index"); a != "" {
		v, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			return 0, 0, badParam("after_index", "want a ledger index (the last stored range's first_index + count of an ingest answer), got %q", a)
		}
		if v > size {
			return 0, 0, badParam("after_index", "%d is beyond the ledger's %d records", v, size)
		}
		n = v
	}
	switch w := p.get("wait_for"); w {
	case "":
	case "ledger":
		n = max(n, size)
	default:
		return 0, 0, badParam("wait_for", "want ledger (wait until what the ledger holds is indexed), got %q", w)
	}
	return n, timeout, nil
}

// errIndexBehind is a wait that timed out.
type errIndexBehind struct {
	want, indexed, size uint64
	waited              time.Duration
}

func (e *errIndexBehind) Error() string {
	return fmt.Sprintf("the index reached record %d of %d within %v; retry, or wait longer with timeout= (at most %v)", e.indexed, e.want, e.waited, maxWait)
}

// waitIndexed waits until the index covers ledger indices below n.
func (s *Server) waitIndexed(ctx context.Context, n uint64, timeout time.Duration) error {
	if n == 0 || s.index.Indexed() >= n {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := s.index.WaitIndexed(wctx, n)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return &errIndexBehind{want: n, indexed: s.index.Indexed(), size: s.ledger.Size(), waited: timeout}
	}
	return err
}

// startRead checks the parameters and waits as asked: the common start of
// every read endpoint. ok is false when the answer was already sent.
func (s *Server) startRead(w http.ResponseWriter, r *http.Request, allowed ...string) (params, bool) {
	p, err := parseParams(r, allowed...)
	if err == nil {
		var n uint64
		var timeout time.Duration
		if n, timeout, err = s.waitTarget(p); err == nil {
			err = s.waitIndexed(r.Context(), n, timeout)
		}
	}
	s.setIndexHeaders(w)
	if err != nil {
		s.readError(w, err)
		return p, false
	}
	return p, true
}

func (s *Server) setIndexHeaders(w http.ResponseWriter) {
	w.Header().Set("X-Trailguard-Indexed", strconv.FormatUint(s.index.Indexed(), 10))
	w.Header().Set("X-Trailguard-Ledger-Size", strconv.FormatUint(s.ledger.Size(), 10))
}

// readError answers a failed read: the client's mistakes are 400s naming
// the parameter, a wait that timed out a 503 with Retry-After.
func (s *Server) readError(w http.ResponseWriter, err error) {
	var (
		pe *paramError
		qe *query.Error
		re *index.RequestError
		rd *index.ReadError
		ib *errIndexBehind
	)
	switch {
	case errors.As(err, &pe):
		writeReadJSON(w, http.StatusBadRequest, map[string]any{"error": pe.Error(), "parameter": pe.param})
	case errors.As(err, &qe):
		writeReadJSON(w, http.StatusBadRequest, map[string]any{"error": qe.Error(), "parameter": "q", "position": qe.Pos})
	case errors.As(err, &re):
		param := re.Param
		if param == "field" {
			param = "top"
		}
		writeReadJSON(w, http.StatusBadRequest, map[string]any{"error": param + ": " + re.Msg, "parameter": param})
	case errors.As(err, &ib):
		w.Header().Set("Retry-After", "1")
		writeReadJSON(w, http.StatusServiceUnavailable, map[string]any{"error": ib.Error(), "indexed": ib.indexed, "ledger_size": ib.size})
	case errors.As(err, &rd):
		s.log.Error("read: ledger record unreadable", "ledger_index", rd.Index, "err", rd.Err)
		writeReadJSON(w, http.StatusInternalServerError, map[string]any{
			"error": fmt.Sprintf("ledger record %d cannot be read (%v); run trailguard verify", rd.Index, rd.Err), "ledger_index": rd.Index})
	case errors.Is(err, context.Canceled):
	case errors.Is(err, index.ErrClosed), errors.Is(err, ledger.ErrClosed):
		w.Header().Set("Retry-After", "5")
		writeReadJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "the collector is shutting down"})
	default:
		s.log.Error("query failed", "err", err)
		writeReadJSON(w, http.StatusInternalServerError, map[string]any{"error": "query failed"})
	}
}

// writeReadJSON writes v as JSON without HTML escaping: events and values
// come back with their own bytes (<, > and & included).
func writeReadJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// eventJSON is a record as an "event" member: its own bytes (every record
// the collector writes is a JSON object), or, for a record that is not
// JSON, a string holding it.
func eventJSON(raw []byte) json.RawMessage {
	if json.Valid(raw) {
		return raw
	}
	b, _ := json.Marshal(string(raw))
	return b
}

// recordRead writes the read of audit data into the trail itself, with
// what was asked (PCI DSS 10.2.1.3: all access to audit logs).
func recordRead(r *http.Request, what string, q query.Expr) {
	reason := what
	if q != nil {
		reason += " q=" + q.String()
	}
	// On record before the answer leaves: a crash right after it must
	// not lose the read (requireRole answered 503 already if the trail
	// cannot take it). The answer waits for it (recordedWriter) while the
	// query runs.
	op := httpaudit.Op{Action: event.ActionSensitiveRead, Resource: "audit-trail", Reason: reason}
	if rw, ok := r.Context().Value(pendingKey{}).(*recordedWriter); ok {
		rw.wait = httpaudit.AuditPending(r.Context(), op)
		return
	}
	httpaudit.AuditPersisted(r.Context(), op)
}

// checkedJSON are the members every answer built from the ledger carries
// about what it checked.
type checkedJSON struct {
	Partial     bool           `json:"partial,omitempty"`
	CountedFrom *time.Time     `json:"counted_from,omitempty"`
	Scanned     int            `json:"scanned"`
	Mismatches  []uint64       `json:"index_mismatches,omitempty"`
	Unreadable  []unreadableJS `json:"unreadable,omitempty"`
}

type unreadableJS struct {
	Index uint64 `json:"ledger_index"`
	Error string `json:"error"`
}

func (s *Server) checked(ch index.Checked, countedFrom time.Time) checkedJSON {
	out := checkedJSON{Partial: ch.Partial, Scanned: ch.Scanned, Mismatches: ch.Mismatches}
	if ch.Partial && !countedFrom.IsZero() {
		cf := countedFrom.UTC()
		out.CountedFrom = &cf
	}
	for _, u := range ch.Unreadable {
		out.Unreadable = append(out.Unreadable, unreadableJS{u.Index, u.Err.Error()})
	}
	return out
}

// handleSearch is GET /v1/events: events matching q in [from, to), newest
// first unless sort=asc, limit per page (default 100, at most 10,000),
// cursor for the next page.
func (s *Server) handleSearch(w http.ResponseWriter, r *http.Request) {
	p, ok := s.startRead(w, r, "q", "from", "to", "sort", "limit", "cursor")
	if !ok {
		return
	}
	req, err := func() (req index.Request, err error) {
		if req.Query, err = p.query(); err != nil {
			return
		}
		if req.From, req.To, err = p.timeRange(time.Now()); err != nil {
			return
		}
		switch srt := p.get("sort"); srt {
		case "", "desc":
			req.Desc = true
		case "asc":
		default:
			return req, badParam("sort", "want asc or desc, got %q", srt)
		}
		req.Limit, err = p.positive("limit", index.MaxLimit)
		req.Cursor = p.get("cursor")
		return
	}()
	if err != nil {
		s.readError(w, err)
		return
	}
	recordRead(r, "search", req.Query)
	res, err := s.index.Search(r.Context(), req)
	if err != nil {
		s.readError(w, err)
		return
	}
	type hit struct {
		Index uint64          `json:"ledger_index"`
		Event json.RawMessage `json:"event"`
	}
	out := struct {
		Hits []hit  `json:"hits"`
		Next string `json:"next,omitempty"`
		checkedJSON
	}{Hits: make([]hit, 0, len(res.Hits)), Next: res.Next, checkedJSON: s.checked(res.Checked, time.Time{})}
	for _, h := range res.Hits {
		out.Hits = append(out.Hits, hit{h.Index, eventJSON(h.Raw)})
	}
	writeReadJSON(w, http.StatusOK, out)
}

// handleEvent is GET /v1/events/{id}: one event by event.id, the ledger's
// record byte for byte, with its ledger index and an inclusion proof
// against the latest signed checkpoint, which anyone holding the verifier
// key can check: SHA-256(0x00 ‖ event) is the proven leaf hash.
func (s *Server) handleEvent(w http.ResponseWriter, r *http.Request) {
	p, ok := s.startRead(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if len(id) > maxEventIDLen {
		s.readError(w, badParam("event.id", "longer than %d bytes; no stored event has such an id", maxEventIDLen))
		return
	}
	recordRead(r, "event "+id, nil)
	size := s.ledger.Size()
	hit, err := s.index.ByEventID(r.Context(), id)
	if errors.Is(err, index.ErrNotFound) && s.index.Indexed() < size {
		// Only an index that has not caught up can miss a stored event:
		// wait for it (bounded) rather than scan the ledger for every
		// unknown id.
		timeout := lookupWait
		if p.get("timeout") != "" {
			_, timeout, _ = s.waitTarget(p)
		}
		if werr := s.waitIndexed(r.Context(), size, timeout); werr != nil {
			s.setIndexHeaders(w)
			s.readError(w, werr)
			return
		}
		hit, err = s.index.ByEventID(r.Context(), id)
	}
	s.setIndexHeaders(w)
	if errors.Is(err, index.ErrNotFound) {
		writeReadJSON(w, http.StatusNotFound, map[string]any{"error": "no event with event.id " + strconv.Quote(id)})
		return
	}
	if err != nil {
		s.readError(w, err)
		return
	}
	rest := map[string]any{"ledger_index": hit.Index}
	signed, cp := s.ledger.LatestCheckpoint()
	if signed != nil && hit.Index < cp.Size {
		bundle, err := s.ledger.ProveInclusion(hit.Index, signed)
		if err == nil {
			rest["inclusion_proof"] = bundle
		} else {
			rest["inclusion_proof_error"] = err.Error()
		}
	} else {
		rest["inclusion_proof_error"] = "not yet covered by a signed checkpoint; retry within a second"
	}
	// The event goes in as the record's own bytes, not re-encoded, so that
	// it hashes to the proven leaf.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(rest); err != nil {
		s.readError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(`{"event":`))
	w.Write(eventJSON(hit.Raw))
	w.Write([]byte{','})
	w.Write(buf.Bytes()[1:])
}

// handleStats is GET /v1/stats: counts of the events matching q in [from,
// to) (default: the last 24 h) per time bucket of interval (aligned on
// multiples of it: minutes at :00, days at 00:00 UTC; by default about 200
// buckets over the range, at most 10,000), or with top=<field> the n
// (default 10, at most 1,000) most frequent values of any field.
func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	p, ok := s.startRead(w, r, "q", "from", "to", "interval", "top", "n")
	if !ok {
		return
	}
	now := time.Now()
	q, err := p.query()
	if err != nil {
		s.readError(w, err)
		return
	}
	from, to, err := p.timeRange(now)
	if err != nil {
		s.readError(w, err)
		return
	}
	if to.IsZero() {
		to = now.Add(time.Second)
	}
	if from.IsZero() {
		from = to.Add(-24 * time.Hour)
	}
	if !to.After(from) {
		s.readError(w, badParam("from", "%s is not before to (%s)", from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano)))
		return
	}
	if field := p.get("top"); field != "" {
		if p.get("interval") != "" {
			s.readError(w, badParam("interval", "counts by time or, with top, by value: not both"))
			return
		}
		n, err := p.positive("n", index.MaxTop)
		if err != nil {
			s.readError(w, err)
			return
		}
		recordRead(r, "stats top="+field, q)
		top, err := s.index.Top(r.Context(), index.TopRequest{Query: q, From: from, To: to, Field: field, N: n})
		if err != nil {
			s.readError(w, err)
			return
		}
		type entry struct {
			Value string `json:"value"`
			Count int64  `json:"count"`
		}
		out := struct {
			Field string    `json:"field"`
			From  time.Time `json:"from"`
			To    time.Time `json:"to"`
			Top   []entry   `json:"top"`
			checkedJSON
		}{Field: field, From: from.UTC(), To: to.UTC(), Top: make([]entry, 0, len(top.Values)), checkedJSON: s.checked(top.Checked, top.CountedFrom)}
		for _, t := range top.Values {
			out.Top = append(out.Top, entry{t.Value, t.Count})
		}
		writeReadJSON(w, http.StatusOK, out)
		return
	}
	if p.get("n") != "" {
		s.readError(w, badParam("n", "applies to top=<field> only"))
		return
	}
	interval := index.AutoInterval(from, to, defaultBuckets)
	if is := p.get("interval"); is != "" {
		d, err := time.ParseDuration(is)
		if err != nil || d < time.Second {
			s.readError(w, badParam("interval", "want a duration of at least 1s, such as 1m, got %q", is))
			return
		}
		interval = d
	}
	recordRead(r, "stats", q)
	st, err := s.index.Stats(r.Context(), index.StatsRequest{Query: q, From: from, To: to, Interval: interval})
	if err != nil {
		s.readError(w, err)
		return
	}
	type bucket struct {
		Start time.Time `json:"start"`
		Count int64     `json:"count"`
	}
	out := struct {
		Interval string    `json:"interval"`
		From     time.Time `json:"from"`
		To       time.Time `json:"to"`
		Buckets  []bucket  `json:"buckets"`
		checkedJSON
	}{Interval: shortDuration(interval), From: from.UTC(), To: to.UTC(), Buckets: make([]bucket, 0, len(st.Buckets)),
		checkedJSON: s.checked(st.Checked, st.CountedFrom)}
	for _, b := range st.Buckets {
		out.Buckets = append(out.Buckets, bucket{b.Start.UTC(), b.Count})
	}
	writeReadJSON(w, http.StatusOK, out)
}

// shortDuration writes 10m rather than 10m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// handleTail is GET /v1/tail: Server-Sent Events, one per new event that
// matches q, from the moment of the request (or from ledger index
// since=N), read from the ledger as it is appended.
func (s *Server) handleTail(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r, "q", "since")
	var q query.Expr
	if err == nil {
		q, err = p.query()
	}
	from := s.ledger.Size()
	if err == nil {
		if since := p.get("since"); since != "" {
			n, perr := strconv.ParseUint(since, 10, 64)
			if perr != nil {
				err = badParam("since", "want a ledger index, got %q", since)
			}
			from = n
		}
	}
	if err != nil {
		s.readError(w, err)
		return
	}
	flusher := http.NewResponseController(w)
	recordRead(r, "tail", q)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, ": tailing from ledger index %d\n\n", from)
	flusher.Flush()
	ctx := r.Context()
	dirty := false
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	entries := make(chan ledgerItem, 256)
	meter := tailMeter{budget: s.tailBudget, left: s.tailBudget, last: time.Now()}
	go func() {
		defer close(entries)
		for e, err := range s.ledger.Follow(ctx, from) {
			select {
			case entries <- ledgerItem{e.Index, e.Data, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.stopping: // a shutdown: the client reconnects with since
			return
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
			flusher.Flush()
		case it, ok := <-entries:
			if !ok || it.err != nil {
				return
			}
			start := time.Now()
			hit := q == nil || matches(q, it.data)
			if !meter.spend(start, time.Now()) {
				s.log.Warn("live tail stopped: its query took too long to check", "budget", s.tailBudget, "at_ledger_index", it.index, "q", p.get("q"))
				msg, _ := json.Marshal(map[string]any{"error": fmt.Sprintf("live tail stopped: checking events against q took more than %v, and a quarter of the time since, "+
					"as a search may take (the query costs too much on these events): narrow q, or search instead (GET /v1/events pages on with a cursor); "+
					"since=%d goes on from here", s.tailBudget, it.index), "next": it.index})
				fmt.Fprintf(w, "event: stopped\ndata: %s\n\n", msg)
				flusher.Flush()
				return
			}
			if hit {
				writeSSE(w, it.index, it.data)
				dirty = true
			}
			// Flush once the backlog is drained, so bursts go out together
			// and nothing written waits behind events the filter skips.
			if dirty && len(entries) == 0 {
				if err := flusher.Flush(); err != nil {
					return
				}
				dirty = false
			}
		}
	}
}

// tailMeter bounds the time a live tail spends checking records against
// its query, as index.Options.ScanTime bounds a search's: a burst of
// budget, then a quarter of the wall-clock time (a quarter of a core). A
// search stops after ScanTime and returns a page; a tail checked every
// record for as long as it ran, and a read token's query that costs much
// per record (a long pattern over large events), or a tail from since=0
// over a large ledger, held a core for each of its streams.
type tailMeter struct {
	budget, left time.Duration
	last         time.Time
}

// tailShare is the share of the wall-clock time a tail may spend checking
// records, beyond its burst.
const tailShare = 4

// spend takes the check that ran from start to now out of the budget and
// reports whether the tail may go on.
func (m *tailMeter) spend(start, now time.Time) bool {
	m.left = min(m.budget, m.left+now.Sub(m.last)/tailShare) - now.Sub(start)
	m.last = now
	return m.left >= 0
}

// writeSSE sends one record as an event. Encoded events hold no raw
// newline; a record that does (appended by other means) is split over
// data lines, which the client joins back, so it cannot forge events.
func writeSSE(w http.ResponseWriter, idx uint64, data []byte) {
	fmt.Fprintf(w, "id: %d\nevent: event\n", idx)
	for _, line := range bytes.FieldsFunc(data, func(r rune) bool { return r == '\n' || r == '\r' }) {
		fmt.Fprintf(w, "data: %s\n", line)
	}
	fmt.Fprint(w, "\n")
}

func matches(expr query.Expr, data []byte) bool {
	doc, err := query.Flatten(data)
	return err == nil && expr.Match(doc)
}

type ledgerItem struct {
	index uint64
	data  []byte
	err   error
}
