package event

import (
	"encoding/binary"
	"math/rand/v2"
	"time"
	"unsafe"
)

// NewID returns a new UUIDv7 (RFC 9562) as a 36-character string. UUIDv7s
// sort by creation time to the millisecond, so event and request ids can be
// range-scanned and merged in time order; the 74 random bits come from the
// runtime's ChaCha8 generator, which is unpredictable and needs no lock.
func NewID() string {
	var b [36]byte
	appendUUIDv7(b[:0], time.Now())
	return string(b[:])
}

// AppendID appends a new UUIDv7 to dst, for callers that build ids into a
// buffer they own.
func AppendID(dst []byte) []byte { return appendUUIDv7(dst, time.Now()) }

func appendUUIDv7(dst []byte, now time.Time) []byte {
	var u [16]byte
	ms := uint64(now.UnixMilli())
	binary.BigEndian.PutUint64(u[0:8], ms<<16)
	binary.BigEndian.PutUint64(u[8:16], rand.Uint64())
	r := rand.Uint32()
	u[6] = 0x70 | byte(r>>8)&0x0f // version 7, then 12 random bits
	u[7] = byte(r)
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hex[c>>4], hex[c&0xf])
	}
	return dst
}

// SetNewID sets ev.ID to a new UUIDv7 stored inside ev itself, without
// allocating. The string aliases ev's memory: it stays valid only as long
// as ev is neither reused nor overwritten, which suits pipelines that
// encode pooled events and then recycle them. Keep a copy
// (strings.Clone) of an id that must outlive the event.
func (ev *Event) SetNewID() {
	appendUUIDv7(ev.idBuf[:0], time.Now())
	ev.ID = unsafe.String(&ev.idBuf[0], len(ev.idBuf))
}
