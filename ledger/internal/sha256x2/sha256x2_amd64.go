//go:build amd64 && !purego

package sha256x2

//go:noescape
func block2(ha, hb *[8]uint32, pa, pb *byte, n int, pfa, pfb uintptr)

//go:noescape
func block1(h *[8]uint32, p *byte, n int, pf uintptr)

func cpuid(leaf, sub uint32) (a, b, c, d uint32)
func xgetbv() (lo uint32)

// hasSHANI: the SHA extensions, and the AVX, SSE4.1 and SSSE3 the block
// functions also use, with the OS saving the vector registers.
var hasSHANI = func() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, c1, _ := cpuid(1, 0)
	const ssse3, sse41, osxsave, avx = 1 << 9, 1 << 19, 1 << 27, 1 << 28
	if c1&(ssse3|sse41|osxsave|avx) != ssse3|sse41|osxsave|avx {
		return false
	}
	if xgetbv()&6 != 6 { // XMM and YMM state enabled by the OS
		return false
	}
	_, b7, _, _ := cpuid(7, 0)
	return b7&(1<<29) != 0
}()
