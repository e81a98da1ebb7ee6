package server

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/trailguard/trailguard/event"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
)

func sv(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

func iv(n int64) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: n}}
}

// storedSince returns the events appended to ts's ledger from index from
// on, skipping the collector's own audit events.
func storedSince(t *testing.T, ts *testServer, from uint64) []*event.Event {
	t.Helper()
	var out []*event.Event
	for e, err := range ts.ledger.Entries(from) {
		if err != nil {
			t.Fatal(err)
		}
		ev, err := event.Decode(e.Data)
		if err != nil {
			t.Fatal(err)
		}
		if ev.ServiceName != "trailguard-collector" {
			out = append(out, ev)
		}
	}
	return out
}

// TestOTLPProtobuf: a gzipped protobuf export with a failed login, a record
// whose attributes hold a secret, and a record ECS refuses: two stored,
// mapped as the table says, scrubbed; one rejected in partial_success.
func TestOTLPProtobuf(t *testing.T) {
	t.Parallel()
	ts := startServer(t, t.TempDir(), nil)
	at := time.Date(2026, 11, 29, 10, 0, 0, 123456789, time.UTC)
	req := &logspb.LogsData{ResourceLogs: []*logspb.ResourceLogs{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			{Key: "service.name", Value: sv("orders-api")}, {Key: "host.name", Value: sv("web-1")}, {Key: "deployment.environment", Value: sv("prod")}}},
		ScopeLogs: []*logspb.ScopeLogs{{
			Scope: &commonpb.InstrumentationScope{Name: "auth", Version: "1.2"},
			LogRecords: []*logspb.LogRecord{
				{TimeUnixNano: uint64(at.UnixNano()), SeverityNumber: logspb.SeverityNumber_SEVERITY_NUMBER_WARN, Body: sv("login failed"),
					TraceId: bytes.Repeat([]byte{0xab}, 16), SpanId: bytes.Repeat([]byte{0xcd}, 8), EventName: "authn_login_fail",
					Attributes: []*commonpb.KeyValue{{Key: "user.name", Value: sv("alice")}, {Key: "client.address", Value: sv("203.0.113.7")},
						{Key: "http.request.method", Value: sv("POST")}, {Key: "http.response.status_code", Value: iv(401)},
						{Key: "url.path", Value: sv("/api/login")}, {Key: "event.outcome", Value: sv("failure")},
						{Key: "http.route", Value: sv("/api/login")}, {Key: "http.route", Value: sv("duplicate key, dropped")}}},
				{SeverityText: "INFO", Body: sv("debug dump password=hunter2secret"),
					Attributes: []*commonpb.KeyValue{{Key: "client_secret", Value: sv("s3cr3t-value-123")}}},
				{Body: sv("bad outcome"), Attributes: []*commonpb.KeyValue{{Key: "event.outcome", Value: sv("maybe")}}},
			},
		}},
	}}}
	raw, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	from := ts.ledger.Size()
	code, body := ts.do(t, "POST", "/v1/logs", ts.ingest, &gz, "Content-Type", "application/x-protobuf", "Content-Encoding", "gzip")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	// ExportLogsServiceResponse{partial_success{rejected_log_records: 1, error_message}}
	if len(body) < 4 || body[0] != 0x0a || body[2] != 0x08 || body[3] != 1 || !bytes.Contains(body, []byte(`event.outcome "maybe"`)) {
		t.Errorf("answer %q", body)
	}
	evs := storedSince(t, ts, from)
	if len(evs) != 2 {
		t.Fatalf("%d events stored, want 2", len(evs))
	}
	e := evs[0]
	want := event.Event{Timestamp: at, Action: "authn_login_fail", Message: "login failed", LogLevel: "warn", Severity: 13,
		TraceID: strings.Repeat("ab", 16), SpanID: strings.Repeat("cd", 8), ServiceName: "orders-api", HostName: "web-1",
		UserName: "alice", ClientIP: "203.0.113.7", Method: "POST", StatusCode: 401, Path: "/api/login", Outcome: "failure"}
	got := event.Event{Timestamp: e.Timestamp, Action: e.Action, Message: e.Message, LogLevel: e.LogLevel, Severity: e.Severity,
		TraceID: e.TraceID, SpanID: e.SpanID, ServiceName: e.ServiceName, HostName: e.HostName, UserName: e.UserName,
		ClientIP: e.ClientIP, Method: e.Method, StatusCode: e.StatusCode, Path: e.Path, Outcome: e.Outcome}
	if !got.Timestamp.Equal(want.Timestamp) || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("mapped event\n got %+v\nwant %+v", got, want)
	}
	var attrs map[string]map[string]any
	if err := json.Unmarshal(e.Attrs, &attrs); err != nil || attrs["attributes"]["http.route"] != "/api/login" ||
		attrs["resource"]["deployment.environment"] != "prod" || attrs["scope"]["name"] != "auth" {
		t.Errorf("trailguard.attrs %s (%v)", e.Attrs, err)
	}
	if e.ID == "" || e.Ingested.IsZero() || e.Kind != "event" || e.Dataset != event.DatasetApp {
		t.Errorf("collector fields: %+v", e)
	}
	all, _ := json.Marshal(evs[1])
	if bytes.Contains(all, []byte("hunter2secret")) || bytes.Contains(all, []byte("s3cr3t-value-123")) || evs[1].LogLevel != "info" {
		t.Errorf("second record not scrubbed: %s", all)
	}
}

// TestOTLPJSON: OTLP/JSON with hex ids, 64-bit integers as strings, enum
// names; and the requests a client gets wrong.
func TestOTLPJSON(t *testing.T) {
	t.Parallel()
	ts := startServer(t, t.TempDir(), func(c *Config) { c.MaxRequestEvents = 10; c.MaxRequestBytes = 1 << 20 })
	body := `{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"billing"}}]},
	  "scopeLogs":[{"scope":{"name":"s"},"logRecords":[
	    {"timeUnixNano":"1795946400000000000","severityNumber":"SEVERITY_NUMBER_ERROR","traceId":"5b8efff798038103d269b633813fc60c",
	     "spanId":"eee19b7ec3c1b174","body":{"kvlistValue":{"values":[{"key":"k","value":{"intValue":"7"}}]}},
	     "attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}},{"key":"user.roles","value":{"arrayValue":{"values":[{"stringValue":"admin"}]}}}]}]}]}]}`
	from := ts.ledger.Size()
	code, out := ts.do(t, "POST", "/v1/logs", ts.ingest, strings.NewReader(body), "Content-Type", "application/json")
	if code != 200 || strings.TrimSpace(string(out)) != "{}" {
		t.Fatalf("%d %s", code, out)
	}
	evs := storedSince(t, ts, from)
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	e := evs[0]
	if e.TraceID != "5b8efff798038103d269b633813fc60c" || e.SpanID != "eee19b7ec3c1b174" || e.StatusCode != 503 || e.LogLevel != "error" ||
		e.Severity != 17 || e.Message != `{"k":7}` || e.ServiceName != "billing" || len(e.UserRoles) != 1 || e.Timestamp.Unix() != 1795946400 {
		t.Errorf("mapped %+v", e)
	}

	many := `{"resourceLogs":[{"scopeLogs":[{"logRecords":[` + strings.TrimSuffix(strings.Repeat(`{"body":{"stringValue":"x"}},`, 11), ",") + `]}]}]}`
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write([]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"`))
	zw.Write(bytes.Repeat([]byte("A"), 4<<20))
	zw.Write([]byte(`"}}]}]}]}`))
	zw.Close()
	for _, tc := range []struct {
		name, ctype, enc string
		body             []byte
		code             int
		msg              string
	}{
		{"wrong type", "text/plain", "", []byte(body), 415, "application/x-protobuf"},
		{"not JSON", "application/json", "", []byte(`{"resourceLogs":[`), 400, "OTLP/JSON"},
		{"not protobuf", "application/x-protobuf", "", []byte{0xff, 0xff, 0xff}, 400, "not an OTLP logs request"},
		{"too many records", "application/json", "", []byte(many), 413, "at most 10"},
		{"gzip bomb", "application/json", "gzip", bomb.Bytes(), 413, "exceeds"},
		{"bad severity", "application/json", "", []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":"LOUD"}]}]}]}`), 400, "severityNumber"},
	} {
		hdr := []string{"Content-Type", tc.ctype}
		if tc.enc != "" {
			hdr = append(hdr, "Content-Encoding", tc.enc)
		}
		code, out := ts.do(t, "POST", "/v1/logs", ts.ingest, bytes.NewReader(tc.body), hdr...)
		if code != tc.code || !strings.Contains(string(out), tc.msg) {
			t.Errorf("%s: %d %s, want %d mentioning %q", tc.name, code, out, tc.code, tc.msg)
		}
	}
	if code, _ := ts.do(t, "POST", "/v1/logs", ts.read, strings.NewReader(body), "Content-Type", "application/json"); code != 403 {
		t.Errorf("a read token may not ingest: %d", code)
	}
}

// TestOTLPJSONNumbers: each form of a proto3 JSON integer field that
// protojson reads, our decoder reads to the same value, and each it
// refuses, ours refuses: a sender's OTLP/JSON is read as the standard's
// own library reads it. want is the value read, "" for a refusal.
func TestOTLPJSONNumbers(t *testing.T) {
	t.Parallel()
	get := map[string]func(*logspb.LogRecord) string{
		"timeUnixNano":           func(r *logspb.LogRecord) string { return strconv.FormatUint(r.TimeUnixNano, 10) },
		"observedTimeUnixNano":   func(r *logspb.LogRecord) string { return strconv.FormatUint(r.ObservedTimeUnixNano, 10) },
		"flags":                  func(r *logspb.LogRecord) string { return strconv.FormatUint(uint64(r.Flags), 10) },
		"droppedAttributesCount": func(r *logspb.LogRecord) string { return strconv.FormatUint(uint64(r.DroppedAttributesCount), 10) },
		"severityNumber":         func(r *logspb.LogRecord) string { return strconv.Itoa(int(r.SeverityNumber)) },
		"intValue":               func(r *logspb.LogRecord) string { return strconv.FormatInt(r.GetBody().GetIntValue(), 10) },
	}
	for _, tc := range []struct{ field, value, want string }{
		// fixed64: a number or a string, exponents and fractions that
		// leave an integer.
		{"timeUnixNano", `"1795946400000000000"`, "1795946400000000000"},
		{"timeUnixNano", `1000`, "1000"},
		{"timeUnixNano", `1e3`, "1000"},
		{"timeUnixNano", `"1e3"`, "1000"},
		{"timeUnixNano", `1E+3`, "1000"},
		{"timeUnixNano", `1000.000`, "1000"},
		{"timeUnixNano", `"10000e-1"`, "1000"},
		{"timeUnixNano", `1.7959464e18`, "1795946400000000000"},
		{"timeUnixNano", `0.5e1`, "5"},
		{"timeUnixNano", `"\u0031"`, "1"},
		{"timeUnixNano", `-0`, "0"},
		{"timeUnixNano", `"-0.0e5"`, "0"},
		{"timeUnixNano", `0e99999999999`, "0"},
		{"timeUnixNano", `18446744073709551615`, "18446744073709551615"},
		{"timeUnixNano", `1.8446744073709551615e19`, "18446744073709551615"},
		{"timeUnixNano", `null`, "0"},
		{"timeUnixNano", `18446744073709551616`, ""},
		{"timeUnixNano", `1e20`, ""},
		{"timeUnixNano", `1e99999999999`, ""},
		{"timeUnixNano", `1.5`, ""},
		{"timeUnixNano", `"1.5e0"`, ""},
		{"timeUnixNano", `15e-1`, ""},
		{"timeUnixNano", `-1`, ""},
		{"timeUnixNano", `"-1e3"`, ""},
		{"timeUnixNano", `" 1"`, ""},
		{"timeUnixNano", `"1 "`, ""},
		{"timeUnixNano", `"01"`, ""},
		{"timeUnixNano", `"0x10"`, ""},
		{"timeUnixNano", `"1e"`, ""},
		{"timeUnixNano", `"1."`, ""},
		{"timeUnixNano", `"+1"`, ""},
		{"timeUnixNano", `""`, ""},
		{"timeUnixNano", `"\"1\""`, ""},
		{"timeUnixNano", `true`, ""},
		{"timeUnixNano", `[1]`, ""},
		{"observedTimeUnixNano", `"2e18"`, "2000000000000000000"},
		// fixed32 and uint32.
		{"flags", `1`, "1"},
		{"flags", `"1"`, "1"},
		{"flags", `1e0`, "1"},
		{"flags", `"4294967295"`, "4294967295"},
		{"flags", `4294967296`, ""},
		{"flags", `-1`, ""},
		{"flags", `0.1`, ""},
		{"droppedAttributesCount", `"2"`, "2"},
		{"droppedAttributesCount", `2.0`, "2"},
		{"droppedAttributesCount", `"x"`, ""},
		// int64.
		{"intValue", `"-9223372036854775808"`, "-9223372036854775808"},
		{"intValue", `-1e3`, "-1000"},
		{"intValue", `"-1e3"`, "-1000"},
		{"intValue", `-100e-2`, "-1"},
		{"intValue", `9223372036854775807`, "9223372036854775807"},
		{"intValue", `9223372036854775808`, ""},
		{"intValue", `-1.5`, ""},
		// An enum: its name, or its number as a number (not in a string).
		{"severityNumber", `"SEVERITY_NUMBER_INFO"`, "9"},
		{"severityNumber", `"SEVERITY_NUMBER\u005fINFO"`, "9"},
		{"severityNumber", `9`, "9"},
		{"severityNumber", `9.0`, "9"},
		{"severityNumber", `0.9e1`, "9"},
		{"severityNumber", `"9"`, ""},
		{"severityNumber", `"LOUD"`, ""},
		{"severityNumber", `9.5`, ""},
		{"severityNumber", `2147483648`, ""},
	} {
		rec := fmt.Sprintf(`{%q:%s}`, tc.field, tc.value)
		if tc.field == "intValue" {
			rec = fmt.Sprintf(`{"body":{"intValue":%s}}`, tc.value)
		}
		data := []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[` + rec + `]}]}]}`)
		ours, err := decodeOTLPJSON(data)
		var pj logspb.LogsData
		pjErr := protojson.Unmarshal(data, &pj)
		if (err == nil) != (tc.want != "") || (pjErr == nil) != (tc.want != "") {
			t.Errorf("%s %s: our error %v, protojson's %v; want read: %v", tc.field, tc.value, err, pjErr, tc.want != "")
			continue
		}
		if err != nil {
			continue
		}
		r, pr := ours.ResourceLogs[0].ScopeLogs[0].LogRecords[0], pj.ResourceLogs[0].ScopeLogs[0].LogRecords[0]
		if got := get[tc.field](r); got != tc.want || !proto.Equal(r, pr) {
			t.Errorf("%s %s: read %s (record %v), want %s as protojson (%v)", tc.field, tc.value, got, r, tc.want, pr)
		}
	}
}

// TestOTLPJSONMatchesProtobuf: an OTLP/JSON request maps to the events its
// protobuf form maps to, record by record.
func TestOTLPJSONMatchesProtobuf(t *testing.T) {
	one := func(lr *logspb.LogRecord) *logspb.LogsData {
		return &logspb.LogsData{ResourceLogs: []*logspb.ResourceLogs{{
			Resource:  &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: sv("billing")}}},
			ScopeLogs: []*logspb.ScopeLogs{{Scope: &commonpb.InstrumentationScope{Name: "s"}, LogRecords: []*logspb.LogRecord{lr}}}}}}
	}
	arr := func(vs ...*commonpb.AnyValue) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vs}}}
	}
	bv := func(b ...byte) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: b}}
	}
	record := func(js string) string {
		return `{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"billing"}}]},"scopeLogs":[{"scope":{"name":"s"},"logRecords":[` + js + `]}]}]}`
	}
	for _, tc := range []struct {
		name, json string
		pb         *logspb.LogsData
	}{
		{"ids, strings for 64-bit integers, enum names", record(`{"timeUnixNano":"1795946400000000000","severityNumber":"SEVERITY_NUMBER_ERROR",
			"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","body":{"stringValue":"x"},
			"attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}},{"key":"user.roles","value":{"arrayValue":{"values":[{"stringValue":"admin"}]}}}]}`),
			one(&logspb.LogRecord{TimeUnixNano: 1795946400000000000, SeverityNumber: logspb.SeverityNumber_SEVERITY_NUMBER_ERROR,
				TraceId: []byte{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c},
				SpanId:  []byte{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74}, Body: sv("x"),
				Attributes: []*commonpb.KeyValue{{Key: "http.response.status_code", Value: iv(503)}, {Key: "user.roles", Value: arr(sv("admin"))}}})},
		// The JSON half dropped the empty value: ["a"], where protobuf
		// gives [null,"a"].
		{"an empty value in an array", record(`{"body":{"arrayValue":{"values":[{},{"stringValue":"a"}]}}}`),
			one(&logspb.LogRecord{Body: arr(&commonpb.AnyValue{}, sv("a"))})},
		// The JSON half read {} as no body, protobuf as the message "null".
		{"an empty body", record(`{"body":{}}`), one(&logspb.LogRecord{Body: &commonpb.AnyValue{}})},
		// Base64 without padding, and URL-safe: proto3 JSON reads both;
		// the JSON half read only padded standard base64 and gave "".
		{"bytes in unpadded and URL-safe base64", record(`{"attributes":[{"key":"a","value":{"bytesValue":"000"}},{"key":"b","value":{"bytesValue":"-_8="}}]}`),
			one(&logspb.LogRecord{Attributes: []*commonpb.KeyValue{{Key: "a", Value: bv(0xd3, 0x4d)}, {Key: "b", Value: bv(0xfb, 0xff)}}})},
	} {
		ld, err := decodeOTLPJSON([]byte(tc.json))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var fromJSON, fromPB []string
		for _, rl := range ld.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				for _, lr := range sl.LogRecords {
					fromJSON = append(fromJSON, string(otlpEvent(rl.GetResource().GetAttributes(), sl.Scope, lr).AppendJSON(nil)))
				}
			}
		}
		bin, err := proto.Marshal(tc.pb)
		if err != nil {
			t.Fatal(err)
		}
		if err := forEachLogRecord(bin, func(res []*commonpb.KeyValue, scope *commonpb.InstrumentationScope, lr *logspb.LogRecord) {
			fromPB = append(fromPB, string(otlpEvent(res, scope, lr).AppendJSON(nil)))
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(fromJSON, fromPB) || len(fromJSON) != 1 {
			t.Errorf("%s: OTLP/JSON gives\n%s\nprotobuf gives\n%s", tc.name, strings.Join(fromJSON, "\n"), strings.Join(fromPB, "\n"))
		}
	}
}

// idlessEvent is the event a record maps to, without its trace and span
// ids (hex in OTLP/JSON, base64 in proto3 JSON).
func idlessEvent(res []*commonpb.KeyValue, scope *commonpb.InstrumentationScope, lr *logspb.LogRecord) string {
	c := proto.Clone(lr).(*logspb.LogRecord)
	c.TraceId, c.SpanId = nil, nil
	return string(otlpEvent(res, scope, c).AppendJSON(nil))
}

// FuzzOTLP: whatever arrives, protobuf or JSON, decoding never panics and
// every mapped event encodes as one line of valid JSON that decodes again;
// an OTLP/JSON message maps to the events its protobuf form maps to.
func FuzzOTLP(f *testing.F) {
	seed, _ := proto.Marshal(&logspb.LogsData{ResourceLogs: []*logspb.ResourceLogs{{ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{
		{Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{{Key: "a\nb", Value: sv("\u2028")}}}}},
			Attributes: []*commonpb.KeyValue{{Key: "client.address", Value: sv("::1")}, {Key: "x", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 1e308}}}}}}}}}}})
	f.Add(seed, false)
	f.Add([]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"arrayValue":{"values":[{"bytesValue":"AAE="},{"boolValue":true}]}},"traceId":"zz"}]}]}]}`), true)
	f.Add([]byte(`{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"intValue":"-9223372036854775808"}}]}}]}`), true)
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		check := func(res []*commonpb.KeyValue, scope *commonpb.InstrumentationScope, lr *logspb.LogRecord) {
			line := otlpEvent(res, scope, lr).AppendJSON(nil)
			if !json.Valid(line) || bytes.ContainsAny(line, "\n\r") {
				t.Fatalf("event is not one line of JSON: %q", line)
			}
			if _, err := event.Decode(line); err != nil {
				t.Fatalf("event does not decode: %v\n%s", err, line)
			}
		}
		if isJSON {
			ld, err := decodeOTLPJSON(data)
			if err != nil {
				return
			}
			var fromJSON []string
			for _, rl := range ld.ResourceLogs {
				for _, sl := range rl.ScopeLogs {
					for _, lr := range sl.LogRecords {
						check(rl.GetResource().GetAttributes(), sl.Scope, lr)
						fromJSON = append(fromJSON, idlessEvent(rl.GetResource().GetAttributes(), sl.Scope, lr))
					}
				}
			}
			// The same message read by protojson (OTLP/JSON is proto3's
			// JSON mapping but for hex trace and span ids), written as
			// protobuf and walked by the protobuf half, maps to the same
			// events: a sender gets the same trail whichever encoding it
			// picks. What protojson refuses (unknown or duplicate keys,
			// keys in another case, bad UTF-8 or base64, two values in
			// one AnyValue) has no protobuf twin to compare with.
			var pj logspb.LogsData
			if protojson.Unmarshal(data, &pj) != nil {
				return
			}
			bin, err := proto.Marshal(&pj)
			if err != nil {
				t.Fatal(err)
			}
			var fromPB []string
			if forEachLogRecord(bin, func(res []*commonpb.KeyValue, scope *commonpb.InstrumentationScope, lr *logspb.LogRecord) {
				fromPB = append(fromPB, idlessEvent(res, scope, lr))
			}) != nil {
				return // nested past the protobuf half's recursion limit
			}
			if !slices.Equal(fromJSON, fromPB) {
				t.Fatalf("%s\nOTLP/JSON gives\n%s\nthe same message as protobuf gives\n%s", data, strings.Join(fromJSON, "\n"), strings.Join(fromPB, "\n"))
			}
			return
		}
		// The streaming walk visits the records the count announced, and
		// as many as a whole decode finds.
		count, cerr := countLogRecords(data)
		visited := 0
		err := forEachLogRecord(data, func(res []*commonpb.KeyValue, scope *commonpb.InstrumentationScope, lr *logspb.LogRecord) {
			visited++
			check(res, scope, lr)
		})
		if err == nil && (cerr != nil || visited != count) {
			t.Fatalf("walk visited %d records, count said %d (%v)", visited, count, cerr)
		}
		whole := &logspb.LogsData{}
		if err == nil && proto.Unmarshal(data, whole) == nil {
			n := 0
			for _, rl := range whole.ResourceLogs {
				for _, sl := range rl.ScopeLogs {
					n += len(sl.LogRecords)
				}
			}
			if n != visited {
				t.Fatalf("walk visited %d records, a whole decode found %d", visited, n)
			}
		}
	})
}
