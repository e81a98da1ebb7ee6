// Package rfc3339 reads RFC 3339 timestamps the one way the trail reads
// them: exactly as time.Parse(time.RFC3339Nano, s) accepts and values
// them, quicker for the form trailguard's encoders write.
//
// An event's @timestamp is the client's to choose, so a reader that takes
// more than time.Parse does moves a forged date into another day: the
// hand-written readers detect and report had before took day 31 in every
// month and second 60, and time.Date then read 2026-02-31 as March 3, a day
// ingest, the index and every other reader refuse.
package rfc3339

import "time"

// Parse is time.Parse(time.RFC3339Nano, s): the same instant in the same
// location, or an error for the same inputs (FuzzParse holds it to that).
// The form trailguard's encoders write, UTC with up to nine fraction
// digits, it reads without the time package and without allocating.
func Parse(s string) (time.Time, error) {
	if t, ok := quick(s); ok {
		return t, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// ParseBytes is Parse for a timestamp still in the record it was read
// from; only an input off the quick form pays for a string copy.
func ParseBytes(b []byte) (time.Time, error) {
	if t, ok := quick(b); ok {
		return t, nil
	}
	return time.Parse(time.RFC3339Nano, string(b))
}

// Quick reads s only if it is in the form trailguard's encoders write,
// "2006-01-02T15:04:05Z" with a fraction of one to nine digits or none,
// and a valid instant; ok is false for anything else, including valid RFC
// 3339 in another form. When ok, t is what Parse returns and s's first 19
// bytes and its fraction are t's own UTC digits, so a writer can copy them
// instead of formatting t.
func Quick(s string) (t time.Time, ok bool) { return quick(s) }

// scale turns a fraction of k digits into nanoseconds, by its index k.
var scale = [...]int64{1e9, 1e8, 1e7, 1e6, 1e5, 1e4, 1e3, 100, 10, 1}

func quick[T string | []byte](s T) (time.Time, bool) {
	n := len(s)
	if n < len("2006-01-02T15:04:05Z") || n > len("2006-01-02T15:04:05.999999999Z") ||
		s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[n-1] != 'Z' {
		return time.Time{}, false
	}
	// Each digit as its value; one past 9 if it is no digit (the byte
	// arithmetic wraps below '0').
	y0, y1, y2, y3 := s[0]-'0', s[1]-'0', s[2]-'0', s[3]-'0'
	mo0, mo1, d0, d1 := s[5]-'0', s[6]-'0', s[8]-'0', s[9]-'0'
	h0, h1, mi0, mi1, se0, se1 := s[11]-'0', s[12]-'0', s[14]-'0', s[15]-'0', s[17]-'0', s[18]-'0'
	if y0 > 9 || y1 > 9 || y2 > 9 || y3 > 9 || mo0 > 9 || mo1 > 9 || d0 > 9 || d1 > 9 ||
		h0 > 9 || h1 > 9 || mi0 > 9 || mi1 > 9 || se0 > 9 || se1 > 9 {
		return time.Time{}, false
	}
	year := int64(y0)*1000 + int64(y1)*100 + int64(y2)*10 + int64(y3)
	month := int64(mo0)*10 + int64(mo1)
	day := int64(d0)*10 + int64(d1)
	hour := int64(h0)*10 + int64(h1)
	min := int64(mi0)*10 + int64(mi1)
	sec := int64(se0)*10 + int64(se1)
	// time.Parse's ranges: no leap second, no 24:00, the month's own days.
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || min > 59 || sec > 59 {
		return time.Time{}, false
	}
	var ns int64
	if n > 20 {
		// A fraction: "." and one to nine digits. A bare "." or a comma
		// (which time.Parse also takes) is for time.Parse to judge.
		if s[19] != '.' || n == 21 {
			return time.Time{}, false
		}
		for i := 20; i < n-1; i++ {
			c := s[i] - '0'
			if c > 9 {
				return time.Time{}, false
			}
			ns = ns*10 + int64(c)
		}
		ns *= scale[n-21]
	}
	return time.Unix(unixDays(year, month, day)*86400+hour*3600+min*60+sec, ns).UTC(), true
}

// daysIn is the number of days of month (1-12) in year.
func daysIn(month, year int64) int64 {
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

// unixDays is the number of days from 1970-01-01 to the date (proleptic
// Gregorian, year 0 to 9999), by Howard Hinnant's days_from_civil with
// the year moved 400 on (one era, 146097 days) so that it is never
// negative and division floors.
func unixDays(year, month, day int64) int64 {
	year += 400
	if month <= 2 {
		year--
		month += 9
	} else {
		month -= 3
	}
	era := year / 400
	yoe := year - era*400
	doy := (153*month+2)/5 + day - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468 - 146097
}
