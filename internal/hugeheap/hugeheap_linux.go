//go:build linux

package hugeheap

import (
	"syscall"
	"unsafe"
)

// supported: Linux has transparent huge pages and madvise(2).
const supported = true

// madvHugePage is MADV_HUGEPAGE (linux/mman.h).
const madvHugePage = 14

func advise(b []byte) bool {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	beg := (p + hugePage - 1) &^ (hugePage - 1)
	end := (p + uintptr(len(b))) &^ (hugePage - 1)
	if beg >= end {
		return false
	}
	return syscall.Madvise(b[beg-p:end-p], madvHugePage) == nil
}
