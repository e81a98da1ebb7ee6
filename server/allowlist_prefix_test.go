package server

import (
	"net/netip"
	"testing"
)

// TestAllowlistPrefix: an allowlist entry names the addresses the decision
// store compares, unmapped and without a zone, however the operator spelt
// it; a mapped network shorter than /96 is refused rather than kept as
// IPv6 space that spares no IPv4 host.
func TestAllowlistPrefix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string // want "" for an error
	}{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{" 10.1.2.3/8 ", "10.0.0.0/8"},
		{"10.1.2.3", "10.1.2.3/32"},
		{"2001:db8::1/32", "2001:db8::/32"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"::ffff:10.1.2.3/128", "10.1.2.3/32"},
		{"::ffff:10.1.2.3", "10.1.2.3/32"},
		{"fe80::1%eth0", "fe80::1/128"},
		{"::ffff:0.0.0.0/80", ""},
		{"nope", ""},
	} {
		p, err := parsePrefix(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("parsePrefix(%q) = %v, want an error", tc.in, p)
			}
			continue
		}
		if err != nil || p != netip.MustParsePrefix(tc.want) {
			t.Errorf("parsePrefix(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
		}
	}
}
