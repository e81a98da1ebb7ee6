package rfc3339

import (
	"testing"
	"time"
)

// cases are inputs in and around the quick form: every field at its bounds
// and past them, leap days, fraction lengths, the forms only time.Parse
// reads, and garbage. want is the instant in UTC, "" for an error; quick
// says the input is in the form Quick reads.
var cases = []struct {
	in, want string
	quick    bool
}{
	// The encoders' forms.
	{"2026-11-30T01:50:48.375678833Z", "2026-11-30T01:50:48.375678833Z", true},
	{"2026-11-30T01:50:48.000000000Z", "2026-11-30T01:50:48Z", true},
	{"2026-11-25T12:00:01.000001Z", "2026-11-25T12:00:01.000001Z", true},
	{"2026-11-30T01:50:48Z", "2026-11-30T01:50:48Z", true},
	// Fractions of 1 to 9 digits, 10 and more (time.Parse cuts them to 9).
	{"2026-11-30T01:50:48.3Z", "2026-11-30T01:50:48.3Z", true},
	{"2026-11-30T01:50:48.12Z", "2026-11-30T01:50:48.12Z", true},
	{"2026-11-30T01:50:48.123Z", "2026-11-30T01:50:48.123Z", true},
	{"2026-11-30T01:50:48.1234Z", "2026-11-30T01:50:48.1234Z", true},
	{"2026-11-30T01:50:48.12345Z", "2026-11-30T01:50:48.12345Z", true},
	{"2026-11-30T01:50:48.123456Z", "2026-11-30T01:50:48.123456Z", true},
	{"2026-11-30T01:50:48.1234567Z", "2026-11-30T01:50:48.1234567Z", true},
	{"2026-11-30T01:50:48.12345678Z", "2026-11-30T01:50:48.12345678Z", true},
	{"2026-11-30T01:50:48.123456789Z", "2026-11-30T01:50:48.123456789Z", true},
	{"2026-11-30T01:50:48.1234567891Z", "2026-11-30T01:50:48.123456789Z", false},
	{"2026-11-30T01:50:48.1234567899999Z", "2026-11-30T01:50:48.123456789Z", false},
	{"2026-11-30T01:50:48.000000000000001Z", "2026-11-30T01:50:48Z", false},
	{"2026-11-30T01:50:48,5Z", "2026-11-30T01:50:48.5Z", false}, // time.Parse takes a comma
	{"2026-11-30T01:50:48.Z", "", false},
	{"2026-11-30T01:50:48.5.Z", "", false},
	{"2026-11-30T01:50:48.-1Z", "", false},
	{"2026-11-30T01:50:48.+1Z", "", false},
	{"2026-11-30T01:50:48.1aZ", "", false},
	// Leap years: divisible by 4, not by 100 unless by 400.
	{"2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z", true},
	{"2000-02-29T23:59:59.999999999Z", "2000-02-29T23:59:59.999999999Z", true},
	{"0000-02-29T00:00:00Z", "0000-02-29T00:00:00Z", true},
	{"2023-02-29T00:00:00Z", "", false},
	{"1900-02-29T00:00:00Z", "", false},
	{"2100-02-29T00:00:00Z", "", false},
	{"2024-02-30T00:00:00Z", "", false},
	{"2026-02-31T10:00:00Z", "", false}, // time.Date would make it March 3
	{"2026-02-28T23:59:59Z", "2026-02-28T23:59:59Z", true},
	// Days per month.
	{"2026-01-31T00:00:00Z", "2026-01-31T00:00:00Z", true},
	{"2026-03-31T00:00:00Z", "2026-03-31T00:00:00Z", true},
	{"2026-04-30T00:00:00Z", "2026-04-30T00:00:00Z", true},
	{"2026-04-31T00:00:00Z", "", false},
	{"2026-06-31T00:00:00Z", "", false},
	{"2026-09-31T00:00:00Z", "", false},
	{"2026-11-31T00:00:00Z", "", false},
	{"2026-12-31T23:59:59Z", "2026-12-31T23:59:59Z", true},
	{"2026-12-32T00:00:00Z", "", false},
	{"2026-01-00T00:00:00Z", "", false},
	// Month, hour, minute, second ranges.
	{"2026-13-01T00:00:00Z", "", false},
	{"2026-00-01T00:00:00Z", "", false},
	{"2026-01-01T24:00:00Z", "", false},
	{"2026-01-01T23:60:00Z", "", false},
	{"2026-01-01T23:59:60Z", "", false},
	{"2016-12-31T23:59:60Z", "", false}, // a real leap second: time.Parse refuses it too
	{"2026-01-01T99:99:99Z", "", false},
	// The ends of the range and the epoch.
	{"0000-01-01T00:00:00Z", "0000-01-01T00:00:00Z", true},
	{"9999-12-31T23:59:59.999999999Z", "9999-12-31T23:59:59.999999999Z", true},
	{"1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z", true},
	{"1969-12-31T23:59:59.999999999Z", "1969-12-31T23:59:59.999999999Z", true},
	{"0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z", true},
	// Offsets: time.Parse's, in the location it gives.
	{"2026-01-01T00:00:00+01:00", "2025-12-31T23:00:00Z", false},
	{"2026-01-01T00:00:00.5-05:30", "2026-01-01T05:30:00.5Z", false},
	{"2026-01-01T00:00:00-00:00", "2026-01-01T00:00:00Z", false},
	{"2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00Z", false},
	{"2026-01-01T00:00:00+24:00", "2025-12-31T00:00:00Z", false}, // time.Parse's slow path takes it
	{"2026-03-01T00:30:00+01:00", "2026-02-28T23:30:00Z", false},
	{"2026-02-31T00:00:00+01:00", "", false},
	{"2026-01-01T00:00:00+0100", "", false},
	{"2026-01-01T00:00:00+01", "", false},
	// Lowercase t and z: time.Parse refuses both.
	{"2026-01-01t00:00:00Z", "", false},
	{"2026-01-01T00:00:00z", "", false},
	{"2026-01-01t00:00:00.5z", "", false},
	// Garbage and near misses.
	{"", "", false},
	{"Z", "", false},
	{"2026-01-01", "", false},
	{"2026-01-01T00:00:00", "", false},
	{"2026-01-01 00:00:00Z", "", false},
	{" 2026-01-01T00:00:00Z", "", false},
	{"2026-01-01T00:00:00Z ", "", false},
	{"2026-1-01T00:00:00Z", "", false},
	{"+026-01-01T00:00:00Z", "", false},
	{"-026-01-01T00:00:00Z", "", false},
	{"2026-01-01T00:00:0aZ", "", false},
	{"2026/01/01T00:00:00Z", "", false},
	{"2026-01-01T00-00-00Z", "", false},
	{"2026-01-01T00:00:00ZZ", "", false},
	{"２026-01-01T00:00:00Z", "", false},
	{"2026-01-01T00:00:00.\x00Z", "", false},
	{"2026-01-01T00:00:00.1234567890123456789012345678901234567890Z", "2026-01-01T00:00:00.123456789Z", false},
}

// TestParse holds Parse, ParseBytes and Quick to the table, and the table
// to time.Parse, so that a case cannot state what time.Parse does not.
func TestParse(t *testing.T) {
	for _, c := range cases {
		wantT, wantErr := time.Parse(time.RFC3339Nano, c.in)
		if (wantErr == nil) != (c.want != "") || wantErr == nil && wantT.UTC().Format(time.RFC3339Nano) != c.want {
			t.Errorf("table: %q: time.Parse = %v, %v; the table says %q", c.in, wantT, wantErr, c.want)
		}
		for _, p := range []struct {
			name string
			f    func(string) (time.Time, error)
		}{{"Parse", Parse}, {"ParseBytes", func(s string) (time.Time, error) { return ParseBytes([]byte(s)) }}} {
			got, err := p.f(c.in)
			if c.want == "" {
				if err == nil {
					t.Errorf("%s(%q) = %v, want an error", p.name, c.in, got)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s(%q): %v", p.name, c.in, err)
				continue
			}
			if !same(got, wantT) || got.UTC().Format(time.RFC3339Nano) != c.want {
				t.Errorf("%s(%q) = %v, want %v (%s)", p.name, c.in, got, wantT, c.want)
			}
		}
		q, ok := Quick(c.in)
		if ok != c.quick {
			t.Errorf("Quick(%q) ok = %v, want %v", c.in, ok, c.quick)
		}
		if ok && q != wantT {
			t.Errorf("Quick(%q) = %#v, time.Parse %#v", c.in, q, wantT)
		}
	}
}

// TestEveryDay runs Quick over every day of 400 years (one leap cycle)
// and both ends of the range, at a time that moves through the day, against
// time.Parse: day counting and the leap rule cannot be off anywhere.
func TestEveryDay(t *testing.T) {
	check := func(d time.Time) {
		s := d.Format("2006-01-02T15:04:05.000000000Z")
		got, ok := Quick(s)
		if want, err := time.Parse(time.RFC3339Nano, s); !ok || err != nil || got != want {
			t.Fatalf("Quick(%q) = %v, %v; time.Parse: %v, %v", s, got, ok, want, err)
		}
	}
	step := 24*time.Hour + 61*time.Second + 7*time.Millisecond
	for d := time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2200; d = d.Add(step) {
		check(d)
	}
	for _, y := range []int{0, 1, 399, 400, 9599, 9999} {
		for d := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() == y; d = d.Add(step) {
			check(d)
		}
	}
}

// same says a and b are the same instant in the same location: time.Parse
// gives a new FixedZone (or Local) for an offset, so a pointer compare
// would refuse two equal readings.
func same(a, b time.Time) bool {
	an, ao := a.Zone()
	bn, bo := b.Zone()
	return a.Equal(b) && (a.Location() == b.Location() || a.Location() != time.UTC && b.Location() != time.UTC && an == bn && ao == bo)
}

// FuzzParse holds Parse and ParseBytes to time.Parse(time.RFC3339Nano):
// the same instant in the same location, or an error for both; and what
// Quick reads to be exactly time.Parse's value, in the form it documents.
func FuzzParse(f *testing.F) {
	for _, c := range cases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, werr := time.Parse(time.RFC3339Nano, s)
		for _, p := range []struct {
			name string
			f    func(string) (time.Time, error)
		}{{"Parse", Parse}, {"ParseBytes", func(s string) (time.Time, error) { return ParseBytes([]byte(s)) }}} {
			got, gerr := p.f(s)
			if (gerr == nil) != (werr == nil) || gerr == nil && !same(got, want) {
				t.Fatalf("%s(%q) = %v, %v; time.Parse: %v, %v", p.name, s, got, gerr, want, werr)
			}
		}
		if got, ok := Quick(s); ok {
			if werr != nil || got != want {
				t.Fatalf("Quick(%q) = %#v; time.Parse: %#v, %v", s, got, want, werr)
			}
			frac := ""
			if n := len(s); n > 20 {
				frac = s[20 : n-1]
			}
			if s[:19] != got.Format("2006-01-02T15:04:05") || (frac + "000000000")[:9] != got.Format(".000000000")[1:] {
				t.Fatalf("Quick(%q) = %v: not its digits", s, got)
			}
		}
	})
}

// TestNoAllocation: the quick form allocates nothing by either entry.
func TestNoAllocation(t *testing.T) {
	s := "2026-11-30T01:50:48.375678833Z"
	b := []byte(s)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := Parse(s); err != nil {
			t.Fatal(err)
		}
		if _, err := ParseBytes(b); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}

// BenchmarkParse: the encoders' form by each entry, a short fraction, and
// time.Parse on the same input for the peer.
func BenchmarkParse(b *testing.B) {
	for _, in := range []struct{ name, s string }{
		{"nine", "2026-11-30T01:50:48.375678833Z"},
		{"micro", "2026-11-25T12:00:01.000001Z"},
	} {
		want, err := time.Parse(time.RFC3339Nano, in.s)
		if err != nil {
			b.Fatal(err)
		}
		bs := []byte(in.s)
		for _, p := range []struct {
			name string
			f    func() (time.Time, error)
		}{
			{"Parse", func() (time.Time, error) { return Parse(in.s) }},
			{"ParseBytes", func() (time.Time, error) { return ParseBytes(bs) }},
			{"time.Parse", func() (time.Time, error) { return time.Parse(time.RFC3339Nano, in.s) }},
		} {
			b.Run(in.name+"/"+p.name, func(b *testing.B) {
				for b.Loop() {
					if t, err := p.f(); err != nil || t != want {
						b.Fatal(t, err)
					}
				}
			})
		}
	}
}
