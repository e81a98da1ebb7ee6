package index

import (
	"crypto/sha256"
	"encoding/binary"
	"time"

	"github.com/trailguard/trailguard/ledger"
)

// rec is one record decoded for insertion (off the writer's goroutine).
type rec struct {
	idx uint64
	c   cols
}

// decode extracts the column values of a ledger entry.
func decode(e ledger.Entry) rec {
	var x extracted
	extract(e.Data, &x)
	return rec{idx: e.Index, c: x.columns(e.Time)}
}

// idHash is the 48-bit hash of field f's id under the index's salt, as a
// signed integer SQLite stores in 6 bytes. Collisions only cost a ledger
// read: every candidate is checked against the record. The salt keeps
// writers of events from choosing ids that collide on purpose.
func idHash(salt []byte, f int, s string) int64 {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte{byte(f)})
	h.Write([]byte(s))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	var b [8]byte
	copy(b[2:], sum[:6])
	return int64(binary.BigEndian.Uint64(b[:])) - 1<<47
}

func clampNanos(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return minTime.UnixNano()
	case t.After(maxTime):
		return maxTime.UnixNano()
	}
	return t.UnixNano()
}

// The instants UnixNano can represent.
var (
	minTime = time.Unix(0, -1<<63)
	maxTime = time.Unix(0, 1<<63-1)
)
