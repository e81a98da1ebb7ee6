package sha256x2

import "testing"

func BenchmarkRaw(b *testing.B) {
	buf := make([]byte, 64*12*128)
	buf2 := make([]byte, 64*12*128)
	var h1, h2 [8]uint32
	b.SetBytes(int64(2 * len(buf)))
	for b.Loop() {
		block2(&h1, &h2, &buf[0], &buf2[0], 12*128)
	}
}

func BenchmarkPrefixedSame(b *testing.B) {
	msgs := make([][]byte, 256)
	for i := range msgs {
		msgs[i] = make([]byte, 64*12-10)
	}
	out := make([][32]byte, 256)
	b.SetBytes(256 * 64 * 12)
	for b.Loop() {
		Prefixed(out, 0, msgs)
	}
}
