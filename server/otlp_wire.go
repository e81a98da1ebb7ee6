package server

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
)

// forEachLogRecord walks an OTLP protobuf logs request
// (ExportLogsServiceRequest, the wire format of LogsData) one log record at
// a time, so that memory holds the body and one record, not the whole
// decoded tree (which is some 25 times the body for small records).
func forEachLogRecord(data []byte, fn func(res []*commonpb.KeyValue, scope *commonpb.InstrumentationScope, lr *logspb.LogRecord)) error {
	opts := proto.UnmarshalOptions{RecursionLimit: 64}
	lr := &logspb.LogRecord{}
	return eachField(data, func(num protowire.Number, rl []byte) error {
		if num != 1 { // resource_logs
			return nil
		}
		res := &resourcepb.Resource{}
		// The resource may follow its scope logs on the wire: find it first.
		if err := eachField(rl, func(num protowire.Number, b []byte) error {
			if num == 1 {
				return opts.Unmarshal(b, res)
			}
			return nil
		}); err != nil {
			return err
		}
		return eachField(rl, func(num protowire.Number, sl []byte) error {
			if num != 2 { // scope_logs
				return nil
			}
			var scope *commonpb.InstrumentationScope
			if err := eachField(sl, func(num protowire.Number, b []byte) error {
				if num == 1 {
					scope = &commonpb.InstrumentationScope{}
					return opts.Unmarshal(b, scope)
				}
				return nil
			}); err != nil {
				return err
			}
			return eachField(sl, func(num protowire.Number, b []byte) error {
				if num != 2 { // log_records
					return nil
				}
				proto.Reset(lr)
				if err := opts.Unmarshal(b, lr); err != nil {
					return err
				}
				fn(res.Attributes, scope, lr)
				return nil
			})
		})
	})
}

var errWire = errors.New("malformed protobuf")

// eachField calls fn with the number and contents of every length-delimited
// field of a message, and skips the others.
func eachField(b []byte, fn func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", errWire, protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return fmt.Errorf("%w: %v", errWire, protowire.ParseError(m))
			}
			b = b[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return fmt.Errorf("%w: %v", errWire, protowire.ParseError(m))
		}
		b = b[m:]
		if err := fn(num, v); err != nil {
			return err
		}
	}
	return nil
}
