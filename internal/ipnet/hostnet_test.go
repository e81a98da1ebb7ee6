package ipnet

import "testing"

// TestHostNet: IPv4 addresses are their own host (mapped ones unmapped),
// IPv6 ones their /64, zone dropped; anything else is not an address.
func TestHostNet(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"203.0.113.5", "203.0.113.5", true},
		{"::ffff:203.0.113.5", "203.0.113.5", true},
		{"2001:db8:1:2::99", "2001:db8:1:2::/64", true},
		{"2001:DB8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64", true},
		{"fe80::1%eth0", "fe80::/64", true},
		{"::1", "::/64", true},
		{"2001:db8::/64", "", false},
		{"203.0.113.0/24", "", false},
		{"alice", "", false},
		{"", "", false},
	} {
		got, ok := HostNet(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("HostNet(%q) = %q %v, want %q %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	if n := testing.AllocsPerRun(100, func() { HostNet("203.0.113.5") }); n != 0 {
		t.Errorf("an IPv4 address costs %v allocations, want 0 (detection keys every event by it)", n)
	}
}
