package event

import (
	"time"

	"github.com/trailguard/trailguard/internal/rfc3339"
)

// parseTimeFast is time.Parse(time.RFC3339Nano, v) (internal/rfc3339,
// FuzzParseTime holds it to that) that also reports whether v was in the
// form encoders write, UTC with at most nine fraction digits
// ("2006-01-02T15:04:05.999999999Z", rfc3339.Quick): then v's digits are
// the instant's own, field for field, and appendFastTime writes what
// AppendTime would without taking the instant apart again (the
// normaliser did that for every @timestamp).
func parseTimeFast(v string) (t time.Time, fast bool, err error) {
	if t, ok := rfc3339.Quick(v); ok {
		return t, true, nil
	}
	t, err = time.Parse(time.RFC3339Nano, v)
	return t, false, err
}

// appendFastTime appends v, a date parseTimeFast read on its quick path,
// as AppendTime writes the instant it is: its first 19 bytes (year to
// second, each field already at its place and width), the fraction padded
// to nine digits, "Z".
func appendFastTime(b, v []byte) []byte {
	b = append(append(b, v[:19]...), '.')
	pad := 9
	if n := len(v); n > 20 {
		b = append(b, v[20:n-1]...)
		pad -= n - 21
	}
	return append(append(b, "000000000"[:pad]...), 'Z')
}
