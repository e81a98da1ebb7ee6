package server

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"math"
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
	// The same request under the proto field names, as protojson
	// accepts it, maps the same.
	snake := strings.NewReplacer(`"resourceLogs"`, `"resource_logs"`, `"scopeLogs"`, `"scope_logs"`, `"logRecords"`, `"log_records"`,
		`"timeUnixNano"`, `"time_unix_nano"`, `"severityNumber"`, `"severity_number"`, `"traceId"`, `"trace_id"`, `"spanId"`, `"span_id"`,
		`"kvlistValue"`, `"kvlist_value"`, `"intValue"`, `"int_value"`, `"arrayValue"`, `"array_value"`, `"stringValue"`, `"string_value"`).Replace(body)
	for _, body := range []string{body, snake} {
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
			t.Errorf("mapped %+v\n%s", e, body)
		}
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

// TestOTLPJSONNames: each field is read under its JSON name or its proto
// name (resource_logs, time_unix_nano, string_value...), a field given
// twice under either name is refused, and so is an AnyValue holding two
// values; doubleValue is read from a string as well ("1.5", "NaN",
// "Infinity", "-Infinity"). Each case is also read by protojson (with
// unknown fields skipped, as the OTLP specification asks of receivers),
// which must agree: read or refused, and if read the same message but for
// trace and span ids (hex in OTLP/JSON, base64 in proto3 JSON).
func TestOTLPJSONNames(t *testing.T) {
	t.Parallel()
	wrap := func(rec string) string { return `{"resourceLogs":[{"scopeLogs":[{"logRecords":[` + rec + `]}]}]}` }
	body := func(v string) string { return wrap(`{"body":` + v + `}`) }
	dv := func(f float64) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: f}}
	}
	bodyIs := func(want *commonpb.AnyValue) func(*logspb.LogsData) bool {
		return func(ld *logspb.LogsData) bool {
			return proto.Equal(ld.ResourceLogs[0].ScopeLogs[0].LogRecords[0].Body, want)
		}
	}
	snake := `{"resource_logs":[{"resource":{"attributes":[{"key":"service.name","value":{"string_value":"billing"}}]},` +
		`"scope_logs":[{"scope":{"name":"s","version":"1"},"log_records":[{"time_unix_nano":"1795946400000000000",` +
		`"observed_time_unix_nano":1795946400000000001,"severity_number":"SEVERITY_NUMBER_WARN","severity_text":"WARN",` +
		`"body":{"kvlist_value":{"values":[{"key":"i","value":{"int_value":"-7"}},{"key":"d","value":{"double_value":"-Infinity"}},` +
		`{"key":"b","value":{"bool_value":true}},{"key":"y","value":{"bytes_value":"AAE="}},` +
		`{"key":"a","value":{"array_value":{"values":[{"string_value":"x"},{"int_value":1}]}}}]}},` +
		`"attributes":[{"key":"user.name","value":{"string_value":"alice"}}],"dropped_attributes_count":2,"flags":1,` +
		`"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174","event_name":"login"}]}]}]}`
	for _, tc := range []struct {
		name, json string
		read       bool
		check      func(*logspb.LogsData) bool // nil: protojson's agreement is the check
	}{
		{"every field under its proto name", snake, true, func(ld *logspb.LogsData) bool {
			r := ld.ResourceLogs[0].ScopeLogs[0].LogRecords[0]
			kv := r.Body.GetKvlistValue().GetValues()
			return ld.ResourceLogs[0].Resource.Attributes[0].Value.GetStringValue() == "billing" &&
				r.TimeUnixNano == 1795946400000000000 && r.ObservedTimeUnixNano == 1795946400000000001 &&
				r.SeverityNumber == logspb.SeverityNumber_SEVERITY_NUMBER_WARN && r.SeverityText == "WARN" &&
				len(kv) == 5 && kv[0].Value.GetIntValue() == -7 && math.IsInf(kv[1].Value.GetDoubleValue(), -1) &&
				kv[2].Value.GetBoolValue() && bytes.Equal(kv[3].Value.GetBytesValue(), []byte{0, 1}) &&
				len(kv[4].Value.GetArrayValue().GetValues()) == 2 && r.Attributes[0].Key == "user.name" &&
				r.DroppedAttributesCount == 2 && r.Flags == 1 && r.EventName == "login" &&
				fmt.Sprintf("%x/%x", r.TraceId, r.SpanId) == "5b8efff798038103d269b633813fc60c/eee19b7ec3c1b174"
		}},
		{"the two names mixed", `{"resource_logs":[{"scopeLogs":[{"log_records":[{"timeUnixNano":"5","severity_number":9,"body":{"string_value":"x"}}]}]}]}`, true,
			func(ld *logspb.LogsData) bool {
				r := ld.ResourceLogs[0].ScopeLogs[0].LogRecords[0]
				return r.TimeUnixNano == 5 && r.SeverityNumber == 9 && r.Body.GetStringValue() == "x"
			}},
		{"a name with escapes", wrap(`{"time\u005funix\u005fnano":"5"}`), true, func(ld *logspb.LogsData) bool {
			return ld.ResourceLogs[0].ScopeLogs[0].LogRecords[0].TimeUnixNano == 5
		}},
		// Names are matched case-sensitively; another case is an unknown field.
		{"a name in another case is skipped", wrap(`{"TimeUnixNano":"5","Time_Unix_Nano":"6"}`), true, func(ld *logspb.LogsData) bool {
			return ld.ResourceLogs[0].ScopeLogs[0].LogRecords[0].TimeUnixNano == 0
		}},
		{"an unknown field is skipped", wrap(`{"timeUnixNano":"5","x":{"timeUnixNano":[1,{"a":null}]}}`), true, nil},
		// A field given twice, whichever its names, even as null.
		{"both names", wrap(`{"timeUnixNano":"5","time_unix_nano":"5"}`), false, nil},
		{"both names, proto name first", wrap(`{"time_unix_nano":"5","timeUnixNano":"6"}`), false, nil},
		{"one name twice", wrap(`{"timeUnixNano":"5","timeUnixNano":"6"}`), false, nil},
		{"both names, one null", wrap(`{"timeUnixNano":null,"time_unix_nano":"6"}`), false, nil},
		{"both names of a message", wrap(`{"body":{"stringValue":"a"},"body":{"stringValue":"b"}}`), false, nil},
		{"both names of a list", wrap(`{"attributes":[],"attributes":[]}`), false, nil},
		{"both names of resourceLogs", `{"resourceLogs":[],"resource_logs":[]}`, false, nil},
		{"both names of scopeLogs", `{"resourceLogs":[{"scopeLogs":[],"scope_logs":[]}]}`, false, nil},
		{"both names of logRecords", `{"resourceLogs":[{"scopeLogs":[{"logRecords":[],"log_records":[]}]}]}`, false, nil},
		{"both names of severityNumber", wrap(`{"severityNumber":9,"severity_number":9}`), false, nil},
		{"both names of traceId", wrap(`{"traceId":"","trace_id":""}`), false, nil},
		{"both names of droppedAttributesCount", wrap(`{"droppedAttributesCount":1,"dropped_attributes_count":1}`), false, nil},
		{"a key twice", wrap(`{"attributes":[{"key":"a","key":"b"}]}`), false, nil},
		{"values twice", body(`{"arrayValue":{"values":[],"values":[]}}`), false, nil},
		{"both names of a value", body(`{"stringValue":"a","string_value":"a"}`), false, nil},
		{"both names of a value, one null", body(`{"string_value":null,"stringValue":"a"}`), false, nil},
		// An AnyValue holds one value; null is none.
		{"two values", body(`{"stringValue":"a","intValue":"1"}`), false, nil},
		{"two values under proto names", body(`{"bool_value":true,"kvlist_value":{}}`), false, nil},
		{"a null value and another", body(`{"stringValue":null,"int_value":"1"}`), true, bodyIs(iv(1))},
		{"the names of each value", body(`{"array_value":{"values":[{"string_value":"s"},{"bool_value":false},{"int_value":2},{"double_value":0.5},{"bytes_value":"/w=="},{"kvlist_value":{"values":[{"key":"k","value":{"int_value":"3"}}]}},{"array_value":{}}]}}`), true, nil},
		// doubleValue as a number or a string holding one, or NaN and the infinities.
		{"double 1.5", body(`{"doubleValue":1.5}`), true, bodyIs(dv(1.5))},
		{`double "1.5"`, body(`{"doubleValue":"1.5"}`), true, bodyIs(dv(1.5))},
		{`double "NaN"`, body(`{"doubleValue":"NaN"}`), true, bodyIs(dv(math.NaN()))},
		{`double "Infinity"`, body(`{"double_value":"Infinity"}`), true, bodyIs(dv(math.Inf(1)))},
		{`double "-Infinity"`, body(`{"doubleValue":"-Infinity"}`), true, bodyIs(dv(math.Inf(-1)))},
		{`double "-0"`, body(`{"doubleValue":"-0"}`), true, bodyIs(dv(math.Copysign(0, -1)))},
		{`double "1e3"`, body(`{"doubleValue":"1e3"}`), true, bodyIs(dv(1000))},
		{`double "1E-2"`, body(`{"doubleValue":"1E-2"}`), true, bodyIs(dv(0.01))},
		{`double "\u0031"`, body(`{"doubleValue":"\u0031"}`), true, bodyIs(dv(1))},
		{`double "1e-400"`, body(`{"doubleValue":"1e-400"}`), true, bodyIs(dv(0))},
		{"double 7", body(`{"doubleValue":7}`), true, bodyIs(dv(7))},
		{`double "1e400"`, body(`{"doubleValue":"1e400"}`), false, nil},
		{"double 1e400", body(`{"doubleValue":1e400}`), false, nil},
		{`double "nan"`, body(`{"doubleValue":"nan"}`), false, nil},
		{`double "-NaN"`, body(`{"doubleValue":"-NaN"}`), false, nil},
		{`double "+Infinity"`, body(`{"doubleValue":"+Infinity"}`), false, nil},
		{`double "inf"`, body(`{"doubleValue":"inf"}`), false, nil},
		{`double " 1.5"`, body(`{"doubleValue":" 1.5"}`), false, nil},
		{`double "1.5 "`, body(`{"doubleValue":"1.5 "}`), false, nil},
		{`double "+1"`, body(`{"doubleValue":"+1"}`), false, nil},
		{`double ".5"`, body(`{"doubleValue":".5"}`), false, nil},
		{`double "01"`, body(`{"doubleValue":"01"}`), false, nil},
		{`double "0x10"`, body(`{"doubleValue":"0x10"}`), false, nil},
		{`double "1_0"`, body(`{"doubleValue":"1_0"}`), false, nil},
		{`double "1 2"`, body(`{"doubleValue":"1 2"}`), false, nil},
		{`double "\"1\""`, body(`{"doubleValue":"\"1\""}`), false, nil},
		{`double ""`, body(`{"doubleValue":""}`), false, nil},
		{"double true", body(`{"doubleValue":true}`), false, nil},
		{"double [1]", body(`{"doubleValue":[1]}`), false, nil},
		// Values of the wrong type.
		{`bool_value "true"`, body(`{"bool_value":"true"}`), false, nil},
		{"string_value 1", body(`{"string_value":1}`), false, nil},
		{"severity_text 1", wrap(`{"severity_text":1}`), false, nil},
		{`severity_number "9"`, wrap(`{"severity_number":"9"}`), false, nil},
		{"log_records {}", `{"resource_logs":[{"scope_logs":[{"log_records":{}}]}]}`, false, nil},
		// After the request, white space only.
		{"white space after", wrap(`{}`) + " \n", true, nil},
		{"data after", wrap(`{}`) + "{}", false, nil},
	} {
		ours, err := decodeOTLPJSON([]byte(tc.json))
		var pj logspb.LogsData
		pjErr := protojson.Unmarshal([]byte(tc.json), &pj)
		if pjErr != nil && strings.Contains(pjErr.Error(), "unknown field") {
			// Skipped as the OTLP specification asks (protojson's
			// DiscardUnknown also takes an unknown enum name, which is
			// why it is not used for the rest).
			pjErr = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal([]byte(tc.json), &pj)
		}
		if (err == nil) != tc.read || (pjErr == nil) != tc.read {
			t.Errorf("%s: our error %v, protojson's %v; want read: %v", tc.name, err, pjErr, tc.read)
			continue
		}
		if err != nil {
			continue
		}
		if tc.check != nil && !tc.check(ours) {
			t.Errorf("%s: read %v", tc.name, ours)
		}
		// The ids are checked above; the rest is compared with what
		// protojson reads, a resource always present as ours gives it.
		for _, ld := range []*logspb.LogsData{ours, &pj} {
			for _, rl := range ld.ResourceLogs {
				if rl.Resource == nil {
					rl.Resource = &resourcepb.Resource{}
				}
				for _, sl := range rl.ScopeLogs {
					for _, r := range sl.LogRecords {
						r.TraceId, r.SpanId = nil, nil
					}
				}
			}
		}
		if !proto.Equal(ours, &pj) {
			t.Errorf("%s: read\n%v\nprotojson reads\n%v", tc.name, ours, &pj)
		}
	}
	// The one way we differ: protojson's parser takes a number with an
	// empty exponent before a delimiter (1e} as 1), which is not JSON
	// (json.Valid, like every encoder, says so); we refuse it.
	for _, v := range []string{`1e`, `0e`, `10E`} {
		data := []byte(body(`{"intValue":` + v + `}`))
		var pj logspb.LogsData
		_, err := decodeOTLPJSON(data)
		if pjErr := protojson.Unmarshal(data, &pj); err == nil || pjErr != nil || json.Valid(data) {
			t.Errorf("intValue %s: our error %v, protojson's %v, json.Valid %v", v, err, pjErr, json.Valid(data))
		}
	}
}

// TestOTLPJSONHostile: a request built to cost the reader much refuses or
// reads at a cost bounded by its size: deep nesting is refused at the
// bound, not followed into the stack, and what is skipped is not kept.
func TestOTLPJSONHostile(t *testing.T) {
	nestedValues := func(n int) []byte {
		return []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":` +
			strings.Repeat(`{"arrayValue":{"values":[`, n) + strings.Repeat(`]}}`, n) + `}]}]}]}`)
	}
	deep := func(open, close string, n int) []byte {
		return []byte(`{"x":` + strings.Repeat(open, n) + strings.Repeat(close, n) + `}`)
	}
	for _, tc := range []struct {
		name string
		data []byte
		err  string // "" read
	}{
		{"nesting at the bound", deep("[", "]", maxOTLPJSONDepth-1), ""},
		{"nesting past the bound", deep("[", "]", maxOTLPJSONDepth), "nested deeper than"},
		{"nesting past the bound, unclosed", []byte(`{"x":` + strings.Repeat(`{"a":[`, 1<<20)), "nested deeper than"},
		{"values nested as deep as protojson reads them", nestedValues(4990), ""},
		{"values nested past the bound", nestedValues(6000), "nested deeper than"},
		{"a long string skipped", []byte(`{"x":"` + strings.Repeat("a", 1<<20) + `","resourceLogs":[]}`), ""},
		{"unterminated string", []byte(`{"x":"` + strings.Repeat(`\"`, 1<<19)), "unterminated string"},
		{"control character", []byte("{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"severityText\":\"a\x01\"}]}]}]}"), "control character"},
		{"bad escape", []byte(`{"x":"\x"}`), "bad escape"},
		{"short unicode escape", []byte(`{"x":"\u12"}`), "bad escape"},
		{"trailing comma", []byte(`{"resourceLogs":[],}`), "want a key"},
		{"empty", nil, "unexpected end"},
	} {
		var ld *logspb.LogsData
		var err error
		allocs := testing.AllocsPerRun(1, func() { ld, err = decodeOTLPJSON(tc.data) })
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
		if nested := bytes.Count(tc.data, []byte("[")) + bytes.Count(tc.data, []byte("{")); nested <= 10000 && (err == nil) != json.Valid(tc.data) {
			// (json.Valid refuses nesting past 10,000.)
			t.Errorf("%s: error %v, but encoding/json's Valid says %v", tc.name, err, json.Valid(tc.data))
		}
		var pj logspb.LogsData
		pjErr := protojson.Unmarshal(tc.data, &pj)
		if pjErr != nil && strings.Contains(pjErr.Error(), "unknown field") {
			pjErr = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(tc.data, &pj)
		}
		if pjErr == nil && err != nil {
			// (The other way is allowed: protojson refuses a skipped
			// value nested past its recursion limit.)
			t.Errorf("%s: refused (%v), protojson reads it", tc.name, err)
		}
		// A few allocations for the request's skeleton and the values
		// kept (maxAnyDepth levels), none per byte skipped or per level
		// past them.
		if allocs > 10*(maxAnyDepth+1) {
			t.Errorf("%s: %.0f allocations (%v)", tc.name, allocs, ld)
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
// an OTLP/JSON message protojson reads is read, and maps to the events its
// protobuf form maps to.
func FuzzOTLP(f *testing.F) {
	seed, _ := proto.Marshal(&logspb.LogsData{ResourceLogs: []*logspb.ResourceLogs{{ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{
		{Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{{Key: "a\nb", Value: sv("\u2028")}}}}},
			Attributes: []*commonpb.KeyValue{{Key: "client.address", Value: sv("::1")}, {Key: "x", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 1e308}}}}}}}}}}})
	f.Add(seed, false)
	f.Add([]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"arrayValue":{"values":[{"bytesValue":"AAE="},{"boolValue":true}]}},"traceId":"zz"}]}]}]}`), true)
	f.Add([]byte(`{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"intValue":"-9223372036854775808"}}]}}]}`), true)
	f.Add([]byte(`{"resource_logs":[{"scope_logs":[{"log_records":[{"time_unix_nano":"5","severity_number":"SEVERITY_NUMBER_WARN","body":{"double_value":"NaN"},"attributes":[{"key":"k","value":{"kvlist_value":{"values":[{"key":"a","value":{"int_value":1e3}}]}}}]}]}]}]}`), true)
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
			var pj logspb.LogsData
			pjErr := protojson.Unmarshal(data, &pj)
			if err != nil {
				// What protojson reads, ours reads (OTLP/JSON's hex ids
				// are base64 to protojson, but ours takes any id), if it
				// is JSON: protojson's parser also takes a number with an
				// empty exponent ({"intValue":0e}), which is not.
				if pjErr == nil && json.Valid(data) {
					t.Fatalf("%s\nrefused (%v), protojson reads it", data, err)
				}
				return
			}
			if !json.Valid(data) && bytes.Count(data, []byte("["))+bytes.Count(data, []byte("{")) <= 10000 {
				// (json.Valid refuses nesting past 10,000; protojson
				// reads AnyValues nested deeper, and so do we.)
				t.Fatalf("%q: read, but encoding/json refuses it", data)
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
			if pjErr != nil {
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

// BenchmarkOTLPJSONDecode: reading a batch of 100 OTLP/JSON log records,
// against protojson reading the same request into the same types (the
// OpenTelemetry Go libraries' reader).
func BenchmarkOTLPJSONDecode(b *testing.B) {
	var req strings.Builder
	req.WriteString(`{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"billing"}},{"key":"host.name","value":{"stringValue":"web-1"}}]},"scopeLogs":[{"scope":{"name":"app","version":"1.2.0"},"logRecords":[`)
	for i := range 100 {
		if i > 0 {
			req.WriteByte(',')
		}
		fmt.Fprintf(&req, `{"timeUnixNano":"%d","observedTimeUnixNano":"%d","severityNumber":9,"severityText":"INFO","body":{"stringValue":"user login"},"attributes":[{"key":"user.name","value":{"stringValue":"alice"}},{"key":"client.address","value":{"stringValue":"203.0.113.7"}},{"key":"http.response.status_code","value":{"intValue":"401"}},{"key":"duration","value":{"doubleValue":1.5}}],"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","flags":1}`,
			1795946400000000000+i, 1795946400000000001+i)
	}
	req.WriteString(`]}]}]}`)
	data := []byte(req.String())
	b.Run("trailguard", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if ld, err := decodeOTLPJSON(data); err != nil || len(ld.ResourceLogs[0].ScopeLogs[0].LogRecords) != 100 {
				b.Fatal(err)
			}
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var ld logspb.LogsData
			if err := protojson.Unmarshal(data, &ld); err != nil {
				b.Fatal(err)
			}
		}
	})
}
