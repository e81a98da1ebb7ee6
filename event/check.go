package event

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// FieldError is a field whose value the Elastic Common Schema does not
// allow: Field is its dotted name, Want what ECS expects there, Got the
// value sent (cut to 40 bytes).
type FieldError struct {
	Field, Want, Got string
}

// Error names the field, what ECS wants and what came, in that order: it
// is the per-line reason a shipper's operator reads in the ingest answer,
// and the three together say what to fix without the event at hand.
func (e *FieldError) Error() string {
	return fmt.Sprintf("field %s: ECS wants %s, got %s", e.Field, e.Want, e.Got)
}

// objectPaths are the names ECS uses for objects: every proper prefix of
// an ECS field name ("user", "http.response"). A scalar there would hide
// the fields ECS defines under it.
var objectPaths = func() map[string]bool {
	m := map[string]bool{}
	for name := range ecsFields {
		for i := range len(name) {
			if name[i] == '.' {
				m[name[:i]] = true
			}
		}
	}
	return m
}()

// container reports whether an ECS type holds fields of its own.
func container(typ string) bool {
	return typ == "object" || typ == "flattened" || typ == "nested"
}

// minTime and maxTime bound @timestamp: nothing a collector records
// happened before 1970, and RFC 3339 has four-digit years.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// CheckECS reports the first field of a decoded event whose value ECS
// does not allow, as a *FieldError: a value of the wrong type under an
// ECS name (a string or an object where ECS has a number, an object where
// it has a keyword, a scalar where it has an object such as user), an
// address that is not one in an ip field, a port, status code, byte count
// or duration out of range, or a @timestamp before 1970. Fields ECS does
// not define are not its business and pass as sent (shippers add their
// own). Decode has already checked the types of the fields Event models;
// CheckECS checks their ranges and every other field in Extra.
func (ev *Event) CheckECS() error {
	if !ev.Timestamp.IsZero() && (ev.Timestamp.Before(minTime) || ev.Timestamp.After(maxTime)) {
		return &FieldError{"@timestamp", "a date from 1970 on (RFC 3339, when the event happened)", ev.Timestamp.Format(time.RFC3339Nano)}
	}
	for _, c := range []struct {
		name string
		val  string
	}{{"source.ip", ev.SourceIP}, {"client.ip", ev.ClientIP}} {
		if c.val != "" {
			if _, err := netip.ParseAddr(c.val); err != nil {
				return &FieldError{c.name, "an IP address", quote(c.val)}
			}
		}
	}
	if ev.StatusCode != 0 && (ev.StatusCode < 100 || ev.StatusCode > 599) {
		return &FieldError{"http.response.status_code", "an HTTP status code (100-599)", strconv.Itoa(ev.StatusCode)}
	}
	if ev.SourcePort < 0 || ev.SourcePort > 65535 {
		return &FieldError{"source.port", "a port number (0-65535)", strconv.Itoa(ev.SourcePort)}
	}
	for _, c := range []struct {
		name string
		val  int64
	}{{"http.request.body.bytes", ev.RequestBodyBytes}, {"http.response.body.bytes", ev.ResponseBodyBytes}, {"event.duration", int64(ev.Duration)}} {
		if c.val < 0 {
			return &FieldError{c.name, "a count of zero or more", strconv.FormatInt(c.val, 10)}
		}
	}
	for name, raw := range ev.Extra {
		if err := checkExtra(name, raw); err != nil {
			return err
		}
	}
	return nil
}

// checkExtra checks one field Event does not model.
func checkExtra(name string, raw []byte) error {
	if f, ok := ecsFields[name]; ok {
		return checkValue(name, f.typ, raw)
	}
	// A name below an ECS leaf: an object was sent where ECS has a value
	// ({"http":{"response":{"status_code":{"$gt":1}}}}).
	for i := len(name) - 1; i > 0; i-- {
		if name[i] != '.' {
			continue
		}
		parent := name[:i]
		f, ok := ecsFields[parent]
		if !ok {
			continue
		}
		if container(f.typ) {
			return nil // the client's own field inside an ECS object
		}
		if f.typ == "geo_point" {
			if sub := name[i+1:]; sub == "lat" || sub == "lon" {
				return checkValue(name, "double", raw)
			}
		}
		return &FieldError{parent, describe(f.typ), "an object (with " + name + ")"}
	}
	if objectPaths[name] {
		return &FieldError{name, "an object (" + name + ".* fields)", snippet(raw)}
	}
	return nil
}

// checkValue checks a raw JSON value against an ECS type. Arrays of
// values of the type are accepted, as Elasticsearch accepts them for
// every field.
func checkValue(name, typ string, raw []byte) error {
	s := newScanner(raw, 0)
	c := s.Peek()
	if c == '[' && (typ != "geo_point" || !geoArray(raw)) {
		if !eachElementOK(&s, typ) {
			return &FieldError{name, describe(typ) + ", or an array of them", snippet(raw)}
		}
		return nil
	}
	if !valueOK(&s, typ) {
		return &FieldError{name, describe(typ), snippet(raw)}
	}
	return nil
}

// geoArray reports whether raw is a [lon, lat] pair rather than an array
// of geo points.
func geoArray(raw []byte) bool {
	return len(raw) > 1 && raw[1] != '[' && raw[1] != '"' && raw[1] != '{'
}

// eachElementOK reports whether every element of the array at s suits typ.
func eachElementOK(s *scanner, typ string) bool {
	s.Pos++ // [
	if s.Peek() == ']' {
		return true
	}
	for {
		start := s.Pos
		if !valueOK(s, typ) {
			return false
		}
		s.Pos = start
		if _, err := s.Skip(1); err != nil {
			return false
		}
		switch s.Peek() {
		case ',':
			s.Pos++
		case ']':
			return true
		default:
			return false
		}
	}
}

// valueOK reports whether the (non-array, except for a geo point) value
// at s suits typ; it may move s.
func valueOK(s *scanner, typ string) bool {
	if container(typ) {
		return s.Peek() == '{'
	}
	return scalarOK(s, typ)
}

// scalarOK reports whether the value at s suits typ; it may move s.
func scalarOK(s *scanner, typ string) bool {
	switch typ {
	case "keyword", "constant_keyword", "wildcard", "text", "match_only_text":
		return s.Peek() == '"'
	case "long", "integer", "short", "byte":
		if c := s.Peek(); c != '-' && (c < '0' || c > '9') {
			return false
		}
		num, err := s.Number()
		if err != nil {
			return false
		}
		// Integer syntax only: 1.0 and 1e3 are numbers, not longs, and
		// would be stored as sent.
		n, ok := parseInt(num)
		if !ok {
			return false
		}
		switch typ {
		case "integer":
			return n >= -1<<31 && n < 1<<31
		case "short":
			return n >= -1<<15 && n < 1<<15
		case "byte":
			return n >= -128 && n < 128
		}
		return true
	case "unsigned_long":
		num, err := s.Number()
		if err != nil {
			return false
		}
		_, err = strconv.ParseUint(string(num), 10, 64)
		return err == nil
	case "float", "double", "scaled_float", "half_float":
		_, err := s.Number()
		return err == nil
	case "boolean":
		s.Peek()
		return s.Literal("true") == nil || s.Literal("false") == nil
	case "date":
		switch c := s.Peek(); {
		case c == '"':
			v, ok := rawString(s)
			if !ok {
				return false
			}
			t, err := time.Parse(time.RFC3339Nano, v)
			return err == nil && !t.Before(minTime)
		case c == '-' || (c >= '0' && c <= '9'):
			num, err := s.Number() // epoch milliseconds
			if err != nil {
				return false
			}
			_, ok := parseInt(num)
			return ok
		}
		return false
	case "ip":
		if s.Peek() != '"' {
			return false
		}
		v, ok := rawString(s)
		if !ok {
			return false
		}
		_, err := netip.ParseAddr(v)
		return err == nil
	case "geo_point":
		// "lat,lon" or WKT as a string, or [lon, lat]; the object form
		// arrives flattened (lat, lon) and is checked as such.
		switch s.Peek() {
		case '"':
			_, err := s.Str()
			return err == nil
		case '[':
			raw, err := s.Skip(1)
			if err != nil {
				return false
			}
			parts := strings.Split(strings.Trim(string(raw), "[]"), ",")
			for _, p := range parts {
				if _, err := strconv.ParseFloat(strings.TrimSpace(p), 64); err != nil {
					return false
				}
			}
			return len(parts) == 2
		}
		return false
	}
	// A type this checker does not know (a newer ECS): let it pass rather
	// than reject valid events.
	return true
}

// rawString returns the string at s without copying it when it has no
// escapes (the common case); an escaped one is decoded.
func rawString(s *scanner) (string, bool) {
	raw, escaped, err := s.RawString()
	if err != nil {
		return "", false
	}
	if escaped {
		return s.Text(raw, true), true
	}
	return unsafe.String(unsafe.SliceData(raw), len(raw)), true
}

// parseInt parses integer syntax (no fraction, no exponent) into an int64.
func parseInt(num []byte) (int64, bool) {
	b := num
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n > 1<<63-1 && !(neg && n == 1<<63) {
		return 0, false
	}
	if neg {
		return -int64(n), true
	}
	return int64(n), true
}

// describe says in words what a type wants.
func describe(typ string) string {
	switch typ {
	case "keyword", "constant_keyword", "wildcard", "text", "match_only_text":
		return "a string (" + typ + ")"
	case "long", "integer", "short", "byte", "unsigned_long":
		return "an integer (" + typ + ")"
	case "float", "double", "scaled_float", "half_float":
		return "a number (" + typ + ")"
	case "boolean":
		return "true or false"
	case "date":
		return "an RFC 3339 date from 1970 on, or epoch milliseconds"
	case "ip":
		return "an IP address string"
	case "geo_point":
		return `a geo point ({"lat":…,"lon":…}, "lat,lon" or [lon, lat])`
	case "nested":
		return "an object or an array of objects (nested)"
	}
	return "an object (" + typ + ")"
}

func quote(s string) string {
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return strconv.Quote(s)
}

func snippet(raw []byte) string {
	if len(raw) > 40 {
		return string(raw[:37]) + "..."
	}
	return string(raw)
}
