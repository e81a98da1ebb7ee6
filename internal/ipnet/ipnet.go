// Package ipnet reads a client address or network the one way the trail
// compares them, so that a decision, an allowlist entry, a trusted proxy
// and a query name the same hosts however they are spelt.
package ipnet

import (
	"fmt"
	"net/netip"
	"strings"
)

// Parse reads an address ("10.0.0.1", "fe80::1%eth0") or a CIDR network
// ("10.0.0.0/8") as a masked prefix, an address as a full-length one.
// IPv4-mapped spellings are the IPv4 address or network they name and a
// zone is dropped, because gateways see unmapped addresses without zones:
// kept as written, "::ffff:10.0.0.0/104" overlapped no IPv4 network and a
// ban on "fe80::1" let "fe80::1%eth0" through. A mapped network shorter
// than /96 is refused: it is not IPv4 space but IPv6 that holds all of it,
// and unmapped it would be an invalid prefix that matches nothing.
func Parse(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
		}
		if a := p.Addr(); a.Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped network shorter than /96 (write the IPv4 network, or the IPv6 one from ::)", s)
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// HostNet is the network one client host is taken to hold, as a string: an
// IPv4 address alone ("203.0.113.5", unmapped), an IPv6 address's /64
// ("2001:db8:1:2::/64"). A host given an IPv6 /64, as nearly every ISP,
// VPS and cloud subnet gives one, sends from any address in it at will:
// counted or banned per address, it is never the same client twice. ok is
// false when s is not a single address.
func HostNet(s string) (string, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", false
	}
	if a.Is4() {
		return s, true // netip reads IPv4 only in its canonical form
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String(), true
	}
	p, _ := a.Prefix(64)
	return p.String(), true
}
