package index

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Layout. The index keeps no row per event: records are grouped in blocks
// of blockSize consecutive ledger indexes (block b holds [b·blockSize,
// (b+1)·blockSize)), and each block stores its column values column by
// column, each column a zstd frame of its own in table cols (key
// b·32 + column; the writer's last block, until it is full, may hold a
// frame per batch one after the other: block.store), so that a query
// decodes only the columns it reads: a
// count of 401s per minute reads the time, flags and status columns, ~3
// bytes per event before compression. Table blocks holds each block's first
// index, count, the first index not pruned and its time range, so that
// queries skip blocks outside their range. The ids table maps keyed hashes
// of event.id and http.request.id to ledger indexes (the lookups that must
// stay fast at any size).
const defaultBlockSize = 4096

// blockSize is defaultBlockSize; tests make it small so that every query
// crosses blocks.
var blockSize uint64 = defaultBlockSize

// Block columns.
const (
	cTS     = 0                             // @timestamp, unix ns: varint deltas
	cFlags  = 1                             // flag bits per record
	cTerm0  = 2                             // term fields fAction..fAgent: uvarint term number + 1 (0: absent)
	cStatus = cTerm0 + fAgent - fAction + 1 // status codes of the records with flStatus: varints
	cSIP    = cStatus + 1                   // addresses: 0 absent, 4 + 4 bytes, 6 + 16 bytes
	cCIP    = cSIP + 1
	nCols   = cCIP + 1
)

// colKey is the cols table key of column c of block blk.
func colKey(blk uint64, c int) int64 { return int64(blk)<<5 | int64(c) }

// Flag bits of a record.
const (
	flOdd    = 1 << iota // the columns do not say everything (see extracted.odd)
	flEID                // has an event.id (in the ids table)
	flRID                // has an http.request.id
	flStatus             // has a status code
	flAbsent             // no record here: pruned before it was indexed
)

// block is the columns of one block, those loaded.
type block struct {
	blk   uint64
	first uint64 // ledger index of row 0
	lo    uint64 // rows below lo were pruned
	n     int
	tmin  int64
	tmax  int64
	have  [nCols]bool
	ts    []int64
	flags []byte
	terms [cStatus - cTerm0][]uint32
	stat  []int64 // by row; 0 where !flStatus
	ip    [2][]netip.Addr

	// The writer's last block: each column as stored (zstd frames) for
	// its rows below framed, and how many frames a column has. A batch
	// that adds rows to the block appends a frame of its rows to each
	// column instead of encoding the block again (see store).
	frames  [nCols][]byte
	framed  int
	nframes int
}

// idx is the ledger index of row i.
func (b *block) idx(i int) uint64 { return b.first + uint64(i) }

// present reports whether row i stands for a record still in the ledger.
func (b *block) present(i int) bool { return b.flags[i]&flAbsent == 0 && b.idx(i) >= b.lo }

// appendRow adds the columns of a record (or an absent one, c == nil).
func (b *block) appendRow(c *cols, termNums *[nFields]uint32) {
	b.n++
	if c == nil {
		b.ts = append(b.ts, 0)
		b.flags = append(b.flags, flAbsent)
		for j := range b.terms {
			b.terms[j] = append(b.terms[j], 0)
		}
		b.stat = append(b.stat, 0)
		b.ip[0] = append(b.ip[0], netip.Addr{})
		b.ip[1] = append(b.ip[1], netip.Addr{})
		return
	}
	var fl byte
	if c.odd {
		fl |= flOdd
	}
	if c.has[fEventID] {
		fl |= flEID
	}
	if c.has[fRequestID] {
		fl |= flRID
	}
	if c.has[fStatus] {
		fl |= flStatus
	}
	// The time range covers present rows only; a new block starts with
	// an empty one (tmin > tmax).
	b.tmin, b.tmax = min(b.tmin, c.ts), max(b.tmax, c.ts)
	b.ts = append(b.ts, c.ts)
	b.flags = append(b.flags, fl)
	for f := fAction; f <= fAgent; f++ {
		b.terms[f-fAction] = append(b.terms[f-fAction], termNums[f])
	}
	b.stat = append(b.stat, c.status)
	for k := range 2 {
		a := netip.Addr{}
		if c.has[fSourceIP+k] {
			a = c.ip[k]
		}
		b.ip[k] = append(b.ip[k], a)
	}
}

// newBlock is an empty block whose row 0 is ledger index first.
func newBlock(first uint64) *block {
	b := &block{blk: first / blockSize, first: first, lo: first, tmin: math.MaxInt64, tmax: math.MinInt64, have: allNeeded}
	// The writer fills it up to blockSize rows: room for them at once
	// rather than by doubling.
	n := int(blockSize - first%blockSize)
	b.ts, b.flags, b.stat = make([]int64, 0, n), make([]byte, 0, n), make([]int64, 0, n)
	for j := range b.terms {
		b.terms[j] = make([]uint32, 0, n)
	}
	b.ip[0], b.ip[1] = make([]netip.Addr, 0, n), make([]netip.Addr, 0, n)
	return b
}

// encode appends column c of b's rows from row on in its stored form
// (before compression). The stored form of rows [0, n) is that of [0, k)
// followed by that of [k, n), for any k: a column may be stored as
// several zstd frames one after the other, which decode as one.
func (b *block) encode(c, from int, buf []byte) []byte {
	switch {
	case c == cTS:
		prev := int64(0)
		if from > 0 {
			prev = b.ts[from-1]
		}
		for _, t := range b.ts[from:] {
			buf = binary.AppendVarint(buf, t-prev)
			prev = t
		}
	case c == cFlags:
		buf = append(buf, b.flags[from:]...)
	case c == cStatus:
		for i := from; i < len(b.stat); i++ {
			if b.flags[i]&flStatus != 0 {
				buf = binary.AppendVarint(buf, b.stat[i])
			}
		}
	case c == cSIP || c == cCIP:
		for _, a := range b.ip[c-cSIP][from:] {
			switch {
			case !a.IsValid():
				buf = append(buf, 0)
			case a.Is4():
				v := a.As4()
				buf = append(append(buf, 4), v[:]...)
			default:
				v := a.As16()
				buf = append(append(buf, 6), v[:]...)
			}
		}
	default:
		for _, n := range b.terms[c-cTerm0][from:] {
			buf = binary.AppendUvarint(buf, uint64(n))
		}
	}
	return buf
}

var errBadColumn = errors.New("column does not decode")

// decode sets column c of b (with b.n rows) from its stored form. The
// status column needs the flags column decoded first.
func (b *block) decode(c int, data []byte) error {
	n := b.n
	switch {
	case c == cTS:
		b.ts = make([]int64, n)
		prev := int64(0)
		for i := range n {
			d, k := binary.Varint(data)
			if k <= 0 {
				return errBadColumn
			}
			data = data[k:]
			prev += d
			b.ts[i] = prev
		}
	case c == cFlags:
		if len(data) != n {
			return errBadColumn
		}
		b.flags = append([]byte(nil), data...)
		data = nil
	case c == cStatus:
		b.stat = make([]int64, n)
		for i := range n {
			if b.flags[i]&flStatus == 0 {
				continue
			}
			s, k := binary.Varint(data)
			if k <= 0 {
				return errBadColumn
			}
			data = data[k:]
			b.stat[i] = s
		}
	case c == cSIP || c == cCIP:
		col := make([]netip.Addr, n)
		for i := range n {
			if len(data) == 0 {
				return errBadColumn
			}
			switch data[0] {
			case 0:
				data = data[1:]
			case 4:
				if len(data) < 5 {
					return errBadColumn
				}
				col[i] = netip.AddrFrom4([4]byte(data[1:5]))
				data = data[5:]
			case 6:
				if len(data) < 17 {
					return errBadColumn
				}
				col[i] = netip.AddrFrom16([16]byte(data[1:17]))
				data = data[17:]
			default:
				return errBadColumn
			}
		}
		b.ip[c-cSIP] = col
	default:
		col := make([]uint32, n)
		for i := range n {
			v, k := binary.Uvarint(data)
			if k <= 0 || v > 1<<32-1 {
				return errBadColumn
			}
			data = data[k:]
			col[i] = uint32(v)
		}
		b.terms[c-cTerm0] = col
	}
	if len(data) != 0 {
		return errBadColumn
	}
	b.have[c] = true
	return nil
}

// maxColumn bounds a decoded column: 17 bytes per row at most.
const maxColumn = defaultBlockSize * 17

var (
	zDec = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxColumn+1<<10))
		if err != nil {
			panic(err)
		}
		return d
	})
	zEnc = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
		if err != nil {
			panic(err)
		}
		return e
	})
)

// querier is what block reads run on: a read transaction (a consistent
// snapshot of blocks and columns) or the writer's transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// blockMeta reads the blocks table row of blk (nil if there is none).
func blockMeta(ctx context.Context, q querier, blk uint64) (*block, error) {
	b := &block{blk: blk}
	var first, lo int64
	err := q.QueryRowContext(ctx, qBlockGet, int64(blk)).Scan(&first, &b.n, &lo, &b.tmin, &b.tmax)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("index: block %d: %w", blk, err)
	}
	b.first, b.lo = uint64(first), uint64(lo)
	return b, b.check()
}

// check rejects block rows no writer makes (an altered file): a query must
// not index out of range or allocate without bound because of one.
func (b *block) check() error {
	if b.n < 0 || b.n > int(blockSize) || b.first/blockSize != b.blk || (b.first%blockSize)+uint64(b.n) > blockSize {
		return fmt.Errorf("index: block %d is malformed (run trailguard reindex)", b.blk)
	}
	return nil
}

// blockMetas reads the blocks whose time range meets [from, last] and that hold rows at or after lo, in block order.
func blockMetas(ctx context.Context, q querier, from, last int64, lo uint64) ([]*block, error) {
	rows, err := q.QueryContext(ctx, `SELECT blk, first, n, lo, tmin, tmax FROM blocks WHERE tmax >= ? AND tmin <= ? AND blk >= ? ORDER BY blk`,
		from, last, int64(lo/blockSize))
	if err != nil {
		return nil, fmt.Errorf("index: blocks: %w", err)
	}
	defer rows.Close()
	var out []*block
	for rows.Next() {
		b := &block{}
		var blk, first, blo int64
		if err := rows.Scan(&blk, &first, &b.n, &blo, &b.tmin, &b.tmax); err != nil {
			return nil, fmt.Errorf("index: blocks: %w", err)
		}
		b.blk, b.first, b.lo = uint64(blk), uint64(first), uint64(blo)
		if err := b.check(); err != nil {
			return nil, err
		}
		if b.n > 0 {
			out = append(out, b)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: blocks: %w", err)
	}
	return out, nil
}

// load decodes the columns of b in need that it has not yet (the flags
// always).
func (b *block) load(ctx context.Context, q querier, need [nCols]bool) error {
	need[cFlags] = true
	var keys []string
	var args []any
	for c := range nCols {
		if need[c] && !b.have[c] {
			keys = append(keys, "?")
			args = append(args, colKey(b.blk, c))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	rows, err := q.QueryContext(ctx, `SELECT k, data FROM cols WHERE k IN (`+strings.Join(keys, ",")+`) ORDER BY k`, args...)
	if err != nil {
		return fmt.Errorf("index: block %d: %w", b.blk, err)
	}
	defer rows.Close()
	got := map[int][]byte{}
	for rows.Next() {
		var k int64
		var z []byte
		if err := rows.Scan(&k, &z); err != nil {
			return fmt.Errorf("index: block %d: %w", b.blk, err)
		}
		data, err := zDec().DecodeAll(z, nil)
		if err != nil {
			return fmt.Errorf("index: block %d column %d: %w (run trailguard reindex)", b.blk, k&31, err)
		}
		got[int(k&31)] = data
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("index: block %d: %w", b.blk, err)
	}
	// Flags first: the status column needs them.
	for _, c := range append([]int{cFlags}, allCols...) {
		if !need[c] || b.have[c] {
			continue
		}
		data, ok := got[c]
		if !ok {
			return fmt.Errorf("index: block %d column %d is missing (run trailguard reindex)", b.blk, c)
		}
		if err := b.decode(c, data); err != nil {
			return fmt.Errorf("index: block %d column %d: %w (run trailguard reindex)", b.blk, c, err)
		}
	}
	return nil
}

var allCols = func() []int {
	cs := make([]int, nCols)
	for i := range cs {
		cs[i] = i
	}
	return cs
}()

// allNeeded is every column.
var allNeeded = func() (n [nCols]bool) {
	for i := range n {
		n[i] = true
	}
	return n
}()

// execer is the writer's transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// wholeNext reports whether the next store encodes b whole.
func (b *block) wholeNext() bool {
	return b.framed == 0 || b.framed > b.n || b.nframes >= maxFrames ||
		(b.first%blockSize)+uint64(b.n) == blockSize
}

// maxFrames bounds the frames of a column of the writer's last block:
// past it the block is encoded again in one frame per column.
const maxFrames = 16

// store writes every column of b and its blocks row. The writer's last
// block grows by a batch at a time, and at a moderate rate (a few hundred
// rows a batch) encoding it whole with every batch encoded each row a
// dozen times or more: only the rows added since the last store are
// encoded, as one more zstd frame after the column's stored frames
// (readers decode the frames as one column). A block that is full, or
// whose columns have maxFrames frames, is encoded whole, in one frame per
// column, as it is kept (one frame compresses better and decodes faster).
// b.frames are what the file holds only if the transaction commits: the
// writer drops its last block when one fails.
func (b *block) store(ctx context.Context, tx execer, buf []byte) ([]byte, error) {
	whole := b.wholeNext()
	from := b.framed
	if whole {
		from = 0
		b.nframes = 0
	}
	for c := range nCols {
		z := b.frames[c]
		if whole {
			z = z[:0]
		}
		if buf = b.encode(c, from, buf[:0]); len(buf) > 0 || whole {
			z = zEnc().EncodeAll(buf, z)
		}
		b.frames[c] = z
		if _, err := tx.ExecContext(ctx, qColPut, colKey(b.blk, c), z); err != nil {
			b.framed = 0
			return buf, fmt.Errorf("index: write block %d: %w", b.blk, err)
		}
		yieldCPU(ctx)
	}
	b.framed = b.n
	b.nframes++
	if _, err := tx.ExecContext(ctx, qBlockPut,
		int64(b.blk), int64(b.first), b.n, int64(b.lo), b.tmin, b.tmax); err != nil {
		return buf, fmt.Errorf("index: write block %d: %w", b.blk, err)
	}
	return buf, nil
}
