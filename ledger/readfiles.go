package ledger

import (
	"os"
	"slices"
	"sync"

	"github.com/trailguard/trailguard/internal/regfile"
)

// maxReadFiles bounds the read handles the segments keep open between
// reads, segment and .idx files together. Each segment kept its own
// handles open from its first read until it was pruned or the ledger
// closed: reading a year of 16 MiB segments (the index's rebuild, an
// export, proofs of old records) left hundreds of descriptors open, taken
// from the budget the collector shares with its connections
// (internal/connlimit keeps max(limit/8, 64) of it for the process's own
// files: the ledger's writer, tiles and checkpoint log, the index's
// SQLite, the spool and outputs). 32 covers the readers that work at the
// same time, the followers near the newest segment and a few random reads
// (proofs, the UI); another costs one open(2).
const maxReadFiles = 32

// readFiles is the ledger's set of open segment read handles, at most max
// of them idle: beyond that the least recently used idle one is closed. A
// handle in use by a reader is never closed under it, but closed when the
// last reader gives it back once it was evicted or its segment was
// compressed, pruned or closed. So the descriptors the ledger holds for
// reading are at most max plus one or two per read in progress.
type readFiles struct {
	mu   sync.Mutex
	max  int
	tick uint64
	open []*readFile // in the set: in use or idle
}

func newReadFiles(max int) *readFiles { return &readFiles{max: max} }

// A readFile is an open read handle of one of a segment's files.
type readFile struct {
	f    *os.File
	path string
	refs int    // readers using it (readFiles.mu)
	used uint64 // when it was last given back (readFiles.tick)
	// slot is the segment's field that points at it while it is in the
	// set, nil once it was dropped from it (closed at the last release).
	slot **readFile
	c    *readFiles // nil: not in any set, closed at release
}

// acquire returns the open handle of path for the segment's slot, opening
// it if need be; closed is the segment's closed-for-reading flag. Give
// it back with release. With a nil set, every acquire opens the file.
func (c *readFiles) acquire(slot **readFile, path string, closed func() bool) (*readFile, error) {
	if c != nil {
		c.mu.Lock()
		if h := *slot; h != nil && h.path == path {
			h.refs++
			c.mu.Unlock()
			return h, nil
		}
		c.mu.Unlock()
	}
	f, _, err := regfile.Open(path)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return &readFile{f: f, path: path, refs: 1}, nil
	}
	c.mu.Lock()
	if closed() {
		// The segment was closed for reading since the caller looked:
		// its handles must not stay open (a pruned file's space is
		// freed only once its last descriptor closes).
		c.mu.Unlock()
		f.Close()
		return nil, errSegmentClosed
	}
	if h := *slot; h != nil && h.path == path { // another reader opened it meanwhile
		h.refs++
		c.mu.Unlock()
		f.Close()
		return h, nil
	}
	var victims []*os.File
	if old := *slot; old != nil { // another file of the segment (compressed)
		victims = c.drop(old, victims)
	}
	h := &readFile{f: f, path: path, refs: 1, slot: slot, c: c}
	*slot = h
	c.open = append(c.open, h)
	victims = c.evict(victims)
	c.mu.Unlock()
	closeAll(victims)
	return h, nil
}

// release gives back a handle acquire returned.
func (h *readFile) release() {
	c := h.c
	if c == nil {
		h.f.Close()
		return
	}
	var victims []*os.File
	c.mu.Lock()
	h.refs--
	c.tick++
	h.used = c.tick
	if h.refs == 0 {
		if h.slot == nil { // dropped while in use
			victims = append(victims, h.f)
		} else {
			victims = c.evict(victims)
		}
	}
	c.mu.Unlock()
	closeAll(victims)
}

// forget drops the handles in slots from the set (their segment was
// compressed, pruned or closed): idle ones are closed now, ones in use
// when their last reader gives them back.
func (c *readFiles) forget(slots ...**readFile) {
	var victims []*os.File
	c.mu.Lock()
	for _, slot := range slots {
		if h := *slot; h != nil {
			victims = c.drop(h, victims)
		}
	}
	c.mu.Unlock()
	closeAll(victims)
}

// drop removes h from the set, adding its file to victims if no reader
// uses it (c.mu held).
func (c *readFiles) drop(h *readFile, victims []*os.File) []*os.File {
	if i := slices.Index(c.open, h); i >= 0 {
		c.open[i] = c.open[len(c.open)-1]
		c.open[len(c.open)-1] = nil
		c.open = c.open[:len(c.open)-1]
	}
	if *h.slot == h {
		*h.slot = nil
	}
	h.slot = nil
	if h.refs == 0 {
		victims = append(victims, h.f)
	}
	return victims
}

// evict drops the least recently used idle handles while more than max
// are in the set (c.mu held). In-use handles stay: the set may hold more
// than max while that many are in use.
func (c *readFiles) evict(victims []*os.File) []*os.File {
	for len(c.open) > c.max {
		var lru *readFile
		for _, h := range c.open {
			if h.refs == 0 && (lru == nil || h.used < lru.used) {
				lru = h
			}
		}
		if lru == nil {
			break
		}
		victims = c.drop(lru, victims)
	}
	return victims
}

// count returns how many handles are in the set (tests).
func (c *readFiles) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.open)
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
