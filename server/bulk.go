package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// bulkItem is one item of an Elasticsearch _bulk response.
type bulkItem struct {
	Index   string      `json:"_index"`
	ID      string      `json:"_id,omitempty"`
	Version int         `json:"_version,omitempty"`
	Result  string      `json:"result,omitempty"`
	Status  int         `json:"status"`
	SeqNo   *uint64     `json:"_seq_no,omitempty"`
	Term    int         `json:"_primary_term,omitempty"`
	Shards  *bulkShards `json:"_shards,omitempty"`
	Error   *bulkError  `json:"error,omitempty"`
	op      string      // create or index, the key the item is reported under
	rec     []byte      // the prepared record, when accepted
	eventID string      // the client's event.id, for deduplication
}

// bulkShards is the shard report of a stored item: one copy, written.
type bulkShards struct {
	Total      int `json:"total"`
	Successful int `json:"successful"`
	Failed     int `json:"failed"`
}

type bulkError struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

// bulkAction is the metadata line of a _bulk pair.
type bulkAction map[string]struct {
	Index string `json:"_index"`
	ID    string `json:"_id"`
}

// handleBulk is the Elasticsearch-compatible POST /_bulk and
// POST /{index}/_bulk, so Filebeat, Vector, Fluent Bit and Logstash
// Elasticsearch outputs can ship here unchanged. index and create actions
// append their document; delete and update are refused per item, since
// the trail is append-only. The response, in Elasticsearch's shape, is
// sent once the accepted documents are durable.
func (s *Server) handleBulk(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defaultIndex := r.PathValue("index")
	if defaultIndex == "" {
		defaultIndex = "trailguard"
	}
	body, err := s.body(w, r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := start.UTC()
	var items []*bulkItem
	var pending *bulkItem // an action waiting for its document line
	err = forLines(body, s.cfg.MaxLineBytes, func(n int, line []byte, tooLong bool) {
		if pending != nil {
			it := pending
			pending = nil
			if tooLong {
				it.fail(http.StatusRequestEntityTooLarge, "document_too_large", fmt.Sprintf("line %d exceeds %d bytes", n, s.cfg.MaxLineBytes))
				return
			}
			if it.Error != nil { // delete/update: its line is consumed, not stored
				return
			}
			rec, id, err := s.prepare(line, now)
			if err != nil {
				it.fail(http.StatusBadRequest, "document_parsing_exception", err.Error())
				return
			}
			it.rec, it.eventID = rec, id
			return
		}
		it := &bulkItem{Index: defaultIndex, op: "index"}
		items = append(items, it)
		if tooLong {
			it.fail(http.StatusBadRequest, "action_request_validation_exception", fmt.Sprintf("action line %d exceeds %d bytes", n, s.cfg.MaxLineBytes))
			return
		}
		var act bulkAction
		if err := json.Unmarshal(line, &act); err != nil || len(act) != 1 {
			it.fail(http.StatusBadRequest, "illegal_argument_exception", fmt.Sprintf("line %d: malformed action, want {\"create\":{…}} or {\"index\":{…}}", n))
			return
		}
		for op, meta := range act {
			it.op = op
			if meta.Index != "" {
				it.Index = meta.Index
			}
			it.ID = meta.ID
			switch op {
			case "create", "index":
				pending = it
			case "update":
				pending = it // its document line follows; consumed and refused
				it.fail(http.StatusMethodNotAllowed, "illegal_argument_exception", "the audit trail is append-only: update is not supported")
			case "delete":
				it.fail(http.StatusMethodNotAllowed, "illegal_argument_exception", "the audit trail is append-only: delete is not supported")
			default:
				it.fail(http.StatusBadRequest, "illegal_argument_exception", fmt.Sprintf("line %d: unknown action %q", n, op))
			}
		}
	})
	if err != nil {
		bodyError(w, err)
		return
	}
	if pending != nil {
		pending.fail(http.StatusBadRequest, "illegal_argument_exception", "action without a document line at the end of the body")
	}
	var accepted []*bulkItem
	var ids []string
	for _, it := range items {
		if it.rec != nil {
			accepted = append(accepted, it)
			ids = append(ids, it.eventID)
		}
	}
	for i, dup := range s.recent.dups(ids) {
		if dup {
			// As Elasticsearch answers a create of an existing _id; shippers
			// treat it as delivered.
			accepted[i].fail(http.StatusConflict, "version_conflict_engine_exception", "event.id "+ids[i]+" already stored")
			s.metrics.duplicates.Add(1)
		}
	}
	var records [][]byte
	for _, it := range items {
		if it.rec != nil {
			records = append(records, it.rec)
		}
	}
	if len(records) > 0 {
		first, err := s.ledger.Append(r.Context(), records...)
		if err != nil {
			s.log.Error("bulk: ledger append failed", "events", len(records), "err", err)
			for _, it := range items {
				if it.rec != nil {
					it.fail(http.StatusServiceUnavailable, "unavailable_shards_exception", "not stored: "+err.Error())
				}
			}
		} else {
			s.metrics.ingested.Add(uint64(len(records)))
			var ids []string
			for _, it := range items {
				if it.rec != nil && it.eventID != "" {
					ids = append(ids, it.eventID)
				}
			}
			s.recent.add(ids)
			i := first
			for _, it := range items {
				if it.rec != nil {
					seq := i
					it.SeqNo, it.Term, it.Version = &seq, 1, 1
					it.Shards = &bulkShards{Total: 1, Successful: 1}
					it.Status, it.Result = http.StatusCreated, "created"
					if it.ID == "" {
						it.ID = strconv.FormatUint(seq, 10)
					}
					i++
				}
			}
		}
	}
	out := struct {
		Took   int64            `json:"took"`
		Errors bool             `json:"errors"`
		Items  []map[string]any `json:"items"`
	}{Took: time.Since(start).Milliseconds(), Items: make([]map[string]any, 0, len(items))}
	for _, it := range items {
		if it.Error != nil {
			out.Errors = true
			s.metrics.rejected.Add(1)
		}
		out.Items = append(out.Items, map[string]any{it.op: it})
	}
	writeJSON(w, http.StatusOK, out)
}

func (it *bulkItem) fail(status int, typ, reason string) {
	it.Status = status
	it.Error = &bulkError{Type: typ, Reason: reason}
	it.rec = nil
}
