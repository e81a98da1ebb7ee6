package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// segStream reads a closed segment's frames in order through a buffer it
// reuses, for the compactor: on this VM the first pass over a freshly
// mapped file costs 8–12× a pass through read(2) into a buffer already
// touched (the guest's first touch of each mapped page exits to the
// hypervisor), and a buffer the size of a segment, fresh per process, is
// touched for the first time inside a burst (docs/ledger.md, eighteenth
// and nineteenth sessions).
type segStream struct {
	f    *os.File
	buf  []byte
	r, w int   // buf[r:w] is read and not yet taken
	off  int64 // the file offset of buf[w]
	eof  bool
}

// streamBufSize is the stream's buffer: two compressed blocks' worth of
// frames of ordinary records (it grows, once, for a block of tiny records
// or a frame larger than it).
const streamBufSize = 256 << 10

// reset starts reading f at off with buf (reused; streamBufSize if empty).
func (s *segStream) reset(f *os.File, buf []byte, off int64) {
	if cap(buf) == 0 {
		buf = make([]byte, streamBufSize)
	}
	*s = segStream{f: f, buf: buf[:cap(buf)], off: off}
}

// pos returns the file offset of the next frame.
func (s *segStream) pos() int64 { return s.off - int64(s.w-s.r) }

// next returns the next frame's time and record, the record aliasing
// s.buf, and whether the segment ended (no frame: err and rec nil). The
// bytes of s.buf from keep on (keep ≤ the offset in s.buf of the frame
// returned before) are kept, moved to the front if the buffer must be
// refilled: moved is by how much their offsets in s.buf fell. With check,
// the frame's CRC is checked.
func (s *segStream) next(keep int, check bool) (t int64, rec []byte, moved int, end bool, err error) {
	for {
		avail := s.buf[s.r:s.w]
		if len(avail) == 0 && s.eof {
			return 0, nil, moved, true, nil
		}
		n, ferr := frameLen(avail, maxFrameLen)
		if ferr == nil && n <= len(avail) {
			if check {
				t, rec, _, err = decodeFrame(avail, maxFrameLen)
			} else {
				t, rec = decodeFrameUnchecked(avail, n)
			}
			if err != nil {
				return 0, nil, moved, false, err
			}
			s.r += n
			return t, rec, moved, false, nil
		}
		if ferr != nil && !errors.Is(ferr, errTorn) {
			return 0, nil, moved, false, ferr
		}
		if s.eof {
			// Ends inside a frame.
			return 0, nil, moved, false, errTorn
		}
		// Refill: what is kept to the front, then read.
		need := frameHeader
		if ferr == nil {
			need = n
		}
		if keep > s.r {
			keep = s.r
		}
		if kept := s.w - keep; kept+max(need-(s.w-s.r), 1) > len(s.buf) {
			nb := make([]byte, max(2*len(s.buf), kept+need))
			copy(nb, s.buf[keep:s.w])
			s.buf = nb
		} else {
			copy(s.buf, s.buf[keep:s.w])
		}
		s.r -= keep
		s.w -= keep
		moved += keep
		keep = 0
		m, rerr := s.f.ReadAt(s.buf[s.w:], s.off)
		s.w += m
		s.off += int64(m)
		if rerr == io.EOF || (rerr == nil && m == 0) {
			s.eof = true
		} else if rerr != nil {
			return 0, nil, moved, false, fmt.Errorf("read %s: %w", s.f.Name(), rerr)
		}
	}
}

// decodeFrameUnchecked returns the time and record of the n-byte frame at
// the start of b, its CRC not checked.
func decodeFrameUnchecked(b []byte, n int) (int64, []byte) {
	return int64(binary.BigEndian.Uint64(b[4:])), b[frameHeader : n-4]
}
