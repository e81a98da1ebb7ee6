package server

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
)

// maxOTLPBytes caps an OTLP request body (after gzip) below
// max_request_bytes: unlike NDJSON, which streams, an OTLP request is held
// whole while its records are decoded one at a time. OTLP/JSON is decoded
// whole (its ids and integers need converting), some 25 times its size in
// memory for small records, so it is capped lower.
const (
	maxOTLPBytes     = 16 << 20
	maxOTLPJSONBytes = 4 << 20
)

// handleOTLPLogs is POST /v1/logs: OpenTelemetry OTLP/HTTP logs, as
// protobuf (application/x-protobuf) or JSON (application/json), gzip
// accepted. Each log record becomes an ECS event (otlp_map.go) and goes
// through the same scrubbing, checks and durable append as POST /v1/events
// (OTLP records carry no event.id, so there is no resend window), in
// chunks as the records are decoded one at a time; the answer is an
// ExportLogsServiceResponse, with partial_success naming how many records
// were rejected and why.
func (s *Server) handleOTLPLogs(w http.ResponseWriter, r *http.Request) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isJSON := ct == "application/json"
	if !isJSON && ct != "application/x-protobuf" && ct != "application/protobuf" {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: OTLP/HTTP logs are application/x-protobuf or application/json", ct))
		return
	}
	body, db, err := s.body(w, r)
	if err != nil {
		status, msg := bodyStatus(err)
		writeError(w, status, msg)
		return
	}
	limit := min(s.cfg.MaxRequestBytes, maxOTLPBytes)
	if isJSON {
		limit = min(limit, maxOTLPJSONBytes)
	}
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		status, msg := bodyStatus(err)
		writeError(w, status, msg)
		return
	}
	db.finish()
	if int64(len(data)) > limit {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("OTLP request exceeds %d bytes; export smaller batches", limit))
		return
	}
	// each calls fn for every log record; total counts them first, so
	// that a request over max_request_events is refused before anything
	// is stored.
	var each func(fn func([]*commonpb.KeyValue, *commonpb.InstrumentationScope, *logspb.LogRecord)) error
	total := 0
	if isJSON {
		// Decoded whole, so the records and values are bounded as they
		// are read, before they are built.
		ld, err := decodeOTLPJSONLimited(data, s.cfg.MaxRequestEvents, maxOTLPJSONValues)
		switch {
		case errors.Is(err, errOTLPJSONRecords):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("more than %d log records in one request; send at most %d (max_request_events)", s.cfg.MaxRequestEvents, s.cfg.MaxRequestEvents))
			return
		case errors.Is(err, errOTLPJSONValues):
			writeError(w, http.StatusRequestEntityTooLarge, errOTLPJSONValues.Error())
			return
		case err != nil:
			writeError(w, http.StatusBadRequest, "not an OTLP logs request: "+err.Error())
			return
		}
		work, most := 0, 0
		for _, rl := range ld.ResourceLogs {
			res := kvValues(rl.GetResource().GetAttributes())
			most = max(most, res)
			for _, sl := range rl.ScopeLogs {
				total += len(sl.LogRecords)
				scope := kvValues(sl.GetScope().GetAttributes())
				most = max(most, scope)
				for _, lr := range sl.LogRecords {
					own := anyValues(lr.Body) + kvValues(lr.Attributes)
					most = max(most, own)
					work += res + scope + own
				}
			}
		}
		if work > maxOTLPWork || most > maxOTLPValues {
			writeError(w, http.StatusRequestEntityTooLarge, errOTLPWork.Error())
			return
		}
		each = func(fn func([]*commonpb.KeyValue, *commonpb.InstrumentationScope, *logspb.LogRecord)) error {
			for _, rl := range ld.ResourceLogs {
				for _, sl := range rl.ScopeLogs {
					for _, lr := range sl.LogRecords {
						fn(rl.GetResource().GetAttributes(), sl.Scope, lr)
					}
				}
			}
			return nil
		}
	} else {
		if total, err = countLogRecords(data); errors.Is(err, errOTLPWork) {
			writeError(w, http.StatusRequestEntityTooLarge, err.Error())
			return
		} else if err != nil {
			writeError(w, http.StatusBadRequest, "not an OTLP logs request: "+err.Error())
			return
		}
		each = func(fn func([]*commonpb.KeyValue, *commonpb.InstrumentationScope, *logspb.LogRecord)) error {
			return forEachLogRecord(data, fn)
		}
	}
	if total > s.cfg.MaxRequestEvents {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%d log records in one request; send at most %d (max_request_events)", total, s.cfg.MaxRequestEvents))
		return
	}
	now := time.Now().UTC()
	var chunk [][]byte
	chunkBytes, stored, rejected := 0, 0, 0
	var firstErrs []string
	var appendErr error
	flush := func() {
		if len(chunk) == 0 || appendErr != nil {
			return
		}
		if _, err := s.ledger.Append(r.Context(), chunk...); err != nil {
			appendErr = err
			return
		}
		s.metrics.ingested.Add(uint64(len(chunk)))
		stored += len(chunk)
		clear(chunk)
		chunk, chunkBytes = chunk[:0], 0
	}
	n := 0
	var buf, scratch []byte
	err = each(func(res []*commonpb.KeyValue, scope *commonpb.InstrumentationScope, lr *logspb.LogRecord) {
		n++
		if appendErr != nil {
			return
		}
		buf = otlpEvent(res, scope, lr).AppendJSON(buf[:0])
		var rec []byte
		var err error
		if len(buf) > s.cfg.MaxLineBytes {
			err = fmt.Errorf("its event is %d bytes, more than max_line_bytes (%d)", len(buf), s.cfg.MaxLineBytes)
		} else {
			rec, scratch, _, err = s.prepare(nil, scratch, buf, now, nil)
		}
		if err != nil {
			rejected++
			if len(firstErrs) < 5 {
				firstErrs = append(firstErrs, fmt.Sprintf("log record %d: %v", n, err))
			}
			return
		}
		// Appended in chunks as the records are mapped, as POST
		// /v1/events does, so memory holds one chunk.
		chunk = append(chunk, rec)
		chunkBytes += len(rec)
		if len(chunk) >= otlpChunkRecords || chunkBytes >= otlpChunkBytes {
			flush()
		}
	})
	if err == nil {
		flush()
	}
	s.metrics.rejected.Add(uint64(rejected))
	switch {
	case err != nil && stored == 0:
		writeError(w, http.StatusBadRequest, "not an OTLP logs request: "+err.Error())
		return
	case err != nil:
		// Malformed after some chunks were stored.
		writeError(w, http.StatusBadRequest, fmt.Sprintf("not an OTLP logs request after log record %d (%d stored): %v", n, stored, err))
		return
	case appendErr != nil:
		f := s.storeFailed("otlp", total-stored-rejected, appendErr)
		if f.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(f.retryAfter))
		}
		writeJSON(w, f.status, map[string]string{"error": fmt.Sprintf("log records: %d of %d stored before: %s", stored, total, f.msg), "outcome": f.outcome})
		return
	}
	writeOTLPResponse(w, isJSON, rejected, strings.Join(firstErrs, "; "))
}

// Chunks of records appended to the ledger at once.
const (
	otlpChunkRecords = 2048
	otlpChunkBytes   = 1 << 20
)

// maxOTLPValues bounds the attributes and values (each KeyValue and
// AnyValue, nested ones included) one resource, scope or log record of a
// protobuf request may hold: each is decoded whole, and an empty
// attribute, two bytes on the wire, is some 80 decoded (one log record of
// 8 million took 400 MB). OpenTelemetry's SDKs keep 128 attributes.
const maxOTLPValues = 100_000

// maxOTLPWork bounds the values the mapping of one request reads: a log
// record's own, and its resource's and scope's again for each record (a
// 487 KB request of one resource with 20,000 attributes and 99,000 empty
// log records kept two cores busy for minutes).
const maxOTLPWork = 10_000_000

var errOTLPWork = fmt.Errorf("OTLP request with more than %d attributes and values in one resource, scope or log record, or more than %d in all counting each log record's resource and scope again; export smaller batches", maxOTLPValues, maxOTLPWork)

// kvValues counts attributes and the values in them.
func kvValues(kvs []*commonpb.KeyValue) int {
	n := len(kvs)
	for _, kv := range kvs {
		n += anyValues(kv.GetValue())
	}
	return n
}

// anyValues counts a value and the values nested in it.
func anyValues(v *commonpb.AnyValue) int {
	if v == nil {
		return 0
	}
	n := 1
	for _, e := range v.GetArrayValue().GetValues() {
		n += anyValues(e)
	}
	return n + kvValues(v.GetKvlistValue().GetValues())
}

// otlpMsg is a message type of the logs data model that holds values.
type otlpMsg uint8

const (
	msgResource otlpMsg = iota
	msgScope
	msgRecord
	msgKeyValue
	msgAnyValue
	msgArray
	msgKVList
)

// wireValues counts the KeyValue and AnyValue messages (and their lists)
// in b, a message of type m, on the wire, adding to *n; past limit it
// stops with errOTLPWork.
func wireValues(b []byte, m otlpMsg, n *int, limit, depth int) error {
	if depth > 64 { // proto.Unmarshal's RecursionLimit refuses it anyway
		return fmt.Errorf("%w: nested deeper than 64", errWire)
	}
	return eachField(b, func(num protowire.Number, v []byte) error {
		sub, ok := otlpMsg(0), false
		switch {
		case m == msgResource && num == 1, m == msgKVList && num == 1:
			sub, ok = msgKeyValue, true
		case m == msgScope && num == 3, m == msgRecord && num == 6:
			sub, ok = msgKeyValue, true
		case m == msgRecord && num == 5, m == msgKeyValue && num == 2, m == msgArray && num == 1:
			sub, ok = msgAnyValue, true
		case m == msgAnyValue && num == 5:
			sub, ok = msgArray, true
		case m == msgAnyValue && num == 6:
			sub, ok = msgKVList, true
		}
		if !ok {
			return nil
		}
		if *n++; *n > limit {
			return errOTLPWork
		}
		return wireValues(v, sub, n, limit, depth+1)
	})
}

// countLogRecords counts the log records of a protobuf request by walking
// the wire format, without decoding them, and bounds the values each
// resource, scope and record holds (maxOTLPValues) and the mapping's work
// (maxOTLPWork).
func countLogRecords(data []byte) (int, error) {
	n, work := 0, 0
	values := func(b []byte, m otlpMsg) (int, error) {
		c := 0
		err := wireValues(b, m, &c, maxOTLPValues, 0)
		return c, err
	}
	err := eachField(data, func(num protowire.Number, rl []byte) error {
		if num != 1 {
			return nil
		}
		// A resource may come more than once (the last is decoded).
		res := 0
		if err := eachField(rl, func(num protowire.Number, b []byte) error {
			if num != 1 {
				return nil
			}
			c, err := values(b, msgResource)
			res = max(res, c)
			return err
		}); err != nil {
			return err
		}
		return eachField(rl, func(num protowire.Number, sl []byte) error {
			if num != 2 {
				return nil
			}
			scope := 0
			if err := eachField(sl, func(num protowire.Number, b []byte) error {
				if num != 1 {
					return nil
				}
				c, err := values(b, msgScope)
				scope = max(scope, c)
				return err
			}); err != nil {
				return err
			}
			return eachField(sl, func(num protowire.Number, b []byte) error {
				if num != 2 {
					return nil
				}
				n++
				c, err := values(b, msgRecord)
				if err != nil {
					return err
				}
				if work += res + scope + c; work > maxOTLPWork {
					return errOTLPWork
				}
				return nil
			})
		})
	})
	return n, err
}

// writeOTLPResponse answers 200 with an ExportLogsServiceResponse:
// partial_success (field 1) {rejected_log_records (1), error_message (2)}
// when records were rejected, empty otherwise.
func writeOTLPResponse(w http.ResponseWriter, isJSON bool, rejected int, msg string) {
	if isJSON {
		if rejected == 0 {
			writeJSON(w, http.StatusOK, map[string]any{})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"partialSuccess": map[string]any{
			"rejectedLogRecords": fmt.Sprint(rejected), "errorMessage": msg}})
		return
	}
	var out []byte
	if rejected > 0 {
		var ps []byte
		ps = protowire.AppendTag(ps, 1, protowire.VarintType)
		ps = protowire.AppendVarint(ps, uint64(rejected))
		ps = protowire.AppendTag(ps, 2, protowire.BytesType)
		ps = protowire.AppendString(ps, msg)
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendBytes(out, ps)
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}
