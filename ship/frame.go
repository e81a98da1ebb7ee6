package ship

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
)

// On-disk layout of a spool segment:
//
//	magic "TGSPOOL1"
//	frame*
//
// and of a frame:
//
//	[0:4]   payload length n, uint32 little-endian, 1 ≤ n ≤ maxPayload
//	[4:8]   CRC-32C (Castagnoli) of bytes [0:4] ++ [8:16+n]
//	[8:16]  spool time, Unix nanoseconds, int64 little-endian
//	[16:…]  payload: one encoded event, no line break
//
// The checksum covers the length as well as the content, so a torn or
// bit-flipped length is caught without trusting it to size a read. The spool
// time lets Stats report lag, and lets the sender ship a backlog found at
// start-up without waiting for FlushInterval.
const (
	segMagic    = "TGSPOOL1"
	frameHeader = 16
	// maxPayload bounds what the parser will believe a length field says,
	// so that garbage can never make it allocate or read gigabytes.
	maxPayload = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// errShort means the buffer ends inside a frame: more bytes are needed
	// (or, at the end of a file, the tail is torn).
	errShort = errors.New("ship: spool frame: short")
	// errCorrupt means the bytes at this offset are not a frame.
	errCorrupt = errors.New("ship: spool frame: corrupt")
)

// appendFrame appends one frame to dst.
func appendFrame(dst []byte, ts int64, payload []byte) []byte {
	var h [frameHeader]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:16], uint64(ts))
	c := crc32.Update(0, castagnoli, h[0:4])
	c = crc32.Update(c, castagnoli, h[8:16])
	c = crc32.Update(c, castagnoli, payload)
	binary.LittleEndian.PutUint32(h[4:8], c)
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// parseFrame decodes the frame at the start of b. It returns the spool time,
// the payload (aliasing b) and the frame's total size; errShort if b holds
// only part of a plausible frame; errCorrupt if b cannot start a frame.
func parseFrame(b []byte) (ts int64, payload []byte, n int, err error) {
	if len(b) < 4 {
		return 0, nil, 0, errShort
	}
	l := binary.LittleEndian.Uint32(b[0:4])
	if l == 0 || l > maxPayload {
		return 0, nil, 0, errCorrupt
	}
	n = frameHeader + int(l)
	if len(b) < n {
		return 0, nil, 0, errShort
	}
	c := crc32.Update(0, castagnoli, b[0:4])
	c = crc32.Update(c, castagnoli, b[8:n])
	if c != binary.LittleEndian.Uint32(b[4:8]) {
		return 0, nil, 0, errCorrupt
	}
	return int64(binary.LittleEndian.Uint64(b[8:16])), b[frameHeader:n], n, nil
}

// frameReader reads frames from a segment file between a start offset and a
// limit that may grow (the active segment's durable size). It reads with
// ReadAt into its own buffer, never past the limit, so bytes of a write that
// is still in progress, or that failed and was truncated away, are never
// buffered and mistaken for data later.
type frameReader struct {
	f     *os.File
	buf   []byte
	start int   // buf[start:end] holds file bytes [pos, pos+end-start)
	end   int   //
	pos   int64 // file offset of buf[start]
	limit int64 // no byte at or past limit is read
}

func newFrameReader(f *os.File, off, limit int64, buf []byte) *frameReader {
	if cap(buf) < 64<<10 {
		buf = make([]byte, 64<<10)
	}
	return &frameReader{f: f, buf: buf[:cap(buf)], pos: off, limit: limit}
}

// offset is the file offset of the next unread frame.
func (r *frameReader) offset() int64 { return r.pos }

// next returns the next frame. The payload aliases the reader's buffer and
// is valid until the following call. io.EOF means the limit was reached at a
// frame boundary; errShort that the bytes before the limit end inside a
// frame; errCorrupt that the bytes at offset() are not a frame.
func (r *frameReader) next() (ts int64, payload []byte, err error) {
	for {
		ts, payload, n, err := parseFrame(r.buf[r.start:r.end])
		if err == nil {
			r.start += n
			r.pos += int64(n)
			return ts, payload, nil
		}
		if err != errShort {
			return 0, nil, err
		}
		avail := r.limit - r.pos - int64(r.end-r.start)
		if avail <= 0 {
			if r.end == r.start {
				return 0, nil, io.EOF
			}
			return 0, nil, errShort
		}
		// Make room: slide what is buffered to the front, grow for a large frame.
		need := frameHeader
		if r.end-r.start >= 4 {
			need = frameHeader + int(uint32(r.buf[r.start])|uint32(r.buf[r.start+1])<<8|uint32(r.buf[r.start+2])<<16|uint32(r.buf[r.start+3])<<24)
		}
		if need > len(r.buf) {
			nb := make([]byte, need)
			copy(nb, r.buf[r.start:r.end])
			r.buf = nb
		} else {
			copy(r.buf, r.buf[r.start:r.end])
		}
		r.end -= r.start
		r.start = 0
		want := int64(len(r.buf) - r.end)
		if want > avail {
			want = avail
		}
		m, rerr := r.f.ReadAt(r.buf[r.end:r.end+int(want)], r.pos+int64(r.end))
		r.end += m
		if m == 0 && rerr != nil {
			if rerr == io.EOF {
				// The file is shorter than the limit says: treat as torn.
				return 0, nil, errShort
			}
			return 0, nil, rerr
		}
	}
}

// seek repositions the reader at off, discarding the buffer.
func (r *frameReader) seek(off int64) {
	r.pos, r.start, r.end = off, 0, 0
}

// resync looks for the first offset after from, below limit, where a valid
// frame starts, so that one damaged frame in the middle of a segment costs
// only its own bytes. found is false if no frame follows. A false match
// needs 32 bits of CRC to agree by chance, after a length check that ASCII
// JSON cannot pass (any four printable bytes read as a length exceed
// maxPayload).
func resync(f *os.File, from, limit int64) (off int64, found bool, err error) {
	const chunk = 256 << 10
	buf := make([]byte, chunk+frameHeader)
	var big []byte
	for base := from + 1; base < limit; base += chunk {
		want := int64(len(buf))
		if base+want > limit {
			want = limit - base
		}
		m, rerr := f.ReadAt(buf[:want], base)
		if m == 0 && rerr != nil {
			if rerr == io.EOF {
				return 0, false, nil
			}
			return 0, false, rerr
		}
		b := buf[:m]
		for i := 0; i < len(b) && i < chunk; i++ {
			_, _, _, perr := parseFrame(b[i:])
			switch perr {
			case nil:
				return base + int64(i), true, nil
			case errShort:
				if len(b[i:]) < 4 {
					continue
				}
				// A plausible length running past the chunk: check it whole.
				l := int64(binary.LittleEndian.Uint32(b[i : i+4]))
				if base+int64(i)+frameHeader+l > limit {
					continue
				}
				if cap(big) < int(frameHeader+l) {
					big = make([]byte, frameHeader+l)
				}
				fb := big[:frameHeader+l]
				if _, err := f.ReadAt(fb, base+int64(i)); err != nil {
					return 0, false, err
				}
				if _, _, _, e := parseFrame(fb); e == nil {
					return base + int64(i), true, nil
				}
			}
		}
	}
	return 0, false, nil
}
