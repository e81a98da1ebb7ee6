package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/trailguard/trailguard/internal/regfile"
)

// Closed segments are compressed: seg/<first>.zseg replaces seg/<first>.seg
// and its .idx once the writer has moved on to the next segment. The
// records are cut into blocks of about zBlockSize bytes, each compressed on
// its own (a zstd frame), so a read decodes one block, not the segment:
//
//	header   "TGLZSG1\n" | first index u64 | record count u64 | CRC-32C u32   (28 bytes)
//	blocks   zstd frames, one per block
//	index    per block: offset u64 | compressed length u32 | records u32
//	trailer  index offset u64 | blocks u32 | CRC-32C of the index u32 | "TGLZEND\n"  (24 bytes)
//
// A decoded block holds its records column by column, which compresses
// better than the frames interleaved (the CRC of each frame is noise to the
// compressor): record count uvarint | append times (zigzag varint deltas,
// Unix ns) | lengths uvarint | the records | CRC-32C of all before. Leaf
// hashes are of the records, so the tree, checkpoints and proofs do not
// change; verify decompresses and needs nothing but the public key. The
// block CRC only names damage: every record is checked against its leaf
// hash anyway.

const (
	zMagic       = "TGLZSG1\n"
	zEndMagic    = "TGLZEND\n"
	zHeaderSize  = len(zMagic) + 8 + 8 + 4
	zTrailerSize = 8 + 4 + 4 + len(zEndMagic)
	zIndexEntry  = 8 + 4 + 4
	// zBlockSize bounds a block's decoded size, its columns and CRC
	// included (blockEnd): zstd's largest block, so that each is one
	// zstd block. Larger blocks
	// compress better (demo traffic: 71 B/event at 64 KiB, 59 at 256 KiB)
	// and cost more to decode for one record (~0.1 ms per 128 KiB).
	zBlockSize = 128 << 10
	// zMaxBlock bounds what a reader believes a block decodes to.
	zMaxBlock = maxFrameLen + 1<<20
	// zSmallBlock bounds what a block whose frame does not say its size
	// decodes to (EncodeAll says it from 256 bytes up).
	zSmallBlock = 4 << 10
)

// zBlock is one block of a compressed segment, from its index.
type zBlock struct {
	off   int64
	clen  uint32
	first uint64 // index within the segment of its first record
	count uint32
}

// zIndex is what a reader needs of a compressed segment.
type zIndex struct {
	first  uint64
	count  uint64
	blocks []zBlock
}

var errZseg = errors.New("compressed segment damaged")

// zsegPath is where the compressed form of the segment at path goes.
func zsegPath(path string) string { return strings.TrimSuffix(path, ".seg") + ".zseg" }

// parseZIndex checks a compressed segment's header, trailer and index.
func parseZIndex(f io.ReaderAt, size int64) (*zIndex, error) {
	if size < int64(zHeaderSize+zTrailerSize) {
		return nil, fmt.Errorf("%w: %d bytes", errZseg, size)
	}
	hdr := make([]byte, zHeaderSize)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return nil, err
	}
	if string(hdr[:len(zMagic)]) != zMagic || crc32.Checksum(hdr[:zHeaderSize-4], castagnoli) != binary.BigEndian.Uint32(hdr[zHeaderSize-4:]) {
		return nil, fmt.Errorf("%w: bad header", errZseg)
	}
	z := &zIndex{first: binary.BigEndian.Uint64(hdr[len(zMagic):]), count: binary.BigEndian.Uint64(hdr[len(zMagic)+8:])}
	tr := make([]byte, zTrailerSize)
	if _, err := f.ReadAt(tr, size-int64(zTrailerSize)); err != nil {
		return nil, err
	}
	if string(tr[16:]) != zEndMagic {
		return nil, fmt.Errorf("%w: bad trailer", errZseg)
	}
	ioff, nb := int64(binary.BigEndian.Uint64(tr)), int64(binary.BigEndian.Uint32(tr[8:]))
	if ioff < int64(zHeaderSize) || ioff+nb*int64(zIndexEntry) != size-int64(zTrailerSize) {
		return nil, fmt.Errorf("%w: index at %d for %d blocks does not fit", errZseg, ioff, nb)
	}
	idx := make([]byte, nb*int64(zIndexEntry))
	if _, err := f.ReadAt(idx, ioff); err != nil {
		return nil, err
	}
	if crc32.Checksum(idx, castagnoli) != binary.BigEndian.Uint32(tr[12:]) {
		return nil, fmt.Errorf("%w: index checksum mismatch", errZseg)
	}
	next, n := int64(zHeaderSize), uint64(0)
	for k := range nb {
		e := idx[k*int64(zIndexEntry):]
		b := zBlock{off: int64(binary.BigEndian.Uint64(e)), clen: binary.BigEndian.Uint32(e[8:]), first: n, count: binary.BigEndian.Uint32(e[12:])}
		if b.off != next || b.count == 0 {
			return nil, fmt.Errorf("%w: block %d at %d, want %d", errZseg, k, b.off, next)
		}
		next += int64(b.clen)
		n += uint64(b.count)
		z.blocks = append(z.blocks, b)
	}
	if next != ioff || n != z.count {
		return nil, fmt.Errorf("%w: blocks hold %d records, the header says %d", errZseg, n, z.count)
	}
	return z, nil
}

// block returns the position in z.blocks of the block holding record k.
func (z *zIndex) block(k uint64) int {
	return sort.Search(len(z.blocks), func(i int) bool { return z.blocks[i].first > k }) - 1
}

// zRec is a record of a decoded block.
type zRec struct {
	time int64
	data []byte
}

var (
	zDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(zMaxBlock))
		if err != nil {
			panic(err)
		}
		return d
	})
	// zSmallDecoder decodes the frames that do not say their size: a
	// frame EncodeAll made of fewer than 256 bytes.
	zSmallDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(zSmallBlock))
		if err != nil {
			panic(err)
		}
		return d
	})
	zEncoder = sync.OnceValue(func() *zstd.Encoder {
		// The window first: a window set before the level keeps zstd's
		// largest block (128 KiB) as the block size, which SpeedFastest
		// otherwise lowers to 64 KiB, and each of our blocks
		// (blockEnd) is then one zstd block, encoded without history.
		e, err := zstd.NewWriter(nil, zstd.WithWindowSize(zBlockSize), zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
		if err != nil {
			panic(err)
		}
		return e
	})
)

// decodeBlock decompresses a block and splits it into its records (which
// alias the returned buffer). want is the record count the index gives.
func decodeBlock(comp []byte, want uint32, buf []byte) ([]zRec, []byte, error) {
	raw, err := decodeRaw(comp, want, buf)
	if err != nil {
		return nil, raw, err
	}
	recs, err := splitBlock(raw[:len(raw)-4], want)
	return recs, raw, err
}

// decodeRaw decompresses a block of count records into buf and checks
// its CRC (the last 4 bytes of what it returns).
func decodeRaw(comp []byte, count uint32, buf []byte) ([]byte, error) {
	// A block's frame says what it decodes to (EncodeAll writes the size
	// from 256 bytes up), and a block of more than one record was cut at
	// zBlockSize (blockEnd): a frame that says more is refused before it
	// is decoded, and one that does not say is decoded to zSmallBlock at
	// most. Without this a streamed zstd bomb (no size in its header)
	// decoded to zMaxBlock (65 MiB of zeros from a few KiB) before it
	// failed, in every block: a crafted copy of a ledger held verify for
	// minutes.
	var h zstd.Header
	if err := h.Decode(comp); err != nil {
		return buf[:0], fmt.Errorf("%w: block does not decode: %v", errZseg, err)
	}
	limit := uint64(zMaxBlock)
	if count > 1 {
		limit = zBlockSize
	}
	if h.HasFCS && h.FrameContentSize > limit {
		return buf[:0], fmt.Errorf("%w: block's frame declares %d bytes, a block of %d records decodes to at most %d", errZseg, h.FrameContentSize, count, limit)
	}
	dec := zDecoder()
	if !h.HasFCS {
		// EncodeAll leaves the size out below 256 bytes only.
		dec = zSmallDecoder()
	}
	raw, err := dec.DecodeAll(comp, buf[:0])
	if err != nil {
		return raw, fmt.Errorf("%w: block does not decode: %v", errZseg, err)
	}
	if len(raw) < 5 || crc32.Checksum(raw[:len(raw)-4], castagnoli) != binary.BigEndian.Uint32(raw[len(raw)-4:]) {
		return raw, fmt.Errorf("%w: block checksum mismatch", errZseg)
	}
	return raw, nil
}

func splitBlock(b []byte, want uint32) ([]zRec, error) {
	// A record takes at least 2 bytes (its time and its length): a count
	// from a damaged index allocates no more than the block can hold.
	n := min(uint64(want), uint64(len(b))/2)
	times := make([]int64, 0, n)
	data := make([][]byte, 0, n)
	times, data, err := parseBlock(b, want, times, data)
	if err != nil {
		return nil, err
	}
	recs := make([]zRec, len(data))
	for i := range recs {
		recs[i] = zRec{time: times[i], data: data[i]}
	}
	return recs, nil
}

// parseBlock splits a decoded block (without its CRC) into its records,
// appended to data (aliasing b), and their append times, appended to
// times unless it is nil (verify needs only the records: the times are
// covered by the block's CRC).
func parseBlock(b []byte, want uint32, times []int64, data [][]byte) ([]int64, [][]byte, error) {
	bad := func(what string) ([]int64, [][]byte, error) {
		return times, data, fmt.Errorf("%w: block layout: %s", errZseg, what)
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n != uint64(want) || n > uint64(len(b))/2 {
		return bad("record count")
	}
	b = b[k:]
	t := int64(0)
	for range n {
		d, k := binary.Varint(b)
		if k <= 0 {
			return bad("times")
		}
		if times != nil {
			t += d
			times = append(times, t)
		}
		b = b[k:]
	}
	// The lengths column is read twice (checked, then cut) rather than
	// kept: no allocation per block.
	lens, total := b, uint64(0)
	for range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > maxFrameLen {
			return bad("lengths")
		}
		total += l
		b = b[k:]
	}
	if total != uint64(len(b)) {
		return bad("records")
	}
	for range n {
		l, k := binary.Uvarint(lens)
		lens = lens[k:]
		data = append(data, b[:l:l])
		b = b[l:]
	}
	return times, data, nil
}

// blockEnd returns where the block that starts at recs[i] ends: it takes
// records while its decoded form (encodeBlock's raw) stays within
// zBlockSize, and at least one. The size is exact, not estimated: a raw
// block even a byte over zstd's largest block (128 KiB) is encoded as two
// zstd blocks, the second a few hundred bytes with its own entropy tables,
// and through the encoder's slower path that keeps history between blocks
// (a fifth more CPU per segment than one block, BenchmarkCompressSegment).
func blockEnd(recs []zRec, i int) int {
	// The count's uvarint (at most 3 bytes for what fits) and the CRC.
	size := 3 + 4
	t := int64(0) // encodeBlock's first delta is from 0
	j := i
	for ; j < len(recs); j++ {
		n := varintLen(recs[j].time-t) + uvarintLen(uint64(len(recs[j].data))) + len(recs[j].data)
		if j > i && size+n > zBlockSize {
			break
		}
		size += n
		t = recs[j].time
	}
	return j
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// varintLen is the length of binary.AppendVarint's encoding of x.
func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}

// encodeBlock appends the compressed block of recs to dst.
func encodeBlock(dst []byte, recs []zRec, raw []byte) ([]byte, []byte) {
	raw = binary.AppendUvarint(raw[:0], uint64(len(recs)))
	t := int64(0)
	for _, r := range recs {
		raw = binary.AppendVarint(raw, r.time-t)
		t = r.time
	}
	for _, r := range recs {
		raw = binary.AppendUvarint(raw, uint64(len(r.data)))
	}
	for _, r := range recs {
		raw = append(raw, r.data...)
	}
	raw = binary.BigEndian.AppendUint32(raw, crc32.Checksum(raw, castagnoli))
	return zEncoder().EncodeAll(raw, dst), raw
}

// compactBufs are compressSegment's buffers, kept from one segment to the
// next: a fresh 16 MiB read buffer and 4 MiB output per segment cost more
// CPU in zeroing, copying and garbage collection than zstd's encoder (a
// profile of the Append benchmark, where compaction runs beside the
// appends). stream is the segment's read buffer (segStream), pend the
// records of the block being built; dec, times and data serve the check
// of each block.
type compactBufs struct {
	stream, out, raw, dec []byte
	pend                  []pendRec
	recs                  []zRec
	times                 []int64
	data                  [][]byte
}

// pendRec is a record of the block being built: its time and where its
// bytes are in the stream's buffer.
type pendRec struct {
	time     int64
	off, len int
}

func newCompactBufs() *compactBufs {
	return &compactBufs{out: make([]byte, zHeaderSize, 1<<20)}
}

// compactBufPool serves compressSegment outside a ledger's compactor
// (which keeps its own: Ledger.compactBufs).
var compactBufPool = sync.Pool{New: func() any { return newCompactBufs() }}

// compressSegment writes the compressed form of the closed segment at
// path (first index first, count records) next to it, durably, and
// returns its path. Every frame's CRC is checked on the way in, and each
// block, as soon as it is encoded, is decoded again and compared record by
// record with the segment's frames it was made of, still in the read
// buffer, before the result is renamed into place: a compressed segment
// holds exactly what the segment held.
func compressSegment(path string, first, count uint64) (string, error) {
	return compressSegmentAltered(path, first, count, zAlter{})
}

// zAlter changes a compressed segment while it is built (tests: the check
// must refuse what it breaks). block, if not nil, is given each block's
// compressed bytes before the block is checked; out, if not nil, the
// whole compressed segment before its index is checked.
type zAlter struct {
	block func(bi int, comp []byte) []byte
	out   func([]byte) []byte
}

// compressSegmentAltered is compressSegment with alter.
func compressSegmentAltered(path string, first, count uint64, alter zAlter) (string, error) {
	bufs := compactBufPool.Get().(*compactBufs)
	defer compactBufPool.Put(bufs)
	return compressSegmentWith(bufs, path, first, count, alter)
}

// compressSegmentWith is compressSegmentAltered with bufs.
//
// The segment is read once in a stream through bufs.stream (segStream),
// not mapped and not read whole: its frames are checked and cut into
// blocks, and each block is encoded and checked while its frames are
// still in the stream's buffer. The check walks those frames again from
// the block's first (frameLen, not the offsets the block was built from)
// and compares them with the block decoded, while both are still in the
// CPU's caches. The segment used to be read a second time for the
// comparison (until the twenty-eighth session: docs/performance.md has
// what dropping it saved); all that read added was to notice a closed
// segment changed on disk after the first read, and the bytes kept are
// those the first read checked.
func compressSegmentWith(bufs *compactBufs, path string, first, count uint64, alter zAlter) (string, error) {
	sf, _, err := regfile.Open(path)
	if err != nil {
		return "", err
	}
	defer sf.Close()
	hdr := make([]byte, segHeaderSize)
	hn, err := sf.ReadAt(hdr, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if got, err := parseSegHeader(hdr[:hn]); err != nil || got != first {
		return "", fmt.Errorf("segment %s: bad header (%v)", path, err)
	}
	var s segStream
	s.reset(sf, bufs.stream, int64(segHeaderSize))
	defer func() { bufs.stream = s.buf }()

	out := bufs.out[:zHeaderSize]
	defer func() { bufs.out = out[:0] }()
	copy(out, zMagic)
	binary.BigEndian.PutUint64(out[len(zMagic):], first)
	binary.BigEndian.PutUint64(out[len(zMagic)+8:], count)
	binary.BigEndian.PutUint32(out[zHeaderSize-4:], crc32.Checksum(out[:zHeaderSize-4], castagnoli))
	var index []byte
	raw := bufs.raw
	pend, recs := bufs.pend[:0], bufs.recs[:0]
	defer func() { clear(recs); bufs.recs, bufs.pend = recs[:0], pend[:0] }()
	if bufs.times == nil {
		bufs.times = make([]int64, 0, 1024) // nil would skip the times
	}
	k := uint64(0) // records checked
	// check decodes the block comp, as a reader will (block checksum,
	// layout), and compares it with the frames in s.buf[from:to].
	check := func(comp []byte, want int, from, to int) error {
		dec, err := decodeRaw(comp, uint32(want), bufs.dec)
		if cap(dec) > cap(bufs.dec) {
			bufs.dec = dec[:0]
		}
		if err != nil {
			return err
		}
		times, data, err := parseBlock(dec[:len(dec)-4], uint32(want), bufs.times[:0], bufs.data[:0])
		bufs.times, bufs.data = times[:0], data[:0]
		defer clear(data)
		if err != nil {
			return err
		}
		p := from
		for i := range data {
			// (Checked on the way in: here the bytes are compared.)
			n, err := frameLen(s.buf[p:to], maxFrameLen)
			if err != nil || n > to-p {
				return fmt.Errorf("the block's frames end before record %d", first+k)
			}
			t, rec := decodeFrameUnchecked(s.buf[p:], n)
			if times[i] != t || !bytes.Equal(data[i], rec) {
				return fmt.Errorf("record %d does not survive compression", first+k)
			}
			p += n
			k++
		}
		if p != to {
			return fmt.Errorf("frames after record %d are not in its block", first+k)
		}
		return nil
	}
	// encode appends the block of the pending records, whose frames are
	// s.buf[from:to], to out, and checks it.
	encode := func(from, to int) error {
		recs = recs[:0]
		for _, p := range pend {
			recs = append(recs, zRec{time: p.time, data: s.buf[p.off : p.off+p.len]})
		}
		start := len(out)
		out, raw = encodeBlock(out, recs, raw)
		if alter.block != nil {
			out = append(out[:start], alter.block(len(index)/zIndexEntry, slices.Clone(out[start:]))...)
		}
		if err := check(out[start:], len(recs), from, to); err != nil {
			return err
		}
		index = binary.BigEndian.AppendUint64(index, uint64(start))
		index = binary.BigEndian.AppendUint32(index, uint32(len(out)-start))
		index = binary.BigEndian.AppendUint32(index, uint32(len(recs)))
		pend = pend[:0]
		return nil
	}
	// The block being built: its decoded size so far and its last
	// record's time, as blockEnd counts them (the same blocks), and where
	// its first frame is in the stream's buffer (kept there until the
	// block is encoded and checked).
	size, last, keep := 3+4, int64(0), 0
	n := uint64(0)
	for {
		at := s.pos()
		t, rec, moved, end, err := s.next(keep, true)
		if moved > 0 {
			keep -= moved
			for i := range pend {
				pend[i].off -= moved
			}
		}
		if err != nil {
			return "", fmt.Errorf("segment %s offset %d: %w", path, at, err)
		}
		if end {
			break
		}
		n++
		off := s.r - len(rec) - 4
		sz := varintLen(t-last) + uvarintLen(uint64(len(rec))) + len(rec)
		if len(pend) > 0 && size+sz > zBlockSize {
			if err := encode(keep, off-frameHeader); err != nil {
				return "", fmt.Errorf("compressing %s: %w", path, err)
			}
			size, last, keep = 3+4, 0, off-frameHeader
			sz = varintLen(t) + uvarintLen(uint64(len(rec))) + len(rec)
		}
		size += sz
		last = t
		pend = append(pend, pendRec{t, off, len(rec)})
	}
	if n != count {
		return "", fmt.Errorf("segment %s holds %d records, want %d", path, n, count)
	}
	if len(pend) > 0 {
		if err := encode(keep, s.r); err != nil {
			return "", fmt.Errorf("compressing %s: %w", path, err)
		}
	}
	bufs.raw = raw
	ioff := len(out)
	out = append(out, index...)
	out = binary.BigEndian.AppendUint64(out, uint64(ioff))
	out = binary.BigEndian.AppendUint32(out, uint32(len(index)/zIndexEntry))
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(index, castagnoli))
	out = append(out, zEndMagic...)
	if alter.out != nil {
		out = alter.out(out)
	}

	// The index, header and trailer as a reader parses them, and the
	// blocks they name are those checked.
	z, err := parseZIndex(bytes.NewReader(out), int64(len(out)))
	if err != nil {
		return "", fmt.Errorf("compressing %s: %w", path, err)
	}
	if k != n || z.count != n || len(z.blocks)*zIndexEntry != len(index) {
		return "", fmt.Errorf("compressing %s: %d of %d records in the compressed form", path, k, n)
	}
	for i, b := range z.blocks {
		e := index[i*zIndexEntry:]
		if b.off != int64(binary.BigEndian.Uint64(e)) || b.clen != binary.BigEndian.Uint32(e[8:]) || b.count != binary.BigEndian.Uint32(e[12:]) {
			return "", fmt.Errorf("compressing %s: block %d is not where it was written", path, i)
		}
	}

	zpath := zsegPath(path)
	tmp := zpath + ".tmp"
	f, err := createFresh(tmp, os.O_WRONLY) // (plant.go)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(out); err != nil {
		f.Close()
		os.Remove(tmp)
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := os.Rename(tmp, zpath); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return zpath, nil
}

// blockCache keeps recently decoded blocks for random reads (the index
// reads each search hit from the ledger; hits close in time share blocks).
type blockCache struct {
	mu    sync.Mutex
	max   int
	items map[blockKey]*cachedBlock
	order []blockKey // least recently used first
}

type blockKey struct {
	seg   uint64
	block int
}

type cachedBlock struct {
	recs []zRec
}

// zCacheBlocks bounds the decoded blocks kept (about 4 MiB at 128 KiB).
const zCacheBlocks = 32

func newBlockCache(n int) *blockCache {
	return &blockCache{max: n, items: map[blockKey]*cachedBlock{}}
}

func (c *blockCache) get(k blockKey) []zRec {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.items[k]
	if !ok {
		return nil
	}
	for i, o := range c.order {
		if o == k {
			c.order = append(append(c.order[:i:i], c.order[i+1:]...), k)
			break
		}
	}
	return b.recs
}

func (c *blockCache) put(k blockKey, recs []zRec) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok {
		return
	}
	if len(c.order) >= c.max {
		delete(c.items, c.order[0])
		c.order = c.order[1:]
	}
	c.items[k] = &cachedBlock{recs: recs}
	c.order = append(c.order, k)
}

// drop forgets the blocks of segment seg (pruned).
func (c *blockCache) drop(seg uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := c.order[:0]
	for _, k := range c.order {
		if k.seg == seg {
			delete(c.items, k)
		} else {
			keep = append(keep, k)
		}
	}
	c.order = keep
}

// wakeCompactor tells compactLoop there is work.
func (l *Ledger) wakeCompactor() {
	select {
	case l.compactWake <- struct{}{}:
	default:
	}
}

// queueCompaction hands closed, durable segments to the compactor.
func (l *Ledger) queueCompaction(segs []*segment) {
	if l.opts.DisableCompression || len(segs) == 0 {
		return
	}
	l.compactMu.Lock()
	l.compactQ = append(l.compactQ, segs...)
	l.compactMu.Unlock()
	l.wakeCompactor()
}

// countClosed counts a segment the writer closes (sequencer, at the
// rotation) in the backlog the write stall bounds, until it is compressed:
// from the moment it is closed, so that the segments still being made
// durable count too.
func (l *Ledger) countClosed(s *segment) {
	if l.opts.DisableCompression {
		return
	}
	l.compactMu.Lock()
	if !s.counted {
		s.counted = true
		l.backlog.Add(1)
	}
	l.compactMu.Unlock()
}

// uncountClosed undoes countClosed for a rotation rolled back (the
// segment is the active one again, or removed).
func (l *Ledger) uncountClosed(s *segment) {
	l.compactMu.Lock()
	if s.counted {
		s.counted = false
		l.backlog.Add(-1)
	}
	l.compactMu.Unlock()
}

// errCompactLater: not enough free space beyond Options.Reserve for the
// compressed copy now.
var errCompactLater = errors.New("ledger: no room beyond the reserve for a compressed copy; later")

// compactIdle is how long the writer must have been idle before the
// compactor starts on a segment (unless the backlog passes
// Options.CompactBacklog).
const compactIdle = 200 * time.Millisecond

// nextCompaction takes the next segment to compress from the queue:
// segments this writer closed first (the write stall waits for them), then
// those found uncompressed at Open, oldest first.
func (l *Ledger) nextCompaction() *segment {
	l.compactMu.Lock()
	defer l.compactMu.Unlock()
	k := slices.IndexFunc(l.compactQ, func(s *segment) bool { return s.counted })
	if k < 0 {
		k = 0
	}
	s := l.compactQ[k]
	l.compactQ = slices.Delete(l.compactQ, k, k+1)
	return s
}

// compactDone ends s's compaction: done (compressed, pruned, or failed
// for good: it stays as written) or deferred for lack of room (back in the
// queue, and the writer stops waiting for it). A stalled writer is woken.
func (l *Ledger) compactDone(s *segment, deferred bool) {
	l.compactMu.Lock()
	if deferred {
		l.compactQ = append(l.compactQ, s)
	} else if s.counted {
		s.counted = false
		l.backlog.Add(-1)
	}
	l.compactStuck.Store(deferred)
	close(l.compactProgress)
	l.compactProgress = make(chan struct{})
	l.compactMu.Unlock()
}

// waitCompaction is the write stall (sequencer, before writing a batch):
// while 2 × Options.CompactBacklog closed segments wait uncompressed, it
// waits for the compactor (which runs flat out past CompactBacklog),
// unless the compactor has no room for its copies or the ledger stops.
func (l *Ledger) waitCompaction() {
	limit := int64(2 * l.opts.CompactBacklog)
	if l.opts.DisableCompression || l.backlog.Load() < limit {
		return
	}
	l.compactStalls.Add(1)
	idle := 0
	for {
		l.compactMu.Lock()
		wake := l.compactProgress
		queued := len(l.compactQ)
		l.compactMu.Unlock()
		if l.backlog.Load() < limit || l.compactStuck.Load() {
			return
		}
		// Segments closed here reach the queue within a sync; a queue
		// empty for seconds while the count says otherwise is a counting
		// fault: the writer goes on rather than wait for ever.
		if queued == 0 && !l.compacting.Load() {
			if idle++; idle > 3 {
				l.opts.Logger.Error("ledger: write stall ended: closed segments counted but none waits for the compactor", "dir", l.dir, "counted", l.backlog.Load())
				return
			}
		} else {
			idle = 0
		}
		select {
		case <-wake:
		case <-time.After(time.Second):
		case <-l.stop:
			return
		}
	}
}

// compactLoop compresses closed segments one at a time, in the background.
func (l *Ledger) compactLoop() {
	defer l.bg.Done()
	for {
		select {
		case <-l.stop:
			return
		case <-l.compactWake:
		}
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			l.compactMu.Lock()
			backlog := len(l.compactQ)
			l.compactMu.Unlock()
			if backlog == 0 {
				break
			}
			// Compression costs about as much CPU per record as appending
			// it: while records arrive, it waits (they get the cores),
			// unless the backlog grows past Options.CompactBacklog.
			// (A stalled writer is not busy: it waits for this.)
			stalled := l.backlog.Load() >= int64(2*l.opts.CompactBacklog)
			if busy := time.Since(time.Unix(0, l.lastWrite.Load())) < compactIdle; busy && backlog <= l.opts.CompactBacklog && !stalled {
				select {
				case <-l.stop:
					return
				case <-time.After(compactIdle / 2):
				}
				continue
			}
			s := l.nextCompaction()
			l.compacting.Store(true)
			err := l.compact(s)
			l.compacting.Store(false)
			later := err != nil && (errors.Is(err, errCompactLater) || isNoSpace(err))
			l.compactDone(s, later)
			if err != nil && !later {
				l.opts.Logger.Error("ledger: segment not compressed (it stays as written)", "dir", l.dir, "first", s.first, "err", err)
				continue
			}
			if later {
				// No room for the compressed copy yet (it would take
				// space kept for checkpoints): again later.
				select {
				case <-l.stop:
					return
				case <-time.After(time.Second):
				}
			}
		}
	}
}

// compact replaces a closed segment by its compressed form: the .zseg is
// durable (file and directory) before the segment's readers switch to it
// and the .seg and .idx are removed, so a crash at any point leaves one
// complete form (both, at worst: Open keeps the .zseg).
func (l *Ledger) compact(s *segment) error {
	// Retention must not delete the segment under the compactor.
	l.pruneMu.Lock()
	defer l.pruneMu.Unlock()
	if s.rdr.Load() {
		return nil // pruned, or the ledger closed
	}
	path, z := s.source()
	if z != nil {
		return nil
	}
	if h := l.opts.compactHook; h != nil {
		if err := h(); err != nil {
			return err
		}
	}
	// The compressed copy exists beside the segment until it replaces it:
	// never in the space Options.Reserve keeps for checkpoints.
	if st, err := os.Stat(path); err == nil && l.opts.Reserve > 0 {
		if free := FreeBytes(l.dir); free >= 0 && free-st.Size() < l.opts.Reserve {
			return errCompactLater
		}
	}
	if l.compactBufs == nil {
		// Kept by the compactor, not in the pool (which garbage
		// collection empties): its read buffer is touched once.
		l.compactBufs = newCompactBufs()
	}
	zpath, err := compressSegmentWith(l.compactBufs, path, s.first, s.count.Load(), zAlter{})
	if err != nil {
		return err
	}
	if err := syncFile(l.segDir); err != nil {
		return err
	}
	z, err = readZIndex(zpath)
	if err != nil {
		return err
	}
	old := s.compressed(zpath, z)
	if err := os.Remove(old); err != nil {
		return err
	}
	os.Remove(idxPath(old))
	if err := syncFile(l.segDir); err != nil {
		return err
	}
	if h := l.opts.trimHook; h != nil {
		h()
	}
	// The .zseg is durable: its records now determine their leaf hashes.
	if err := l.tiles.punchLeaves(s.first, s.first+s.count.Load()); err != nil {
		l.opts.Logger.Warn("ledger: leaf hashes of a compressed segment kept", "dir", l.dir, "first", s.first, "err", err)
	}
	return nil
}

// trimLeaves punches out the stored level-0 hashes of every compressed
// segment (derived.go); ranges already punched cost a system call each.
func (l *Ledger) trimLeaves() {
	l.segMu.RLock()
	segs := slices.Clone(l.segs)
	l.segMu.RUnlock()
	for _, s := range segs {
		if _, z := s.source(); z == nil {
			continue
		}
		if err := l.tiles.punchLeaves(s.first, s.first+s.count.Load()); err != nil {
			l.opts.Logger.Warn("ledger: leaf hashes of compressed segments kept", "dir", l.dir, "first", s.first, "err", err)
			return
		}
	}
}
