package server

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/trailguard/trailguard/event"
)

// lineError is one rejected input line.
type lineError struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// ingestResponse is the answer to POST /v1/events.
type ingestResponse struct {
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
	// Duplicates are events whose event.id was stored recently: they are
	// acknowledged without being stored again.
	Duplicates int         `json:"duplicates,omitempty"`
	FirstIndex *uint64     `json:"first_index,omitempty"`
	Errors     []lineError `json:"errors,omitempty"`
}

// body returns the request body, decompressed when the client says so,
// bounded by MaxRequestBytes both before and after decompression (a small
// gzip bomb must not become gigabytes).
func (s *Server) body(w http.ResponseWriter, r *http.Request) (io.Reader, error) {
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes)
	switch strings.ToLower(r.Header.Get("Content-Encoding")) {
	case "", "identity":
		return body, nil
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("bad gzip body: %w", err)
		}
		return &limitedReader{r: zr, n: s.cfg.MaxRequestBytes}, nil
	default:
		return nil, fmt.Errorf("unsupported Content-Encoding %q", r.Header.Get("Content-Encoding"))
	}
}

// limitedReader fails, rather than truncating silently, past n bytes.
type limitedReader struct {
	r io.Reader
	n int64
}

var errTooLarge = errors.New("request body too large")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// forLines calls fn for every non-blank line of r, numbered from 1. A line
// longer than max is passed as nil with tooLong set, after its bytes were
// skipped, so one oversized line costs neither memory nor the rest of the
// request.
func forLines(r io.Reader, max int, fn func(n int, line []byte, tooLong bool)) error {
	br := bufio.NewReaderSize(r, max+1)
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		tooLong := false
		for errors.Is(err, bufio.ErrBufferFull) {
			tooLong = true
			_, err = br.ReadSlice('\n')
		}
		if len(bytes.TrimSpace(line)) > 0 || tooLong {
			if tooLong {
				fn(n, nil, true)
			} else {
				fn(n, bytes.TrimRight(line, "\r\n"), false)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// prepare turns one submitted event into the record the ledger stores:
// scrubbed again (a shipper may not have scrubbed, or scrubbed less),
// checked, normalised to trailguard's encoding, stamped event.ingested.
// The returned id is the event.id the client sent ("" when the collector
// assigned one), for deduplication.
func (s *Server) prepare(line []byte, now time.Time) ([]byte, string, error) {
	scrubbed, err := s.red.JSON(nil, line)
	if err != nil {
		return nil, "", err
	}
	ev, err := event.Decode(scrubbed)
	if err != nil {
		return nil, "", err
	}
	if err := checkCategories(ev); err != nil {
		return nil, "", err
	}
	clientID := ev.ID
	if ev.Timestamp.IsZero() {
		ev.Timestamp = now
	}
	if ev.Kind == "" {
		ev.Kind = event.KindEvent
	}
	if ev.ID == "" {
		ev.ID = event.NewID()
	}
	ev.Ingested = now
	return ev.AppendJSON(make([]byte, 0, len(scrubbed)+96)), clientID, nil
}

// checkCategories rejects categorisation values ECS does not allow: they
// would make the event invisible to every ECS-based rule and dashboard.
func checkCategories(ev *event.Event) error {
	check := func(field string, vals ...string) error {
		allowed := event.ECSAllowed(field)
		for _, v := range vals {
			if v != "" && !slices.Contains(allowed, v) {
				return fmt.Errorf("%s %q is not an ECS value (%s)", field, v, strings.Join(allowed, ", "))
			}
		}
		return nil
	}
	return errors.Join(
		check("event.kind", ev.Kind),
		check("event.category", ev.Category...),
		check("event.type", ev.Type...),
		check("event.outcome", ev.Outcome),
	)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// bodyError answers a failure to read the request body.
func bodyError(w http.ResponseWriter, err error) {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) || errors.Is(err, errTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes; send smaller batches", mbLimit(mb)))
		return
	}
	writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
}

func mbLimit(mb *http.MaxBytesError) int64 {
	if mb == nil {
		return 0
	}
	return mb.Limit
}

// handleIngest is POST /v1/events: NDJSON, one ECS event per line. The
// answer is sent only once every accepted event is durable in the ledger.
func (s *Server) handleIngest(w http.ResponseWriter, r *http.Request) {
	body, err := s.body(w, r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := time.Now().UTC()
	var resp ingestResponse
	var records [][]byte
	var ids []string
	err = forLines(body, s.cfg.MaxLineBytes, func(n int, line []byte, tooLong bool) {
		if tooLong {
			resp.Errors = append(resp.Errors, lineError{n, fmt.Sprintf("line exceeds %d bytes", s.cfg.MaxLineBytes)})
			return
		}
		rec, id, err := s.prepare(line, now)
		if err != nil {
			resp.Errors = append(resp.Errors, lineError{n, err.Error()})
			return
		}
		records = append(records, rec)
		ids = append(ids, id)
	})
	if err != nil {
		bodyError(w, err)
		return
	}
	if dup := s.recent.dups(ids); len(dup) > 0 {
		kept := 0
		for i := range records {
			if dup[i] {
				resp.Duplicates++
				continue
			}
			records[kept], ids[kept] = records[i], ids[i]
			kept++
		}
		records, ids = records[:kept], ids[:kept]
	}
	resp.Accepted, resp.Rejected = len(records), len(resp.Errors)
	s.metrics.rejected.Add(uint64(resp.Rejected))
	s.metrics.duplicates.Add(uint64(resp.Duplicates))
	if len(records) == 0 {
		if resp.Duplicates > 0 && resp.Rejected == 0 {
			writeJSON(w, http.StatusOK, resp)
			return
		}
		if resp.Rejected == 0 {
			writeError(w, http.StatusBadRequest, "no events in body (want NDJSON: one JSON event per line)")
			return
		}
		writeJSON(w, http.StatusBadRequest, resp)
		return
	}
	first, err := s.ledger.Append(r.Context(), records...)
	if err != nil {
		s.log.Error("ingest: ledger append failed", "events", len(records), "err", err)
		writeError(w, http.StatusServiceUnavailable, "events not stored: "+err.Error())
		return
	}
	s.metrics.ingested.Add(uint64(len(records)))
	s.recent.add(ids)
	resp.FirstIndex = &first
	writeJSON(w, http.StatusOK, resp)
}
