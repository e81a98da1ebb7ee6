package sha256x2

import (
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

func want(prefix byte, m []byte) [Size]byte {
	return sha256.Sum256(append([]byte{prefix}, m...))
}

// TestPrefixed compares every message length from 0 to 300 (all paddings,
// one and two final blocks, with and without whole blocks in place), in
// batches of odd and even sizes and mixed lengths, with crypto/sha256.
func TestPrefixed(t *testing.T) {
	if !Available() {
		t.Log("no SHA extensions: the crypto/sha256 fallback is tested")
	}
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 4096)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	var msgs [][]byte
	for n := 0; n <= 300; n++ {
		msgs = append(msgs, data[n:2*n])
	}
	for range 200 {
		off, n := r.IntN(2048), r.IntN(2048)
		msgs = append(msgs, data[off:off+n])
	}
	for _, batch := range []int{1, 2, 3, 7, 64, len(msgs)} {
		for from := 0; from < len(msgs); from += batch {
			ms := msgs[from:min(from+batch, len(msgs))]
			out := make([][Size]byte, len(ms))
			for _, prefix := range []byte{0, 1} {
				Prefixed(out, prefix, ms)
				for i, m := range ms {
					if out[i] != want(prefix, m) {
						t.Fatalf("batch %d, message %d (%d bytes), prefix %d: got %x, want %x", batch, from+i, len(m), prefix, out[i], want(prefix, m))
					}
				}
			}
		}
	}
}

func FuzzPrefixed(f *testing.F) {
	f.Add([]byte("a"), []byte{}, byte(0))
	f.Add(make([]byte, 55), make([]byte, 119), byte(1))
	f.Fuzz(func(t *testing.T, a, b []byte, prefix byte) {
		out := make([][Size]byte, 3)
		Prefixed(out, prefix, [][]byte{a, b, a})
		if out[0] != want(prefix, a) || out[1] != want(prefix, b) || out[2] != out[0] {
			t.Fatalf("lengths %d, %d: wrong hash", len(a), len(b))
		}
	})
}

func benchMsgs(n, size int) [][]byte {
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = make([]byte, size+i%64)
	}
	return msgs
}

func BenchmarkPrefixed(b *testing.B) {
	msgs := benchMsgs(256, 720)
	out := make([][Size]byte, len(msgs))
	bytes := 0
	for _, m := range msgs {
		bytes += len(m)
	}
	b.Run("x2", func(b *testing.B) {
		b.SetBytes(int64(bytes))
		for b.Loop() {
			Prefixed(out, 0, msgs)
		}
	})
	b.Run("crypto-sha256", func(b *testing.B) {
		b.SetBytes(int64(bytes))
		for b.Loop() {
			for i, m := range msgs {
				out[i] = sha256.Sum256(m)
			}
		}
	})
	nodes := make([][]byte, 128)
	for i := range nodes {
		nodes[i] = make([]byte, 64)
	}
	b.Run("nodes-x2", func(b *testing.B) {
		for b.Loop() {
			Prefixed(out, 1, nodes)
		}
	})
	hs := make([][Size]byte, 256)
	b.Run("Nodes", func(b *testing.B) {
		for b.Loop() {
			Nodes(out[:128], hs)
		}
	})
	b.Run("nodes-crypto-sha256", func(b *testing.B) {
		buf := make([]byte, 65)
		for b.Loop() {
			for i := range nodes {
				out[i] = sha256.Sum256(buf)
			}
		}
	})
}

// TestNodes compares node hashes, for levels of odd and even widths and
// computed in place, with crypto/sha256.
func TestNodes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, width := range []int{0, 1, 2, 3, 4, 5, 17, 256} {
		in := make([][Size]byte, 2*width)
		for i := range in {
			for k := range in[i] {
				in[i][k] = byte(r.Uint32())
			}
		}
		want := make([][Size]byte, width)
		for i := range want {
			want[i] = sha256.Sum256(append(append([]byte{1}, in[2*i][:]...), in[2*i+1][:]...))
		}
		out := make([][Size]byte, width)
		Nodes(out, in)
		for i := range want {
			if out[i] != want[i] {
				t.Fatalf("width %d, node %d: %x, want %x", width, i, out[i], want[i])
			}
		}
		Nodes(in[:width], in) // in place
		for i := range want {
			if in[i] != want[i] {
				t.Fatalf("width %d, node %d in place: %x, want %x", width, i, in[i], want[i])
			}
		}
	}
}

// TestNoAllocation: the lanes stay on the stack (a lane that pointed into
// itself escaped: two allocations and write barriers on every call).
func TestNoAllocation(t *testing.T) {
	msgs := benchMsgs(16, 700)
	out := make([][Size]byte, len(msgs))
	if n := testing.AllocsPerRun(10, func() { Prefixed(out, 0, msgs) }); n != 0 {
		t.Fatalf("Prefixed allocates %v times per call", n)
	}
	if n := testing.AllocsPerRun(10, func() { Nodes(out[:8], out) }); n != 0 {
		t.Fatalf("Nodes allocates %v times per call", n)
	}
}
