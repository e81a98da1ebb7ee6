package ledger

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// The checkpoint history is kept in checkpoints/<n>.log, frame logs of
// signed checkpoints rotated at cpLogMax, n being the number of
// checkpoints made before the file's first. Opening reads only the newest
// file, so start-up and memory do not grow with a long history (a year of
// one checkpoint a second is ~8 GB).
const cpDir = "checkpoints"

// cpLogMax is the size at which a checkpoint history file is closed (a
// variable for tests).
var cpLogMax int64 = 4 << 20

type cpFile struct {
	seq  uint64
	path string
}

func listCPLogs(dir string) ([]cpFile, error) {
	ents, err := os.ReadDir(filepath.Join(dir, cpDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []cpFile
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok || len(name) != 20 {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, cpFile{n, filepath.Join(dir, cpDir, e.Name())})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out, nil
}

// cpLog appends to the checkpoint history (publisher goroutine only).
type cpLog struct {
	dir   string
	cur   string // current file, "" before the first checkpoint
	seq   uint64 // its first checkpoint's number
	size  int64
	count uint64 // checkpoints in the whole history
}

// append adds a signed checkpoint to the history and returns once it is
// durable. Its fdatasync goes through fl (the publisher's AIO context)
// if it is not nil, so that the publisher waits in the poller rather
// than in a system call (tiles.go, syncWith).
func (c *cpLog) append(t int64, signed []byte, fl *aioFlusher) error {
	if c.cur == "" || (c.size+int64(len(signed)+frameOverhead) > cpLogMax && c.count > c.seq) {
		if err := os.MkdirAll(filepath.Join(c.dir, cpDir), 0o755); err != nil {
			return err
		}
		next := filepath.Join(c.dir, cpDir, fmt.Sprintf("%020d.log", c.count))
		f, err := createFresh(next, os.O_WRONLY) // (plant.go)
		if err != nil {
			return err
		}
		f.Close()
		if err := syncFile(filepath.Join(c.dir, cpDir)); err != nil {
			os.Remove(next)
			return err
		}
		c.cur, c.seq, c.size = next, c.count, 0
	}
	if err := appendFrameLog(c.cur, t, signed, fl.datasync); err != nil {
		return err
	}
	c.size += int64(len(signed) + frameOverhead)
	c.count++
	return nil
}

// loadCPLog finds the newest checkpoint. For a writer it also cuts a torn
// tail of the newest file (what a crash leaves while a checkpoint is
// appended) and positions the log for appending. Damage followed by valid
// checkpoints is not a crash: it is never cut (cutting it deleted every
// signed checkpoint after it, and with them the evidence verify needed);
// the newest checkpoint is the last valid one, the writer appends after
// the damage, and damaged describes it for the caller to report.
func loadCPLog(dir string, repair bool) (c cpLog, last []byte, damaged []string, err error) {
	c.dir = dir
	files, err := listCPLogs(dir)
	if err != nil {
		return c, nil, nil, err
	}
	for i := len(files) - 1; i >= 0; i-- {
		f := files[i]
		s := scanFrameLog(f.path, cpFileMax, maxCheckpointSize, validCheckpoint)
		end := s.size
		if cut, ok := s.crashTail(); ok && i == len(files)-1 {
			if repair {
				if err := truncateNoFollow(f.path, cut); err != nil {
					return c, nil, nil, err
				}
			}
			end = cut
		}
		dmg := s.damage
		if i == len(files)-1 {
			dmg = s.inner()
		}
		for _, d := range dmg {
			damaged = append(damaged, fmt.Sprintf("%s: %v", filepath.Join(cpDir, filepath.Base(f.path)), d))
		}
		if s.err != nil {
			damaged = append(damaged, fmt.Sprintf("%s: %v", filepath.Join(cpDir, filepath.Base(f.path)), s.err))
		}
		if i == len(files)-1 {
			// A damaged stretch stands for (at least) one checkpoint.
			c.cur, c.seq, c.size, c.count = f.path, f.seq, end, f.seq+uint64(len(s.ents)+len(dmg))
		}
		if len(s.ents) > 0 {
			return c, append([]byte(nil), s.ents[len(s.ents)-1].data...), damaged, nil
		}
	}
	return c, nil, damaged, nil
}
