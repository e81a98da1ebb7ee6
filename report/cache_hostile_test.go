package report

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// gobUint reads a gob unsigned integer (one byte below 128, else the
// negated byte count and the bytes, big-endian).
func gobUint(b []byte) (uint64, int) {
	if b[0] < 0x80 {
		return uint64(b[0]), 1
	}
	n := int(-int8(b[0]))
	var v uint64
	for _, c := range b[1 : 1+n] {
		v = v<<8 | uint64(c)
	}
	return v, 1 + n
}

func putGobUint(dst []byte, v uint64) []byte {
	if v < 0x80 {
		return append(dst, byte(v))
	}
	var be [8]byte
	binary.BigEndian.PutUint64(be[:], v)
	i := 0
	for be[i] == 0 {
		i++
	}
	return append(append(dst, byte(-int8(8-i))), be[i:]...)
}

// mapBomb encodes v (one map entry, count 1, key and value encoded as
// entry) and makes the map's count claim n entries, as a cache file of a
// few dozen bytes can.
func mapBomb(t testing.TB, v any, entry []byte, n uint64) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(v); err != nil {
		t.Fatal(err)
	}
	data := b.Bytes()
	var out []byte
	for off := 0; off < len(data); {
		size, k := gobUint(data[off:])
		msg := data[off+k : off+k+int(size)]
		off += k + int(size)
		if off == len(data) { // the value
			i := bytes.LastIndex(msg, append([]byte{1}, entry...))
			if i < 0 {
				t.Fatalf("entry %x not in %x", entry, msg)
			}
			msg = append(append(putGobUint(append([]byte(nil), msg[:i]...), n), entry...), msg[i+1+len(entry):]...)
		}
		out = append(putGobUint(out, uint64(len(msg))), msg...)
	}
	return out
}

// TestChunkCacheHostileFiles: the report cache lives in the collector's
// data directory, and the collector reads it in the background (Warm) and
// for every report. A file planted there must not hang it or take its
// memory: gob sizes a map by the count its stream claims before reading
// an entry, so a cache file of under a hundred bytes claiming 2^26
// entries allocated over a gibibyte (2^28: the process died, out of
// memory); a FIFO hung the read, a link to /dev/zero or a sparse file of
// a tebibyte was read whole. Each is now refused: the chunk is read from
// the ledger again. (The map bombs carry a valid tag, as if the key had
// leaked: the tag is checked before anything is decoded, and the decoder
// must hold even past it.)
func TestChunkCacheHostileFiles(t *testing.T) {
	type oldCounter struct {
		M     map[string]uint64
		Other uint64
	}
	const claim = 1 << 26
	p := &computeParams{}
	tagged := func(c *chunkCache, body []byte) []byte {
		out := append(make([]byte, 32), body...)
		return append(out, c.tag(0, [32]byte{}, body)...)
	}
	cases := []struct {
		name  string
		plant func(t *testing.T, c *chunkCache, p string)
	}{
		{"figures map claiming 2^26 entries", func(t *testing.T, c *chunkCache, p string) {
			b := mapBomb(t, struct {
				Version int
				FailSec map[int64]uint64
			}{cacheVersion, map[int64]uint64{1: 2}}, []byte{2, 2}, claim)
			os.WriteFile(p, tagged(c, b), 0o600)
		}},
		{"counter map claiming 2^26 entries", func(t *testing.T, c *chunkCache, p string) {
			b := mapBomb(t, struct {
				Version int
				Srcs    oldCounter
			}{cacheVersion, oldCounter{M: map[string]uint64{"a": 2}}}, []byte{1, 'a', 2}, claim)
			os.WriteFile(p, tagged(c, b), 0o600)
		}},
		{"a FIFO", func(t *testing.T, c *chunkCache, p string) {
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"a link to /dev/zero", func(t *testing.T, c *chunkCache, p string) {
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
		}},
		{"a sparse TiB", func(t *testing.T, c *chunkCache, p string) {
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, 1<<40); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newChunkCache(t.TempDir(), testCacheKey, p)
			os.MkdirAll(c.dir, 0o700)
			tc.plant(t, c, c.path(0))
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			done := make(chan *acc, 1)
			go func() {
				a, st := c.load(0, [32]byte{}, p)
				if st != chunkRejected {
					t.Errorf("load: %d, want rejected", st)
				}
				done <- a
			}()
			select {
			case a := <-done:
				if a != nil {
					t.Fatal("a planted file was taken as a chunk's figures")
				}
			case <-time.After(time.Minute):
				t.Fatal("load did not return within a minute")
			}
			runtime.ReadMemStats(&after)
			if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
				t.Fatalf("load allocated %d MiB", n>>20)
			}
		})
	}
}

// FuzzChunkFile: whatever a cache file holds, decoding it gives a chunk's
// figures or nothing, merging them does not panic, and memory grows with
// the file, not with what it claims.
//
// The seeds are cache files of a few fields each, of types with few
// fields and short names: gob matches fields by name, so they decode
// into a chunkFile as the collector's files do, and are 49 to 160 bytes
// where a whole one is 1.4 KB, 1.35 KB of it type descriptions. The fuzzer
// minimises each input that widens coverage by removing every run of
// bytes in turn (a number of tries that grows with the square of its
// length, each with a gob decoder built anew): from a whole file it
// tried no new input after the first 3 s of a 20 s run.
func FuzzChunkFile(f *testing.F) {
	p := &computeParams{}
	type c struct {
		Keys   []string
		Counts []uint64
	}
	type n struct {
		K int64
		N uint64
	}
	type r struct {
		Index uint64
		What  byte
		Rule  string
		N     int64
	}
	type head struct {
		Version int
		Records uint64
	}
	type counts struct {
		Version int
		Records uint64
		Actions c
	}
	type perSec struct {
		Version int
		Records uint64
		FailSec []n
	}
	type rares struct {
		Version int
		Records uint64
		Rares   []r
	}
	for _, v := range []any{
		head{cacheVersion, chunkSize},
		counts{cacheVersion, chunkSize, c{[]string{"authn_login_fail"}, []uint64{3}}},
		perSec{cacheVersion, chunkSize, []n{{1_700_000_000, 3}}},
		rares{cacheVersion, chunkSize, []r{{7, 1, "brute-force", 3}}},
	} {
		var b bytes.Buffer
		if err := gob.NewEncoder(&b).Encode(v); err != nil {
			f.Fatal(err)
		}
		if decodeChunk(b.Bytes(), tlog.Hash{}, p) == nil {
			f.Fatalf("seed %T (%d bytes) is not taken as a chunk's figures", v, b.Len())
		}
		f.Add(b.Bytes())
	}
	f.Add(mapBomb(f, struct {
		Version int
		FailSec map[int64]uint64
	}{cacheVersion, map[int64]uint64{1: 2}}, []byte{2, 2}, 1<<20))
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if c := decodeChunk(data, [32]byte{}, p); c != nil {
			newAcc(p).merge(c)
		}
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20+64*uint64(len(data)) {
			t.Fatalf("a %d-byte file allocated %d MiB", len(data), n>>20)
		}
	})
}
