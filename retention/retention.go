// Package retention names how long an audit trail must be kept.
//
// The built-in profiles follow the regulations that trailguard's users are
// audited against: PCI DSS v4.0 10.5.1 (twelve months, the last three
// immediately available), SOC 2 (one year, by common auditor practice) and
// HIPAA 164.316(b)(2) (six years). Sinks and the ledger delete only data that
// is older than a profile's Retain period, and never while a legal hold is
// in force.
package retention

import (
	"fmt"
	"strings"
	"time"
)

// Day is the unit retention periods are stated in.
const Day = 24 * time.Hour

// Profile is a named retention policy.
type Profile struct {
	// Name identifies the profile in configuration and in verify reports.
	Name string
	// Retain is how long data must be kept before it may be deleted.
	Retain time.Duration
	// Hot is how long data must stay immediately available (uncompressed,
	// indexed). Zero means the whole Retain period.
	Hot time.Duration
	// Years, if set, is the period in calendar years the regulation states
	// ("12 months", "six years"): data is kept at least that long as well
	// as Retain. 365 days fall a day short of twelve months across a 29
	// February, and 2,190 days one or two days short of six years.
	Years int
}

// The built-in profiles.
var (
	PCIDSS = Profile{Name: "pci-dss", Retain: 365 * Day, Hot: 90 * Day, Years: 1}
	SOC2   = Profile{Name: "soc2", Retain: 365 * Day, Years: 1}
	HIPAA  = Profile{Name: "hipaa", Retain: 2190 * Day, Years: 6}
)

// Profiles lists the built-in profiles.
func Profiles() []Profile { return []Profile{PCIDSS, SOC2, HIPAA} }

// Lookup returns the built-in profile with the given name. The name
// "custom" is accepted in the form "custom:<days>" (for example
// "custom:730"); a bare "custom" is rejected because it says nothing.
func Lookup(name string) (Profile, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	for _, p := range Profiles() {
		if n == p.Name {
			return p, nil
		}
	}
	if days, ok := strings.CutPrefix(n, "custom:"); ok {
		var d int
		if _, err := fmt.Sscanf(days, "%d", &d); err != nil || d <= 0 || fmt.Sprint(d) != days {
			return Profile{}, fmt.Errorf("retention: custom profile %q: want custom:<days> with days > 0", name)
		}
		return Custom(time.Duration(d) * Day), nil
	}
	return Profile{}, fmt.Errorf("retention: unknown profile %q (want pci-dss, soc2, hipaa or custom:<days>)", name)
}

// Custom returns a profile that keeps data for d.
func Custom(d time.Duration) Profile {
	return Profile{Name: "custom", Retain: d}
}

// Expired reports whether data whose newest record was written at newest
// may be deleted at time now.
func (p Profile) Expired(newest, now time.Time) bool {
	if p.Retain <= 0 {
		return false
	}
	if p.Years > 0 && !now.After(newest.AddDate(p.Years, 0, 0)) {
		return false
	}
	return now.Sub(newest) > p.Retain
}

// HotUntil returns the moment data written at t stops having to be
// immediately available.
func (p Profile) HotUntil(t time.Time) time.Time {
	if p.Hot == 0 {
		return t.Add(p.Retain)
	}
	return t.Add(p.Hot)
}

// String returns the profile as it is written in configuration.
func (p Profile) String() string {
	if p.Name == "custom" {
		return fmt.Sprintf("custom:%d", int(p.Retain/Day))
	}
	return p.Name
}
