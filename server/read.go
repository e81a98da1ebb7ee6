package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/httpaudit"
	"github.com/trailguard/trailguard/index"
	"github.com/trailguard/trailguard/query"
)

// readParams are the filter parameters shared by the read endpoints:
// q (the query), from and to (RFC 3339 or a duration back from now, such
// as 15m or 24h).
type readParams struct {
	expr     query.Expr
	from, to time.Time
}

// parseRead reads q, from and to; a bad query answers 400 naming the
// position of the error.
func parseRead(w http.ResponseWriter, r *http.Request) (readParams, bool) {
	var p readParams
	v := r.URL.Query()
	if q := strings.TrimSpace(v.Get("q")); q != "" {
		expr, err := query.Parse(q)
		if err != nil {
			var qe *query.Error
			if errors.As(err, &qe) {
				writeJSON(w, http.StatusBadRequest, map[string]any{"error": qe.Error(), "position": qe.Pos})
			} else {
				writeError(w, http.StatusBadRequest, err.Error())
			}
			return p, false
		}
		p.expr = expr
	}
	now := time.Now()
	for _, tp := range []struct {
		name string
		dst  *time.Time
	}{{"from", &p.from}, {"to", &p.to}} {
		s := v.Get(tp.name)
		if s == "" {
			continue
		}
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			*tp.dst = now.Add(-d)
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s: want RFC 3339 or a duration such as 24h, got %q", tp.name, s))
			return p, false
		}
		*tp.dst = t
	}
	return p, true
}

// recordRead writes the read of audit data into the trail itself, with
// what was asked (PCI DSS 10.2.1.3: all access to audit logs).
func recordRead(r *http.Request, what string, p readParams) {
	reason := what
	if p.expr != nil {
		reason += " q=" + p.expr.String()
	}
	httpaudit.Audit(r.Context(), httpaudit.Op{Action: event.ActionSensitiveRead, Resource: "audit-trail", Reason: reason})
}

// handleSearch is GET /v1/events: events matching q in [from, to), newest
// first unless sort=asc, limit per page, cursor for the next page.
func (s *Server) handleSearch(w http.ResponseWriter, r *http.Request) {
	p, ok := parseRead(w, r)
	if !ok {
		return
	}
	v := r.URL.Query()
	req := index.Request{Query: p.expr, From: p.from, To: p.to, Desc: v.Get("sort") != "asc", Cursor: v.Get("cursor")}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit: want a positive integer")
			return
		}
		req.Limit = n
	}
	if srt := v.Get("sort"); srt != "" && srt != "asc" && srt != "desc" {
		writeError(w, http.StatusBadRequest, "sort: want asc or desc")
		return
	}
	recordRead(r, "search", p)
	res, err := s.index.Search(r.Context(), req)
	if err != nil {
		s.queryError(w, err)
		return
	}
	type hit struct {
		Index uint64          `json:"ledger_index"`
		Event json.RawMessage `json:"event"`
	}
	out := struct {
		Hits []hit  `json:"hits"`
		Next string `json:"next,omitempty"`
	}{Hits: make([]hit, 0, len(res.Hits)), Next: res.Next}
	for _, h := range res.Hits {
		out.Hits = append(out.Hits, hit{h.Index, h.Raw})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) queryError(w http.ResponseWriter, err error) {
	var qe *query.Error
	switch {
	case errors.As(err, &qe):
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": qe.Error(), "position": qe.Pos})
	case errors.Is(err, context.Canceled):
	default:
		msg := err.Error()
		if strings.Contains(msg, "cursor") || strings.Contains(msg, "field") {
			writeError(w, http.StatusBadRequest, msg)
			return
		}
		s.log.Error("query failed", "err", err)
		writeError(w, http.StatusInternalServerError, "query failed")
	}
}

// handleEvent is GET /v1/events/{id}: one event by event.id, with its
// ledger index and an inclusion proof against the latest signed
// checkpoint, which anyone holding the verifier key can check.
func (s *Server) handleEvent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	recordRead(r, "event "+id, readParams{})
	hit, err := s.index.ByEventID(r.Context(), id)
	if err != nil {
		// Only an index that has not caught up can miss a stored event; a
		// scan of the whole ledger for every unknown id would let any
		// reader make the collector read everything.
		if s.IndexLag() == 0 {
			writeError(w, http.StatusNotFound, "no event with event.id "+strconv.Quote(id))
			return
		}
		idx, lerr := s.ledger.FindEventID(id)
		if lerr != nil {
			writeError(w, http.StatusNotFound, "no event with event.id "+strconv.Quote(id))
			return
		}
		e, rerr := s.ledger.Read(idx)
		if rerr != nil {
			writeError(w, http.StatusNotFound, "event not readable: "+rerr.Error())
			return
		}
		hit = index.Hit{Index: idx, Raw: e.Data}
	}
	signed, cp := s.ledger.LatestCheckpoint()
	out := map[string]any{"ledger_index": hit.Index, "event": hit.Raw}
	if signed != nil && hit.Index < cp.Size {
		bundle, err := s.ledger.ProveInclusion(hit.Index, signed)
		if err == nil {
			out["inclusion_proof"] = bundle
		} else {
			out["inclusion_proof_error"] = err.Error()
		}
	} else {
		out["inclusion_proof_error"] = "not yet covered by a signed checkpoint; retry within a second"
	}
	writeJSON(w, http.StatusOK, out)
}

// handleStats is GET /v1/stats: counts per time bucket (interval, default
// 1m) or, with top=<field>, the n most frequent values of an indexed
// field.
func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	p, ok := parseRead(w, r)
	if !ok {
		return
	}
	v := r.URL.Query()
	if p.to.IsZero() {
		p.to = time.Now().Add(time.Second)
	}
	if p.from.IsZero() {
		p.from = p.to.Add(-24 * time.Hour)
	}
	recordRead(r, "stats", p)
	if field := v.Get("top"); field != "" {
		n := 10
		if ns := v.Get("n"); ns != "" {
			var err error
			if n, err = strconv.Atoi(ns); err != nil || n < 1 || n > 1000 {
				writeError(w, http.StatusBadRequest, "n: want 1..1000")
				return
			}
		}
		top, err := s.index.Top(r.Context(), index.TopRequest{Query: p.expr, From: p.from, To: p.to, Field: field, N: n})
		if err != nil {
			s.queryError(w, err)
			return
		}
		type entry struct {
			Value string `json:"value"`
			Count int64  `json:"count"`
		}
		out := make([]entry, 0, len(top))
		for _, t := range top {
			out = append(out, entry{t.Value, t.Count})
		}
		writeJSON(w, http.StatusOK, map[string]any{"field": field, "top": out})
		return
	}
	interval := time.Minute
	if is := v.Get("interval"); is != "" {
		d, err := time.ParseDuration(is)
		if err != nil || d < time.Second {
			writeError(w, http.StatusBadRequest, "interval: want a duration of at least 1s, such as 1m")
			return
		}
		interval = d
	}
	buckets, err := s.index.Stats(r.Context(), index.StatsRequest{Query: p.expr, From: p.from, To: p.to, Interval: interval})
	if err != nil {
		s.queryError(w, err)
		return
	}
	type bucket struct {
		Start time.Time `json:"start"`
		Count int64     `json:"count"`
	}
	out := make([]bucket, 0, len(buckets))
	for _, b := range buckets {
		out = append(out, bucket{b.Start.UTC(), b.Count})
	}
	writeJSON(w, http.StatusOK, map[string]any{"interval": interval.String(), "buckets": out})
}

// handleTail is GET /v1/tail: Server-Sent Events, one per new event that
// matches q, from the moment of the request (or from ledger index from=N
// with since=N).
func (s *Server) handleTail(w http.ResponseWriter, r *http.Request) {
	p, ok := parseRead(w, r)
	if !ok {
		return
	}
	from := s.ledger.Size()
	if since := r.URL.Query().Get("since"); since != "" {
		n, err := strconv.ParseUint(since, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since: want a ledger index")
			return
		}
		from = n
	}
	flusher := http.NewResponseController(w)
	recordRead(r, "tail", p)
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
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
			flusher.Flush()
		case it, ok := <-entries:
			if !ok || it.err != nil {
				return
			}
			if p.expr == nil || matches(p.expr, it.data) {
				// Encoded events hold no raw newline, so one data line each.
				fmt.Fprintf(w, "id: %d\nevent: event\ndata: %s\n\n", it.index, it.data)
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

func matches(expr query.Expr, data []byte) bool {
	doc, err := query.Flatten(data)
	return err == nil && expr.Match(doc)
}

type ledgerItem struct {
	index uint64
	data  []byte
	err   error
}
