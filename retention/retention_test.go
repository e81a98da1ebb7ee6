package retention

import (
	"testing"
	"time"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		name    string
		retain  time.Duration
		hot     time.Duration
		wantErr bool
	}{
		{"pci-dss", 365 * Day, 90 * Day, false},
		{"PCI-DSS", 365 * Day, 90 * Day, false},
		{"soc2", 365 * Day, 0, false},
		{"hipaa", 2190 * Day, 0, false},
		{"custom:30", 30 * Day, 0, false},
		{"custom", 0, 0, true},
		{"custom:0", 0, 0, true},
		{"custom:-5", 0, 0, true},
		{"custom:12x", 0, 0, true},
		{"gdpr", 0, 0, true},
	}
	for _, tt := range tests {
		p, err := Lookup(tt.name)
		if (err != nil) != tt.wantErr {
			t.Fatalf("Lookup(%q) err = %v, wantErr %v", tt.name, err, tt.wantErr)
		}
		if err != nil {
			continue
		}
		if p.Retain != tt.retain || p.Hot != tt.hot {
			t.Errorf("Lookup(%q) = %+v, want retain %v hot %v", tt.name, p, tt.retain, tt.hot)
		}
		if back, err := Lookup(p.String()); err != nil || back != p {
			t.Errorf("Lookup(%q.String()=%q) = %+v, %v; want round trip", tt.name, p.String(), back, err)
		}
	}
}

func TestExpired(t *testing.T) {
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		p      Profile
		newest time.Time
		want   bool
		at     time.Time // now, if set
	}{
		{PCIDSS, now.Add(-364 * Day), false, time.Time{}},
		{PCIDSS, now.Add(-366 * Day), true, time.Time{}},
		{HIPAA, now.Add(-366 * Day), false, time.Time{}},
		{HIPAA, now.Add(-2191 * Day), false, time.Time{}}, // exactly six years (2020-11-25): not yet
		{HIPAA, now.Add(-2192 * Day), true, time.Time{}},
		// Across a 29 February, 365 days are a day short of twelve
		// months and 2,190 days two short of six years: kept.
		{PCIDSS, time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC), false, time.Date(2028, 2, 29, 12, 0, 0, 0, time.UTC)},
		{PCIDSS, time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC), true, time.Date(2028, 3, 1, 0, 0, 1, 0, time.UTC)},
		{SOC2, time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC), false, time.Date(2028, 2, 29, 12, 0, 0, 0, time.UTC)},
		{HIPAA, time.Date(2022, 3, 1, 0, 0, 0, 0, time.UTC), false, time.Date(2022, 3, 1, 0, 0, 0, 0, time.UTC).Add(2191 * Day)},
		{HIPAA, time.Date(2022, 3, 1, 0, 0, 0, 0, time.UTC), true, time.Date(2028, 3, 1, 0, 0, 1, 0, time.UTC)},
		{Custom(365 * Day), time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC), true, time.Date(2028, 2, 29, 12, 0, 0, 0, time.UTC)}, // days, as asked
		{Profile{Name: "forever"}, now.Add(-10000 * Day), false, time.Time{}},
	}
	for _, tt := range tests {
		at := now
		if !tt.at.IsZero() {
			at = tt.at
		}
		if got := tt.p.Expired(tt.newest, at); got != tt.want {
			t.Errorf("%s.Expired(%v) at %v = %v, want %v", tt.p.Name, tt.newest, at, got, tt.want)
		}
	}
	if got := PCIDSS.HotUntil(now); !got.Equal(now.Add(90 * Day)) {
		t.Errorf("PCIDSS.HotUntil = %v", got)
	}
	if got := SOC2.HotUntil(now); !got.Equal(now.Add(365 * Day)) {
		t.Errorf("SOC2.HotUntil = %v", got)
	}
}
