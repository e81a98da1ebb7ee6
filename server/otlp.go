package server

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
)

// maxOTLPBytes caps an OTLP request body (after gzip) below
// max_request_bytes: unlike NDJSON, which is read a line at a time, an OTLP
// request is decoded whole, and its decoded form is several times larger.
const maxOTLPBytes = 16 << 20

// handleOTLPLogs is POST /v1/logs: OpenTelemetry OTLP/HTTP logs, as
// protobuf (application/x-protobuf) or JSON (application/json), gzip
// accepted. Each log record becomes an ECS event (otlp_map.go) and goes
// through the same scrubbing, checks, resend window and durable append as
// POST /v1/events; the answer is an ExportLogsServiceResponse, with
// partial_success naming how many records were rejected and why.
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
	var ld *logspb.LogsData
	if isJSON {
		ld, err = decodeOTLPJSON(data)
	} else {
		// LogsData has the wire format of ExportLogsServiceRequest
		// (field 1: repeated ResourceLogs).
		ld = &logspb.LogsData{}
		err = proto.UnmarshalOptions{RecursionLimit: 64}.Unmarshal(data, ld)
	}
	data = nil
	if err != nil {
		writeError(w, http.StatusBadRequest, "not an OTLP logs request: "+err.Error())
		return
	}
	total := 0
	for _, rl := range ld.ResourceLogs {
		for _, sl := range rl.ScopeLogs {
			total += len(sl.LogRecords)
		}
	}
	if total > s.cfg.MaxRequestEvents {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%d log records in one request; send at most %d (max_request_events)", total, s.cfg.MaxRequestEvents))
		return
	}
	now := time.Now().UTC()
	var records [][]byte
	var ids []string
	rejected := 0
	var firstErrs []string
	reject := func(n int, err error) {
		rejected++
		if len(firstErrs) < 5 {
			firstErrs = append(firstErrs, fmt.Sprintf("log record %d: %v", n, err))
		}
	}
	n := 0
	var buf, scratch []byte
	for _, rl := range ld.ResourceLogs {
		res := rl.GetResource().GetAttributes()
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				n++
				buf = otlpEvent(res, sl.Scope, lr).AppendJSON(buf[:0])
				if len(buf) > s.cfg.MaxLineBytes {
					reject(n, fmt.Errorf("its event is %d bytes, more than max_line_bytes (%d)", len(buf), s.cfg.MaxLineBytes))
					continue
				}
				var rec []byte
				var id string
				rec, scratch, id, err = s.prepare(nil, scratch, buf, now)
				if err != nil {
					reject(n, err)
					continue
				}
				records = append(records, rec)
				ids = append(ids, id)
			}
		}
	}
	ld = nil
	dups := 0
	if dup := s.recent.dups(ids); len(dup) > 0 {
		kept := 0
		for i := range records {
			if dup[i] {
				dups++
				continue
			}
			records[kept], ids[kept] = records[i], ids[i]
			kept++
		}
		records, ids = records[:kept], ids[:kept]
	}
	s.metrics.rejected.Add(uint64(rejected))
	s.metrics.duplicates.Add(uint64(dups))
	if len(records) > 0 {
		if _, err := s.ledger.Append(r.Context(), records...); err != nil {
			s.log.Error("otlp: ledger append failed", "events", len(records), "err", err)
			f := classifyStoreError(err)
			s.metrics.failed.Add(uint64(len(records)))
			if f.retryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(f.retryAfter))
			}
			writeJSON(w, f.status, map[string]string{"error": "log records: " + f.msg, "outcome": f.outcome})
			return
		}
		s.metrics.ingested.Add(uint64(len(records)))
		s.recent.add(ids)
	}
	writeOTLPResponse(w, isJSON, rejected, strings.Join(firstErrs, "; "))
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
