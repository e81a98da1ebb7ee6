//go:build !linux

package hugeheap

// supported: no transparent huge pages to ask for (Advise reserves
// nothing).
const supported = false

func advise([]byte) bool { return false }
