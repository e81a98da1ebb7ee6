package server

import (
	"encoding/base64"
	"encoding/hex"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/trailguard/trailguard/event"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
)

// OpenTelemetry log records become ECS events (POST /v1/logs). The table
// below is the whole mapping; docs/scale-out.md repeats it for users.
//
//	OTLP                                         ECS
//	LogRecord.time_unix_nano                     @timestamp (observed_time_unix_nano if unset; arrival if both are)
//	LogRecord.severity_number                    event.severity
//	LogRecord.severity_text                      log.level, lower-cased (else from severity_number: trace … fatal)
//	LogRecord.body (string)                      message (any other body: its JSON; an empty one: none)
//	LogRecord.trace_id / span_id                 trace.id / span.id (lower-case hex)
//	LogRecord.event_name, attribute event.name   event.action (default "log")
//	resource service.name / host.name            service.name / host.name
//	attribute http.request.method                http.request.method
//	attribute http.response.status_code          http.response.status_code
//	attribute url.path / url.query / url.full    url.path / url.query / url.original
//	attribute client.address (an IP)             client.ip
//	attribute source.address, network.peer.address (an IP)   source.ip
//	attribute source.port, network.peer.port     source.port
//	attribute user_agent.original                user_agent.original
//	attribute user.id, enduser.id / user.name    user.id / user.name
//	attribute user.roles                         user.roles
//	attribute exception.message                  error.message
//	attribute http.request.body.size / http.response.body.size   http.request.body.bytes / http.response.body.bytes
//	attribute event.outcome / event.reason       event.outcome / event.reason
//	every other record attribute                 trailguard.attrs.attributes.<key>
//	every other resource attribute               trailguard.attrs.resource.<key>
//	InstrumentationScope name / version          trailguard.attrs.scope.name / .version
//
// event.kind is "event" and event.dataset "trailguard.app". The event then
// goes through the collector's ingest like any other: scrubbed, checked
// against ECS, given an event.id, stamped event.ingested.

// maxAnyDepth bounds how deep nested OTLP values are rendered.
const maxAnyDepth = 16

var severityLevels = []string{"", "trace", "trace", "trace", "trace", "debug", "debug", "debug", "debug",
	"info", "info", "info", "info", "warn", "warn", "warn", "warn", "error", "error", "error", "error", "fatal", "fatal", "fatal", "fatal"}

// otlpEvent maps one log record, with its resource and scope, onto an event.
func otlpEvent(res []*commonpb.KeyValue, scope *commonpb.InstrumentationScope, rec *logspb.LogRecord) *event.Event {
	ev := &event.Event{Kind: event.KindEvent, Dataset: event.DatasetApp, Action: event.ActionLog}
	switch {
	case rec.TimeUnixNano > 0 && rec.TimeUnixNano <= math.MaxInt64:
		ev.Timestamp = time.Unix(0, int64(rec.TimeUnixNano)).UTC()
	case rec.ObservedTimeUnixNano > 0 && rec.ObservedTimeUnixNano <= math.MaxInt64:
		ev.Timestamp = time.Unix(0, int64(rec.ObservedTimeUnixNano)).UTC()
	}
	if n := int(rec.SeverityNumber); n > 0 && n < len(severityLevels) {
		ev.Severity = n
		ev.LogLevel = severityLevels[n]
	}
	if t := strings.ToLower(strings.TrimSpace(rec.SeverityText)); t != "" {
		ev.LogLevel = t
	}
	// A body with no value (an empty AnyValue, or none) is no message:
	// "null" would say nothing, and OTLP/JSON's {} and protobuf's empty
	// message must give the same event.
	if b := rec.Body; b.GetValue() != nil {
		if s, ok := b.Value.(*commonpb.AnyValue_StringValue); ok {
			ev.Message = s.StringValue
		} else {
			ev.Message = string(appendAny(nil, b, 0))
		}
	}
	if id := rec.TraceId; len(id) == 16 && !allZero(id) {
		ev.TraceID = hex.EncodeToString(id)
	}
	if id := rec.SpanId; len(id) == 8 && !allZero(id) {
		ev.SpanID = hex.EncodeToString(id)
	}
	if rec.EventName != "" {
		ev.Action = rec.EventName
	}
	var attrs, resource []byte
	// JSON objects have one value per key: the first wins, as in a kvlist.
	seenAttr, seenRes := map[string]bool{}, map[string]bool{}
	for _, kv := range res {
		if seenRes[kv.Key] {
			continue
		}
		seenRes[kv.Key] = true
		switch kv.Key {
		case "service.name":
			ev.ServiceName = str(kv.Value)
		case "host.name":
			ev.HostName = str(kv.Value)
		default:
			resource = appendMember(resource, kv, 0)
		}
	}
	for _, kv := range rec.Attributes {
		if seenAttr[kv.Key] {
			continue
		}
		seenAttr[kv.Key] = true
		v := kv.Value
		switch kv.Key {
		case "event.name":
			if rec.EventName == "" {
				ev.Action = str(v)
			}
		case "http.request.method":
			ev.Method = str(v)
		case "http.response.status_code":
			ev.StatusCode = int(num(v))
		case "url.path":
			ev.Path = str(v)
		case "url.query":
			ev.Query = str(v)
		case "url.full":
			ev.Original = str(v)
		case "client.address":
			if ip, err := netip.ParseAddr(str(v)); err == nil {
				ev.ClientIP = ip.String()
			} else {
				attrs = appendMember(attrs, kv, 0)
			}
		case "source.address", "network.peer.address":
			if ip, err := netip.ParseAddr(str(v)); err == nil {
				ev.SourceIP = ip.String()
			} else {
				attrs = appendMember(attrs, kv, 0)
			}
		case "source.port", "network.peer.port":
			ev.SourcePort = int(num(v))
		case "user_agent.original":
			ev.UserAgent = str(v)
		case "user.id", "enduser.id":
			ev.UserID = str(v)
		case "user.name":
			ev.UserName = str(v)
		case "user.roles":
			if a, ok := v.GetValue().(*commonpb.AnyValue_ArrayValue); ok && a.ArrayValue != nil {
				for _, r := range a.ArrayValue.Values {
					ev.UserRoles = append(ev.UserRoles, str(r))
				}
			} else {
				ev.UserRoles = []string{str(v)}
			}
		case "exception.message":
			ev.ErrorMessage = str(v)
		case "http.request.body.size":
			ev.RequestBodyBytes = num(v)
		case "http.response.body.size":
			ev.ResponseBodyBytes = num(v)
		case "event.outcome":
			ev.Outcome = str(v)
		case "event.reason":
			ev.Reason = str(v)
		default:
			attrs = appendMember(attrs, kv, 0)
		}
	}
	var all []byte
	if len(attrs) > 0 {
		all = append(append(append(all, `"attributes":{`...), attrs...), '}')
	}
	if len(resource) > 0 {
		if len(all) > 0 {
			all = append(all, ',')
		}
		all = append(append(append(all, `"resource":{`...), resource...), '}')
	}
	if scope != nil && (scope.Name != "" || scope.Version != "") {
		if len(all) > 0 {
			all = append(all, ',')
		}
		all = append(all, `"scope":{"name":`...)
		all = event.AppendString(all, scope.Name)
		all = append(all, `,"version":`...)
		all = event.AppendString(all, scope.Version)
		all = append(all, '}')
	}
	if len(all) > 0 {
		ev.Attrs = append(append([]byte{'{'}, all...), '}')
	}
	return ev
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// str renders a value as a string (non-strings as their JSON).
func str(v *commonpb.AnyValue) string {
	if s, ok := v.GetValue().(*commonpb.AnyValue_StringValue); ok {
		return s.StringValue
	}
	if v == nil || v.Value == nil {
		return ""
	}
	return string(appendAny(nil, v, 0))
}

// num reads an integer value (or a string or double holding one); 0 if none.
func num(v *commonpb.AnyValue) int64 {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		if x.DoubleValue >= math.MinInt64 && x.DoubleValue <= math.MaxInt64 {
			return int64(x.DoubleValue)
		}
	case *commonpb.AnyValue_StringValue:
		n, _ := strconv.ParseInt(x.StringValue, 10, 64)
		return n
	}
	return 0
}

// appendMember appends "key":value, comma-separated from what precedes.
func appendMember(dst []byte, kv *commonpb.KeyValue, depth int) []byte {
	if len(dst) > 0 {
		dst = append(dst, ',')
	}
	dst = event.AppendString(dst, kv.Key)
	dst = append(dst, ':')
	return appendAny(dst, kv.Value, depth)
}

// appendAny appends an OTLP value as JSON (bytes as base64, non-finite
// numbers as strings, nesting beyond maxAnyDepth as "…").
func appendAny(dst []byte, v *commonpb.AnyValue, depth int) []byte {
	if depth >= maxAnyDepth {
		return append(dst, `"…"`...)
	}
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return event.AppendString(dst, x.StringValue)
	case *commonpb.AnyValue_BoolValue:
		return strconv.AppendBool(dst, x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.AppendInt(dst, x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		if math.IsNaN(x.DoubleValue) || math.IsInf(x.DoubleValue, 0) {
			return event.AppendString(dst, strconv.FormatFloat(x.DoubleValue, 'g', -1, 64))
		}
		return strconv.AppendFloat(dst, x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return event.AppendString(dst, base64.StdEncoding.EncodeToString(x.BytesValue))
	case *commonpb.AnyValue_ArrayValue:
		dst = append(dst, '[')
		if x.ArrayValue != nil {
			for i, e := range x.ArrayValue.Values {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = appendAny(dst, e, depth+1)
			}
		}
		return append(dst, ']')
	case *commonpb.AnyValue_KvlistValue:
		dst = append(dst, '{')
		var inner []byte
		seen := map[string]bool{}
		if x.KvlistValue != nil {
			for _, kv := range x.KvlistValue.Values {
				if seen[kv.Key] {
					continue // JSON objects have one value per key
				}
				seen[kv.Key] = true
				inner = appendMember(inner, kv, depth+1)
			}
		}
		return append(append(dst, inner...), '}')
	}
	return append(dst, "null"...)
}
