package index

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"strings"
	"time"

	"github.com/trailguard/trailguard/ledger"
)

// Row layout. Strings that repeat (actions, outcomes, paths, user agents,
// user names, …) are stored once in the terms table and referenced by a
// small per-field number; event.id and http.request.id, unique per event,
// are stored as 48-bit keyed hashes; addresses as integers (IPv4) or 16
// bytes (IPv6). Nothing of the event itself is kept: hits are read from the
// ledger and checked there.
const (
	insertCols = `INSERT INTO events(idx, ts, odd, eid, rid, action, outcome, kind, dataset, category, method,
	path, service, host, user_id, user_name, agent, status, sip, cip) VALUES `
	numCols     = 20
	insertGroup = 64
)

// termCols are the column names of the term fields, by f* number.
var termCols = map[int]string{
	fAction: "action", fOutcome: "outcome", fKind: "kind", fDataset: "dataset", fCategory: "category",
	fMethod: "method", fPath: "path", fService: "service", fHost: "host", fUserID: "user_id",
	fUserName: "user_name", fAgent: "agent",
}

// insertSQLRows is an INSERT of n rows.
func insertSQLRows(n int) string {
	one := "(" + strings.Repeat("?,", numCols-1) + "?)"
	return insertCols + strings.Repeat(one+",", n-1) + one
}

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

// keyedHash is the 48-bit hash of an id under the index's salt, as a
// signed integer SQLite stores in 6 bytes. Collisions only cost a ledger
// read: every candidate is checked against the record. The salt keeps
// writers of events from choosing ids that collide on purpose.
func keyedHash(salt []byte, s string) int64 {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(s))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	var b [8]byte
	copy(b[2:], sum[:6])
	return int64(binary.BigEndian.Uint64(b[:])) - 1<<47
}

// ipValue is the column form of an address: IPv4 as a 4-byte integer
// (offset so that it fits SQLite's 4-byte form), IPv6 as 16 bytes, both in
// address order, so a CIDR network is one range.
func ipValue(a netip.Addr) any {
	if a.Is4() {
		b := a.As4()
		return int64(binary.BigEndian.Uint32(b[:])) - 1<<31
	}
	b := a.As16()
	return b[:]
}

// ipFromValue is the inverse of ipValue.
func ipFromValue(v any) (netip.Addr, bool) {
	switch v := v.(type) {
	case int64:
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(v+1<<31))
		return netip.AddrFrom4(b), true
	case []byte:
		if len(v) == 16 {
			return netip.AddrFrom16([16]byte(v)), true
		}
	}
	return netip.Addr{}, false
}

// prefixRange is the first and last column value of a network.
func prefixRange(p netip.Prefix) (lo, hi any) {
	p = p.Masked()
	first := p.Addr()
	last := first
	if first.Is4() {
		b := first.As4()
		for i := p.Bits(); i < 32; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		last = netip.AddrFrom4(b)
	} else {
		b := first.As16()
		for i := p.Bits(); i < 128; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		last = netip.AddrFrom16(b)
	}
	return ipValue(first), ipValue(last)
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
