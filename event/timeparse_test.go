package event

import (
	"strconv"
	"testing"
	"time"
)

// timeSeeds are times in and around parseTimeFast's quick form: every field
// at its bounds and past them, leap days, fraction lengths, other forms.
var timeSeeds = []string{
	"2026-11-25T12:00:01.000001Z", "2026-11-30T01:50:48.375678833Z", "2026-11-30T01:50:48Z",
	"2026-11-30T01:50:48.3Z", "2026-11-30T01:50:48.1234567890Z", "2026-11-30T01:50:48.Z",
	"0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "1970-01-01T00:00:00Z",
	"2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
	"2026-04-31T00:00:00Z", "2026-12-32T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z",
	"2026-01-00T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2026-01-01T23:59:60Z",
	"2026-01-01t00:00:00Z", "2026-01-01T00:00:00z", "2026-01-01T00:00:00+01:00", "2026-01-01T00:00:00-00:00",
	"2026-01-01 00:00:00Z", "2026-1-01T00:00:00Z", "+026-01-01T00:00:00Z", "2026-01-01T00:00:0aZ",
	"2026-01-01T00:00:00.-1Z", "2026-01-01T00:00:00.+1Z", "", "Z", "2026-01-01T00:00:00.0000000001Z",
}

// FuzzParseTime holds parseTimeFast to time.Parse with RFC3339Nano: the
// same instant in the same location, or an error for both; and a date it
// read on its quick path to appendFastTime writing what AppendTime writes.
func FuzzParseTime(f *testing.F) {
	for _, s := range timeSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, fast, gerr := parseTimeFast(s)
		want, werr := time.Parse(time.RFC3339Nano, s)
		gz, goff := got.Zone()
		wz, woff := want.Zone()
		sameLoc := got.Location() == want.Location() || got.Location() != time.UTC && want.Location() != time.UTC && gz == wz && goff == woff
		if (gerr == nil) != (werr == nil) || !got.Equal(want) || !sameLoc {
			t.Fatalf("parseTimeFast(%q) = %v, %v; time.Parse: %v, %v", s, got, gerr, want, werr)
		}
		if fast {
			if a, b := string(appendFastTime([]byte("x"), []byte(s))), string(AppendTime([]byte("x"), got)); a != b {
				t.Fatalf("appendFastTime(%q) = %s, AppendTime: %s", s, a, b)
			}
		}
	})
}

func BenchmarkParseTime(b *testing.B) {
	for _, c := range []struct {
		name string
		f    func(string) (time.Time, error)
	}{{"quick", func(s string) (time.Time, error) { t, _, err := parseTimeFast(s); return t, err }}, {"time.Parse", func(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if t, err := c.f("2026-11-25T12:00:01.000001Z"); err != nil || t.Nanosecond() != 1000 {
					b.Fatal(t, err)
				}
			}
		})
	}
}

// TestCanonicalInt: the normaliser copies an integer's digits only when
// they are what strconv.AppendInt writes for its value.
func TestCanonicalInt(t *testing.T) {
	for _, num := range []string{"0", "-0", "7", "-7", "007", "-007", "10", "123456789012345678", "-1", "00"} {
		v, ok := simpleInt([]byte(num))
		if !ok {
			t.Fatalf("simpleInt(%q) failed", num)
		}
		if got, want := canonicalInt([]byte(num)), strconv.FormatInt(v, 10) == num; got != want {
			t.Errorf("canonicalInt(%q) = %v, want %v", num, got, want)
		}
	}
}
