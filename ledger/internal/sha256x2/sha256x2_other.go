//go:build !amd64 || purego

package sha256x2

const hasSHANI = false

func block2(ha, hb *[8]uint32, pa, pb *byte, n int, pfa, pfb uintptr) { panic("unreachable") }
func block1(h *[8]uint32, p *byte, n int, pf uintptr)                 { panic("unreachable") }
