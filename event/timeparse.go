package event

import "time"

// parseTime is time.Parse(time.RFC3339Nano, v) (FuzzParseTime holds it
// to that), quicker for the form encoders write, in UTC with at most nine
// fraction digits ("2006-01-02T15:04:05.999999999Z"): the time package's
// parse was a tenth of the normaliser's cost. Anything else, and every
// error, goes to time.Parse.
func parseTime(v string) (time.Time, error) {
	t, _, err := parseTimeFast(v)
	return t, err
}

// parseTimeFast is parseTime that also reports whether v took the quick
// path: then v's digits are the instant's own, field for field, and
// appendFastTime writes what AppendTime would without taking the instant
// apart again (the normaliser did that for every @timestamp).
func parseTimeFast(v string) (t time.Time, fast bool, err error) {
	if n := len(v); n >= 20 && n <= 30 && v[n-1] == 'Z' && v[4] == '-' && v[7] == '-' && v[10] == 'T' && v[13] == ':' && v[16] == ':' {
		ok := true
		num := func(a, b int) int {
			x := 0
			for _, c := range []byte(v[a:b]) {
				if c < '0' || c > '9' {
					ok = false
				}
				x = x*10 + int(c-'0')
			}
			return x
		}
		year, month, day := num(0, 4), num(5, 7), num(8, 10)
		hour, min, sec := num(11, 13), num(14, 16), num(17, 19)
		ns := 0
		switch {
		case n == 20:
		case n >= 22 && v[19] == '.':
			ns = num(20, n-1)
			for k := n - 21; k < 9; k++ {
				ns *= 10
			}
		default:
			ok = false
		}
		if ok && month >= 1 && month <= 12 && day >= 1 && day <= daysIn(month, year) && hour < 24 && min < 60 && sec < 60 {
			return time.Date(year, time.Month(month), day, hour, min, sec, ns, time.UTC), true, nil
		}
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

// daysIn is the number of days of month (1-12) in year.
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
