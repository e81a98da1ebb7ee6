package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

const headersPrefix = "trailguard.http.request.headers"

// MaxDecodeDepth bounds object nesting in Decode; ECS documents are at most
// a handful of levels deep, and an attacker's deeper input is rejected
// rather than recursed into.
const MaxDecodeDepth = 32

// rawPaths are fields Decode keeps as JSON values instead of flattening:
// their content is free-form by design.
var rawPaths = map[string]bool{
	headersPrefix:             true,
	"trailguard.audit.before": true,
	"trailguard.audit.after":  true,
	"trailguard.attrs":        true,
}

// Decode parses one ECS JSON document into an Event. It accepts nested
// objects ({"event":{"action":…}}), dotted keys ({"event.action":…}) and any
// mix of the two, as Elasticsearch does. Fields Event does not model are
// kept in Extra under their dotted name. A modelled field with the wrong
// JSON type is an error that names the field; so is malformed JSON, with
// its byte offset.
func Decode(data []byte) (*Event, error) {
	ev := new(Event)
	s := newScanner(data, 0)
	switch s.Peek() {
	case '{':
	case 'n':
		return nil, errors.New("event: decode: document is null, want an object")
	default:
		if _, err := s.Skip(0); err != nil {
			return nil, fmt.Errorf("event: decode: %w", err)
		}
		return nil, errors.New("event: decode: document is not a JSON object")
	}
	var pathBuf [128]byte
	if err := ev.object(&s, pathBuf[:0], 0); err != nil {
		return nil, err
	}
	if s.SkipSpace(); s.Pos < len(s.Data) {
		return nil, fmt.Errorf("event: decode: %w", s.Fail("data after the document"))
	}
	return ev, nil
}

// key reads an object key. Keys without escapes are returned as a slice
// of the input, so walking a document allocates nothing for its keys.
func (s *scanner) key() ([]byte, error) {
	if s.Peek() != '"' {
		return nil, s.Fail("want an object key")
	}
	raw, escaped, err := s.RawString()
	if escaped {
		return []byte(s.Text(raw, true)), nil
	}
	return raw, err
}

func (ev *Event) object(s *scanner, prefix []byte, depth int) error {
	if depth > MaxDecodeDepth {
		return fmt.Errorf("event: decode: nesting deeper than %d at %q", MaxDecodeDepth, prefix)
	}
	if err := s.Expect('{'); err != nil {
		return fmt.Errorf("event: decode: %w", err)
	}
	if s.Peek() == '}' {
		s.Pos++
		return nil
	}
	for {
		k, err := s.key()
		if err != nil {
			return fmt.Errorf("event: decode: %w", err)
		}
		if len(k) == 0 {
			return fmt.Errorf("event: decode: empty field name under %q", prefix)
		}
		name := prefix
		if len(name) > 0 {
			name = append(name, '.')
		}
		name = append(name, k...)
		if err := s.Expect(':'); err != nil {
			return fmt.Errorf("event: decode: %w", err)
		}
		switch c := s.Peek(); {
		case c == '{' && !rawPaths[string(name)] && string(name) != labelsPrefix:
			if err := ev.object(s, name, depth+1); err != nil {
				return err
			}
		case c == 'n':
			if err := s.Literal("null"); err != nil {
				return fmt.Errorf("event: decode: %w", err)
			}
		default:
			if err := ev.field(s, name, depth); err != nil {
				var se *syntaxError
				if errors.As(err, &se) {
					return fmt.Errorf("event: decode: %w", err)
				}
				return fmt.Errorf("event: decode field %s: %w", name, err)
			}
		}
		switch s.Peek() {
		case ',':
			s.Pos++
		case '}':
			s.Pos++
			return nil
		default:
			return fmt.Errorf("event: decode: %w", s.Fail("want ',' or '}'"))
		}
	}
}

// field decodes the value of one leaf field.
func (ev *Event) field(s *scanner, name []byte, depth int) error {
	var err error
	str := func(dst *string) {
		if s.Peek() != '"' {
			err = typeError(s, depth, "a string")
			return
		}
		*dst, err = s.Str()
	}
	integer := func() int64 {
		if c := s.Peek(); c != '-' && (c < '0' || c > '9') {
			err = typeError(s, depth, "an integer")
			return 0
		}
		var n int64
		n, err = s.int()
		return n
	}
	switch string(name) {
	case "@timestamp":
		err = ev.setTime(s, &ev.Timestamp, depth)
	case "event.kind":
		str(&ev.Kind)
	case "event.category":
		ev.Category, err = s.strings(depth)
	case "event.type":
		ev.Type, err = s.strings(depth)
	case "event.action":
		str(&ev.Action)
	case "event.outcome":
		str(&ev.Outcome)
	case "event.reason":
		str(&ev.Reason)
	case "event.severity":
		ev.Severity = int(integer())
	case "event.duration":
		ev.Duration = time.Duration(integer())
	case "event.id":
		str(&ev.ID)
	case "event.dataset":
		str(&ev.Dataset)
	case "event.ingested":
		err = ev.setTime(s, &ev.Ingested, depth)
	case "message":
		str(&ev.Message)
	case "log.level":
		str(&ev.LogLevel)
	case "error.message":
		str(&ev.ErrorMessage)
	case "http.request.id":
		str(&ev.RequestID)
	case "http.request.method":
		str(&ev.Method)
	case "http.request.referrer":
		str(&ev.Referrer)
	case "http.request.body.bytes":
		ev.RequestBodyBytes = integer()
	case "http.request.body.content":
		str(&ev.RequestBody)
	case "http.response.status_code":
		ev.StatusCode = int(integer())
	case "http.response.body.bytes":
		ev.ResponseBodyBytes = integer()
	case "url.path":
		str(&ev.Path)
	case "url.query":
		str(&ev.Query)
	case "url.original":
		str(&ev.Original)
	case "source.ip":
		str(&ev.SourceIP)
	case "source.port":
		ev.SourcePort = int(integer())
	case "client.ip":
		str(&ev.ClientIP)
	case "user.id":
		str(&ev.UserID)
	case "user.name":
		str(&ev.UserName)
	case "user.roles":
		ev.UserRoles, err = s.strings(depth)
	case "user.target.id":
		str(&ev.TargetUserID)
	case "user.target.name":
		str(&ev.TargetUserName)
	case "user_agent.original":
		str(&ev.UserAgent)
	case "trace.id":
		str(&ev.TraceID)
	case "span.id":
		str(&ev.SpanID)
	case "service.name":
		str(&ev.ServiceName)
	case "host.name":
		str(&ev.HostName)
	case labelsPrefix:
		err = s.stringMap(&ev.Labels, depth)
	case headersPrefix:
		err = s.stringMap(&ev.RequestHeaders, depth)
	case "trailguard.audit.resource":
		str(&ev.audit().Resource)
	case "trailguard.audit.before":
		ev.audit().Before, err = s.rawCopy(depth)
	case "trailguard.audit.after":
		ev.audit().After, err = s.rawCopy(depth)
	case "trailguard.attrs":
		ev.Attrs, err = s.rawCopy(depth)
	default:
		if bytes.HasPrefix(name, []byte(labelsPrefix+".")) {
			var v string
			str(&v)
			if err == nil {
				if ev.Labels == nil {
					ev.Labels = map[string]string{}
				}
				ev.Labels[string(name[len(labelsPrefix)+1:])] = v
			}
			return err
		}
		var raw json.RawMessage
		if raw, err = s.rawCopy(depth); err == nil {
			if ev.Extra == nil {
				ev.Extra = map[string]json.RawMessage{}
			}
			ev.Extra[string(name)] = raw
		}
	}
	return err
}

// typeError consumes the mistyped value and describes it.
func typeError(s *scanner, depth int, want string) error {
	raw, err := s.Skip(depth)
	if err != nil {
		return err
	}
	if len(raw) > 40 {
		raw = append(raw[:37:37], "..."...)
	}
	return fmt.Errorf("want %s, got %s", want, raw)
}

func (ev *Event) setTime(s *scanner, dst *time.Time, depth int) error {
	if s.Peek() != '"' {
		return typeError(s, depth, "an RFC 3339 date string")
	}
	v, err := s.Str()
	if err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return err
	}
	if t.IsZero() {
		// It would read as "not sent" and be replaced by the arrival
		// time; no event happened in year 1.
		return fmt.Errorf("%s is the zero time, not when an event happened", v)
	}
	// AppendJSON writes it in UTC, where RFC 3339 has four digits for the
	// year: 0000-01-01T00:00:00+01:00 would be written as
	// -0001-12-31T23:00:00Z, a line Decode then refuses.
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return fmt.Errorf("%s is in year %d in UTC, which RFC 3339 cannot write", v, y)
	}
	*dst = t.UTC()
	return nil
}

// strings reads a string or an array of strings, as Elasticsearch accepts
// a single value for every array field.
func (s *scanner) strings(depth int) ([]string, error) {
	switch s.Peek() {
	case '"':
		v, err := s.Str()
		return []string{v}, err
	case '[':
	default:
		return nil, typeError(s, depth, "a string or an array of strings")
	}
	s.Pos++
	out := []string{}
	if s.Peek() == ']' {
		s.Pos++
		return out, nil
	}
	for {
		if s.Peek() != '"' {
			return nil, typeError(s, depth, "a string in the array")
		}
		v, err := s.Str()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		switch s.Peek() {
		case ',':
			s.Pos++
		case ']':
			s.Pos++
			return out, nil
		default:
			return nil, s.Fail("want ',' or ']'")
		}
	}
}

// stringMap reads an object whose values are strings.
func (s *scanner) stringMap(dst *map[string]string, depth int) error {
	if s.Peek() != '{' {
		return typeError(s, depth, "an object of strings")
	}
	s.Pos++
	if *dst == nil {
		*dst = map[string]string{}
	}
	if s.Peek() == '}' {
		s.Pos++
		return nil
	}
	for {
		k, err := s.Str()
		if err != nil {
			return err
		}
		if err := s.Expect(':'); err != nil {
			return err
		}
		if s.Peek() != '"' {
			return typeError(s, depth, "a string value for "+k)
		}
		v, err := s.Str()
		if err != nil {
			return err
		}
		(*dst)[k] = v
		switch s.Peek() {
		case ',':
			s.Pos++
		case '}':
			s.Pos++
			return nil
		default:
			return s.Fail("want ',' or '}'")
		}
	}
}

// rawCopy reads any value and returns a compact copy of its text.
func (s *scanner) rawCopy(depth int) (json.RawMessage, error) {
	raw, err := s.Skip(depth)
	if err != nil {
		return nil, err
	}
	for _, c := range raw {
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			var b bytes.Buffer
			if err := json.Compact(&b, raw); err != nil {
				return nil, err
			}
			return b.Bytes(), nil
		}
	}
	return append(json.RawMessage(nil), raw...), nil
}

func (ev *Event) audit() *Audit {
	if ev.Audit == nil {
		ev.Audit = new(Audit)
	}
	return ev.Audit
}
