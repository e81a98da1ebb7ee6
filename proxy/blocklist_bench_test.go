package proxy

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// heldBlocklist returns a blocklist holding n single-address bans and n
// IPv6 /64 range bans from source "detection", each for an hour or more.
func heldBlocklist(tb testing.TB, n int, now func() time.Time) *Blocklist {
	tb.Helper()
	b := NewBlocklist(now)
	ds := make([]Decision, 0, 2*n)
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		ds = append(ds, Decision{Type: "ban", Scope: "Ip", Value: a.String(), Duration: fmt.Sprintf("%ds", 3600+i)})
		ds = append(ds, Decision{Type: "ban", Scope: "Range", Value: fmt.Sprintf("2001:db8:%x:%x::/64", i>>16, i&0xffff), Duration: fmt.Sprintf("%ds", 3600+i)})
	}
	if _, _, err := b.Apply("detection", Update{Full: true, New: ds}); err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkBlocklistApplyOne is the cost of one new ban (what the
// request lane applies at each provisional block) while 100,000 addresses
// and 100,000 ranges are held: the write lock it takes stalls every
// lookup meanwhile.
func BenchmarkBlocklistApplyOne(b *testing.B) {
	bl := heldBlocklist(b, 100_000, nil)
	b.ResetTimer()
	for i := range b.N {
		a := netip.AddrFrom4([4]byte{192, byte(i >> 16), byte(i >> 8), byte(i)})
		bl.Apply(laneSource, Update{New: []Decision{{Type: "ban", Scope: "Ip", Value: a.String(), Duration: "1m"}}})
	}
}
