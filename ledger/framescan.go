package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// frameDamage is a stretch [off, end) of a frame log that holds no valid
// frame, and why the frame that should start at off was refused.
type frameDamage struct {
	off, end int64
	err      error
}

func (d frameDamage) String() string {
	return fmt.Sprintf("bytes %d to %d (%d bytes): %v", d.off, d.end, d.end-d.off, d.err)
}

// frameScan is a frame log read past its damage.
type frameScan struct {
	ents   []logEntry
	damage []frameDamage
	size   int64
	err    error  // reading the file (not a regular file; errTooLarge)
	raw    []byte // the bytes read (the entries point into them)
}

// crashTail says whether the log's only damage is at its end with no
// valid frame after it: what a crash leaves while a frame is appended
// (appendFrameLog writes and syncs one frame at a time, so only the last
// one can be caught half-written). It returns where the valid log ends.
// Damage followed by valid frames is never a crash: it was done to the
// file after those frames were written.
func (s *frameScan) crashTail() (int64, bool) {
	if s.err != nil || len(s.damage) != 1 || s.damage[0].end != s.size {
		return 0, false
	}
	return s.damage[0].off, true
}

// inner is the damage that is not a crash tail.
func (s *frameScan) inner() []frameDamage {
	if _, ok := s.crashTail(); ok {
		return nil
	}
	return s.damage
}

// resyncBudget bounds the bytes checksummed while looking for the next
// valid frame after damage, so that a hostile file of plausible frame
// lengths at every offset costs seconds, not hours; past it the rest of
// the file is one stretch of damage.
var resyncBudget int64 = 256 << 20

// scanFrames reads the frames of b as parseFrameLog does, but does not
// stop at a damaged frame: it looks for the next offset where a whole
// frame with a valid checksum starts whose record valid accepts, and goes
// on from there. A damaged frame in the middle of a history must not
// hide the signed checkpoints after it (nor let a writer cut them off).
func scanFrames(b []byte, maxLen int, valid func([]byte) bool) ([]logEntry, []frameDamage) {
	var out []logEntry
	var dmg []frameDamage
	budget := resyncBudget
	// In sequence a frame is taken on its checksum (what its record holds
	// is judged by the reader); where the scan resumes after damage, its
	// record must also be valid, so that bytes inside a damaged stretch
	// are not taken for a frame.
	at := func(off int, resync bool) (logEntry, int, error) {
		t, rec, n, err := decodeFrame(b[off:], maxLen)
		if err == nil && resync && valid != nil && !valid(rec) {
			err = fmt.Errorf("%w: not a valid entry", errCorrupt)
		}
		return logEntry{time: t, data: rec, off: int64(off)}, n, err
	}
	off := 0
	for off < len(b) {
		e, n, err := at(off, false)
		if err == nil {
			out = append(out, e)
			off += n
			continue
		}
		// A frame whose length is whole and whose checksum fails (a
		// flipped bit): the next frame is likely right after it.
		next := -1
		if n > 0 && off+n <= len(b) {
			if off+n == len(b) {
				next = len(b)
			} else if _, _, err2 := at(off+n, true); err2 == nil {
				next = off + n
			}
			budget -= int64(n)
		}
		// Without an allocation per offset (an error made at each of a
		// sparse file's 64 MiB of zeros was gigabytes of garbage and tens
		// of seconds).
		for p := off + 1; next < 0 && p < len(b); p++ {
			if budget <= 0 {
				next = len(b)
				break
			}
			if len(b)-p < frameHeader {
				continue
			}
			n := binary.BigEndian.Uint32(b[p:])
			size := frameOverhead + int64(n)
			if int64(n) > int64(maxLen) || int64(p)+size > int64(len(b)) {
				continue
			}
			budget -= size
			fr := b[p : p+int(size)]
			if frameSumOK(fr) && (valid == nil || valid(fr[frameHeader:len(fr)-4])) {
				next = p
			}
		}
		if next < 0 {
			next = len(b)
		}
		dmg = append(dmg, frameDamage{int64(off), int64(next), err})
		off = next
	}
	return out, dmg
}

// scanFrameLog is readFrameLog past damage (scanFrames), reading at most
// max bytes of the file (frameLogMax, or cpFileMax for a checkpoint
// history file).
func scanFrameLog(path string, max int64, maxLen int, valid func([]byte) bool) frameScan {
	b, err := readRegular(path, max)
	if errors.Is(err, os.ErrNotExist) {
		return frameScan{}
	}
	if err != nil && !errors.Is(err, errTooLarge) {
		return frameScan{err: err}
	}
	s := frameScan{size: int64(len(b)), err: err, raw: b}
	s.ents, s.damage = scanFrames(b, maxLen, valid)
	return s
}

// validCheckpoint and validPrune accept the records of the checkpoint
// history and of pruned.log where a scan resumes after damage.
func validCheckpoint(rec []byte) bool { _, err := parseUnverified(rec); return err == nil }
func validPrune(rec []byte) bool      { _, err := parsePruneNote(rec); return err == nil }
