package event

import (
	crand "crypto/rand"
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

// AppendIDAt is AppendID with the id's time given: for callers that have
// just read the clock (time.Now reads it twice, wall and monotonic, which
// costs more than the rest of the id).
func AppendIDAt(dst []byte, t time.Time) []byte { return appendUUIDv7(dst, t) }

func appendUUIDv7(dst []byte, now time.Time) []byte {
	return appendUUID(dst, uint64(now.UnixMilli()), rand.Uint64(), rand.Uint64())
}

// hexPairs holds the two hex digits of every byte value, so that a UUID is
// written with one table load per byte, in straight-line code.
var hexPairs = func() (t [256][2]byte) {
	for i := range t {
		t[i] = [2]byte{hex[i>>4], hex[i&0xf]}
	}
	return t
}()

// appendUUID appends the UUIDv7 of Unix millisecond ms whose 74 random bits
// are taken from ra (its low 12 bits: rand_a) and rb (its low 62 bits:
// rand_b).
func appendUUID(dst []byte, ms, ra, rb uint64) []byte {
	h := ms<<16 | 0x7000 | ra&0x0fff   // 48-bit time, version 7, rand_a
	l := 0x8000_0000_0000_0000 | rb>>2 // RFC 9562 variant, rand_b
	var b [36]byte
	*(*[2]byte)(b[0:]) = hexPairs[byte(h>>56)]
	*(*[2]byte)(b[2:]) = hexPairs[byte(h>>48)]
	*(*[2]byte)(b[4:]) = hexPairs[byte(h>>40)]
	*(*[2]byte)(b[6:]) = hexPairs[byte(h>>32)]
	b[8] = '-'
	*(*[2]byte)(b[9:]) = hexPairs[byte(h>>24)]
	*(*[2]byte)(b[11:]) = hexPairs[byte(h>>16)]
	b[13] = '-'
	*(*[2]byte)(b[14:]) = hexPairs[byte(h>>8)]
	*(*[2]byte)(b[16:]) = hexPairs[byte(h)]
	b[18] = '-'
	*(*[2]byte)(b[19:]) = hexPairs[byte(l>>56)]
	*(*[2]byte)(b[21:]) = hexPairs[byte(l>>48)]
	b[23] = '-'
	*(*[2]byte)(b[24:]) = hexPairs[byte(l>>40)]
	*(*[2]byte)(b[26:]) = hexPairs[byte(l>>32)]
	*(*[2]byte)(b[28:]) = hexPairs[byte(l>>24)]
	*(*[2]byte)(b[30:]) = hexPairs[byte(l>>16)]
	*(*[2]byte)(b[32:]) = hexPairs[byte(l>>8)]
	*(*[2]byte)(b[34:]) = hexPairs[byte(l)]
	return append(dst, b[:]...)
}

// IDSource mints UUIDv7s for one goroutine from a private ChaCha8 stream
// seeded by crypto/rand. ChaCha8 makes its output a block of 32 words at a
// time, so an id costs two reads from that block and no lock, where the
// runtime's shared generator must pin the thread twice per id. It is not
// safe for concurrent use.
type IDSource struct {
	rng *rand.ChaCha8
}

// NewIDSource returns an IDSource with a fresh secret seed.
func NewIDSource() *IDSource {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		// crypto/rand does not fail on the platforms Go supports; if it
		// did, the runtime's generator (also ChaCha8, seeded by the OS)
		// still makes the ids unpredictable.
		for i := 0; i < len(seed); i += 8 {
			binary.LittleEndian.PutUint64(seed[i:], rand.Uint64())
		}
	}
	return &IDSource{rng: rand.NewChaCha8(seed)}
}

// Append appends a UUIDv7 with the time t to dst. It allocates nothing
// when dst has room for 36 bytes.
func (g *IDSource) Append(dst []byte, t time.Time) []byte {
	return appendUUID(dst, uint64(t.UnixMilli()), g.rng.Uint64(), g.rng.Uint64())
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
