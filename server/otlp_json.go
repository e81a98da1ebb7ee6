package server

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/trailguard/trailguard/internal/jsonscan"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
)

// protoInteger returns the integer a JSON value denotes, s being a
// number's literal or, if quoted, a string's content (escapes read: "\u0031"
// is 1), in decimal digits after a '-' if negative, or "" if it denotes
// none: not a number, not integral, or more than 20 digits long once its
// exponent is applied. It follows protojson's reading (internal/encoding/
// json's normalizeToIntString) to the letter: a zero is "0" whatever its
// sign and exponent, and a string must hold the number alone, with no
// space around it.
func protoInteger(s string, quoted bool) string {
	if quoted && s != strings.TrimSpace(s) {
		return ""
	}
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

// OTLP/JSON is proto3's JSON mapping of the OTLP messages but for trace
// and span ids (hex, not base64). It is read here in one pass over the
// request, as protojson reads the same message, so that a sender's request
// is read as the OpenTelemetry libraries read it:
//   - each field under its lowerCamelCase JSON name or its proto name
//     (timeUnixNano or time_unix_nano), case-sensitively; other keys are
//     skipped, as the OTLP specification asks of receivers;
//   - a field given twice, under either name and even as null, is refused,
//     and so is an AnyValue holding two values;
//   - null is the field's absence;
//   - integers in any of JSON's integral forms, numbers or strings
//     (protoInteger), doubles as numbers or strings ("1.5", "NaN",
//     "Infinity", "-Infinity"), severityNumber as its name or a number;
//   - the JSON itself as encoding/json reads it (and refuses it), by
//     internal/jsonscan, the lexer event.Decode reads events with.
//
// It is more lenient than protojson where refusing would lose records a
// sender meant: a bad id or bytesValue gives none, a null element of a
// repeated field is an empty message, and bad UTF-8 reads as U+FFFD.
//
// Its cost is linear in the request's size: each byte is read once, what
// it keeps is what the request holds, and nesting past maxOTLPJSONDepth is
// refused before it is followed. (Decoding into structs with encoding/json
// cannot see which name a field came under, nor a field given twice; its
// Decoder.Token can, but allocates for every token: 5x the allocations.)

// maxOTLPJSONDepth bounds the nesting of a request's JSON. protojson
// bounds the nesting of messages at 10,000 (protowire's default recursion
// limit), which is up to 1.5 JSON levels each (an arrayValue's AnyValue
// and ArrayValue: {"arrayValue":{"values":[), so a request protojson reads
// is not refused for its depth here.
const maxOTLPJSONDepth = 16000

// otlpReader reads one OTLP/JSON request.
type otlpReader struct {
	s     jsonscan.Scanner
	depth int // the arrays and objects open
	// records and values count the log records and the KeyValue and
	// AnyValue messages read; past maxRecords or maxValues (when not 0)
	// the read stops with errOTLPJSONRecords or errOTLPJSONValues.
	records, nvalues      int
	maxRecords, maxValues int
}

// maxOTLPJSONValues bounds the attributes and values (each KeyValue and
// AnyValue) of a whole OTLP/JSON request, which is decoded whole before
// anything is counted or mapped: an empty value is 3 bytes of JSON, {},
// and some 100 decoded, so a 4 MiB request of them held 270 MB, and
// max_ingest_requests of them at once several GB. A request of 4 MiB
// with attributes as small as {"key":"a","value":{"intValue":1}} holds
// 240,000.
const maxOTLPJSONValues = 500_000

var (
	errOTLPJSONRecords = errors.New("too many log records")
	errOTLPJSONValues  = fmt.Errorf("OTLP/JSON request with more than %d attributes and values; export smaller batches", maxOTLPJSONValues)
)

// countRecord counts a log record read, refusing one past maxRecords.
func (r *otlpReader) countRecord() error {
	if r.records++; r.maxRecords > 0 && r.records > r.maxRecords {
		return errOTLPJSONRecords
	}
	return nil
}

// countValue counts a KeyValue or an AnyValue read, refusing one past
// maxValues.
func (r *otlpReader) countValue() error {
	if r.nvalues++; r.maxValues > 0 && r.nvalues > r.maxValues {
		return errOTLPJSONValues
	}
	return nil
}

// jtok is the first token of a JSON value: '{' or '[' (the reader is then
// at the bracket and reads the value with object, array or skip), or a
// whole scalar.
type jtok struct {
	kind byte   // '{', '[', '"' (a string), '0' (a number), 't', 'f', 'n'
	raw  []byte // a string's bytes between its quotes, or a number's literal
	esc  bool   // a string holds escapes
}

func (t jtok) String() string {
	switch t.kind {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return strconv.Quote(string(t.raw[:min(len(t.raw), 40)]))
	case '0':
		return string(t.raw[:min(len(t.raw), 40)])
	case 't':
		return "true"
	case 'f':
		return "false"
	}
	return "null"
}

// value reads the first token of a value.
func (r *otlpReader) value() (jtok, error) {
	switch c := r.s.Peek(); c {
	case '{', '[':
		return jtok{kind: c}, nil
	case '"':
		raw, esc, err := r.s.RawString()
		return jtok{kind: c, raw: raw, esc: esc}, err
	}
	// A number, true, false or null, read whole (a scalar is at no
	// depth Skip would refuse).
	raw, err := r.s.Skip(0)
	if err != nil {
		return jtok{}, err
	}
	t := jtok{kind: raw[0], raw: raw}
	if t.kind == '-' || t.kind <= '9' {
		t.kind = '0'
	}
	return t, nil
}

// text returns a string token's value, read as encoding/json reads it
// (U+FFFD for bad UTF-8 and lone surrogates).
func (r *otlpReader) text(t jtok) string { return r.s.Text(t.raw, t.esc) }

// open reads an array's or object's opening bracket, refusing nesting past
// maxOTLPJSONDepth before it is followed.
func (r *otlpReader) open() error {
	if r.depth++; r.depth > maxOTLPJSONDepth {
		return r.s.Fail(fmt.Sprintf("nested deeper than %d", maxOTLPJSONDepth))
	}
	r.s.Pos++
	return nil
}

// next reads what follows a member or an element: true after a comma,
// false after close (and the value's end), an error otherwise.
func (r *otlpReader) next(close byte, what string) (bool, error) {
	switch r.s.Peek() {
	case ',':
		r.s.Pos++
		return true, nil
	case close:
		r.s.Pos++
		r.depth--
		return false, nil
	}
	return false, r.s.Fail(fmt.Sprintf("%s: want ',' or '%c'", what, close))
}

// object reads the object that starts with first ('{'), calling field
// with each key and the first token of its value; field reads the rest of
// the value. A null object has no fields. key is valid during the call.
func (r *otlpReader) object(first jtok, what string, field func(key []byte, v jtok) error) error {
	if first.kind == 'n' {
		return nil
	}
	if first.kind != '{' {
		return fmt.Errorf("%s: want an object, got %v", what, first)
	}
	if err := r.open(); err != nil {
		return err
	}
	if r.s.Peek() == '}' {
		r.s.Pos++
		r.depth--
		return nil
	}
	for more := true; more; {
		if r.s.Peek() != '"' {
			return r.s.Fail(what + ": want a key")
		}
		key, esc, err := r.s.RawString()
		if err != nil {
			return err
		}
		if esc {
			key = []byte(r.s.Text(key, true))
		}
		if err := r.s.Expect(':'); err != nil {
			return err
		}
		v, err := r.value()
		if err != nil {
			return err
		}
		if err := field(key, v); err != nil {
			return err
		}
		if more, err = r.next('}', what); err != nil {
			return err
		}
	}
	return nil
}

// array reads the array that starts with first ('['), calling elem with
// the first token of each element. A null array has no elements.
func (r *otlpReader) array(first jtok, what string, elem func(v jtok) error) error {
	if first.kind == 'n' {
		return nil
	}
	if first.kind != '[' {
		return fmt.Errorf("%s: want an array, got %v", what, first)
	}
	if err := r.open(); err != nil {
		return err
	}
	if r.s.Peek() == ']' {
		r.s.Pos++
		r.depth--
		return nil
	}
	for more := true; more; {
		v, err := r.value()
		if err != nil {
			return err
		}
		if err := elem(v); err != nil {
			return err
		}
		if more, err = r.next(']', what); err != nil {
			return err
		}
	}
	return nil
}

// skip reads the rest of a value whose first token is first. Skip counts
// the bracket as a level, as open does, and a scalar in it as one more.
func (r *otlpReader) skip(first jtok) error {
	if first.kind == '{' || first.kind == '[' {
		_, err := r.s.Skip(r.depth + 1)
		return err
	}
	return nil
}

// once records that a message's field id was read, and refuses it the
// second time: protojson refuses a field given twice, whichever its names.
func once(seen *uint32, id int, key []byte) error {
	if *seen&(1<<id) != 0 {
		return fmt.Errorf("field %q given twice", key)
	}
	*seen |= 1 << id
	return nil
}

// otlpField returns the id of key among a message's fields, each given by
// its JSON name and then its proto name, or -1.
func otlpField(key []byte, names ...string) int {
	for i, n := range names {
		if string(key) == n {
			return i / 2
		}
	}
	return -1
}

func (r *otlpReader) jsonString(v jtok, key []byte) (string, error) {
	switch v.kind {
	case '"':
		return r.text(v), nil
	case 'n':
		return "", nil
	}
	return "", fmt.Errorf("%s: want a string, got %v", key, v)
}

// jsonInteger reads an integer field of the given size as protojson does:
// a number, or a string holding one, whose value is an integer in range.
func (r *otlpReader) jsonInteger(v jtok, key []byte, signed bool, bits int) (uint64, error) {
	var lit string
	switch v.kind {
	case 'n':
		return 0, nil
	case '0':
		lit = protoInteger(string(v.raw), false)
	case '"':
		lit = protoInteger(r.text(v), true)
	}
	if signed {
		if n, err := strconv.ParseInt(lit, 10, bits); err == nil {
			return uint64(n), nil
		}
	} else if n, err := strconv.ParseUint(lit, 10, bits); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("%s: want an integer of %d bits, got %v", key, bits, v)
}

// jsonDouble reads a double as protojson does: a number, or a string
// holding one alone or NaN, Infinity or -Infinity.
func (r *otlpReader) jsonDouble(v jtok, key []byte) (float64, error) {
	var lit string
	switch v.kind {
	case '0':
		lit = string(v.raw)
	case '"':
		switch s := r.text(v); s {
		case "NaN":
			return math.NaN(), nil
		case "Infinity":
			return math.Inf(1), nil
		case "-Infinity":
			return math.Inf(-1), nil
		default:
			if jsonscan.IsNumber([]byte(s)) {
				lit = s
			}
		}
	}
	if lit != "" {
		if f, err := strconv.ParseFloat(lit, 64); err == nil {
			return f, nil
		}
	}
	return 0, fmt.Errorf("%s: want a double, got %v", key, v)
}

// jsonSeverity reads severityNumber as protojson reads an enum: its name
// (SEVERITY_NUMBER_WARN), or its number as a number in any of JSON's
// integral forms (9, 9.0, 0.9e1), not in a string ("9").
func (r *otlpReader) jsonSeverity(v jtok, key []byte) (logspb.SeverityNumber, error) {
	switch v.kind {
	case '"':
		if n, ok := logspb.SeverityNumber_value[r.text(v)]; ok {
			return logspb.SeverityNumber(n), nil
		}
	case '0':
		if n, err := strconv.ParseInt(protoInteger(string(v.raw), false), 10, 32); err == nil {
			if n < 0 {
				n = 0
			}
			return logspb.SeverityNumber(n), nil
		}
	}
	return 0, fmt.Errorf("%s %v: want 0-24 or a SEVERITY_NUMBER_ name", key, v)
}

// keyValues reads a list of KeyValue messages at AnyValue depth depth;
// past maxAnyDepth it checks them and keeps none.
func (r *otlpReader) keyValues(first jtok, what string, depth int) ([]*commonpb.KeyValue, error) {
	var out []*commonpb.KeyValue
	keep := depth <= maxAnyDepth
	err := r.array(first, what, func(v jtok) error {
		if err := r.countValue(); err != nil {
			return err
		}
		var kv *commonpb.KeyValue
		if keep {
			kv = &commonpb.KeyValue{}
			out = append(out, kv)
		}
		var seen uint32
		return r.object(v, what, func(key []byte, v jtok) error {
			id := otlpField(key, "key", "key", "value", "value")
			if id < 0 {
				return r.skip(v)
			}
			if err := once(&seen, id, key); err != nil {
				return err
			}
			if id == 0 {
				s, err := r.jsonString(v, key)
				if keep {
					kv.Key = s
				}
				return err
			}
			a, err := r.anyValue(v, depth)
			if keep {
				kv.Value = a
			}
			return err
		})
	})
	return out, err
}

// values reads an ArrayValue or a KeyValueList: list reads the first token
// of its "values".
func (r *otlpReader) values(first jtok, what string, list func(v jtok) error) error {
	var seen uint32
	return r.object(first, what, func(key []byte, v jtok) error {
		if string(key) != "values" {
			return r.skip(v)
		}
		if err := once(&seen, 0, key); err != nil {
			return err
		}
		return list(v)
	})
}

// anyValue reads an AnyValue at depth depth (0: a body or an attribute's
// value). Past maxAnyDepth it is read and checked but gives nil, as the
// protobuf half drops it, and nothing is built for it.
func (r *otlpReader) anyValue(first jtok, depth int) (*commonpb.AnyValue, error) {
	if err := r.countValue(); err != nil {
		return nil, err
	}
	var out *commonpb.AnyValue
	keep := depth <= maxAnyDepth
	var seen uint32
	set := false // the oneof holds a value
	err := r.object(first, "value", func(key []byte, v jtok) error {
		id := otlpField(key, "stringValue", "string_value", "boolValue", "bool_value", "intValue", "int_value",
			"doubleValue", "double_value", "arrayValue", "array_value", "kvlistValue", "kvlist_value", "bytesValue", "bytes_value")
		if id < 0 {
			return r.skip(v)
		}
		if err := once(&seen, id, key); err != nil {
			return err
		}
		if v.kind == 'n' {
			return nil // null: unset, and the oneof still free
		}
		if set {
			return fmt.Errorf("%s: the value already has one", key)
		}
		set = true
		switch id {
		case 0:
			s, err := r.jsonString(v, key)
			if keep {
				out = &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
			}
			return err
		case 1:
			if v.kind != 't' && v.kind != 'f' {
				return fmt.Errorf("%s: want true or false, got %v", key, v)
			}
			if keep {
				out = &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v.kind == 't'}}
			}
		case 2:
			n, err := r.jsonInteger(v, key, true, 64)
			if keep {
				out = &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(n)}}
			}
			return err
		case 3:
			f, err := r.jsonDouble(v, key)
			if keep {
				out = &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: f}}
			}
			return err
		case 4:
			var a *commonpb.ArrayValue
			if keep {
				a = &commonpb.ArrayValue{}
				out = &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: a}}
			}
			return r.values(v, "arrayValue", func(v jtok) error {
				return r.array(v, "arrayValue", func(v jtok) error {
					e, err := r.anyValue(v, depth+1)
					if keep {
						if e == nil {
							// An element with no value is OTLP's
							// empty value: it keeps its place (written
							// null), as in protobuf.
							e = &commonpb.AnyValue{}
						}
						a.Values = append(a.Values, e)
					}
					return err
				})
			})
		case 5:
			var l *commonpb.KeyValueList
			if keep {
				l = &commonpb.KeyValueList{}
				out = &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: l}}
			}
			return r.values(v, "kvlistValue", func(v jtok) error {
				kvs, err := r.keyValues(v, "kvlistValue", depth+1)
				if keep {
					l.Values = kvs
				}
				return err
			})
		case 6:
			s, err := r.jsonString(v, key)
			if keep {
				out = &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: jsonBytes(s)}}
			}
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// logRecord reads a LogRecord.
func (r *otlpReader) logRecord(first jtok) (*logspb.LogRecord, error) {
	if err := r.countRecord(); err != nil {
		return nil, err
	}
	lr := &logspb.LogRecord{}
	var seen uint32
	err := r.object(first, "logRecords", func(key []byte, v jtok) error {
		id := otlpField(key, "timeUnixNano", "time_unix_nano", "observedTimeUnixNano", "observed_time_unix_nano",
			"severityNumber", "severity_number", "severityText", "severity_text", "body", "body",
			"attributes", "attributes", "droppedAttributesCount", "dropped_attributes_count", "flags", "flags",
			"traceId", "trace_id", "spanId", "span_id", "eventName", "event_name")
		if id < 0 {
			return r.skip(v)
		}
		if err := once(&seen, id, key); err != nil {
			return err
		}
		if v.kind == 'n' {
			return nil
		}
		var err error
		var n uint64
		var s string
		switch id {
		case 0:
			lr.TimeUnixNano, err = r.jsonInteger(v, key, false, 64)
		case 1:
			lr.ObservedTimeUnixNano, err = r.jsonInteger(v, key, false, 64)
		case 2:
			lr.SeverityNumber, err = r.jsonSeverity(v, key)
		case 3:
			lr.SeverityText, err = r.jsonString(v, key)
		case 4:
			lr.Body, err = r.anyValue(v, 0)
		case 5:
			lr.Attributes, err = r.keyValues(v, "attributes", 0)
		case 6:
			n, err = r.jsonInteger(v, key, false, 32)
			lr.DroppedAttributesCount = uint32(n)
		case 7:
			n, err = r.jsonInteger(v, key, false, 32)
			lr.Flags = uint32(n)
		case 8:
			s, err = r.jsonString(v, key)
			lr.TraceId = hexID(s, 16)
		case 9:
			s, err = r.jsonString(v, key)
			lr.SpanId = hexID(s, 8)
		case 10:
			lr.EventName, err = r.jsonString(v, key)
		}
		return err
	})
	return lr, err
}

// scopeLogs reads a ScopeLogs.
func (r *otlpReader) scopeLogs(first jtok) (*logspb.ScopeLogs, error) {
	sl := &logspb.ScopeLogs{}
	var seen uint32
	err := r.object(first, "scopeLogs", func(key []byte, v jtok) error {
		switch otlpField(key, "scope", "scope", "logRecords", "log_records") {
		case 0:
			if err := once(&seen, 0, key); err != nil || v.kind == 'n' {
				return err
			}
			sl.Scope = &commonpb.InstrumentationScope{}
			var seenScope uint32
			return r.object(v, "scope", func(key []byte, v jtok) error {
				id := otlpField(key, "name", "name", "version", "version")
				if id < 0 {
					return r.skip(v)
				}
				if err := once(&seenScope, id, key); err != nil {
					return err
				}
				var err error
				if id == 0 {
					sl.Scope.Name, err = r.jsonString(v, key)
				} else {
					sl.Scope.Version, err = r.jsonString(v, key)
				}
				return err
			})
		case 1:
			if err := once(&seen, 1, key); err != nil {
				return err
			}
			return r.array(v, "logRecords", func(v jtok) error {
				lr, err := r.logRecord(v)
				sl.LogRecords = append(sl.LogRecords, lr)
				return err
			})
		}
		return r.skip(v)
	})
	return sl, err
}

// resourceLogs reads a ResourceLogs.
func (r *otlpReader) resourceLogs(first jtok) (*logspb.ResourceLogs, error) {
	rl := &logspb.ResourceLogs{Resource: &resourcepb.Resource{}}
	var seen uint32
	err := r.object(first, "resourceLogs", func(key []byte, v jtok) error {
		switch otlpField(key, "resource", "resource", "scopeLogs", "scope_logs") {
		case 0:
			if err := once(&seen, 0, key); err != nil {
				return err
			}
			var seenRes uint32
			return r.object(v, "resource", func(key []byte, v jtok) error {
				if string(key) != "attributes" {
					return r.skip(v)
				}
				if err := once(&seenRes, 0, key); err != nil {
					return err
				}
				var err error
				rl.Resource.Attributes, err = r.keyValues(v, "attributes", 0)
				return err
			})
		case 1:
			if err := once(&seen, 1, key); err != nil {
				return err
			}
			return r.array(v, "scopeLogs", func(v jtok) error {
				sl, err := r.scopeLogs(v)
				rl.ScopeLogs = append(rl.ScopeLogs, sl)
				return err
			})
		}
		return r.skip(v)
	})
	return rl, err
}

// decodeOTLPJSON reads an OTLP/JSON logs request.
func decodeOTLPJSON(body []byte) (*logspb.LogsData, error) { return decodeOTLPJSONLimited(body, 0, 0) }

// decodeOTLPJSONLimited reads an OTLP/JSON logs request of at most
// maxRecords log records and maxValues attributes and values (0: any
// number), stopping at the first past either (the error wraps
// errOTLPJSONRecords or errOTLPJSONValues) before it is built.
func decodeOTLPJSONLimited(body []byte, maxRecords, maxValues int) (*logspb.LogsData, error) {
	r := &otlpReader{s: jsonscan.Scanner{Data: body, MaxDepth: maxOTLPJSONDepth}, maxRecords: maxRecords, maxValues: maxValues}
	out := &logspb.LogsData{}
	var seen uint32
	first, err := r.value()
	if err == nil {
		err = r.object(first, "request", func(key []byte, v jtok) error {
			if otlpField(key, "resourceLogs", "resource_logs") < 0 {
				return r.skip(v)
			}
			if err := once(&seen, 0, key); err != nil {
				return err
			}
			return r.array(v, "resourceLogs", func(v jtok) error {
				rl, err := r.resourceLogs(v)
				out.ResourceLogs = append(out.ResourceLogs, rl)
				return err
			})
		})
	}
	if r.s.SkipSpace(); err == nil && r.s.Pos != len(body) {
		err = r.s.Fail("data after the request")
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP/JSON logs request: %w", err)
	}
	return out, nil
}
