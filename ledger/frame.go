package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Segment files hold records in frames:
//
//	uint32 length | int64 append time (Unix ns) | record bytes | uint32 CRC-32C
//
// all big-endian, the CRC covering length, time and record. A frame that
// ends early is a torn write; a frame whose CRC does not match was damaged
// or altered. The append time is kept in the frame, outside the record
// bytes, so the leaf hash stays the plain RFC 6962 hash of the record.
const (
	frameHeader   = 4 + 8
	frameOverhead = frameHeader + 4

	segMagic      = "TGLSEG1\n"
	segHeaderSize = len(segMagic) + 8 + 4 // magic | first index | CRC-32C

	// maxFrameLen bounds the length field a parser believes, so a damaged
	// or hostile segment cannot make a reader allocate gigabytes.
	maxFrameLen = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// errTorn means the bytes end inside a frame: a write that did not
	// finish (or a truncated file).
	errTorn = errors.New("torn frame")
	// errCorrupt means a complete frame whose checksum or length is wrong.
	errCorrupt = errors.New("corrupt frame")
)

// appendFrame appends the frame for rec, written at unix-ns time t, to buf.
func appendFrame(buf []byte, t int64, rec []byte) []byte {
	start := len(buf)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(rec)))
	buf = binary.BigEndian.AppendUint64(buf, uint64(t))
	buf = append(buf, rec...)
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf[start:], castagnoli))
}

// frameLen returns the total frame size announced by a frame header, or an
// error if the header is incomplete or announces an absurd length.
func frameLen(hdr []byte, maxLen int) (int, error) {
	if len(hdr) < frameHeader {
		return 0, errTorn
	}
	n := binary.BigEndian.Uint32(hdr)
	if int64(n) > int64(maxLen) {
		return 0, fmt.Errorf("%w: length %d exceeds limit %d", errCorrupt, n, maxLen)
	}
	return frameOverhead + int(n), nil
}

// decodeFrame decodes the frame at the start of b. It returns the append
// time, the record (aliasing b) and the frame's size.
func decodeFrame(b []byte, maxLen int) (t int64, rec []byte, size int, err error) {
	size, err = frameLen(b, maxLen)
	if err != nil {
		return 0, nil, 0, err
	}
	if len(b) < size {
		return 0, nil, 0, errTorn
	}
	if !frameSumOK(b[:size]) {
		return 0, nil, size, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	return int64(binary.BigEndian.Uint64(b[4:])), b[frameHeader : size-4], size, nil
}

// frameSumOK reports whether the whole frame b (its size as its length
// field says) has a matching checksum.
func frameSumOK(b []byte) bool {
	return len(b) >= frameOverhead && crc32.Checksum(b[:len(b)-4], castagnoli) == binary.BigEndian.Uint32(b[len(b)-4:])
}

// segHeader returns the header of a segment whose first record has index first.
func segHeader(first uint64) []byte {
	b := append([]byte(segMagic), make([]byte, 8)...)
	binary.BigEndian.PutUint64(b[len(segMagic):], first)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// parseSegHeader checks a segment header and returns its first index.
func parseSegHeader(b []byte) (uint64, error) {
	if len(b) < segHeaderSize {
		return 0, errTorn
	}
	if string(b[:len(segMagic)]) != segMagic {
		return 0, fmt.Errorf("%w: bad segment magic", errCorrupt)
	}
	if crc32.Checksum(b[:segHeaderSize-4], castagnoli) != binary.BigEndian.Uint32(b[segHeaderSize-4:]) {
		return 0, fmt.Errorf("%w: segment header checksum mismatch", errCorrupt)
	}
	return binary.BigEndian.Uint64(b[len(segMagic):]), nil
}
