package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/trailguard/trailguard/event"
)

// bulkResult is what the answer needs of one _bulk item, kept small: a
// request may have max_request_events of them.
type bulkResult struct {
	id      string // the client's _id
	reason  string // error reason (one copy per distinct text, see errorTexts)
	seq     uint64 // ledger index, when stored
	index   uint16 // into the request's index names
	status  uint16
	op      uint8
	errType uint8
}

// The actions of a _bulk body; an unknown action is reported under
// "index".
const (
	opIndex uint8 = iota
	opCreate
	opDelete
	opUpdate
)

var opNames = [...]string{opIndex: "index", opCreate: "create", opDelete: "delete", opUpdate: "update"}

// Elasticsearch error types of the items.
const (
	errNone uint8 = iota
	errParsing
	errIllegal
	errValidation
	errTooLargeDoc
	errConflict
	errInvalidIndex
)

var errTypeNames = [...]string{
	errParsing:      "document_parsing_exception",
	errIllegal:      "illegal_argument_exception",
	errValidation:   "action_request_validation_exception",
	errTooLargeDoc:  "document_too_large",
	errConflict:     "version_conflict_engine_exception",
	errInvalidIndex: "invalid_index_name_exception",
}

// Elasticsearch's own limits on the metadata of an item.
const (
	maxIndexNameLen = 255
	maxDocIDLen     = 512
	maxIndexNames   = 64 // distinct _index values per request
)

// bulkAction is the metadata line of a _bulk pair.
type bulkAction map[string]struct {
	Index string `json:"_index"`
	ID    string `json:"_id"`
}

// handleBulk is the Elasticsearch-compatible POST /_bulk and
// POST /{index}/_bulk, so Filebeat, Vector, Fluent Bit and Logstash
// Elasticsearch outputs can ship here unchanged. index and create actions
// append their document; delete and update are refused per item, since
// the trail is append-only. Documents are appended in chunks as the body
// streams in (as POST /v1/events); a complete request is answered 200 in
// Elasticsearch's shape once the accepted documents are durable. A request
// that stops early (body too large or too slow, more than
// max_request_events actions, the ledger refusing) is answered with the
// status of the cause, resume_line and what was stored before, like
// POST /v1/events: Elasticsearch clients then send it again, and
// documents with event.id already stored are dropped as duplicates.
func (s *Server) handleBulk(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defaultIndex := r.PathValue("index")
	if defaultIndex == "" {
		defaultIndex = "trailguard"
	}
	body, db, err := s.body(w, r)
	if err != nil {
		status, msg := bodyStatus(err)
		esError(w, status, "illegal_argument_exception", msg)
		return
	}
	now := start.UTC()
	var texts errorTexts
	indexNames := []string{defaultIndex}
	indexRef := map[string]uint16{defaultIndex: 0}
	var results []bulkResult
	pending := -1 // the item waiting for its document line
	c := getChunk()
	defer putChunk(c)
	var fail *storeFailure
	var stored []storedRange
	stopLine, lastLine := 0, 0
	overLimit := false
	u := s.turns.newTurn()
	flush := func() bool {
		u.give() // not held through the wait for durability
		if c.len() == 0 {
			return true
		}
		dup, first, kept, err := s.appendChunk(r.Context(), c)
		if err != nil {
			f := s.storeFailed("bulk", c.len(), err)
			fail = &f
			stopLine = c.lines[0]
			c.reset()
			return false
		}
		seq := first
		for i, ref := range c.refs {
			it := &results[ref]
			if dup[i] {
				// As Elasticsearch answers a create of an existing _id;
				// shippers treat it as delivered.
				it.fail(http.StatusConflict, errConflict, texts.text("event.id "+c.clientID(i)+" already stored"))
				continue
			}
			it.status, it.seq = http.StatusCreated, seq
			seq++
		}
		if kept > 0 {
			stored = append(stored, storedRange{first, kept})
		}
		c.reset()
		return true
	}
	err = forLines(body, s.cfg.MaxLineBytes, u, func(n int, line []byte, tooLong bool) bool {
		lastLine = n
		if pending >= 0 {
			ref := pending
			it := &results[ref]
			pending = -1
			if tooLong {
				it.fail(http.StatusRequestEntityTooLarge, errTooLargeDoc, texts.text(fmt.Sprintf("document exceeds %d bytes (max_line_bytes)", s.cfg.MaxLineBytes)))
				return true
			}
			if it.status != 0 { // update: its document line is consumed, not stored
				return true
			}
			// Resuming starts at the item's action line.
			if err := s.addTo(c, line, ref, n-1, now); err != nil {
				it.fail(http.StatusBadRequest, errParsing, texts.text(err.Error()))
				return true
			}
			if c.full(s.chunkEvents) {
				return flush()
			}
			return true
		}
		if len(results) >= s.cfg.MaxRequestEvents {
			overLimit, stopLine = true, n
			return false
		}
		results = append(results, bulkResult{op: opIndex})
		it := &results[len(results)-1]
		if tooLong {
			it.fail(http.StatusBadRequest, errValidation, texts.text(fmt.Sprintf("action line %d exceeds %d bytes (max_line_bytes)", n, s.cfg.MaxLineBytes)))
			return true
		}
		var act bulkAction
		if err := json.Unmarshal(line, &act); err != nil || len(act) != 1 {
			it.fail(http.StatusBadRequest, errIllegal, texts.text(fmt.Sprintf("line %d: malformed action, want {\"create\":{…}} or {\"index\":{…}}", n)))
			return true
		}
		for op, meta := range act {
			switch op {
			case "create":
				it.op = opCreate
			case "index":
				it.op = opIndex
			case "update":
				it.op = opUpdate
			case "delete":
				it.op = opDelete
			default:
				it.fail(http.StatusBadRequest, errIllegal, texts.text(fmt.Sprintf("line %d: unknown action %.40q, want create, index, delete or update", n, op)))
				return true
			}
			switch {
			case len(meta.Index) > maxIndexNameLen:
				it.fail(http.StatusBadRequest, errInvalidIndex, texts.text(fmt.Sprintf("_index is %d bytes, must be at most %d", len(meta.Index), maxIndexNameLen)))
			case len(meta.ID) > maxDocIDLen:
				it.fail(http.StatusBadRequest, errValidation, texts.text(fmt.Sprintf("_id is %d bytes, must be at most %d", len(meta.ID), maxDocIDLen)))
			case meta.Index != "":
				ref, ok := indexRef[meta.Index]
				if !ok && len(indexNames) >= maxIndexNames {
					it.fail(http.StatusBadRequest, errInvalidIndex, texts.text(fmt.Sprintf("more than %d distinct _index values in one request; split it", maxIndexNames)))
					break
				}
				if !ok {
					ref = uint16(len(indexNames))
					indexNames = append(indexNames, meta.Index)
					indexRef[meta.Index] = ref
				}
				it.index = ref
			}
			if len(meta.ID) <= maxDocIDLen {
				it.id = meta.ID
			}
			switch it.op {
			case opCreate, opIndex:
				pending = len(results) - 1 // a refused item's document line is consumed too
			case opUpdate:
				pending = len(results) - 1 // its document line follows; consumed and refused
				if it.status == 0 {
					it.fail(http.StatusMethodNotAllowed, errIllegal, "the audit trail is append-only: update is not supported")
				}
			case opDelete:
				if it.status == 0 {
					it.fail(http.StatusMethodNotAllowed, errIllegal, "the audit trail is append-only: delete is not supported")
				}
			}
		}
		return true
	})
	switch {
	case fail != nil:
	case err != nil:
		stopLine = lastLine + 1
		if c.len() > 0 {
			stopLine = c.lines[0]
		}
	default:
		if !overLimit {
			db.finish()
			if pending >= 0 && results[pending].status == 0 {
				results[pending].fail(http.StatusBadRequest, errIllegal, "action without a document line at the end of the body")
			}
		}
		flush()
	}
	var accepted int
	for _, sr := range stored {
		accepted += sr.Count
	}
	s.answerDeadline(w)
	if fail != nil || err != nil || overLimit {
		extra := map[string]any{"resume_line": stopLine, "stored": stored, "outcome": "not_stored"}
		switch {
		case fail != nil:
			extra["outcome"] = fail.outcome
			if fail.retryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(fail.retryAfter))
			}
			typ := "unavailable_shards_exception"
			if fail.outcome == "unknown" {
				typ = "outcome_unknown_exception"
			}
			esErrorWith(w, fail.status, typ, fail.msg+partialNote(accepted), extra)
		case err != nil:
			status, msg := bodyStatus(err)
			esErrorWith(w, status, "illegal_argument_exception", msg+partialNote(accepted), extra)
		default:
			s.metrics.overflow.Add(1)
			esErrorWith(w, http.StatusRequestEntityTooLarge, "illegal_argument_exception",
				fmt.Sprintf("more than %d actions (max_request_events); send the lines from resume_line on in another request", s.cfg.MaxRequestEvents)+partialNote(accepted), extra)
		}
		return
	}
	if len(results) == 0 {
		esError(w, http.StatusBadRequest, "action_request_validation_exception", "Validation Failed: 1: no requests added; send NDJSON action and document lines")
		return
	}
	s.writeBulkAnswer(w, time.Since(start), results, indexNames)
}

func (it *bulkResult) fail(status int, typ uint8, reason string) {
	it.status, it.errType, it.reason = uint16(status), typ, reason
}

// esErrorWith is esError with extra top-level fields (resume_line,
// stored, outcome).
func esErrorWith(w http.ResponseWriter, status int, typ, reason string, extra map[string]any) {
	e := map[string]any{"type": typ, "reason": reason}
	out := map[string]any{"error": map[string]any{"root_cause": []any{e}, "type": typ, "reason": reason}, "status": status}
	for k, v := range extra {
		out[k] = v
	}
	writeJSON(w, status, out)
}

// writeBulkAnswer streams the answer item by item, so that a large request
// does not need its answer built in memory.
func (s *Server) writeBulkAnswer(w http.ResponseWriter, took time.Duration, results []bulkResult, indexNames []string) {
	var rejected, dups uint64
	errs := false
	for i := range results {
		switch st := results[i].status; {
		case st == http.StatusConflict:
			dups++
			errs = true
		case st >= 400:
			rejected++
			errs = true
		}
	}
	s.metrics.rejected.Add(rejected)
	s.metrics.duplicates.Add(dups)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	buf := make([]byte, 0, 512)
	buf = append(buf, `{"took":`...)
	buf = strconv.AppendInt(buf, took.Milliseconds(), 10)
	buf = append(buf, `,"errors":`...)
	buf = strconv.AppendBool(buf, errs)
	buf = append(buf, `,"items":[`...)
	for i := range results {
		it := &results[i]
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"`...)
		buf = append(buf, opNames[it.op]...)
		buf = append(buf, `":{"_index":`...)
		buf = event.AppendString(buf, indexNames[it.index])
		switch {
		case it.id != "":
			buf = append(buf, `,"_id":`...)
			buf = event.AppendString(buf, it.id)
		case it.status == http.StatusCreated:
			buf = append(buf, `,"_id":"`...)
			buf = strconv.AppendUint(buf, it.seq, 10)
			buf = append(buf, '"')
		}
		if it.status == http.StatusCreated {
			buf = append(buf, `,"_version":1,"result":"created","_shards":{"total":1,"successful":1,"failed":0},"_seq_no":`...)
			buf = strconv.AppendUint(buf, it.seq, 10)
			buf = append(buf, `,"_primary_term":1`...)
		}
		buf = append(buf, `,"status":`...)
		buf = strconv.AppendUint(buf, uint64(it.status), 10)
		if it.errType != errNone {
			buf = append(buf, `,"error":{"type":"`...)
			buf = append(buf, errTypeNames[it.errType]...)
			buf = append(buf, `","reason":`...)
			buf = event.AppendString(buf, it.reason)
			buf = append(buf, '}')
		}
		buf = append(buf, "}}"...)
		if len(buf) > 16<<10 {
			bw.Write(buf)
			buf = buf[:0]
		}
	}
	buf = append(buf, "]}\n"...)
	bw.Write(buf)
	bw.Flush()
}
