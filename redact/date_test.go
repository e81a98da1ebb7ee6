package redact

import (
	"fmt"
	"testing"
)

// dateConfigs are configurations under which a date's verdict differs by
// hour or by day, or not at all: the key-value detector's names are the
// only part a configuration decides ("2026-11-30T15" normalises to
// "20261130t15").
var dateConfigs = []Config{
	{},
	{Emails: true},
	{Keys: []string{"*t1*"}},    // hours 10-19 (and days ending in 1) sensitive
	{Keys: []string{"*1130t*"}}, // one day
	{Keys: []string{"2026*"}},
	{Keys: []string{"*t1*"}, AllowKeys: []string{"20261130t15"}},
	{Disable: []Kind{KindKeyValue}},
}

// buildDate writes a date in isUTCDate's form from numbers (any digits:
// the detectors do not check the calendar) with frac's last fl digits as
// the fraction (none when fl is 0; fl above 9 is taken mod 10).
func buildDate(y, mo, d, h, mi, sec uint16, frac uint64, fl uint8) []byte {
	s := fmt.Sprintf("%04d-%02d-%02dT%02d:%02d:%02d", y%10000, mo%100, d%100, h%100, mi%100, sec%100)
	if fl %= 10; fl > 0 {
		s += "." + fmt.Sprintf("%09d", frac%1_000_000_000)[9-fl:]
	}
	return []byte(s + "Z")
}

// checkDateMemo: a Tokens that found another date of the same hour clean
// answers for date as the detectors do on it afresh.
func checkDateMemo(t *testing.T, r *Redactor, cfg int, date, other []byte) {
	t.Helper()
	if !isUTCDate(date) || !isUTCDate(other) {
		t.Fatalf("%s or %s not in isUTCDate's form", date, other)
	}
	_, found := next(r, date, 0, 0)
	tok := r.NewTokens()
	tok.UnchangedText(other)
	if got := tok.UnchangedText(date); got != !found {
		t.Fatalf("config %d: %s after %s: UnchangedText %v, the detectors afresh %v", cfg, date, other, got, !found)
	}
	if got := r.NewTokens().UnchangedText(date); got != !found {
		t.Fatalf("config %d: %s: UnchangedText %v, the detectors %v", cfg, date, got, !found)
	}
}

// TestUnchangedDate: the remembered verdicts on dates, in both
// directions between hours, days and configurations that decide them
// differently, and for fractions of every length, card- and SSN-like
// digits included.
func TestUnchangedDate(t *testing.T) {
	dates := [][]byte{
		buildDate(2026, 11, 30, 15, 4, 5, 0, 0),
		buildDate(2026, 11, 30, 15, 59, 59, 411111111, 9),
		buildDate(2026, 11, 30, 9, 0, 0, 123456789, 9),
		buildDate(2026, 11, 30, 12, 34, 56, 78, 2),
		buildDate(2026, 11, 29, 12, 0, 0, 4111, 4),
		buildDate(2025, 11, 30, 15, 0, 0, 12345678, 8),
		buildDate(9999, 99, 99, 99, 99, 99, 999999999, 9),
	}
	for ci, cfg := range dateConfigs {
		r := mustNew(t, cfg)
		for _, a := range dates {
			for _, b := range dates {
				checkDateMemo(t, r, ci, a, b)
				// The same hour, other minutes and fractions.
				checkDateMemo(t, r, ci, a, append(append([]byte(nil), a[:dateHourLen]...), ":00:00.1Z"...))
			}
		}
	}
	// Under these configurations some hours are sensitive: the test can
	// tell a memo that remembers too little of the date.
	r := mustNew(t, dateConfigs[2])
	if r.NewTokens().UnchangedText(buildDate(2026, 11, 30, 15, 0, 0, 0, 0)) || !r.NewTokens().UnchangedText(buildDate(2026, 11, 30, 9, 0, 0, 0, 0)) {
		t.Fatal(`Keys ["*t1*"] should make hour 15 sensitive and leave hour 09`)
	}
	for _, s := range []string{"2026-11-30T15:04:05", "2026-11-30T15:04:05.Z", "2026-11-30T15:04:05.1234567890Z", "2026-11-30 15:04:05Z", "2026-11-30T15:04:05+01:00", "2026-11-3aT15:04:05Z", "2026-11-30T15:04:05.12a4Z"} {
		if isUTCDate([]byte(s)) {
			t.Errorf("isUTCDate(%q) = true", s)
		}
	}
}

// FuzzUnchangedDate holds a Tokens' remembered verdict on a date to the
// detectors' fresh one, for any digits and fraction length, after another
// date of the same hour, under configurations that decide hours apart.
func FuzzUnchangedDate(f *testing.F) {
	f.Add(uint16(2026), uint16(11), uint16(30), uint16(15), uint16(4), uint16(5), uint64(411111111), uint8(9), uint16(0), uint64(0), uint8(0))
	f.Add(uint16(2026), uint16(1), uint16(11), uint16(10), uint16(0), uint16(0), uint64(123456789), uint8(6), uint16(59), uint64(7), uint8(3))
	rs := make([]*Redactor, len(dateConfigs))
	for i, cfg := range dateConfigs {
		rs[i] = mustNew(f, cfg)
	}
	f.Fuzz(func(t *testing.T, y, mo, d, h, mi, sec uint16, frac uint64, fl uint8, mi2 uint16, frac2 uint64, fl2 uint8) {
		date := buildDate(y, mo, d, h, mi, sec, frac, fl)
		other := buildDate(y, mo, d, h, mi2, sec+mi2, frac2, fl2)
		for i, r := range rs {
			checkDateMemo(t, r, i, date, other)
		}
	})
}

// hexAlphabet is what isHexID accepts.
const hexAlphabet = "0123456789-abcdefABCDEF"

// checkHexID: the detectors find nothing in a string isHexID takes, under
// every configuration of dateConfigs.
func checkHexID(t *testing.T, rs []*Redactor, s []byte) {
	t.Helper()
	if !isHexID(s) {
		return
	}
	for i, r := range rs {
		if m, found := next(r, s, 0, 0); found {
			t.Fatalf("config %d: isHexID(%q), but the detectors find %v at %d-%d", i, s, m.kind, m.start, m.end)
		}
	}
}

// TestHexID: identifiers with cards, SSNs and UUID shapes inside are
// taken whole; strings that are not identifiers are not.
func TestHexID(t *testing.T) {
	var rs []*Redactor
	for _, cfg := range dateConfigs {
		rs = append(rs, mustNew(t, cfg))
	}
	for _, s := range []string{
		"01a229fa-2162-7447-9974-6531957ed1d0", "0193a1b2-c3d4-7e5f-00000007000000000123",
		"4111-1111-1111-1111-abcd", "a4111111111111111", "4111111111111111a", "123-45-6789-abcdefgh",
		"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "DEADBEEF-4111 1111 1111 1111", "4111-1111-1111-1111",
	} {
		checkHexID(t, rs, []byte(s))
	}
	for _, c := range []struct {
		s    string
		want bool
	}{
		{"01a229fa-2162-7447-9974-6531957ed1d0", true},
		{"4bf92f3577b34da6a3ce929d0e0e4736", true},
		{"4111-1111-1111-1111", false},      // no letter: a card
		{"4111111111111111", false},         // no letter
		{"abc", false},                      // short
		{"4111 1111 1111 1111 abcd", false}, // a space
		{"01a229fa-2162-7447-9974-6531957ed1dg", false},
	} {
		if got := isHexID([]byte(c.s)); got != c.want {
			t.Errorf("isHexID(%q) = %v, want %v", c.s, got, c.want)
		}
	}
	// The detectors do look at digits in strings that are not identifiers.
	if _, found := next(rs[0], []byte("4111-1111-1111-1111"), 0, 0); !found {
		t.Fatal("a card without hex letters is not found")
	}
}

// FuzzHexID: the detectors find nothing in any string isHexID takes
// (bytes mapped onto its alphabet), under every configuration.
func FuzzHexID(f *testing.F) {
	f.Add([]byte("01a229fa-2162-7447-9974-6531957ed1d0"))
	f.Add([]byte("4111-1111-1111-1111-abcd"))
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 12})
	var rs []*Redactor
	for _, cfg := range dateConfigs {
		rs = append(rs, mustNew(f, cfg))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := make([]byte, len(b))
		for i, c := range b {
			s[i] = hexAlphabet[int(c)%len(hexAlphabet)]
		}
		checkHexID(t, rs, s)
	})
}
