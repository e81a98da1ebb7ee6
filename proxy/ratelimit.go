package proxy

import (
	"hash/maphash"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// limiter is a set of token buckets, one per key (a client address, or
// one for a whole route), refilled at rate per second up to burst. The
// number of keys is bounded: when a shard is full, buckets that have
// refilled completely (idle clients) are forgotten, and if none has, the
// new key is let through uncounted (counted in overflow) rather than
// evicting an attacker's bucket.
type limiter struct {
	rate    float64
	burst   float64
	perKey  int // keys per shard
	seed    maphash.Seed
	shards  [16]limShard
	overflw atomic.Uint64
}

type limShard struct {
	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds
}

// maxLimitKeys bounds the buckets of one limiter (about 20 MiB): past it,
// buckets that refilled are forgotten, and new clients pass uncounted
// rather than evict an attacker's bucket (see limiter).
const maxLimitKeys = 1 << 18

func newLimiter(rl *RateLimit, maxKeys int) *limiter {
	l := &limiter{rate: rl.Rate, burst: float64(rl.Burst), perKey: max(1, maxKeys/16), seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = map[netip.Addr]*bucket{}
	}
	return l
}

// limitKey is the bucket an address belongs to: IPv4 addresses alone, IPv6
// by /64 (one host usually holds a whole /64, so per-address buckets would
// be free to multiply).
func limitKey(a netip.Addr) netip.Addr {
	if a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a.Unmap()
}

// allow takes a token for key at now. When none is left it returns how
// long until one is.
func (l *limiter) allow(key netip.Addr, now time.Time) (bool, time.Duration) {
	h := maphash.Comparable(l.seed, key)
	sh := &l.shards[h%uint64(len(l.shards))]
	t := now.UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[key]
	if b == nil {
		if len(sh.buckets) >= l.perKey && !l.sweep(sh, t) {
			l.overflw.Add(1)
			return true, 0
		}
		b = &bucket{tokens: l.burst, last: t}
		sh.buckets[key] = b
	}
	if t > b.last {
		b.tokens = math.Min(l.burst, b.tokens+float64(t-b.last)/1e9*l.rate)
		b.last = t
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * 1e9)
	return false, wait
}

// sweep forgets the buckets of a shard that are full again by t and
// reports whether room was made.
func (l *limiter) sweep(sh *limShard, t int64) bool {
	n := len(sh.buckets)
	for k, b := range sh.buckets {
		if b.tokens+float64(t-b.last)/1e9*l.rate >= l.burst {
			delete(sh.buckets, k)
		}
	}
	return len(sh.buckets) < n
}

// retryAfter is the Retry-After value for a wait: whole seconds, at least
// one.
func retryAfter(wait time.Duration) int {
	s := int(math.Ceil(wait.Seconds()))
	return max(1, s)
}
