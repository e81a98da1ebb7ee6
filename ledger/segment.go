package ledger

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailguard/trailguard/internal/regfile"
)

// A segment is one file of records, seg/<first index, 20 digits>.seg, with
// its index seg/<first>.idx: 16 bytes per record (frame offset, append
// time in Unix ns). The .idx is derived data: it is rebuilt from the
// segment whenever it does not match.
type segment struct {
	first uint64
	count atomic.Uint64 // records written (readers also bound by Size)
	path  string

	// files are the read handles of the segment and its .idx while they
	// are in the ledger's set (readFiles.mu), which fds is once a handle
	// was opened.
	files [2]*readFile
	fds   atomic.Pointer[readFiles]

	mu  sync.Mutex
	mem []idxEntry // in-memory index, from scanning the segment itself
	// memAll means mem holds every record (read-only opens of segments
	// past the newest checkpoint); otherwise records past mem are looked
	// up in the .idx file.
	memAll bool
	warned bool        // a damaged .idx was reported
	rdr    atomic.Bool // closed for reading (pruned or ledger closed)

	// z is the block index once the segment is compressed (path is then
	// the .zseg); zerr says why a .zseg could not be read.
	z    *zIndex
	zerr error
	// leftover is a second file of the same segment (a .seg whose .zseg
	// was completed by a compaction that crashed before removing it, or a
	// damaged .zseg beside its .seg): the writer removes it at Open.
	leftover string
	// swap is held for reading while a handle of the uncompressed file
	// is in use, and for writing while the compactor replaces it.
	swap sync.RWMutex
	// counted: closed by this writer and counted in Ledger.backlog until
	// compressed (compactMu).
	counted bool
}

type idxEntry struct {
	off  int64
	time int64
}

const idxEntrySize = 16

func segName(first uint64) string { return fmt.Sprintf("%020d.seg", first) }

func idxPath(segPath string) string { return strings.TrimSuffix(segPath, ".seg") + ".idx" }

func appendIdx(b []byte, off, t int64) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(off))
	return binary.BigEndian.AppendUint64(b, uint64(t))
}

// listSegments returns the segments in dir, ordered by first index. A
// segment is <first>.seg (with its .idx) or, once compressed, <first>.zseg.
// When both exist (a compaction that crashed before removing the .seg),
// the .zseg is used if it reads, else the .seg.
func listSegments(dir string) ([]*segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	byFirst := map[uint64]*segment{}
	var segs []*segment
	for _, e := range ents {
		name := e.Name()
		base, zipped := strings.CutSuffix(name, ".zseg")
		if !zipped {
			var ok bool
			if base, ok = strings.CutSuffix(name, ".seg"); !ok {
				continue
			}
		}
		if len(base) != 20 {
			continue
		}
		first, err := strconv.ParseUint(base, 10, 64)
		if err != nil {
			continue
		}
		p := filepath.Join(dir, name)
		s := byFirst[first]
		if s == nil {
			s = &segment{first: first}
			byFirst[first] = s
			segs = append(segs, s)
		}
		if !zipped {
			if s.path == "" {
				s.path = p
			} else {
				s.leftover = p // the .zseg came first and won
			}
			continue
		}
		z, zerr := readZIndex(p)
		if zerr == nil && z.first != first {
			zerr = fmt.Errorf("%w: header says first index %d", errZseg, z.first)
		}
		switch {
		case zerr == nil && s.path != "":
			s.leftover, s.path, s.z = s.path, p, z
		case zerr == nil:
			s.path, s.z = p, z
		case s.path != "":
			s.leftover = p
		default:
			s.path, s.zerr = p, zerr
		}
	}
	for _, s := range segs {
		if s.path == "" { // only a damaged .zseg next to nothing: keep it visible
			s.path = s.leftover
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].first < segs[j].first })
	return segs, nil
}

// readZIndex reads the block index of a compressed segment file.
func readZIndex(path string) (*zIndex, error) {
	f, st, err := regfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseZIndex(f, st.Size())
}

// scanResult describes the valid prefix of a segment file.
type scanResult struct {
	entries []idxEntry
	end     int64 // offset just past the last valid frame
	size    int64 // file size
	err     error // why scanning stopped before size (errTorn / errCorrupt), nil at a clean end
}

// scanSegment reads every frame of a segment, checking each CRC, and stops
// at the first frame that is torn or damaged.
func scanSegment(path string, first uint64, maxLen int) (scanResult, error) {
	f, st, err := regfile.Open(path)
	if err != nil {
		return scanResult{}, err
	}
	defer f.Close()
	res := scanResult{size: st.Size()}
	br := bufio.NewReaderSize(f, 1<<20)
	hdr := make([]byte, segHeaderSize)
	if _, err := io.ReadFull(br, hdr); err != nil {
		res.err = errTorn
		return res, nil
	}
	got, err := parseSegHeader(hdr)
	if err != nil {
		res.err = err
		return res, nil
	}
	if got != first {
		res.err = fmt.Errorf("%w: header says first index %d, name says %d", errCorrupt, got, first)
		return res, nil
	}
	off := int64(segHeaderSize)
	res.end = off
	buf := make([]byte, 0, 4096)
	for off < res.size {
		h, err := br.Peek(frameHeader)
		if err != nil {
			res.err = errTorn
			break
		}
		n, err := frameLen(h, maxLen)
		if err != nil {
			res.err = err
			break
		}
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			res.err = errTorn
			break
		}
		t, _, _, err := decodeFrame(buf, maxLen)
		if err != nil {
			res.err = err
			break
		}
		res.entries = append(res.entries, idxEntry{off: off, time: t})
		off += int64(n)
		res.end = off
	}
	return res, nil
}

func writeIdx(path string, entries []idxEntry) error {
	b := make([]byte, 0, len(entries)*idxEntrySize)
	for _, e := range entries {
		b = appendIdx(b, e.off, e.time)
	}
	// Derived data: whatever is at the name is replaced, never written
	// through (plant.go).
	return writeFresh(path, b, false)
}

var errSegmentClosed = errors.New("segment closed")

// handle returns a read handle of the segment's file, or with idx of its
// .idx, from the set fds (readfiles.go), opened if it holds none. The
// caller holds s.swap for reading, and gives the handle back (release).
func (s *segment) handle(fds *readFiles, idx bool) (*readFile, error) {
	if s.rdr.Load() {
		return nil, errSegmentClosed
	}
	p, k := s.path, 0
	if idx {
		p, k = idxPath(s.path), 1
	}
	if fds != nil && s.fds.Load() == nil {
		// Before the set is checked for closeRead: one of the two sees
		// the other (closeRead stores rdr, then loads fds).
		s.fds.Store(fds)
	}
	return fds.acquire(&s.files[k], p, s.rdr.Load)
}

// forgetFiles drops the segment's read handles from the ledger's set:
// closed now, or by the last reader using them.
func (s *segment) forgetFiles() {
	if fds := s.fds.Load(); fds != nil {
		fds.forget(&s.files[0], &s.files[1])
	}
}

func (s *segment) closeRead() {
	s.rdr.Store(true)
	s.forgetFiles()
}

// entry returns the index entry of record first+k: from memory if the
// segment was scanned, else from the .idx file (derived data: readers
// check what they read against the leaf hash).
func (s *segment) entry(k uint64, fds *readFiles) (idxEntry, error) {
	s.mu.Lock()
	if k < uint64(len(s.mem)) {
		e := s.mem[k]
		s.mu.Unlock()
		return e, nil
	}
	all := s.memAll
	s.mu.Unlock()
	if all {
		return idxEntry{}, io.ErrUnexpectedEOF
	}
	ri, err := s.handle(fds, true)
	if err != nil {
		return idxEntry{}, err
	}
	defer ri.release()
	var b [idxEntrySize]byte
	if _, err := ri.f.ReadAt(b[:], int64(k)*idxEntrySize); err != nil {
		return idxEntry{}, fmt.Errorf("index entry %d: %w", s.first+k, err)
	}
	return idxEntry{off: int64(binary.BigEndian.Uint64(b[:])), time: int64(binary.BigEndian.Uint64(b[8:]))}, nil
}

// read returns record first+k, checking its frame (or, compressed, its
// block), through cache for compressed blocks and with handles from fds.
func (s *segment) read(k uint64, maxLen int, cache *blockCache, fds *readFiles) (Entry, error) {
	s.swap.RLock()
	defer s.swap.RUnlock()
	if s.z != nil {
		if k >= s.z.count {
			return Entry{}, fmt.Errorf("record %d: %w", s.first+k, io.ErrUnexpectedEOF)
		}
		bi := s.z.block(k)
		recs, err := s.zrecs(bi, cache, fds)
		if err != nil {
			return Entry{}, err
		}
		r := recs[k-s.z.blocks[bi].first]
		return Entry{Index: s.first + k, Time: time.Unix(0, r.time), Data: r.data}, nil
	}
	e, err := s.entry(k, fds)
	if err != nil {
		return Entry{}, err
	}
	rf, err := s.handle(fds, false)
	if err != nil {
		return Entry{}, err
	}
	defer rf.release()
	var hdr [frameHeader]byte
	if _, err := rf.f.ReadAt(hdr[:], e.off); err != nil {
		return Entry{}, fmt.Errorf("record %d: %w", s.first+k, err)
	}
	n, err := frameLen(hdr[:], maxLen)
	if err != nil {
		return Entry{}, fmt.Errorf("record %d: %w", s.first+k, err)
	}
	buf := make([]byte, n)
	if _, err := rf.f.ReadAt(buf, e.off); err != nil {
		return Entry{}, fmt.Errorf("record %d: %w", s.first+k, err)
	}
	t, rec, _, err := decodeFrame(buf, maxLen)
	if err != nil {
		return Entry{}, fmt.Errorf("record %d: %w", s.first+k, err)
	}
	return Entry{Index: s.first + k, Time: time.Unix(0, t), Data: rec}, nil
}

// zrecs returns the decoded records of block bi of a compressed segment,
// from cache if it holds them (and then into it). The caller holds
// s.swap for reading.
func (s *segment) zrecs(bi int, cache *blockCache, fds *readFiles) ([]zRec, error) {
	key := blockKey{s.first, bi}
	if cache != nil {
		if recs := cache.get(key); recs != nil {
			return recs, nil
		}
	}
	b := s.z.blocks[bi]
	f, err := s.handle(fds, false)
	if err != nil {
		return nil, err
	}
	comp := make([]byte, b.clen)
	_, err = f.f.ReadAt(comp, b.off)
	f.release()
	if err != nil {
		return nil, fmt.Errorf("segment %s block %d: %w", s.path, bi, err)
	}
	recs, _, err := decodeBlock(comp, b.count, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: segment %s block %d (records %d to %d): %w", ErrCorrupt, s.path, bi, s.first+b.first, s.first+b.first+uint64(b.count)-1, err)
	}
	if cache != nil {
		cache.put(key, recs)
	}
	return recs, nil
}

// compressed swaps the segment's uncompressed files for its compressed
// form (the compactor), once no reader uses their handles.
func (s *segment) compressed(zpath string, z *zIndex) (old string) {
	s.swap.Lock()
	defer s.swap.Unlock()
	s.forgetFiles() // (a reader between blocks closes its own at release)
	s.mu.Lock()
	defer s.mu.Unlock()
	old = s.path
	s.path, s.z, s.mem, s.memAll = zpath, z, nil, false
	return old
}

// refresh follows a compaction done by another process (a read-only
// ledger beside a running writer): if the segment's .seg is gone and a
// .zseg of the same records is there, the segment reads that from now on.
func (s *segment) refresh() bool {
	path, z := s.source()
	if z != nil || !strings.HasSuffix(path, ".seg") {
		return false
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		return false
	}
	zpath := zsegPath(path)
	zi, err := readZIndex(zpath)
	if err != nil || zi.first != s.first || zi.count < s.count.Load() {
		return false
	}
	s.compressed(zpath, zi)
	return true
}

// source returns the segment's file and block index as they are now.
func (s *segment) source() (string, *zIndex) {
	s.swap.RLock()
	defer s.swap.RUnlock()
	return s.path, s.z
}

// trimMem forgets scanned positions of records k and later (rolled back).
func (s *segment) trimMem(k uint64) {
	s.mu.Lock()
	if k < uint64(len(s.mem)) {
		s.mem = s.mem[:k]
	}
	s.mu.Unlock()
}

// rescan finds the records by reading the segment itself, frame by frame,
// when a read through the .idx did not give the record it should: from
// then on this process uses the scan (and the .idx only for records
// appended later). It reports whether it was the first time.
func (s *segment) rescan() (bool, error) {
	path, z := s.source()
	if z != nil {
		return false, fmt.Errorf("compressed segment %s does not hold the record the tree says", path)
	}
	res, err := scanSegment(path, s.first, maxFrameLen)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mem = res.entries
	first := !s.warned
	s.warned = true
	return first, nil
}
