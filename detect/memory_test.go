//go:build !race

package detect

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// MemoryBudgetPerAddress is the engine state, in bytes, that one distinct
// client address may cost with every built-in rule loaded (see
// TestMemoryMillionAddresses): 1M addresses fit in 400 MB.
const MemoryBudgetPerAddress = 400

// TestMemoryMillionAddresses sends one failed login from each of 1M
// distinct client addresses, for 1M distinct accounts, within ten minutes
// (a botnet's credential stuffing): every per-address and per-account
// correlation of the built-in rules holds a group for each. The heap the
// engine holds afterwards must stay within the stated budget.
func TestMemoryMillionAddresses(t *testing.T) {
	testenv.Long(t)
	const n = 1_000_000
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	e := builtinEngine(t)
	before := heap()
	t0 := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	buf := make([]byte, 0, 512)
	for i := range n {
		at := t0.Add(time.Duration(i) * 600 * time.Microsecond) // 1M in 10 minutes
		buf = fmt.Appendf(buf[:0], `{"@timestamp":"%s","event":{"id":"e%d","category":["authentication"],"action":"authn_login_fail","outcome":"failure"},"source":{"ip":"10.0.0.2"},"client":{"ip":"%d.%d.%d.%d"},"user":{"name":"user%d@example.com"},"service":{"name":"shop"}}`,
			at.Format(time.RFC3339Nano), i, 11+i>>16, (i>>8)&255, i&255, 1+i%7, i)
		e.Process(Record{Index: uint64(i), Data: buf}, nil)
	}
	after := heap()
	st := e.Stats()
	per := float64(after-before) / n
	t.Logf("1M distinct addresses and accounts: engine heap %.1f MiB (%.0f bytes per address), %d groups held, %d evicted",
		float64(after-before)/(1<<20), per, st.Groups, st.Evicted)
	if st.Events != n || st.Groups < 3*n {
		t.Fatalf("engine read %d events and holds %d groups: it did not keep a group per address and account", st.Events, st.Groups)
	}
	if per > MemoryBudgetPerAddress {
		t.Errorf("%.0f bytes per address, budget %d", per, MemoryBudgetPerAddress)
	}
	runtime.KeepAlive(e)
}
