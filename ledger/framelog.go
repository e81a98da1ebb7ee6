package ledger

import (
	"errors"
	"fmt"
	"os"
)

// A frame log is a file of frames (the segment framing, no header) used
// for small append-only histories: the checkpoint history and pruned.log.

type logEntry struct {
	time int64
	data []byte
	off  int64
}

// frameLogMax bounds pruned.log as read whole: it holds one ~300-byte
// record per segment deleted (a gibibyte is millions of segments). A
// larger file, or a sparse one claiming terabytes, is damage, read up to
// the bound rather than into all the memory there is. (A variable for
// tests.)
var frameLogMax int64 = 1 << 30

// cpFileMax bounds a checkpoint history file as read whole: the ledger
// closes one at cpLogMax (4 MiB) and one checkpoint more, so a larger file
// was not written by it. Read up to frameLogMax, a sparse history file
// claiming a tebibyte cost verify, prove and report 2 GB of memory and
// seconds of scanning each, and a copy can hold any number of them.
var cpFileMax int64 = 64 << 20

// readFrameLog returns the valid frames of a frame log, the offset after
// the last valid one and the reason reading stopped early (nil at a clean
// end). A missing file is an empty log; anything but a regular file is an
// error (regular.go), and the frames of a file over frameLogMax are those
// of its first frameLogMax bytes, with errTooLarge.
func readFrameLog(path string, maxLen int) ([]logEntry, int64, error) {
	b, err := readRegular(path, frameLogMax)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil && !errors.Is(err, errTooLarge) {
		return nil, 0, err
	}
	entries, end, why := parseFrameLog(b, maxLen)
	if err != nil {
		why = err
	}
	return entries, end, why
}

func parseFrameLog(b []byte, maxLen int) ([]logEntry, int64, error) {
	var out []logEntry
	off := 0
	for off < len(b) {
		t, rec, n, err := decodeFrame(b[off:], maxLen)
		if err != nil {
			return out, int64(off), err
		}
		out = append(out, logEntry{time: t, data: rec, off: int64(off)})
		off += n
	}
	return out, int64(off), nil
}

// appendFrameLog appends one frame to a frame log and makes it durable
// with sync (datasync, or an AIO context's). A frame that could not be
// written whole (disk full) is cut off again: a torn frame in the middle
// of the log would hide every later one. The log is opened for each
// frame, not kept open: a file put in its place (a link planted at the
// name) is then refused at once rather than the log going on into a
// removed file (TestPlantedLinks).
func appendFrameLog(path string, t int64, data []byte, sync func(*os.File) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|oNoFollow, 0o644) // (plant.go)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(appendFrame(nil, t, data)); err != nil {
		if terr := f.Truncate(st.Size()); terr != nil {
			err = fmt.Errorf("%w (and cutting the partial frame failed: %v)", err, terr)
		}
		f.Close()
		return err
	}
	if err := sync(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
