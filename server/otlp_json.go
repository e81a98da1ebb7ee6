package server

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
)

// OTLP/JSON differs from the proto3 JSON mapping (trace and span ids are
// hex, not base64), so it is read here with encoding/json into these
// shapes and converted to the protobuf types.
type jsonLogsData struct {
	ResourceLogs []struct {
		Resource *struct {
			Attributes []jsonKV `json:"attributes"`
		} `json:"resource"`
		ScopeLogs []struct {
			Scope *struct {
				Name    string `json:"name"`
				Version string `json:"version"`
			} `json:"scope"`
			LogRecords []struct {
				TimeUnixNano         jsonUint      `json:"timeUnixNano"`
				ObservedTimeUnixNano jsonUint      `json:"observedTimeUnixNano"`
				SeverityNumber       jsonSeverity  `json:"severityNumber"`
				SeverityText         string        `json:"severityText"`
				Body                 *jsonAnyValue `json:"body"`
				Attributes           []jsonKV      `json:"attributes"`
				TraceID              string        `json:"traceId"`
				SpanID               string        `json:"spanId"`
				EventName            string        `json:"eventName"`
				Flags                uint32        `json:"flags"`
				Dropped              uint32        `json:"droppedAttributesCount"`
			} `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
}

type jsonKV struct {
	Key   string        `json:"key"`
	Value *jsonAnyValue `json:"value"`
}

type jsonAnyValue struct {
	StringValue *string  `json:"stringValue"`
	BoolValue   *bool    `json:"boolValue"`
	IntValue    *jsonInt `json:"intValue"`
	DoubleValue *float64 `json:"doubleValue"`
	BytesValue  *string  `json:"bytesValue"`
	ArrayValue  *struct {
		Values []*jsonAnyValue `json:"values"`
	} `json:"arrayValue"`
	KvlistValue *struct {
		Values []jsonKV `json:"values"`
	} `json:"kvlistValue"`
}

// jsonUint and jsonInt accept a number or a decimal string (proto3 JSON
// writes 64-bit integers as strings).
type jsonUint uint64
type jsonInt int64

func unquote(b []byte) []byte {
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		return b[1 : len(b)-1]
	}
	return b
}

func (u *jsonUint) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	n, err := strconv.ParseUint(string(unquote(b)), 10, 64)
	if err != nil {
		return fmt.Errorf("want an unsigned integer, got %.40s", b)
	}
	*u = jsonUint(n)
	return nil
}

func (i *jsonInt) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	n, err := strconv.ParseInt(string(unquote(b)), 10, 64)
	if err != nil {
		return fmt.Errorf("want an integer, got %.40s", b)
	}
	*i = jsonInt(n)
	return nil
}

// jsonSeverity accepts the number or the enum name (SEVERITY_NUMBER_WARN).
type jsonSeverity int32

func (s *jsonSeverity) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if b[0] == '"' {
		if v, ok := logspb.SeverityNumber_value[string(unquote(b))]; ok {
			*s = jsonSeverity(v)
			return nil
		}
	}
	n, err := strconv.ParseInt(string(unquote(b)), 10, 32)
	if err != nil {
		return fmt.Errorf("severityNumber %.40s: want 0-24 or a SEVERITY_NUMBER_ name", b)
	}
	*s = jsonSeverity(n)
	return nil
}

func (v *jsonAnyValue) proto(depth int) *commonpb.AnyValue {
	if v == nil || depth > maxAnyDepth {
		return nil
	}
	switch {
	case v.StringValue != nil:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: *v.StringValue}}
	case v.BoolValue != nil:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: *v.BoolValue}}
	case v.IntValue != nil:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(*v.IntValue)}}
	case v.DoubleValue != nil:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: *v.DoubleValue}}
	case v.BytesValue != nil:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: jsonBytes(*v.BytesValue)}}
	case v.ArrayValue != nil:
		a := &commonpb.ArrayValue{}
		for _, e := range v.ArrayValue.Values {
			p := e.proto(depth + 1)
			if p == nil {
				// An element with no value is OTLP's empty value: it
				// keeps its place (written null), as in protobuf.
				p = &commonpb.AnyValue{}
			}
			a.Values = append(a.Values, p)
		}
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: a}}
	case v.KvlistValue != nil:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: kvs(v.KvlistValue.Values, depth+1)}}}
	}
	return nil
}

func kvs(in []jsonKV, depth int) []*commonpb.KeyValue {
	out := make([]*commonpb.KeyValue, 0, len(in))
	for _, kv := range in {
		out = append(out, &commonpb.KeyValue{Key: kv.Key, Value: kv.Value.proto(depth)})
	}
	return out
}

// jsonBytes decodes a bytesValue as proto3's JSON mapping reads bytes:
// standard or URL-safe base64, padded or not (as protojson does, so that
// a sender's OTLP/JSON and protobuf give the same value). What is not
// base64 gives no bytes.
func jsonBytes(s string) []byte {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return nil
	}
	return b
}

// hexID decodes a hex trace or span id; a wrong length or bad hex gives
// none (the id is advisory).
func hexID(s string, n int) []byte {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != n {
		return nil
	}
	return b
}

// decodeOTLPJSON reads an OTLP/JSON logs request.
func decodeOTLPJSON(body []byte) (*logspb.LogsData, error) {
	var in jsonLogsData
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("OTLP/JSON logs request: %w", err)
	}
	out := &logspb.LogsData{}
	for _, rl := range in.ResourceLogs {
		prl := &logspb.ResourceLogs{Resource: &resourcepb.Resource{}}
		if rl.Resource != nil {
			prl.Resource.Attributes = kvs(rl.Resource.Attributes, 0)
		}
		for _, sl := range rl.ScopeLogs {
			psl := &logspb.ScopeLogs{}
			if sl.Scope != nil {
				psl.Scope = &commonpb.InstrumentationScope{Name: sl.Scope.Name, Version: sl.Scope.Version}
			}
			for _, r := range sl.LogRecords {
				sev := int32(r.SeverityNumber)
				if sev < 0 || sev > math.MaxInt32 {
					sev = 0
				}
				psl.LogRecords = append(psl.LogRecords, &logspb.LogRecord{
					TimeUnixNano: uint64(r.TimeUnixNano), ObservedTimeUnixNano: uint64(r.ObservedTimeUnixNano),
					SeverityNumber: logspb.SeverityNumber(sev), SeverityText: r.SeverityText, Body: r.Body.proto(0),
					Attributes: kvs(r.Attributes, 0), TraceId: hexID(r.TraceID, 16), SpanId: hexID(r.SpanID, 8),
					EventName: r.EventName, Flags: r.Flags, DroppedAttributesCount: r.Dropped,
				})
			}
			prl.ScopeLogs = append(prl.ScopeLogs, psl)
		}
		out.ResourceLogs = append(out.ResourceLogs, prl)
	}
	return out, nil
}
