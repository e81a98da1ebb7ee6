package sha256x2

import "testing"

// BenchmarkBlocks: the block functions alone, for the cost of Prefixed's
// bookkeeping around them (BenchmarkPrefixed/equal hashes the same blocks).
func BenchmarkBlocks(b *testing.B) {
	if !hasSHANI {
		b.Skip("no SHA extensions")
	}
	buf := make([]byte, 64*12*128)
	buf2 := make([]byte, 64*12*128)
	var h1, h2 [8]uint32
	b.Run("block2", func(b *testing.B) {
		b.SetBytes(int64(2 * len(buf)))
		for b.Loop() {
			block2(&h1, &h2, &buf[0], &buf2[0], 12*128, noPrefetch(), noPrefetch())
		}
	})
	b.Run("block1", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			block1(&h1, &buf[0], 12*128, noPrefetch())
		}
	})
	b.Run("equal", func(b *testing.B) {
		msgs := make([][]byte, 256)
		for i := range msgs {
			msgs[i] = make([]byte, 64*12-10) // 12 blocks with the prefix and padding
		}
		out := make([][32]byte, 256)
		b.SetBytes(256 * 64 * 12)
		for b.Loop() {
			Prefixed(out, 0, msgs)
		}
	})
}
