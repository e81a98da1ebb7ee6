package ledger

import (
	"strings"
	"testing"
	"time"
)

// TestParseCheckpoint: what ParseCheckpoint accepts, Marshal writes back
// as a checkpoint it accepts with the same values.
func TestParseCheckpoint(t *testing.T) {
	const head = "o\n7\nnND/nri/U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=\n"
	for _, c := range []struct {
		in      string
		time    string // the time read, RFC 3339 in UTC ("" none)
		wantErr string
	}{
		{in: head, time: ""},
		{in: head + "time 2026-01-01T00:00:00Z\n", time: "2026-01-01T00:00:00Z"},
		{in: head + "time 2026-01-01T00:00:00.5+01:00\next\n", time: "2025-12-31T23:00:00.5Z"},
		{in: head + "time 0000-01-01T00:00:00Z\n", time: "0000-01-01T00:00:00Z"},
		{in: head + "time 9999-12-31T23:59:59.999999999Z\n", time: "9999-12-31T23:59:59.999999999Z"},
		// Years RFC 3339 can write, but not once in UTC, as Marshal
		// writes them.
		{in: head + "time 0000-01-01T00:00:00+01:00\n", wantErr: "year -1 in UTC"},
		{in: head + "time 9999-12-31T23:00:00-01:00\n", wantErr: "year 10000 in UTC"},
		{in: head + "time yesterday\n", wantErr: "checkpoint time"},
		{in: "o\n07\nnND/nri/U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=\n", wantErr: "not a decimal number"},
	} {
		got, err := ParseCheckpoint([]byte(c.in))
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: %+v, %v; want an error with %q", c.in, got, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if ts := got.Time.UTC().Format(time.RFC3339Nano); c.time == "" && !got.Time.IsZero() || c.time != "" && ts != c.time {
			t.Errorf("%q: time %s, want %q", c.in, ts, c.time)
		}
		back, err := ParseCheckpoint(got.Marshal())
		if err != nil || !back.Time.Equal(got.Time) || back.Size != got.Size || back.Root != got.Root || len(back.Extra) != len(got.Extra) {
			t.Errorf("%q: Marshal gives %q, which reads as %+v, %v", c.in, got.Marshal(), back, err)
		}
	}
}
