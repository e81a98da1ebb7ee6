// Package sha256x2 computes many SHA-256 hashes of short messages two at a
// time: with the x86 SHA extensions, one message at a time is bound by the
// latency of the round instruction, and two interleaved messages take
// little longer than one (1.5–1.9× the throughput of crypto/sha256 on the
// AMD EPYC it was measured on). Without them it uses crypto/sha256.
//
// It serves RFC 6962 Merkle trees, whose leaves (SHA-256(0x00 ‖ record))
// and nodes (SHA-256(0x01 ‖ left ‖ right)) are independent hashes of short
// messages with a one-byte prefix.
package sha256x2

import (
	"crypto/sha256"
	"encoding/binary"
	"unsafe"
)

// Size is the length of a SHA-256 hash.
const Size = 32

var iv = [8]uint32{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}

// Available reports whether the two-way implementation is used (else
// Prefixed falls back to crypto/sha256).
func Available() bool { return hasSHANI }

// lane is one message in flight: its state and the blocks left, in up to
// three stages: the first block (prefix and the message's start, copied),
// the message's whole blocks in place, and the last one or two (the rest
// and the padding, copied). A short message is all in the last stage. The
// lane holds no pointer into itself, so it stays on the stack.
type lane struct {
	h     [8]uint32
	mid   []byte // the message's whole blocks after the first
	stage int    // 0 first block, 1 mid, 2 tail
	left  int    // blocks left in the stage
	off   int    // bytes done in the stage
	tailN int    // blocks in the tail stage
	out   *[Size]byte
	pf    uintptr // the next cache line to prefetch
	head  [64]byte
	tail  [192]byte
}

// start sets l up to hash prefix ‖ msg into out.
func (l *lane) start(prefix byte, msg []byte, out *[Size]byte) {
	l.h, l.out, l.off = iv, out, 0
	total := uint64(len(msg)) + 1
	var n int // bytes in the tail before its padding
	if len(msg) < len(l.tail)-9 {
		// Short (a tree node: 65 bytes): the whole message in the tail.
		l.tail[0] = prefix
		n = 1 + copy(l.tail[1:], msg)
		l.mid, l.stage = nil, 2
	} else {
		l.head[0] = prefix
		copy(l.head[1:], msg[:63])
		rest := msg[63:]
		whole := len(rest) &^ 63
		l.mid = rest[:whole]
		n = copy(l.tail[:], rest[whole:])
		l.stage, l.left = 0, 1
	}
	l.tail[n] = 0x80
	pad := (n + 9 + 63) &^ 63
	clear(l.tail[n+1 : pad-8])
	binary.BigEndian.PutUint64(l.tail[pad-8:], total*8)
	l.tailN = pad / 64
	if l.stage == 2 {
		l.left = l.tailN
	}
}

// ptr is where the current stage's next block is.
func (l *lane) ptr() *byte {
	switch l.stage {
	case 0:
		return &l.head[0]
	case 1:
		return &l.mid[l.off]
	}
	return &l.tail[l.off]
}

// blocks is how many blocks the current stage has left.
func (l *lane) blocks() int { return l.left }

// advance consumes n blocks; it reports whether the message is done (its
// hash written out).
func (l *lane) advance(n int) bool {
	l.pf += uintptr(n) * 64
	l.left -= n
	l.off += n * 64
	if l.left > 0 {
		return false
	}
	l.off = 0
	switch {
	case l.stage == 0 && len(l.mid) > 0:
		l.stage, l.left = 1, len(l.mid)/64
		return false
	case l.stage < 2:
		l.stage, l.left = 2, l.tailN
		return false
	}
	for i, v := range l.h {
		binary.BigEndian.PutUint32(l.out[i*4:], v)
	}
	return true
}

// Prefixed sets out[i] to SHA-256(prefix ‖ msgs[i]) for every i.
func Prefixed[H ~[Size]byte](out []H, prefix byte, msgs [][]byte) {
	if len(out) < len(msgs) {
		panic("sha256x2: out shorter than msgs")
	}
	if !hasSHANI {
		h := sha256.New()
		p := []byte{prefix}
		for i, m := range msgs {
			h.Reset()
			h.Write(p)
			h.Write(m)
			h.Sum(asArray(&out[i])[:0])
		}
		return
	}
	var a, b lane
	okA, okB := len(msgs) > 0, len(msgs) > 1
	// While a lane hashes message i, it prefetches message i+ahead, a
	// cache line per block: messages read from memory (a mapped segment)
	// cost a quarter more to hash without, the hardware prefetcher
	// stopping at every page.
	pf := func(i int) uintptr {
		if i+prefetchAhead < len(msgs) && len(msgs[i+prefetchAhead]) > 0 {
			return uintptr(unsafe.Pointer(unsafe.SliceData(msgs[i+prefetchAhead])))
		}
		return noPrefetch()
	}
	if okA {
		a.start(prefix, msgs[0], asArray(&out[0]))
		a.pf = pf(0)
	}
	if okB {
		b.start(prefix, msgs[1], asArray(&out[1]))
		b.pf = pf(1)
	}
	next := 2
	for okA && okB {
		n := min(a.blocks(), b.blocks())
		block2(&a.h, &b.h, a.ptr(), b.ptr(), n, a.pf, b.pf)
		if a.advance(n) {
			if okA = next < len(msgs); okA {
				a.start(prefix, msgs[next], asArray(&out[next]))
				a.pf = pf(next)
				next++
			}
		}
		if b.advance(n) {
			if okB = next < len(msgs); okB {
				b.start(prefix, msgs[next], asArray(&out[next]))
				b.pf = pf(next)
				next++
			}
		}
	}
	if okB {
		a, okA = b, true
	}
	for okA {
		n := a.blocks()
		block1(&a.h, a.ptr(), n, a.pf)
		okA = !a.advance(n)
	}
}

// prefetchAhead is how many messages ahead of its own a lane prefetches.
var prefetchAhead = 4

// noPrefetchLine is what the block functions prefetch when there is
// nothing ahead: a line that stays in the cache.
var noPrefetchLine [64]byte

func noPrefetch() uintptr { return uintptr(unsafe.Pointer(&noPrefetchLine)) }

// asArray views a hash of any type whose underlying type is [Size]byte as
// that array (the conversion the language does not allow on pointers to
// type parameters; the memory layout is the same by definition).
func asArray[H ~[Size]byte](h *H) *[Size]byte { return (*[Size]byte)(unsafe.Pointer(h)) }

// nodeTemplate is the second block of every RFC 6962 node hash: the last
// byte of the right child (set per node), the padding and the length
// (65 bytes).
var nodeTemplate = func() (b [64]byte) {
	b[1] = 0x80
	binary.BigEndian.PutUint64(b[56:], 65*8)
	return b
}()

// Nodes sets out[i] to SHA-256(0x01 ‖ in[2i] ‖ in[2i+1]) for every i, the
// RFC 6962 interior node hashes of a tree level. out may be in[:len(in)/2]
// (a level computed in place).
func Nodes[H ~[Size]byte](out []H, in []H) {
	n := len(in) / 2
	if len(out) < n {
		panic("sha256x2: out shorter than in/2")
	}
	if !hasSHANI {
		h := sha256.New()
		var b [1 + 2*Size]byte
		b[0] = 1
		for i := range n {
			copy(b[1:], asArray(&in[2*i])[:])
			copy(b[1+Size:], asArray(&in[2*i+1])[:])
			h.Reset()
			h.Write(b[:])
			h.Sum(asArray(&out[i])[:0])
		}
		return
	}
	var a, b [128]byte
	a[0], b[0] = 1, 1
	copy(a[64:], nodeTemplate[:])
	copy(b[64:], nodeTemplate[:])
	fill := func(buf *[128]byte, i int) {
		copy(buf[1:], asArray(&in[2*i])[:])
		copy(buf[1+Size:], asArray(&in[2*i+1])[:]) // its last byte lands in the second block
	}
	put := func(h *[8]uint32, o *H) {
		d := asArray(o)
		for k, v := range h {
			binary.BigEndian.PutUint32(d[k*4:], v)
		}
	}
	i := 0
	for ; i+1 < n; i += 2 {
		fill(&a, i)
		fill(&b, i+1)
		ha, hb := iv, iv
		block2(&ha, &hb, &a[0], &b[0], 2, noPrefetch(), noPrefetch())
		put(&ha, &out[i])
		put(&hb, &out[i+1])
	}
	if i < n {
		fill(&a, i)
		ha := iv
		block1(&ha, &a[0], 2, noPrefetch())
		put(&ha, &out[i])
	}
}
