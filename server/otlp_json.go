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
				Flags                jsonUint32    `json:"flags"`
				Dropped              jsonUint32    `json:"droppedAttributesCount"`
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

// jsonUint, jsonUint32 and jsonInt read the proto3 JSON integer fields as
// protojson does, so that a record a sender writes either way maps the
// same: a JSON number or a string holding exactly one (proto3 JSON writes
// 64-bit integers as strings), in any of JSON's forms if its value is an
// integer in range (1e3, "1e3", 1000.0, 10000e-1 and "-0" are integers; 1.5,
// "0x10", " 1" and "1_000" are not).
type (
	jsonUint   uint64
	jsonUint32 uint32
	jsonInt    int64
)

func (u *jsonUint) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	n, err := strconv.ParseUint(protoInteger(b), 10, 64)
	if err != nil {
		return fmt.Errorf("want an unsigned integer, got %.40s", b)
	}
	*u = jsonUint(n)
	return nil
}

func (u *jsonUint32) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	n, err := strconv.ParseUint(protoInteger(b), 10, 32)
	if err != nil {
		return fmt.Errorf("want an unsigned 32-bit integer, got %.40s", b)
	}
	*u = jsonUint32(n)
	return nil
}

func (i *jsonInt) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	n, err := strconv.ParseInt(protoInteger(b), 10, 64)
	if err != nil {
		return fmt.Errorf("want an integer, got %.40s", b)
	}
	*i = jsonInt(n)
	return nil
}

// protoInteger returns the integer the JSON value b (a number, or, if
// quoted, a string holding one) denotes, in decimal digits after a '-' if
// negative, or "" if b denotes none: not a number, not integral, or more
// than 20 digits long once its exponent is applied. It follows protojson's
// reading (internal/encoding/json's normalizeToIntString) to the letter:
// a zero is "0" whatever its sign and exponent, and a string must hold the
// number alone, with no space around it (escapes are read: "\u0031" is 1).
func protoInteger(b []byte) string {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if json.Unmarshal(b, &s) != nil || s != strings.TrimSpace(s) {
			return ""
		}
		b = []byte(s)
	}
	s := string(b)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	// JSON's number: an integer part (0, or a digit 1-9 and more digits),
	// then . and digits, then e or E, a sign and digits, each optional.
	n := leadingDigits(s)
	if n == 0 || n > 1 && s[0] == '0' {
		return ""
	}
	intp := strings.TrimPrefix(s[:n], "0") // "0": no digits
	s = s[n:]
	var frac string
	if strings.HasPrefix(s, ".") {
		n = leadingDigits(s[1:])
		if n == 0 {
			return ""
		}
		frac = strings.TrimRight(s[1:1+n], "0")
		s = s[1+n:]
	}
	var exps string
	if len(s) > 0 && (s[0] == 'e' || s[0] == 'E') {
		sign := 0
		if len(s) > 1 && (s[1] == '+' || s[1] == '-') {
			sign = 1
		}
		n = leadingDigits(s[1+sign:])
		if n == 0 {
			return ""
		}
		exps, s = s[1:1+sign+n], s[1+sign+n:]
	}
	if s != "" {
		return ""
	}
	if intp == "" && frac == "" {
		return "0" // before the exponent is read: protojson takes 0e99999999999
	}
	exp := 0
	if exps != "" {
		e, err := strconv.ParseInt(exps, 10, 32)
		if err != nil {
			return ""
		}
		exp = int(e)
	}
	var num string
	if exp >= 0 {
		if len(frac) > exp || len(intp)+exp > 20 {
			return ""
		}
		num = intp + frac + strings.Repeat("0", exp-len(frac))
	} else {
		i := len(intp) + exp
		if len(frac) > 0 || i < 0 || strings.Trim(intp[i:], "0") != "" {
			return ""
		}
		num = intp[:i]
	}
	if neg {
		return "-" + num
	}
	return num
}

// leadingDigits returns how many ASCII digits s starts with.
func leadingDigits(s string) int {
	n := 0
	for n < len(s) && '0' <= s[n] && s[n] <= '9' {
		n++
	}
	return n
}

// jsonSeverity accepts the enum's name (SEVERITY_NUMBER_WARN) or its
// number, as protojson does: a number in any of JSON's integral forms
// (9, 9.0, 0.9e1), but not a number in a string ("9").
type jsonSeverity int32

func (s *jsonSeverity) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if b[0] == '"' {
		var name string
		if json.Unmarshal(b, &name) == nil {
			if v, ok := logspb.SeverityNumber_value[name]; ok {
				*s = jsonSeverity(v)
				return nil
			}
		}
	} else if n, err := strconv.ParseInt(protoInteger(b), 10, 32); err == nil {
		*s = jsonSeverity(n)
		return nil
	}
	return fmt.Errorf("severityNumber %.40s: want 0-24 or a SEVERITY_NUMBER_ name", b)
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
					EventName: r.EventName, Flags: uint32(r.Flags), DroppedAttributesCount: uint32(r.Dropped),
				})
			}
			prl.ScopeLogs = append(prl.ScopeLogs, psl)
		}
		out.ResourceLogs = append(out.ResourceLogs, prl)
	}
	return out, nil
}
